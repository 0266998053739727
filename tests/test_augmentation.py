"""transform_param's augment_param: each distortion, reproducibility, TRAIN-only, and bad values in one line."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_train_data import data_net, make_lmdb

from agegender.augmentation import Augmentation
from agegender.train.data import data_feeds

from conftest import assert_one_line_error, run_cli


def face(size: int = 64) -> np.ndarray:
    """A CxHxW uint8 image with structure: a bright disc on a colour gradient."""
    y, x = np.mgrid[:size, :size]
    image = np.stack([x * 3, y * 3, (x + y) * 2], axis=2).clip(0, 255).astype(np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 4, (230, 200, 180), -1)
    return image.transpose(2, 0, 1).copy()


def apply(aug: Augmentation, seed: int = 0, image: np.ndarray | None = None) -> np.ndarray:
    return aug(face() if image is None else image, np.random.default_rng(seed))


def test_no_distortion_is_the_identity():
    np.testing.assert_array_equal(apply(Augmentation()), face())


def test_same_generator_same_image_and_shape_kept():
    aug = Augmentation(scale_jitter=0.1, max_rotation=10, max_shift=0.05, brightness=20, contrast=0.3, saturation=0.4,
                       gray_prob=0.3, blur_prob=0.5, jpeg_prob=0.5)
    out = [apply(aug, seed) for seed in range(6)]
    np.testing.assert_array_equal(out[0], apply(aug, 0))
    assert all(o.shape == (3, 64, 64) and o.dtype == np.uint8 for o in out)
    assert len({o.tobytes() for o in out}) == 6


def test_each_distortion_does_what_it_says():
    original = face().astype(np.float32)
    gray = apply(Augmentation(gray_prob=1))
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()
    for seed in range(5):
        shift = apply(Augmentation(brightness=30), seed).astype(np.float32) - original
        unclipped = (original > 35) & (original < 220)
        assert np.ptp(shift[unclipped]) <= 1 and np.abs(shift[unclipped]).max() <= 30.5
    flat = apply(Augmentation(contrast=0.5), 1).astype(np.float32)
    assert flat.std() != pytest.approx(original.std(), rel=0.01)
    blurred = apply(Augmentation(blur_prob=1, max_blur_sigma=2))
    assert np.abs(np.diff(blurred.astype(np.float32), axis=2)).mean() < np.abs(np.diff(original, axis=2)).mean()
    jpeg = apply(Augmentation(jpeg_prob=1, min_jpeg_quality=5))
    assert 0 < np.abs(jpeg.astype(np.float32) - original).mean() < 20
    moved = apply(Augmentation(max_rotation=20, scale_jitter=0.2, max_shift=0.1), 2)
    assert np.abs(moved.astype(np.float32) - original).mean() > 5
    assert (apply(Augmentation(max_rotation=20, geometry_prob=0)) == face()).all()


def test_train_phase_applies_it_and_test_phase_does_not(tmp_path):
    arrays = [face(16) for _ in range(4)]
    make_lmdb(tmp_path / "lmdb", arrays)
    param = "augment_param { gray_prob: 1 }"
    (train,) = data_feeds(data_net(tmp_path, "TRAIN", param, batch=4), seed=0)
    images = train.batch(0)["data"].numpy()
    assert np.array_equal(images[:, 0], images[:, 1]) and np.array_equal(images[:, 1], images[:, 2])
    (test,) = data_feeds(data_net(tmp_path, "TEST", param, batch=4), seed=0)
    np.testing.assert_array_equal(test.batch(0)["data"].numpy(), np.stack(arrays).astype(np.float32))


@pytest.mark.parametrize("param,message", [("gray_prob: 2", "gray_prob is 2; give a value in 0-1"),
                                           ("max_rotation: -5", "max_rotation is -5; give a value >= 0"),
                                           ("min_jpeg_quality: 0", "min_jpeg_quality is 0; give 1-95")])
def test_bad_values_stop_in_one_line(tmp_path, param, message):
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "data" type: "Data" top: "data" top: "label" '
                   f'transform_param {{ augment_param {{ {param} }} }} '
                   'data_param { source: "absent" batch_size: 2 } }')
    assert_one_line_error(run_cli("inspect", net, "--phase", "TRAIN"), message, "data")


def test_gamma_darkens_and_brightens_monotonically():
    original = face().astype(np.float32)
    means = [apply(Augmentation(gamma=0.7), seed).astype(np.float32).mean() for seed in range(8)]
    assert min(means) < original.mean() - 5 and max(means) > original.mean() + 5  # both ways
    out = apply(Augmentation(gamma=0.7), 3).astype(np.float32)
    order = np.argsort(original[0].ravel(), kind="stable")
    assert (np.diff(out[0].ravel()[order]) >= -1).all()  # a tone curve: brighter stays brighter


def test_erasing_replaces_one_rectangle_of_bounded_area():
    original = face()
    for seed in range(6):
        out = apply(Augmentation(erase_prob=1, max_erase_area=0.25), seed)
        changed = (out != original).any(axis=0)
        ys, xs = np.nonzero(changed)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert 0.02 * 64 * 64 * 0.5 <= changed.sum() <= box <= 0.25 * 64 * 64 + 64  # one rectangle, area in range
    assert (apply(Augmentation(erase_prob=0, max_erase_area=0.25)) == original).all()
