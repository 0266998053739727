"""A third head needs its registry entry, its prototxts and its data, and no other edit: a toy head ("band":
where a bright band lies in the face picture, read from the UTKFace race field of synthetic files) goes through
the dataset lists and LMDBs, training, compile, the test report and the runtime, all through the importable
functions, and shows up in the pipeline's stages and the doors' task list."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_run_inference import model_cache  # noqa: F401
from test_train import BODY, DEPLOY, NET, SOLVER

from agegender import pipeline, tasks
from agegender.caffe import lmdb_size, read_lmdb, write_mean
from agegender.dataset.build import build
from agegender.dataset.lmdb_stage import build_split
from agegender.dataset.mean_stage import compute_mean
from agegender.dataset.report import SkipReport
from agegender.deploy import compile as compile_stage
from agegender.deploy.runtime import Classifier
from agegender.evaluate import Options as ScoreOptions
from agegender.evaluate import format_report, score_model
from agegender.tasks import Task
from agegender.train.session import Options as TrainOptions
from agegender.train.session import build_trainer

SIZE = 12
BANDS = ("top", "middle", "bottom")


@pytest.fixture
def band_head():
    """The registry entry: the only code a new head brings."""
    task = tasks.register(Task("band", "BandNet", BANDS, label=lambda face: face.race % 3, ordinal=True))
    yield task
    tasks.unregister(task.name)


def utkface_folder(folder: Path, count: int = 60) -> Path:
    """UTKFace-named pictures (age 20-39, both genders) whose bright band lies where race % 3 says."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        race = i % 5
        image = rng.integers(0, 60, (2 * SIZE, 2 * SIZE, 3)).astype(np.uint8)
        band = race % 3
        image[8 * band:8 * band + 8] += 150
        cv2.imwrite(str(folder / f"{20 + i % 20}_{i % 2}_{race}_2017011{i:07d}.jpg.chip.jpg"), image)
    return folder


def prototxts(folder: Path, lmdb: Path, mean: Path) -> tuple[Path, Path]:
    """BandNet's train_test, solver and deploy prototxts (the tiny net of test_train): (solver, deploy)."""
    body = BODY.replace("FC_OUTPUTS", str(len(BANDS)))
    net = NET.format(crop="crop_size: 10", mirror="false", dir=folder, batch=8, body=body, last="fc")
    net = net.replace(" scale: 0.02", "")  # as test and the runtime feed it: mean subtracted, no scale
    net = net.replace(f"{folder}/train_lmdb", str(lmdb / "band_train_lmdb"))
    net = net.replace(f"{folder}/test_lmdb", str(lmdb / "band_test_lmdb")).replace(f"{folder}/mean.binaryproto",
                                                                                   str(mean))
    (folder / "BandNet_train_test.prototxt").write_text(net)
    (folder / "BandNet_deploy.prototxt").write_text(DEPLOY.format(size=10, body=body))
    solver = {**SOLVER, "base_lr": 0.001, "max_iter": 40, "test_iter": 2, "test_interval": 40, "snapshot": 40,
              "net": f'"{folder}/BandNet_train_test.prototxt"', "snapshot_prefix": f'"{folder}/models/BandNet"'}
    (folder / "BandNet_solver.prototxt").write_text("".join(f"{k}: {v}\n" for k, v in solver.items()))
    return folder / "BandNet_solver.prototxt", folder / "BandNet_deploy.prototxt"


def test_a_third_head_end_to_end(band_head, tmp_path, capsys):
    # dataset: lists and LMDBs for every registered task, the new one included
    report = SkipReport()
    build(utkface_folder(tmp_path / "faces"), tmp_path / "DEF", tmp_path / "augmented", 1, Fraction(1, 4), 0.0, 1,
          report)
    assert "Number of image per band class:\ntop\tmiddle\tbottom" in capsys.readouterr().out
    lmdb = tmp_path / "lmdb"
    for split in ("train", "test"):
        build_split(tmp_path / "DEF", lmdb, split, Path("/"), (SIZE, SIZE), 1, 1, report)
    assert sorted(p.name for p in lmdb.iterdir()) == sorted(f"{t}_{s}_lmdb" for t in ("age", "gender", "band")
                                                            for s in ("train", "test"))
    first_key, first = next(iter(read_lmdb(lmdb / "band_test_lmdb")))
    race = int(Path(first_key.decode()).name.split("_")[2])  # UTKFace's [age]_[gender]_[race]_[date]
    assert first.label == race % 3
    mean, _ = compute_mean(lmdb / "band_train_lmdb")
    mean_file = write_mean(mean, tmp_path / "mean.binaryproto")

    # train a few iterations from the head's solver
    solver, deploy = prototxts(tmp_path, lmdb, mean_file)
    build_trainer(TrainOptions(str(solver), device="cpu", workers=0)).solve()
    assert (tmp_path / "models" / "BandNet_iter_40.caffemodel").is_file()

    # compile: the sidecar carries the head's task and classes
    xml = compile_stage.compile_model(compile_stage.Options(
        model=deploy, weights=tmp_path / "models", output=tmp_path / "graph" / "BandNet", mean=mean_file,
        precision="FP32", check="torch", check_inputs=2))
    classifier = Classifier(xml, device="CPU", cache_dir="")
    assert (classifier.meta.task, classifier.classes) == ("band", list(BANDS))

    # test report: the caffemodel (task guessed: the one 3-class head) and the IR (task from its sidecar)
    test_lmdb = lmdb / "band_test_lmdb"
    by_engine = score_model(ScoreOptions(lmdb=test_lmdb, model=deploy, weights=tmp_path / "models", mean=mean_file))
    by_ir = score_model(ScoreOptions(lmdb=test_lmdb, ir=xml))
    assert by_engine.task == by_ir.task == "band" and by_ir.scores.classes == list(BANDS)
    assert by_ir.scores.total == lmdb_size(test_lmdb) and by_ir.scores.accuracy > 0.6  # chance: 1/3
    assert np.array_equal(by_engine.scores.confusion, by_ir.scores.confusion)
    text = format_report(by_ir.scores, "band")
    assert text.startswith(f"Accuracy: {100 * by_ir.scores.accuracy:.1f}%") and "1-off accuracy:" in text
    assert "\ntop\t\t" in text and "one_off" in by_ir.report(ScoreOptions(lmdb=test_lmdb)).keys()

    # infer through the runtime, from the sidecar alone: the IR's predictions are the test report's
    predicted = []
    for _, datum in read_lmdb(test_lmdb):
        image = np.frombuffer(datum.data, np.uint8).reshape(3, SIZE, SIZE).transpose(1, 2, 0)
        probabilities = classifier.predict(classifier.preprocess(image))[0]
        predicted.append((datum.label, int(np.argmax(probabilities))))
    confusion = np.zeros((3, 3), np.int64)
    np.add.at(confusion, tuple(np.array(predicted).T), 1)
    assert np.array_equal(confusion, by_ir.scores.confusion)

    # the pipeline and the doors loop over the head too
    names = [stage.name for stage in pipeline.stages("src", quick=True)]
    assert {"train-band", "test-band", "test-band-ir"} <= set(names)
    band_train = next(s for s in pipeline.stages("src", quick=True) if s.name == "train-band")
    assert band_train.command[:2] == ["scripts/train_net.sh", "BandNet"]
    assert "BandNet band" in list(tasks._doors([]))
