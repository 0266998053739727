"""The edge runtime (agegender.deploy.runtime): devices, model cache, mean checks, preprocessing identical
to the `test` stage, sync and async prediction. Tiny IRs are built here with OpenVINO's own API, so these
tests need neither the compile stage nor torch."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.caffe.mean import write_mean
from agegender.deploy.metadata import IRMetadata, metadata_path, sha256_file, write_metadata
from agegender.errors import AgegenderError
from agegender.labels import AGE_CLASSES, GENDER_CLASSES
from agegender.preprocess import face_to_input

ROOT = Path(__file__).resolve().parents[1]
RESIZE, CROP = 256, 227
MEAN_BGR = (104.0, 117.0, 123.0)


# ------------------------------------------------------------------------------------------ tiny IRs

def tiny_ir(xml: Path, classes: int, seed: int, crop: int = CROP) -> Path:
    """data 1x3xCROPxCROP -> conv 8x8/8 -> ReLU -> avg pool -> FC -> softmax "prob", random weights
    (small enough that the probabilities are spread, and sensitive to the colour order)."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(seed)
    data = ops.parameter([1, 3, crop, crop], np.float32, name="data")
    data.output(0).set_names({"data"})
    conv = ops.relu(ops.convolution(data, ops.constant((rng.standard_normal((8, 3, 8, 8)) * 0.002).astype(np.float32)),
                                    [8, 8], [0, 0], [0, 0], [1, 1]))
    side = (crop // 8) // 7
    pool = ops.avg_pool(conv, [7, 7], [0, 0], [0, 0], [7, 7], exclude_pad=True)
    flat = ops.reshape(pool, ops.constant(np.array([1, -1], np.int64)), False)
    weights = (rng.standard_normal((8 * side * side, classes)) * 0.3).astype(np.float32)
    prob = ops.softmax(ops.matmul(flat, ops.constant(weights), False, False), 1)
    prob.output(0).set_names({"prob"})
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([prob], [data], xml.stem), xml)
    return xml


def mean_image(seed: int = 0) -> np.ndarray:
    """A smooth 3x256x256 mean with the usual per-channel levels (not constant: the crop offset matters)."""
    ramp = np.linspace(-8, 8, RESIZE, dtype=np.float32)
    return np.stack([m + ramp[:, None] + seed * ramp[None, :] for m in MEAN_BGR]).astype(np.float32)


def build_graph(folder: Path, mean: np.ndarray | None = None) -> Path:
    """graph/AgeNet.*, graph/GenderNet.*, graph/age_gender_mean.npy as the compile stage lays them out."""
    mean = mean_image() if mean is None else mean
    mean_file = write_mean(mean, folder / "age_gender_mean.npy")
    for task, classes, seed in (("age", AGE_CLASSES, 1), ("gender", GENDER_CLASSES, 2)):
        xml = tiny_ir(folder / f"{task.capitalize()}Net.xml", len(classes), seed)
        write_metadata(xml, IRMetadata(
            task=task, classes=list(classes), input_name="data", output_name="prob", input_shape=[1, 3, CROP, CROP],
            resize=[RESIZE, RESIZE], crop=CROP, mean_file=mean_file.name, mean_sha256=sha256_file(mean_file),
            mean_bgr=mean.reshape(3, -1).mean(1).tolist(), precision="FP32", target="cpu"))
    return folder


@pytest.fixture(scope="session")
def graph(tmp_path_factory) -> Path:
    return build_graph(tmp_path_factory.mktemp("graph"))


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch) -> Path:
    """Every test (and CLI subprocess) caches compiled models in its own folder, never in ~/.cache."""
    monkeypatch.setenv("AGEGENDER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def edit_sidecar(xml: Path, **changes) -> None:
    data = json.loads(metadata_path(xml).read_text()) | changes
    metadata_path(xml).write_text(json.dumps(data))


def copy_graph(graph: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for file in graph.iterdir():
        (into / file.name).write_bytes(file.read_bytes())
    return into


def utk_image(utkface: Path, index: int = 0) -> Path:
    return sorted(utkface.glob("*.jpg"))[index]


# ------------------------------------------------------------------------------------------ devices

def test_default_device_is_the_best_present_npu_gpu_cpu():
    from agegender.deploy.runtime import pick_device

    assert pick_device(None, ["CPU", "GPU.0", "GPU.1", "NPU"]) == ("NPU", None)
    assert pick_device("AUTO", ["CPU", "GPU.0", "GPU.1"]) == ("GPU.0", None)
    assert pick_device(None, ["CPU"]) == ("CPU", None)
    assert pick_device("gpu", ["CPU", "GPU.0"]) == ("GPU", None)
    assert pick_device("GPU.1", ["CPU", "GPU.0", "GPU.1"]) == ("GPU.1", None)


def test_absent_device_falls_back_to_cpu_with_a_reason():
    from agegender.deploy.runtime import pick_device

    device, message = pick_device("NPU", ["CPU", "GPU"])
    assert device == "CPU" and "NPU is not available" in message and "CPU, GPU" in message
    device, message = pick_device("MYRIAD", ["CPU"])
    assert device == "CPU" and "2022.3" in message
    with pytest.raises(AgegenderError, match="no CPU"):
        pick_device("GPU", ["NPU"])
    with pytest.raises(AgegenderError, match="finds none"):
        pick_device(None, [])


def test_classifier_reports_the_device_that_ran_and_one_notice_for_a_fallback(graph):
    from agegender.deploy.runtime import Classifier

    notices = []
    net = Classifier(graph / "AgeNet.xml", device="NPU", on_notice=notices.append)
    assert net.device == "CPU"
    assert len(notices) == 1 and "NPU" in notices[0] and "running on CPU" in notices[0]
    assert net.classes == list(AGE_CLASSES) and net.input_shape == (3, CROP, CROP)


def test_model_cache_is_written_on_the_first_start_and_can_be_turned_off(graph, tmp_path):
    from agegender.deploy.runtime import Classifier

    Classifier(graph / "GenderNet.xml", cache_dir=tmp_path / "on")
    first = sorted(p.name for p in (tmp_path / "on").iterdir())
    assert first, "OpenVINO wrote no compiled model to the cache"
    Classifier(graph / "GenderNet.xml", cache_dir=tmp_path / "on")
    assert sorted(p.name for p in (tmp_path / "on").iterdir()) == first  # the second start reused it
    net = Classifier(graph / "GenderNet.xml", cache_dir="")
    assert net.cache_dir is None


def test_cpu_runs_in_f32_and_the_cache_key_names_the_cpu_and_the_precision(graph, tmp_path):
    from agegender.deploy.runtime import Classifier, cache_key, device_config

    assert device_config("CPU", "LATENCY") == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    assert "INFERENCE_PRECISION_HINT" not in device_config("GPU.0", "LATENCY")
    net = Classifier(graph / "GenderNet.xml", device="CPU", cache_dir=tmp_path / "cache")
    assert net._compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"
    key = cache_key("CPU", device_config("CPU", "LATENCY"))
    assert net.cache_dir == tmp_path / "cache" / key and key.startswith("CPU-") and "-f32-" in key
    assert cache_key("CPU", {"INFERENCE_PRECISION_HINT": "f16"}) != key  # an f16 blob is never loaded for f32


def int8_build(graph: Path, into: Path, drop: float | None, caffemodel: str = "c0ffee", prior: float = 0.5) -> Path:
    """A copy of ``graph`` whose AgeNet has an INT8 build beside it (any IR will do: only the sidecars matter)."""
    folder = copy_graph(graph, into)
    edit_sidecar(folder / "AgeNet.xml", source={"prototxt_sha256": "p", "caffemodel_sha256": "c0ffee"},
                 prior={"weight": 0.5, "bias_added": [0.5, -0.5]})
    for suffix in (".xml", ".bin", ".json"):
        (folder / f"AgeNet_int8{suffix}").write_bytes((folder / f"AgeNet{suffix}").read_bytes())
    report = {} if drop is None else {"int8_vs_fp32": {"accuracy_drop_points": drop}}
    edit_sidecar(folder / "AgeNet_int8.xml", precision="INT8", verification=report,
                 source={"prototxt_sha256": "p", "caffemodel_sha256": caffemodel},
                 prior={"weight": prior, "bias_added": [prior, -prior]})
    return folder


def test_int8_build_is_picked_on_cpu_only_when_its_accuracy_holds(graph, tmp_path, monkeypatch):
    import platform

    from agegender.deploy.runtime import pick_ir

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")

    notices = []
    folder = int8_build(graph, tmp_path / "ok", drop=0.3)
    assert pick_ir(folder, "AgeNet", "CPU", notices.append) == folder / "AgeNet_int8.xml"
    assert pick_ir(folder, "GenderNet", "CPU", notices.append) == folder / "GenderNet.xml"  # none built
    for device in ("GPU.0", "NPU", "MYRIAD"):
        assert pick_ir(folder, "AgeNet", device, notices.append) == folder / "AgeNet.xml"
    assert notices == []
    for name, drop, caffemodel, prior, why in (("lossy", 1.5, "c0ffee", 0.5, "loses 1.5 points"),
                                               ("unmeasured", None, "c0ffee", 0.5, "no accuracy report"),
                                               ("stale", 0.0, "older", 0.5, "another prototxt or caffemodel"),
                                               ("unshifted", 0.0, "c0ffee", 1.0, "another class prior")):
        folder = int8_build(graph, tmp_path / name, drop, caffemodel, prior)
        assert pick_ir(folder, "AgeNet", "CPU", notices.append) == folder / "AgeNet.xml"
        assert why in notices[-1] and "using AgeNet.xml" in notices[-1]


def test_arm_cpus_keep_the_fp16_ir(graph, tmp_path, monkeypatch):
    import platform

    from agegender.deploy.runtime import pick_ir

    folder = int8_build(graph, tmp_path / "ok", drop=0.3)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert pick_ir(folder, "AgeNet", "CPU") == folder / "AgeNet.xml"


# ------------------------------------------------------------------------------------------ prediction

def test_batched_async_prediction_equals_one_at_a_time(graph):
    from agegender.deploy.runtime import THROUGHPUT, Classifier

    net = Classifier(graph / "AgeNet.xml", hint=THROUGHPUT)
    batch = np.random.default_rng(0).normal(0, 40, (7, 3, CROP, CROP)).astype(np.float32)
    together = net.predict(batch)
    one_by_one = np.concatenate([net.predict(x[None]) for x in batch])
    assert together.shape == (7, len(AGE_CLASSES))
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    np.testing.assert_allclose(together.sum(1), 1, atol=1e-5)
    assert len(set(together.argmax(1))) > 1, "inputs this different should not all get one class"


def test_pipeline_hands_every_result_to_its_tag(graph):
    from agegender.deploy.runtime import Classifier

    net = Classifier(graph / "GenderNet.xml")
    batch = np.random.default_rng(1).normal(0, 40, (5, 3, CROP, CROP)).astype(np.float32)
    got = {}
    with net.pipeline(got.__setitem__, jobs=3) as pipe:
        assert pipe.jobs == 3
        assert all(pipe._queue[i].latency > 0 for i in range(3)), "each request warmed alone before use"
        for i, x in enumerate(batch):
            pipe.submit(x[None], f"face{i}")
    assert sorted(got) == [f"face{i}" for i in range(5)]
    np.testing.assert_allclose(np.stack([got[f"face{i}"] for i in range(5)]), net.predict(batch), atol=1e-6)
    again = []
    with net.pipeline(lambda tag, probs: again.append(tag), jobs=3) as reused:
        reused.submit(batch[:1], "x")
    assert reused is pipe and again == ["x"] and len(got) == 5  # same warmed queue, the new callback only


def test_wrong_batch_shape_is_one_clear_error(graph):
    from agegender.deploy.runtime import Classifier

    with pytest.raises(AgegenderError, match="takes N x 3x227x227 inputs, got 2x3x200x200"):
        Classifier(graph / "AgeNet.xml").predict(np.zeros((2, 3, 200, 200), np.float32))


# ------------------------------------------------------------------------------------------ preprocessing

def test_preprocess_is_the_training_transform_in_bgr(graph, utkface):
    """BGR (no RGB swap, the original's bug), resized to the LMDB size, mean at the centre-crop offset."""
    from agegender.deploy.runtime import Classifier

    net = Classifier(graph / "AgeNet.xml")
    image = cv2.imread(str(utk_image(utkface)))
    x = net.preprocess(image)
    np.testing.assert_array_equal(x, face_to_input(image, net.mean, CROP))
    rgb = net.predict(net.preprocess(image[:, :, ::-1]))
    assert not np.allclose(rgb, net.predict(x), atol=1e-3), "the test net must be able to tell BGR from RGB"


def test_ir_gives_the_same_class_and_probability_as_the_test_stage(graph, utkface, tmp_path):
    """Test-set images through the `test` stage (the LMDB stage's `agegender lmdb`, then agegender.scoring's
    batches -> Classifier.predict) and through run_inference.py --json: same class, same probability."""
    from agegender.caffe.datum import read_lmdb
    from agegender.deploy.runtime import Classifier
    from agegender.scoring import lmdb_batches

    from conftest import run_cli

    images = [utk_image(utkface, i).name for i in (0, 5, 9)]
    (tmp_path / "lists").mkdir()
    for task in ("age", "gender"):
        (tmp_path / "lists" / f"{task}_test.txt").write_text("".join(f"{name} 0\n" for name in images))
    proc = run_cli("lmdb", "--lists", tmp_path / "lists", "--out", tmp_path / "lmdb", "--root", utkface,
                   "--splits", "test", "--resize", str(RESIZE), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    test_stage = {}
    for task, name in (("age", "AgeNet"), ("gender", "GenderNet")):
        net = Classifier(graph / f"{name}.xml")
        lmdb = str(tmp_path / "lmdb" / f"{task}_test_lmdb")
        keys = [key.split(b"_", 1)[1].decode() for key, _ in read_lmdb(lmdb)]  # "%08d_<list path>", shuffled
        (inputs, _, _), = lmdb_batches(lmdb, net.mean, net.meta.crop, ten_crop=False)
        for image, probs in zip(keys, net.predict(inputs)):
            test_stage[image, task] = (net.classes[int(probs.argmax())], float(probs.max()))
    assert len(test_stage) == 2 * len(images)
    for image in images:
        proc = run_inference("--graph_dir", graph, "--image_path", utkface / image, "--faces", "none", "--json")
        assert proc.returncode == 0, proc.stderr
        face, = json.loads(proc.stdout)["faces"]
        for task in ("age", "gender"):
            label, probability = test_stage[image, task]
            assert face[task]["label"] == label
            assert face[task]["probability"] == pytest.approx(probability, abs=1e-6)


# ------------------------------------------------------------------------------------------ mean and graph checks

def test_explicit_mean_file_with_the_same_values_is_accepted(graph, tmp_path):
    """The original passed --mean_file; a .binaryproto holding the same mean as the recorded .npy is fine."""
    from agegender.deploy.runtime import Classifier

    proto = write_mean(mean_image(), tmp_path / "mean.binaryproto")
    net = Classifier(graph / "AgeNet.xml", mean_file=proto)
    np.testing.assert_array_equal(net.mean, mean_image())


def test_mismatched_mean_file_is_refused(graph, tmp_path):
    from agegender.deploy.runtime import Classifier

    other = write_mean(mean_image() + 20, tmp_path / "other.npy")
    with pytest.raises(AgegenderError, match="does not match the mean the graph was compiled with"):
        Classifier(graph / "AgeNet.xml", mean_file=other)
    small = write_mean(mean_image()[:, :200, :200], tmp_path / "small.npy")
    with pytest.raises(AgegenderError, match="does not match"):
        Classifier(graph / "AgeNet.xml", mean_file=small)


def test_mean_of_another_size_is_refused_even_without_a_recorded_hash(graph, tmp_path):
    from agegender.deploy.runtime import Classifier

    folder = copy_graph(graph, tmp_path / "g")
    edit_sidecar(folder / "AgeNet.xml", mean_sha256="", mean_bgr=[])
    small = write_mean(mean_image()[:, :200, :200], tmp_path / "small.npy")
    with pytest.raises(AgegenderError, match="is 3x200x200 but the graph expects 3x256x256"):
        Classifier(folder / "AgeNet.xml", mean_file=small)


@pytest.mark.parametrize("breakage, message", [
    ("no_xml", "graph not found"),
    ("no_bin", "graph weights not found"),
    ("no_json", "IR metadata not found"),
    ("list_json", "is not valid \\(not a JSON object\\)"),
    ("no_mean", "named by the graph's sidecar is missing"),
    ("garbage_xml", "is not a readable OpenVINO IR"),
    ("classes", "outputs 9 classes but its sidecar names 2"),
    ("input", "the .xml and .json do not belong together"),
    ("changed_mean", "has changed since the graph was compiled"),
])
def test_missing_or_mismatched_graph_files_are_one_clear_error(graph, tmp_path, breakage, message):
    from agegender.deploy.runtime import Classifier

    folder = copy_graph(graph, tmp_path / "g")
    xml = folder / "AgeNet.xml"
    if breakage == "no_xml":
        xml.unlink()
    elif breakage == "no_bin":
        xml.with_suffix(".bin").unlink()
    elif breakage == "no_json":
        metadata_path(xml).unlink()
    elif breakage == "list_json":
        metadata_path(xml).write_text("[]")
    elif breakage == "no_mean":
        (folder / "age_gender_mean.npy").unlink()
    elif breakage == "garbage_xml":
        xml.write_text("<net><layers>broken")
    elif breakage == "classes":
        edit_sidecar(xml, task="", classes=list(GENDER_CLASSES))
    elif breakage == "input":
        edit_sidecar(xml, input_shape=[1, 3, 224, 224], crop=224)
    elif breakage == "changed_mean":
        write_mean(mean_image(seed=3), folder / "age_gender_mean.npy")
    with pytest.raises(AgegenderError, match=message):
        Classifier(xml)


# ------------------------------------------------------------------------------------------ the edge install

def run_inference(*args, blocked: tuple[str, ...] = ()):
    """run_inference.py in a fresh interpreter, as a user runs it; ``blocked`` modules cannot be imported."""
    import os
    import subprocess

    code = (
        "import sys, runpy\n"
        f"blocked = {blocked!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in blocked: raise ImportError(f'{name} is not installed on the edge')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['run_inference.py', *{[str(a) for a in args]!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(ROOT / 'run_inference.py')!r}, run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "else:\n"
        "    code = 0\n"
        "print('IMPORTED', ' '.join(sorted(m for m in sys.modules if '.' not in m)), file=sys.stderr)\n"
        "sys.exit(code)\n")
    env = {k: v for k, v in os.environ.items() if k != "AGEGENDER_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    imported, _, stderr = proc.stderr.rpartition("IMPORTED ")
    proc.imported = set(stderr.split())
    proc.stderr = imported
    return proc


def test_run_inference_needs_only_the_edge_requirements(graph, utkface):
    """The Pi installs requirements-edge.txt only: run_inference.py works with torch, lmdb, PIL, sklearn
    and nncf unimportable, and never imports torch."""
    proc = run_inference("--graph_dir", graph, "--image_path", utk_image(utkface), "--mean_file",
                         graph / "age_gender_mean.npy", blocked=("torch", "lmdb", "PIL", "sklearn", "nncf"))
    assert proc.returncode == 0, proc.stderr
    assert "Age predicted:" in proc.stdout and "Gender predicted:" in proc.stdout
    assert "torch" not in proc.imported and "openvino" in proc.imported and "cv2" in proc.imported
