"""The Data layer feed: Caffe's record order, DataTransformer crops/mirrors/mean, shards, workers, errors."""
from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from agegender.caffe import array_to_datum, caffe_pb2, write_lmdb, write_mean
from agegender.errors import AgegenderError
from agegender.layers.net import Net
from agegender.preprocess import transform
from agegender.train.data import data_feeds, iterate_batches

N_RECORDS = 7


def images(n: int, size: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (3, size, size), dtype=np.uint8) for _ in range(n)]


def make_lmdb(path, arrays) -> None:
    write_lmdb(path, ((f"{i:05d}".encode(), array_to_datum(a, i % 3)) for i, a in enumerate(arrays)))


def data_net(tmp_path, phase: str, transform_param: str, batch: int = 3) -> Net:
    text = (f'layer {{ name: "data" type: "Data" top: "data" top: "label" transform_param {{ {transform_param} }} '
            f'data_param {{ source: "{tmp_path / "lmdb"}" batch_size: {batch} backend: LMDB }} }}')
    return Net.from_proto(text_format.Parse(text, caffe_pb2.NetParameter()), phase)


@pytest.fixture
def records(tmp_path):
    arrays = images(N_RECORDS)
    make_lmdb(tmp_path / "lmdb", arrays)
    write_mean(np.full((3, 8, 8), 100, np.float32), tmp_path / "mean.binaryproto")
    return arrays


def test_test_phase_reads_records_in_key_order_wrapping_around_with_centre_crops(tmp_path, records):
    net = data_net(tmp_path, "TEST", f'crop_size: 6 scale: 0.5 mean_file: "{tmp_path / "mean.binaryproto"}"')
    (feed,) = data_feeds(net, seed=1)
    mean = np.full((3, 8, 8), 100, np.float32)
    for batch_index in range(4):  # 12 samples from 7 records: wraps like Caffe's cursor
        batch = feed.batch(batch_index)
        assert batch["data"].shape == (3, 3, 6, 6)
        for i in range(3):
            record = (batch_index * 3 + i) % N_RECORDS
            np.testing.assert_array_equal(batch["data"][i].numpy(), transform(records[record], mean, 6, 0.5))
            assert batch["label"][i] == record % 3


def test_train_phase_takes_random_crops_and_mirrors_reproducibly(tmp_path, records):
    net = data_net(tmp_path, "TRAIN", "crop_size: 5 mirror: true mean_value: 10 mean_value: 20 mean_value: 30", batch=7)
    (feed,) = data_feeds(net, seed=3)
    mean = np.array([10, 20, 30], np.float32).reshape(3, 1, 1)
    seen_offsets, seen_mirrors = set(), set()
    for batch_index in (0, 1, 2):
        batch = feed.batch(batch_index)["data"].numpy()
        np.testing.assert_array_equal(batch, feed.batch(batch_index)["data"].numpy())  # a function of (seed, batch)
        for i, image in enumerate(batch):
            record = records[(batch_index * 7 + i) % N_RECORDS]
            matches = [(y, x, m) for y in range(4) for x in range(4) for m in (False, True)
                       if np.array_equal(image, transform(record, mean, 5, 1.0, (y, x), m))]
            assert matches, "every image is a crop (and maybe mirror) of its record"
            seen_offsets.add(matches[0][:2])
            seen_mirrors.add(matches[0][2])
    assert len(seen_offsets) > 5 and seen_mirrors == {False, True}
    (other_seed,) = data_feeds(net, seed=4)
    assert not np.array_equal(other_seed.batch(0)["data"].numpy(), feed.batch(0)["data"].numpy())


def test_ranks_read_disjoint_consecutive_shards(tmp_path, records):
    net = data_net(tmp_path, "TEST", "", batch=2)
    labels = {rank: [feed.batch(b)["label"].tolist() for b in range(2) for feed in data_feeds(net, 0, rank, 2)]
              for rank in (0, 1)}
    single = data_net(tmp_path, "TEST", "", batch=4)
    (feed,) = data_feeds(single, 0)
    for b in range(2):  # one rank's batch of 4 = rank 0's batch of 2 followed by rank 1's
        assert feed.batch(b)["label"].tolist() == labels[0][b] + labels[1][b]


def test_worker_processes_give_the_same_batches_as_the_main_process(tmp_path, records):
    net = data_net(tmp_path, "TRAIN", "crop_size: 6 mirror: true")
    feeds = data_feeds(net, seed=5)
    in_process = [b["data"] for b in iterate_batches(feeds, 2, 6, workers=0)]
    with_workers = [b["data"] for b in iterate_batches(feeds, 2, 6, workers=2)]
    assert len(in_process) == 4 and all(np.array_equal(a, b) for a, b in zip(in_process, with_workers))


def test_a_bad_record_in_a_worker_is_one_line_error(tmp_path):
    make_lmdb(tmp_path / "lmdb", images(3) + images(1, size=9))
    net = data_net(tmp_path, "TEST", "crop_size: 6", batch=4)
    with pytest.raises(AgegenderError) as error:
        next(iterate_batches(data_feeds(net, 0), 0, 1, workers=1))
    message = str(error.value)
    assert "\n" not in message and "mixes image sizes" in message and "Traceback" not in message


def test_mean_file_of_another_size_is_rejected(tmp_path, records):
    write_mean(np.zeros((3, 16, 16), np.float32), tmp_path / "big_mean.binaryproto")
    net = data_net(tmp_path, "TEST", f'crop_size: 6 mean_file: "{tmp_path / "big_mean.binaryproto"}"')
    with pytest.raises(AgegenderError, match="3x16x16 but .* holds 3x8x8 images"):
        data_feeds(net, 0)
