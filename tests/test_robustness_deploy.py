"""Fault sweep (issue 15), deploy side: compile and run_inference on NaN means and weights, reordered or
mistyped sidecars, outputs that are the input or cannot be written, absurd sizes, kills and SIGTERM at
controlled points of compile and of a folder run, damaged files, symlinks, decompression bombs."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_run_inference import build_graph, copy_graph, edit_sidecar

from agegender.caffe import caffe_pb2, read_caffemodel, write_caffemodel, write_lmdb, write_mean
from agegender.caffe.blob import blob_to_array
from agegender.cli import main
from agegender.deploy.compile import random_caffemodel, verify
from agegender.deploy.faces import FaceFinder, looks_like_face_crop
from agegender.deploy.metadata import metadata_path, read_metadata, switch_path
from agegender.errors import AgegenderError
from agegender.infer import main as run_inference_main
from agegender.layers.net import Net

from conftest import ROOT

NET = """\
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 24 dim: 24 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 2 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


@pytest.fixture
def small(tmp_path) -> tuple[Path, Path, Path]:
    """(deploy prototxt, caffemodel, mean.npy) of a 2-class net on 24x24 inputs, resized from 28x28."""
    prototxt = tmp_path / "small.prototxt"
    prototxt.write_text(NET)
    weights = random_caffemodel(Net.from_file(prototxt), tmp_path / "small.caffemodel")
    mean = write_mean(np.full((3, 28, 28), 100, np.float32), tmp_path / "mean.npy")
    return prototxt, weights, mean


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AGEGENDER_CACHE_DIR", str(tmp_path / "cache"))


def compile_args(small, out: Path, *extra: str) -> list[str]:
    prototxt, weights, mean = small
    return ["compile", "--model", str(prototxt), "--weights", str(weights), "--mean", str(mean),
            "--output", str(out), "--precision", "FP32", *extra]


def one_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error" not in err[0], err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])
    return err[0]


def run_subprocess(args: list[str], crash: str | None = None, module: str = "agegender") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("AGEGENDER_DEBUG", None)
    if crash:
        env["AGEGENDER_CRASH_AT"] = crash
    command = [sys.executable, "-m", module, *args] if module else [sys.executable, *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permissions, but not sysfs)."""
    if os.geteuid() == 0:
        return Path("/sys/kernel")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


# ------------------------------------------------------------------------------------------ 3: NaN

def test_nan_means_and_weights_are_refused_where_they_are_read(small, tmp_path, capsys):
    prototxt, weights, _ = small
    np.save(tmp_path / "nan.npy", np.full((3, 28, 28), np.nan, np.float32))
    assert main(compile_args((prototxt, weights, tmp_path / "nan.npy"), tmp_path / "g/a")) == 2
    one_line(capsys, "nan.npy holds 2352 NaN or infinite value(s)")
    model = read_caffemodel(weights)
    model.layer[0].blobs[0].data[5] = float("nan")
    write_caffemodel(model, tmp_path / "nan.caffemodel")
    assert main(compile_args((prototxt, tmp_path / "nan.caffemodel", small[2]), tmp_path / "g/a")) == 2
    one_line(capsys, "layer 'conv1' (Convolution): 1 of its 108 weights are NaN or infinite")
    assert not (tmp_path / "g").exists() or not list((tmp_path / "g").iterdir())

    assert main(compile_args(small, tmp_path / "g/a")) == 0  # verification itself refuses NaN differences:
    net = Net.from_file(prototxt)
    nan_reference = ("nan", lambda inputs: {"prob": np.full((1, 2), np.nan, np.float32)})
    with pytest.raises(AgegenderError, match="NaN or infinite outputs"):
        verify(tmp_path / "g/a.xml", net, nan_reference, None, 2, "FP32")


def test_nan_mean_or_scale_beside_a_graph_is_refused_by_run_inference(tmp_path, capsys):
    graph = build_graph(tmp_path / "graph")
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((100, 100, 3), 128, np.uint8))
    args = ["--image_path", str(image), "--graph_dir", str(graph), "--faces", "none"]
    np.save(graph / "nan.npy", np.full((3, 256, 256), np.nan, np.float32))
    assert run_inference_main([*args, "--mean_file", str(graph / "nan.npy")]) == 2
    one_line(capsys, "NaN or infinite")
    edit_sidecar(graph / "AgeNet.xml", scale=float("nan"))  # json writes a bare NaN
    assert run_inference_main(args) == 2
    one_line(capsys, '"scale" is NaN, expected a finite number')


# ------------------------------------------------------------------------------------------ 4, 5, 6

@pytest.mark.parametrize("name", ["photo.jpg", "clip.avi"])
def test_output_equal_to_the_input_file_is_refused_and_the_file_kept(tmp_path, capsys, name):
    source = tmp_path / name
    source.write_bytes(b"original bytes")
    for output in (source, tmp_path / "." / name, tmp_path / f"link-{name}"):
        if output.name.startswith("link"):
            output.symlink_to(source)
        assert run_inference_main(["--image_path", str(source), "--output", str(output)]) == 2
        one_line(capsys, "is the input", "itself")
    assert source.read_bytes() == b"original bytes"


def test_reordered_sidecar_classes_are_refused(tmp_path, capsys):
    graph = build_graph(tmp_path / "graph")
    edit_sidecar(graph / "GenderNet.xml", classes=["Female", "Male"])
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((100, 100, 3), 128, np.uint8))
    assert run_inference_main(["--image_path", str(image), "--graph_dir", str(graph), "--faces", "none"]) == 2
    one_line(capsys, "GenderNet.json", "['Female', 'Male']", "['Male', 'Female'] in this order")


def test_unwritable_outputs_are_refused_before_the_work(small, tmp_path, capsys):
    folder = unwritable_folder(tmp_path)
    assert main(compile_args(small, folder / "AgeNet")) == 2
    out = capsys.readouterr()
    assert "verification" not in out.out and len(out.err.strip().splitlines()) == 1
    assert "cannot write --output" in out.err and "internal error" not in out.err
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((100, 100, 3), 128, np.uint8))
    assert run_inference_main(["--image_path", str(image), "--output", str(folder / "out.png")]) == 2
    one_line(capsys, "cannot write --output")  # before the graph folder (absent here) is even looked at


# ------------------------------------------------------------------------------------------ 7, 19, 20

def test_bad_compile_inputs_are_one_line_errors(small, tmp_path, capsys):
    prototxt, weights, mean = small
    model = read_caffemodel(weights)
    del model.layer[0].blobs[0].data[10:]  # a blob with fewer values than its shape
    write_caffemodel(model, tmp_path / "short.caffemodel")
    for command in (["inspect", str(prototxt), "--weights", str(tmp_path / "short.caffemodel")],
                    compile_args((prototxt, tmp_path / "short.caffemodel", mean), tmp_path / "o")):
        assert main(command) == 2
        one_line(capsys, "layer 'conv1' (Convolution)", "holds 10 values but its shape (4, 3, 3, 3) needs 108")
    np.save(tmp_path / "strings.npy", np.array([[["a"] * 28] * 28] * 3))
    assert main(compile_args((prototxt, weights, tmp_path / "strings.npy"), tmp_path / "o")) == 2
    one_line(capsys, "holds <U1 values, not numbers")
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as stream:  # a header claiming 3x100000x100000 float32 (112 GiB), 100 bytes of data
        np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (3, 100000, 100000)})
        stream.write(bytes(100))
    assert main(compile_args((prototxt, weights, huge), tmp_path / "o")) == 2
    one_line(capsys, "header declares shape (3, 100000, 100000)")
    assert main(compile_args(small, tmp_path / "o", "--batch", "20000000")) == 2
    one_line(capsys, "needs at least", "lower --batch")
    assert main(compile_args(small, tmp_path / "o", "--check-inputs", "100000000")) == 2
    one_line(capsys, "--check-inputs 100000000: at most 1000")
    write_lmdb(tmp_path / "calib_lmdb", [(b"0_a", caffe_pb2.Datum(channels=3, height=28, width=28, data=b"xx"))])
    int8 = compile_args(small, tmp_path / "o", "--calibration", str(tmp_path / "calib_lmdb"), "--precision", "INT8")
    assert main(int8) == 2
    one_line(capsys, "record 0_a: Datum holds 2 values but declares (3, 28, 28)")
    assert not (tmp_path / "o.xml").exists()


def test_garbled_messages_are_readable(tmp_path, capsys):
    """Item 19: no int64 overflow in blob sizes and MAC totals; no 3xbxixg; no hint naming the file given."""
    blob = caffe_pb2.BlobProto(shape=caffe_pb2.BlobShape(dim=[2**31, 2**31, 2]), data=[1.0])
    with pytest.raises(ValueError, match=f"needs {2**63}$"):
        blob_to_array(blob)
    big = tmp_path / "big.prototxt"
    big.write_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 100000 input_dim: 100000\n'
                   'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
                   'num_output: 1000000 kernel_size: 3 pad: 1 } }\n')
    assert main(["inspect", str(big)]) == 0
    total = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert int(total[-1].replace(",", "")) == 1000000 * 27 * 100000 * 100000  # positive, exact
    graph = build_graph(tmp_path / "graph")
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((100, 100, 3), 128, np.uint8))
    args = ["--image_path", str(image), "--graph_dir", str(graph), "--faces", "none"]
    edit_sidecar(graph / "AgeNet.xml", resize="big")
    assert run_inference_main(args) == 2
    assert "3xbxixg" not in one_line(capsys, '"resize" is "big", expected 2 positive integers')
    graph = build_graph(tmp_path / "graph2")
    write_mean(np.full((3, 256, 256), 7, np.float32), graph / "age_gender_mean.npy")  # changed after compile
    assert run_inference_main([*args[:-2], "--graph_dir", str(graph), "--mean_file",
                               str(graph / "age_gender_mean.npy")]) == 2
    line = one_line(capsys, "has changed since the graph was compiled")
    assert "use age_gender_mean.npy" not in line


def test_sidecar_of_the_wrong_types_is_one_line(tmp_path, capsys):
    graph = build_graph(tmp_path / "graph")
    edit_sidecar(graph / "AgeNet.xml", classes=42)
    with pytest.raises(AgegenderError, match='"classes" is 42, expected a list of class names'):
        read_metadata(graph / "AgeNet.xml")


# ------------------------------------------------------------------------------------------ 11, 21

def test_compile_killed_inside_its_final_renames_switches_the_trio_whole(small, tmp_path):
    """Item 21: kill -9 after the first of the renames; the next reader completes the switch: new .xml, .bin and
    .json together (never a new .xml beside an old .bin, never the old graph lost)."""
    out = tmp_path / "graph/Net"
    assert main(compile_args(small, out)) == 0  # the old graph: FP32
    old_bin = out.with_suffix(".bin").read_bytes()
    args = compile_args(small, out)[:-1] + ["FP16"]
    assert run_subprocess(args, crash="compile-switch").returncode == -9
    assert switch_path(out.with_suffix(".xml")).is_dir() and not metadata_path(out.with_suffix(".xml")).exists()
    from agegender.deploy.runtime import Classifier  # any reader finishes the switch
    classifier = Classifier(out.with_suffix(".xml"), "CPU", "")
    assert classifier.meta.precision == "FP16" and not switch_path(out.with_suffix(".xml")).exists()
    assert len(out.with_suffix(".bin").read_bytes()) < len(old_bin)  # the FP16 weights, with the FP16 .xml
    assert sorted(p.name for p in out.parent.iterdir()) == ["Net.bin", "Net.json", "Net.xml", "age_gender_mean.npy"]


def test_compile_stopped_by_sigterm_removes_its_staging_folder_and_keeps_the_old_graph(small, tmp_path):
    """Item 11: SIGTERM (at a controlled point: the new IR staged, not yet switched) is handled as Ctrl-C."""
    out = tmp_path / "graph/Net"
    assert main(compile_args(small, out)) == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    proc = run_subprocess(compile_args(small, out)[:-1] + ["FP16"], crash="compile-staged:SIGTERM")
    assert proc.returncode == 143 and proc.stderr.strip().splitlines()[-1] == "agegender compile: terminated"
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # no staging folder, old trio


# ------------------------------------------------------------------------------------------ 10

def test_folder_output_killed_midway_leaves_no_partial_folder(tmp_path):
    """Item 10: kill -9 after the first annotated image: nothing in --output (which looked complete before);
    the re-run writes all of them and removes the killed run's temporary."""
    graph = build_graph(tmp_path / "graph")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        cv2.imwrite(str(photos / f"{i}.png"), np.full((60, 60, 3), 40 * i, np.uint8))
    args = [str(ROOT / "run_inference.py"), "--image_path", str(photos), "--graph_dir", str(graph), "--faces",
            "none", "--output", str(tmp_path / "annotated")]
    assert run_subprocess(args, crash="staged-file", module="").returncode == -9
    assert not (tmp_path / "annotated").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".annotated.")]
    assert run_subprocess(args, module="").returncode == 0
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == [f"{i}.png" for i in range(4)]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".annotated.")]


# ------------------------------------------------------------------------------------------ 15-18, 22

def test_truncated_video_is_reported_in_one_line_without_ffmpeg_noise(tmp_path):
    graph = build_graph(tmp_path / "graph")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(60):
        writer.write(np.full((64, 64, 3), 4 * i, np.uint8))
    writer.release()
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    proc = run_subprocess([str(ROOT / "run_inference.py"), "--image_path", str(video), "--graph_dir", str(graph),
                           "--faces", "none"], module="")
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.strip().splitlines() if not re.match(r"clip.avi: +[\d.]+% \d+/60 frames", line)]
    assert len(err) == 1 and "ended after" in err[0] and "of the 60 frames it declares" in err[0], proc.stderr
    assert proc.stdout.count("frame ") >= 10


def test_a_1x1_image_is_no_face_crop():
    """Item 16."""
    tiny = np.zeros((1, 1, 3), np.uint8)
    assert not looks_like_face_crop(tiny) and looks_like_face_crop(np.zeros((24, 24, 3), np.uint8))
    assert FaceFinder("auto").find(tiny).boxes == []


def test_broken_and_looping_symlinks_are_reported_not_dropped(tmp_path, capsys):
    """Item 17."""
    graph = build_graph(tmp_path / "graph")
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((60, 60, 3), 90, np.uint8))
    (photos / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (photos / "loop.jpg").symlink_to(photos / "loop.jpg")
    assert run_inference_main(["--image_path", str(photos), "--graph_dir", str(graph), "--faces", "none"]) == 0
    err = capsys.readouterr().err
    assert "dangling.jpg is a broken or looping symbolic link" in err and "loop.jpg is a broken" in err
    assert run_inference_main(["--image_path", str(photos / "dangling.jpg"), "--graph_dir", str(graph)]) == 2
    one_line(capsys, "dangling.jpg is a broken or looping symbolic link (->", "gone.jpg")


def test_garbage_xml_is_one_line_without_tensorflow_logs(tmp_path, capfd):
    """Item 18."""
    from agegender.deploy.runtime import Classifier

    graph = copy_graph(build_graph(tmp_path / "graph"), tmp_path / "g")
    (graph / "AgeNet.xml").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(AgegenderError, match="AgeNet.xml is not an OpenVINO IR"):
        Classifier(graph / "AgeNet.xml", "CPU", "")
    (graph / "AgeNet.xml").write_text("<net><layers>broken")
    with pytest.raises(AgegenderError, match=r"is not a readable OpenVINO IR \((?!Exception from)"):
        Classifier(graph / "AgeNet.xml", "CPU", "")
    captured = capfd.readouterr()
    assert "absl" not in captured.err and "tensorflow" not in captured.err


def bomb_png(path: Path, side: int) -> Path:
    """A valid grayscale PNG of side x side black pixels: a few hundred KB that decode to side^2 x 3 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    rows = bytes(side + 1) * 1000  # 1000 rows: filter byte 0, then black pixels
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate: compressed once, repeated side/1000 times
    segment = packer.compress(rows) + packer.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(side // 1000):
        adler = zlib.adler32(rows, adler)
    body = b"\x78\x01" + segment * (side // 1000) + packer.flush() + adler.to_bytes(4, "big")
    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_png_is_refused_from_its_header(tmp_path):
    """Item 22: 12000x12000 (144 MP, 0.4 GiB as BGR) in a file of 0.6 MB: one line, no decoding."""
    bomb = bomb_png(tmp_path / "bomb.png", 12000)
    assert bomb.stat().st_size < 1_000_000
    proc = run_subprocess([str(ROOT / "run_inference.py"), "--image_path", str(bomb), "--faces", "none"],
                          module="")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"run_inference.py: error: {bomb} is not a usable image: 12000x12000 pixels is "
                                   f"over the 100 MP limit (decoding it would take 0.4 GiB); downscale it first")


def test_image_sizes_are_read_from_every_format_header():
    """Item 22: the header reader behind the pixel cap agrees with OpenCV; garbage headers give no size."""
    from agegender.dataset.images import image_format
    from agegender.imagesize import image_size

    image = np.zeros((37, 53, 3), np.uint8)
    for ext, params in ((".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".bmp", []),
                        (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])):
        data = cv2.imencode(ext, image, params)[1].tobytes()
        assert image_size(data, image_format(data)) == (53, 37), ext
    gif = bytes.fromhex("474946383961" "0200" "0300" "000000" "2c00000000010001000002024401003b")
    assert image_size(gif, "GIF") == (2, 3)
    assert image_size(b"GIF89a but not really", "GIF") is None
    assert image_size(b"\x89PNG\r\n\x1a\n" + bytes(40), "PNG") is None  # no IHDR with a valid CRC


@pytest.mark.parametrize("param", ['convolution_param { num_output: 4 kernel_size: 3 stride: 0 }',
                                   'pooling_param { pool: MAX kernel_size: 3 stride: 0 }'])
def test_stride_0_is_one_line_not_a_division_by_zero(tmp_path, capsys, param):
    """Item 7: `stride: 0` was "internal error: ZeroDivisionError"."""
    kind = "Convolution" if param.startswith("conv") else "Pooling"
    prototxt = tmp_path / "s0.prototxt"
    prototxt.write_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 10 input_dim: 10\n'
                        f'layer {{ name: "l" type: "{kind}" bottom: "data" top: "l" {param} }}\n')
    assert main(["inspect", str(prototxt)]) == 2
    one_line(capsys, f"layer 'l' ({kind}): stride must be at least 1, got 0")
