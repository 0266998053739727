"""The committed train_test prototxts: which LMDB each phase and stage reads (Caffe's NetStateRule), so that no
solver ever trains or selects on the test split, and each recipe reads the data its comment says."""
from __future__ import annotations

import pytest

from agegender.caffe import caffe_pb2, read_net
from agegender.caffe.net import read_solver
from agegender.layers.net import layer_included

from conftest import ROOT

TRAIN_TESTS = sorted((ROOT / "prototxt").glob("*_train_test.prototxt"))


def sources(path, phase: str, stages: tuple[str, ...] = ()) -> list[str]:
    proto = read_net(path)
    state = caffe_pb2.NetState(phase=caffe_pb2.Phase.Value(phase), stage=[*proto.state.stage, *stages])
    return [layer.data_param.source for layer in proto.layer
            if layer.type == "Data" and layer_included(layer, state)]


@pytest.mark.parametrize("path", TRAIN_TESTS, ids=lambda p: p.name)
def test_each_phase_and_stage_reads_its_own_split_and_never_the_test_split(path):
    expected = {("TRAIN", ()): "_train_lmdb", ("TRAIN", ("pretrain",)): "_pretrain_lmdb", ("TEST", ()): "_val_lmdb"}
    for (phase, stages), suffix in expected.items():
        read = sources(path, phase, stages)
        assert read, f"{path.name} {phase} {stages}: no Data layer"
        assert all(source.endswith(suffix) for source in read), (phase, stages, read)
        assert len({source.split("/")[-1].split("_")[0] for source in read}) == len(read)  # one LMDB per task


def test_the_shared_trunk_pretrains_on_both_labels_of_the_same_faces():
    read = sources(ROOT / "prototxt/AgeGenderNet_train_test.prototxt", "TRAIN", ("pretrain",))
    assert read == ["data/lmdb/age_pretrain_lmdb", "data/lmdb/gender_pretrain_lmdb"]


def test_agenet_finetuning_net_is_agenet_with_its_convolutions_frozen():
    """The fine-tuning copy must not drift from AgeNet_train_test.prototxt: the same layers, data and augmentation,
    only conv1-conv3's lr_mult and decay_mult 0 (Caffe's way of keeping the pre-trained trunk)."""
    solver = read_solver(ROOT / "prototxt/AgeNet_finetune_solver.prototxt")
    tuned, base = read_net(ROOT / solver.net), read_net(ROOT / "prototxt/AgeNet_train_test.prototxt")
    frozen = [layer.name for layer in tuned.layer if layer.param and all(p.lr_mult == 0 for p in layer.param)]
    assert frozen == ["conv1", "conv2", "conv3"]
    for layer in base.layer:
        if layer.name in frozen:
            for param in layer.param:
                param.lr_mult, param.decay_mult = 0, 0
    assert tuned == base
