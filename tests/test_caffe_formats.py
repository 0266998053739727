"""Caffe's formats read and written without Caffe, checked against real Caffe files and OpenCV's importer."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

from agegender.caffe import (
    array_to_blob,
    array_to_datum,
    blob_shape,
    blob_to_array,
    caffe_pb2,
    datum_to_array,
    lmdb_size,
    read_lmdb,
    read_mean,
    read_net,
    write_caffemodel,
    write_lmdb,
    write_mean,
    write_prototxt,
)
from agegender.layers.net import Net

from conftest import assert_one_line_error, run_cli

MODELS = [("lenet/deploy.prototxt", "lenet/lenet_iter_10000.caffemodel"),
          ("mtcnn/det1.prototxt", "mtcnn/det1.caffemodel"),
          ("mtcnn/det4.prototxt", "mtcnn/det4.caffemodel")]


@pytest.mark.parametrize("prototxt,caffemodel", MODELS)
def test_caffemodel_blobs_match_opencv(fixtures, prototxt, caffemodel):
    ocv = cv2.dnn.readNetFromCaffe(str(fixtures / prototxt), str(fixtures / caffemodel))
    ours = Net.from_file(fixtures / prototxt).weights_from(fixtures / caffemodel)
    expected = {}
    for name in ocv.getLayerNames():
        layer_id = ocv.getLayerId(name)
        blobs = ocv.getLayer(layer_id).blobs
        if blobs:
            expected[name] = [np.asarray(b) for b in blobs]
    assert set(ours) == set(expected)
    for name, arrays in ours.items():
        # OpenCV reshapes PReLU slopes to 1-D and may append fused blobs; compare the values it keeps.
        for ours_blob, ocv_blob in zip(arrays, expected[name]):
            assert ours_blob.size == ocv_blob.size, name
            np.testing.assert_array_equal(ours_blob.ravel(), ocv_blob.ravel().astype(np.float32))


def test_v1_deploy_prototxt_upgrades_keeping_every_field(fixtures):
    path = fixtures / "levi-hassner/age_deploy.prototxt"
    raw = caffe_pb2.NetParameter()
    text_format.Parse(path.read_text(), raw)
    net = read_net(path)
    assert not net.layers and net.layer[0].type == "Input"
    assert list(net.layer[0].top) == ["data"]
    assert list(net.layer[0].input_param.shape[0].dim) == [1, 3, 227, 227]
    assert len(net.layer) == len(raw.layers) + 1
    for v1, new in zip(raw.layers, net.layer[1:]):
        assert (new.name, list(new.bottom), list(new.top)) == (v1.name, list(v1.bottom), list(v1.top))
        for field, value in v1.ListFields():
            if field.name.endswith("_param"):
                assert getattr(new, field.name) == value, (v1.name, field.name)
    types = [layer.type for layer in net.layer]
    assert types[1:5] == ["Convolution", "ReLU", "Pooling", "LRN"]
    assert types[-1] == "Softmax" and "InnerProduct" in types and "Dropout" in types
    assert net.layer[1].convolution_param.num_output == 96 and list(net.layer[1].convolution_param.stride) == [4]


def test_v1_train_val_upgrades_phases_transform_and_learning_rates(fixtures):
    net = read_net(fixtures / "levi-hassner/gender_train_val.prototxt")
    data = [layer for layer in net.layer if layer.type == "Data"]
    assert [caffe_pb2.Phase.Name(layer.include[0].phase) for layer in data] == ["TRAIN", "TEST"]
    assert data[0].transform_param.crop_size == 227 and data[0].transform_param.mirror
    assert data[0].data_param.backend == caffe_pb2.DataParameter.LMDB
    loss = [layer for layer in net.layer if layer.type == "SoftmaxWithLoss"]
    acc = [layer for layer in net.layer if layer.type == "Accuracy"]
    assert len(loss) == 1 and len(acc) == 1 and acc[0].include[0].phase == caffe_pb2.TEST
    raw = caffe_pb2.NetParameter()
    text_format.Parse((fixtures / "levi-hassner/gender_train_val.prototxt").read_text(), raw)
    for v1, new in zip(raw.layers, net.layer):
        assert [p.lr_mult for p in new.param] == list(v1.blobs_lr)
        assert [p.decay_mult for p in new.param] == list(v1.weight_decay)
        kept = {f.name: v for f, v in v1.ListFields() if f.name.endswith("_param")}
        for name, value in kept.items():
            assert getattr(new, name) == value or name in ("data_param", "transform_param"), (v1.name, name)


def test_real_mean_binaryproto_reads_as_chw(fixtures):
    mean = read_mean(fixtures / "levi-hassner/mean.binaryproto")
    assert mean.shape == (3, 256, 256) and mean.dtype == np.float32
    assert 50 < mean.mean() < 200  # a real mean image of faces, not zeros


@pytest.mark.parametrize("suffix", [".binaryproto", ".npy"])
def test_mean_round_trip(tmp_path, suffix):
    mean = np.random.default_rng(0).uniform(0, 255, (3, 8, 6)).astype(np.float32)
    path = write_mean(mean, tmp_path / f"mean{suffix}")
    np.testing.assert_array_equal(read_mean(path), mean)
    if suffix == ".binaryproto":  # legacy 4-D fields, like compute_image_mean writes
        blob = caffe_pb2.BlobProto.FromString(path.read_bytes())
        assert (blob.num, blob.channels, blob.height, blob.width) == (1, 3, 8, 6)


def test_blob_legacy_and_shaped():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert blob_shape(array_to_blob(array)) == (2, 3, 4)
    assert blob_shape(array_to_blob(array, legacy=True)) == (1, 2, 3, 4)
    np.testing.assert_array_equal(blob_to_array(array_to_blob(array, legacy=True), (2, 3, 4)), array)


def _tiny_net_prototxt() -> caffe_pb2.NetParameter:
    return text_format.Parse("""
        name: "tiny"
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 6 dim: 6 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
                convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
        layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
        layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }
        layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
    """, caffe_pb2.NetParameter())


def _numpy_forward(x, w, b, fw, fb):
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros((x.shape[0], w.shape[0], 3, 3), np.float64)
    for i in range(3):
        for j in range(3):
            patch = padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            conv[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w) + b
    fc = np.maximum(conv, 0).reshape(x.shape[0], -1) @ fw.T + fb
    e = np.exp(fc - fc.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_written_caffemodel_runs_in_opencv(tmp_path):
    rng = np.random.default_rng(1)
    proto = _tiny_net_prototxt()
    net = Net.from_proto(proto)
    weights = {"conv": [rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)],
               "fc": [rng.normal(size=(5, 36)) * 0.3, rng.normal(size=5)]}
    model = caffe_pb2.NetParameter()
    model.CopyFrom(proto)
    for layer in model.layer:
        for array in weights.get(layer.name, []):
            layer.blobs.append(array_to_blob(array))
    write_caffemodel(model, tmp_path / "tiny.caffemodel")
    write_prototxt(proto, tmp_path / "tiny.prototxt")
    assert {k: [a.shape for a in v] for k, v in net.weights_from(tmp_path / "tiny.caffemodel").items()} == \
           {"conv": [(4, 3, 3, 3), (4,)], "fc": [(5, 36), (5,)]}
    x = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    ocv = cv2.dnn.readNetFromCaffe(str(tmp_path / "tiny.prototxt"), str(tmp_path / "tiny.caffemodel"))
    ocv.setInput(x)
    np.testing.assert_allclose(ocv.forward("prob"), _numpy_forward(x, *weights["conv"], *weights["fc"]), atol=1e-5)


def test_lmdb_round_trip_keys_shapes_labels(tmp_path):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (3, 5, 7), dtype=np.uint8) for _ in range(25)]
    records = [(f"{i:08d}_img{i}.jpg".encode(), array_to_datum(img, i % 9)) for i, img in enumerate(images)]
    assert write_lmdb(tmp_path / "db", records) == 25
    assert lmdb_size(tmp_path / "db") == 25
    read = list(read_lmdb(tmp_path / "db"))
    assert [k for k, _ in read] == [k for k, _ in records]
    for (key, datum), image in zip(read, images):
        assert (datum.channels, datum.height, datum.width) == (3, 5, 7)
        assert datum.label == int(key[:8]) % 9
        np.testing.assert_array_equal(datum_to_array(datum), image)


def test_encoded_datum_decodes(tmp_path):
    image = np.random.default_rng(3).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", image)
    datum = caffe_pb2.Datum(data=png.tobytes(), encoded=True, label=1)
    np.testing.assert_array_equal(datum_to_array(datum), image.transpose(2, 0, 1))


def test_lmdb_rewrite_is_atomic(tmp_path):
    write_lmdb(tmp_path / "db", [(b"a", array_to_datum(np.zeros((1, 1, 1)), 0))])

    def failing():
        yield b"b", array_to_datum(np.zeros((1, 1, 1)), 1)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_lmdb(tmp_path / "db", failing())
    assert [k for k, _ in read_lmdb(tmp_path / "db")] == [b"a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_inspect_prints_layer_table(fixtures):
    proc = run_cli("inspect", fixtures / "levi-hassner/age_deploy.prototxt")
    assert proc.returncode == 0, proc.stderr
    assert "conv1  Convolution   1x96x56x56       14,208" in proc.stdout
    assert "pool5  Pooling       1x384x7x7" in proc.stdout  # Caffe rounds pooling up: 14 -> 7
    assert "11,415,048" in proc.stdout  # total parameters of the 8-class age net


def test_inspect_with_matching_weights(fixtures):
    proc = run_cli("inspect", fixtures / "mtcnn/det1.prototxt", "--weights", fixtures / "mtcnn/det1.caffemodel")
    assert proc.returncode == 0, proc.stderr
    assert "weights OK" in proc.stdout and "PReLU" in proc.stdout


@pytest.mark.parametrize("name", ["mismatched_det2", "mismatched_det3"])
def test_inspect_mismatched_weights_names_layer_and_shapes(fixtures, name):
    proc = run_cli("inspect", fixtures / f"mtcnn/{name}.prototxt", "--weights", fixtures / f"mtcnn/{name}.caffemodel")
    line = assert_one_line_error(proc, "layer 'conv1'", "28x3x3x3", "32x3x3x3")
    assert name in line


def test_weights_missing_for_a_layer(tmp_path):
    proto = _tiny_net_prototxt()
    write_prototxt(proto, tmp_path / "tiny.prototxt")
    model = caffe_pb2.NetParameter()
    model.CopyFrom(proto)
    model.layer[1].blobs.extend([array_to_blob(np.zeros((4, 3, 3, 3))), array_to_blob(np.zeros(4))])
    write_caffemodel(model, tmp_path / "partial.caffemodel")
    proc = run_cli("inspect", tmp_path / "tiny.prototxt", "--weights", tmp_path / "partial.caffemodel")
    assert_one_line_error(proc, "layer 'fc'", "no weights", "5x36")


def test_bad_inputs_give_one_line_and_exit_2(fixtures, tmp_path):
    data = (fixtures / "lenet/lenet_iter_10000.caffemodel").read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) // 2])
    proc = run_cli("inspect", fixtures / "lenet/deploy.prototxt", "--weights", tmp_path / "cut.caffemodel")
    assert_one_line_error(proc, "cut.caffemodel", "truncated")

    (tmp_path / "syntax.prototxt").write_text('name: "x"\nlayer {\n  name: "a"\n  type: "ReLU"\n  bottom "x"\n}\n')
    assert_one_line_error(run_cli("inspect", tmp_path / "syntax.prototxt"), "syntax.prototxt:5")

    (tmp_path / "unknown.prototxt").write_text(
        'input: "data" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4\n'
        'layer { name: "warp" type: "SpatialTransformer" bottom: "data" top: "out" }\n')
    assert_one_line_error(run_cli("inspect", tmp_path / "unknown.prototxt"), "'warp'", "SpatialTransformer")

    assert_one_line_error(run_cli("inspect", tmp_path / "absent.prototxt"), "not found", "absent.prototxt")
    proc = run_cli("inspect", fixtures / "lenet/deploy.prototxt", "--weights", tmp_path / "absent.caffemodel")
    assert_one_line_error(proc, "caffemodel not found")


# --- the whole Caffe schema -----------------------------------------------------------------------------------

def test_every_real_prototxt_parses(fixtures):
    from agegender.caffe import read_net

    paths = [p for p in sorted(fixtures.glob("*/*.prototxt")) if p.name != "solver.prototxt"]
    assert len(paths) >= 15
    for path in paths:
        assert read_net(path).layer, path


@pytest.mark.parametrize("field,message", [
    # BVLC Caffe's own parameter blocks, a few of each generation
    ("power_param { power: 2 scale: 0.5 shift: 1 }", "PowerParameter"),
    ("elu_param { alpha: 0.3 }", "ELUParameter"),
    ("clip_param { min: -1 max: 1 }", "ClipParameter"),
    ("swish_param { beta: 2 }", "SwishParameter"),
    ("recurrent_param { num_output: 4 expose_hidden: true }", "RecurrentParameter"),
    ("python_param { module: 'm' layer: 'L' param_str: '{}' }", "PythonParameter"),
    ("window_data_param { crop_mode: 'square' context_pad: 16 }", "WindowDataParameter"),
    # the SSD fork's and ShuffleNet forks'
    ("prior_box_param { min_size: 30 max_size: 60 aspect_ratio: 2 step: 8 offset: 0.5 variance: 0.1 }",
     "PriorBoxParameter"),
    ("detection_output_param { num_classes: 2 nms_param { nms_threshold: 0.45 top_k: 400 } code_type: CENTER_SIZE "
     "keep_top_k: 200 confidence_threshold: 0.01 }", "DetectionOutputParameter"),
    ("multibox_loss_param { loc_loss_type: SMOOTH_L1 mining_type: MAX_NEGATIVE }", "MultiBoxLossParameter"),
    ("transform_param { resize_param { resize_mode: WARP interp_mode: LINEAR } emit_constraint { emit_type: CENTER } }",
     "TransformationParameter"),
    ("shuffle_channel_param { group: 3 }", "ShuffleChannelParameter"),
])
def test_parameter_blocks_of_caffe_and_its_forks_parse(field, message):
    layer = text_format.Parse(f'name: "x" type: "Anything" {field}', caffe_pb2.LayerParameter())
    name = field.split()[0]
    assert getattr(layer, name).DESCRIPTOR.name == message and layer.HasField(name)


def test_caffe_field_numbers_and_defaults():
    """A few numbers and defaults a caffemodel written by Caffe depends on (from BVLC's and the SSD fork's schema)."""
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert {name: fields[name].number for name in ("power_param", "crop_param", "clip_param", "permute_param",
                                                    "prior_box_param", "detection_output_param", "norm_param")} == \
        {"power_param": 122, "crop_param": 144, "clip_param": 148, "permute_param": 202, "prior_box_param": 203,
         "detection_output_param": 204, "norm_param": 206}
    assert caffe_pb2.NormalizeParameter().eps == pytest.approx(1e-10) and caffe_pb2.NormalizeParameter().channel_shared
    assert caffe_pb2.PriorBoxParameter().flip and caffe_pb2.PriorBoxParameter().offset == 0.5
    assert caffe_pb2.DetectionOutputParameter().keep_top_k == -1
    assert caffe_pb2.DetectionOutputParameter().code_type == caffe_pb2.PriorBoxParameter.CORNER
    assert caffe_pb2.MVNParameter().eps == pytest.approx(1e-9) and caffe_pb2.CropParameter().axis == 2
    assert caffe_pb2.ExpParameter().base == -1 and caffe_pb2.ShuffleChannelParameter().group == 1


def test_v1_layers_keep_their_power_and_exp_parameters(tmp_path):
    from agegender.caffe import read_net

    path = tmp_path / "v1.prototxt"
    path.write_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4\n'
                    'layers { name: "p" type: POWER bottom: "data" top: "p" power_param { power: 2 } }\n'
                    'layers { name: "e" type: EXP bottom: "p" top: "e" exp_param { base: 2 } }\n')
    net = read_net(path)
    assert [(layer.type, layer.name) for layer in net.layer] == [("Input", "input"), ("Power", "p"), ("Exp", "e")]
    assert net.layer[1].power_param.power == 2 and net.layer[2].exp_param.base == 2


@pytest.mark.parametrize("layer,fragments", [
    ('layer {\n  name: "up"\n  type: "Foo"\n  bottom: "data"\n  top: "up"\n  foo_param { x: 1 }\n}\n',
     ["net.prototxt:7:3: layer 'up' (Foo): unknown field 'foo_param'", "a layer type agegender does not support"]),
    ('layer { name: "up" type: "Foo" bottom: "data" top: "up" }\n',
     ["layer 'up' (Foo): unsupported layer type 'Foo'", "agegender supports"]),
    ('layer { foo_param { } name: "late" type: "Bar" bottom: "data" top: "up" }\n',
     ["net.prototxt:2:9: layer 'late' (Bar): unknown field 'foo_param'"]),
    # a Caffe type whose parameters the schema knows but agegender does not run
    ('layer { name: "t" type: "Tile" bottom: "data" top: "t" tile_param { axis: 1 tiles: 2 } }\n',
     ["layer 't' (Tile): unsupported layer type 'Tile'"]),
])
def test_unknown_layer_type_with_or_without_its_parameters_stops_in_one_line(tmp_path, layer, fragments):
    path = tmp_path / "net.prototxt"
    path.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }\n'
                    + layer)
    assert_one_line_error(run_cli("inspect", path), *fragments)
