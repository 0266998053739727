"""benchmarks/model_soup.py: the weight mean of caffemodels of one net, and one-line refusals for nets that differ."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np

from agegender.caffe import caffe_pb2
from agegender.caffe.blob import array_to_blob, blob_to_array
from agegender.caffe.net import read_caffemodel, write_caffemodel

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "model_soup.py"


def caffemodel(path, weights: dict[str, list[np.ndarray]]):
    net = caffe_pb2.NetParameter(name="tiny")
    for name, blobs in weights.items():
        layer = net.layer.add(name=name, type="InnerProduct")
        layer.blobs.extend(array_to_blob(b.astype(np.float32)) for b in blobs)
    write_caffemodel(net, path)
    return path


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_the_soup_is_the_mean_of_each_blob(tmp_path):
    rng = np.random.default_rng(0)
    nets = [{"fc6": [rng.normal(size=(4, 3)), rng.normal(size=4)], "fc8": [rng.normal(size=(2, 4)), rng.normal(size=2)]}
            for _ in range(3)]
    paths = [caffemodel(tmp_path / f"n{i}_iter_10.caffemodel", w) for i, w in enumerate(nets)]
    proc = run(tmp_path / "soup.caffemodel", *paths)
    assert proc.returncode == 0, proc.stderr
    soup = read_caffemodel(tmp_path / "soup.caffemodel")
    for layer in soup.layer:
        for j, blob in enumerate(layer.blobs):
            expected = np.mean([w[layer.name][j] for w in nets], axis=0)
            np.testing.assert_allclose(blob_to_array(blob), expected, rtol=1e-6)
            assert blob_to_array(blob).shape == expected.shape


def test_a_folder_means_its_newest_snapshot(tmp_path):
    spec = importlib.util.spec_from_file_location("model_soup", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "a").mkdir()
    caffemodel(tmp_path / "a/net_iter_2.caffemodel", {"fc": [np.zeros(2)]})
    caffemodel(tmp_path / "a/net_iter_10.caffemodel", {"fc": [np.full(2, 4.0)]})
    caffemodel(tmp_path / "b.caffemodel", {"fc": [np.full(2, 2.0)]})
    assert module.main([str(tmp_path / "s.caffemodel"), str(tmp_path / "a"), str(tmp_path / "b.caffemodel")]) == 0
    np.testing.assert_allclose(blob_to_array(read_caffemodel(tmp_path / "s.caffemodel").layer[0].blobs[0]), [3, 3])


def test_nets_that_differ_are_refused_in_one_line_and_nothing_is_written(tmp_path):
    a = caffemodel(tmp_path / "a.caffemodel", {"fc6": [np.zeros((4, 3))]})
    b = caffemodel(tmp_path / "b.caffemodel", {"conv1": [np.zeros((4, 3))]})
    c = caffemodel(tmp_path / "c.caffemodel", {"fc6": [np.zeros((5, 3))]})
    for other, words in ((b, "layers or their blobs differ"), (c, "shapes")):
        proc = run(tmp_path / "soup.caffemodel", a, other)
        assert proc.returncode == 1 and words in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not (tmp_path / "soup.caffemodel").exists()
    assert run(tmp_path / "soup.caffemodel", a).returncode == 2  # one net is not a soup (argparse's usage error)
    proc = run(tmp_path / "soup.caffemodel", a, tmp_path / "missing.caffemodel")
    assert proc.returncode == 1 and "missing" in proc.stderr and "Traceback" not in proc.stderr
