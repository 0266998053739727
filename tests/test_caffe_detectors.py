"""Real Caffe face detectors (SSD with Normalize/PriorBox/DetectionOutput, UltraFace's Permute, MTCNN) compiled to
OpenVINO IR and compared with OpenCV 4's outputs stored beside them; the prototxt-only nets (res10 SSD, SqueezeNet)
compiled with random weights and compared with OpenCV on the same caffemodel."""
from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from agegender.deploy.compile import TOLERANCE, detection_difference, random_caffemodel
from agegender.layers.net import Net, load_deploy
from agegender.layers.openvino_ops import build_model

from conftest import FIXTURES, need_shared, run_cli

CPU_FP32 = {"INFERENCE_PRECISION_HINT": "f32"}
DETECTORS = {  # name: (prototxt, caffemodel, OpenCV's reference outputs)
    "yunet-v1": ("yufacedetectnet/yufacedetectnet-open-v1.prototxt",
                 "yufacedetectnet/yufacedetectnet-open-v1.caffemodel", "yufacedetectnet/v1_reference_opencv.npz"),
    "yunet-v2": ("yufacedetectnet/yufacedetectnet-open-v2.prototxt",
                 "yufacedetectnet/yufacedetectnet-open-v2.caffemodel", "yufacedetectnet/v2_reference_opencv.npz"),
    "rfb-320": ("ultraface/RFB-320.prototxt", "ultraface/RFB-320.caffemodel",
                "ultraface/RFB-320_reference_opencv.npz"),
    "slim-320": ("ultraface/slim-320.prototxt", "ultraface/slim-320.caffemodel",
                 "ultraface/slim-320_reference_opencv.npz"),
    "mtcnn-det1": ("mtcnn-complete/det1.prototxt", "mtcnn-complete/det1.caffemodel",
                   "mtcnn-complete/det1_reference_opencv.npz"),
    "mtcnn-det2": ("mtcnn-complete/det2.prototxt", "mtcnn-complete/det2.caffemodel",
                   "mtcnn-complete/det2_reference_opencv.npz"),
    "mtcnn-det3": ("mtcnn-complete/det3.prototxt", "mtcnn-complete/det3.caffemodel",
                   "mtcnn-complete/det3_reference_opencv.npz"),
}


def difference(blob: str, ours: np.ndarray, theirs: np.ndarray) -> float:
    if blob == "detection_out":
        return detection_difference(ours, theirs, 0.01, 50)  # the detectors' confidence_threshold and keep_top_k
    assert ours.shape == theirs.shape, blob
    return float(np.abs(ours - theirs).max())


@pytest.fixture(scope="module", params=sorted(DETECTORS))
def detector(request, tmp_path_factory):
    """(net, reference, {precision: compiled IR with every reference blob as an output}), built once per model."""
    folder = need_shared(FIXTURES)
    prototxt, weights, reference = (folder / p for p in DETECTORS[request.param])
    net, arrays = load_deploy(prototxt, weights)
    ref = np.load(reference)
    blobs = [k for k in ref.files if k != "input"]
    out = tmp_path_factory.mktemp(request.param)
    compiled = {}
    for precision in ("FP32", "FP16"):
        xml = out / f"{precision}.xml"
        ov.save_model(build_model(net, arrays, expose=blobs), xml, compress_to_fp16=precision == "FP16")
        model = ov.Core().read_model(xml)
        model.reshape({net.inputs[0]: [1, *ref["input"].shape[1:]]})  # MTCNN's P-Net runs on any image size
        compiled[precision] = ov.Core().compile_model(model, "CPU", CPU_FP32)
    return net, ref, blobs, compiled


def test_detectors_match_opencv_in_fp32_and_fp16(detector):
    net, ref, blobs, compiled = detector
    for i in range(len(ref["input"])):  # one image at a time, as the runtime feeds them
        for precision, ir in compiled.items():
            got = ir({net.inputs[0]: ref["input"][i:i + 1]})
            for blob in blobs:
                theirs = ref[blob][i:i + 1] if blob != "detection_out" else ref[blob]
                diff = difference(blob, got[ir.output(blob)], theirs)
                if precision == "FP32":
                    assert diff <= 1e-4, (blob, diff)
                elif blob == "detection_out":  # FP16 moves scores at the 0.01 cut-off: compare confident faces
                    assert (theirs[..., 2] > 0.5).sum() >= 1
                    assert detection_difference(got[ir.output(blob)], theirs, 0.5) <= TOLERANCE["FP16"]
                else:
                    assert diff / np.abs(theirs).max() <= TOLERANCE["FP16"], (blob, precision, diff)


@pytest.mark.parametrize("name", ["yunet-v1", "rfb-320"])
def test_compile_command_verifies_the_detectors_against_opencv(fixtures, tmp_path, name):
    prototxt, weights, _ = (fixtures / p for p in DETECTORS[name])
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / name,
                   "--precision", "FP16", "--target", "myriad", "--check-inputs", "1")
    assert proc.returncode == 0, proc.stderr
    assert "verification vs opencv on 1 random inputs" in proc.stdout and (tmp_path / f"{name}.xml").exists()


def test_detection_difference_ignores_order_and_padding_but_not_a_moved_box():
    rows = np.array([[0, 1, 0.9, 0.1, 0.1, 0.2, 0.2], [0, 1, 0.8, 0.5, 0.5, 0.6, 0.6]], np.float32)
    padded = np.concatenate([rows[::-1], [[-1, 0, 0, 0, 0, 0, 0]], np.zeros((3, 7))])[None, None]
    assert detection_difference(padded, rows[None, None]) == 0.0
    moved = rows.copy()
    moved[1, 3] += 0.05
    assert detection_difference(moved[None, None], rows[None, None]) == pytest.approx(0.05, abs=1e-6)
    assert detection_difference(rows[:1][None, None], rows[None, None]) > 0.3  # a confident box lost
    assert detection_difference(rows[:1][None, None], rows[None, None], threshold=0.85) == 0.0  # below the cut-off
    assert detection_difference(rows[:1][None, None], rows[None, None], keep=1) == 0.0  # beyond keep_top_k


@pytest.mark.parametrize("name", ["res10_300x300_ssd_deploy", "squeezenet_v1.0_deploy", "squeezenet_v1.1_deploy"])
def test_prototxt_only_nets_inspect_and_compile_with_random_weights_matching_opencv(fixtures, tmp_path, name):
    from agegender.deploy.metadata import read_metadata

    prototxt = fixtures / "prototxt-only" / f"{name}.prototxt"
    proc = run_cli("inspect", prototxt)
    assert proc.returncode == 0, proc.stderr
    net = Net.from_file(prototxt)
    assert all(n.name in proc.stdout for n in net.nodes)
    weights = random_caffemodel(net, tmp_path / f"{name}.caffemodel", seed=1)
    proc = run_cli("compile", "--model", prototxt, "--weights", weights, "--output", tmp_path / name,
                   "--precision", "FP32", "--check", "opencv", "--check-inputs", "1")
    assert proc.returncode == 0, proc.stderr
    verification = read_metadata(tmp_path / f"{name}.xml").verification
    assert verification["reference"] == "opencv" and verification["max_abs_diff"] <= 1e-4, verification
