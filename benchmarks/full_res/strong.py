"""The shared pre-training with the stronger augmentation of docs/training.md ("Stronger augmentation, tried and
stopped" at 3,000 of 5,000 iterations on the CPU), for the question it left open: does this small net turn the
harder distortions into robustness when it is given more epochs? Writes OUT_DIR/AgeGenderNet_train_test.prototxt
(every TRAIN Data layer's augment_param replaced; the net itself, pool0 included, unchanged) and
OUT_DIR/AgeGenderNet_pretrain_solver.prototxt pointing at it, snapshotting under models/full_res/.

    python benchmarks/full_res/strong.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from prototxts import retarget_solver  # noqa: E402  (beside this script)

from agegender.caffe.net import read_net, write_prototxt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# the stopped CPU probe's values (docs/training.md); JPEG re-encoding as in the committed prototxts
STRONG = dict(scale_jitter=0.15, max_rotation=20, max_shift=0.08, geometry_prob=0.8, brightness=30, contrast=0.4,
              saturation=0.5, gray_prob=0.15, blur_prob=0.3, max_blur_sigma=2.0, jpeg_prob=0.3,
              min_jpeg_quality=30, gamma=0.5, erase_prob=0.3, max_erase_area=0.2)


def strong(src: Path, dst: Path) -> int:
    net = read_net(src)
    changed = 0
    for layer in net.layer:
        if layer.type == "Data" and layer.transform_param.HasField("augment_param"):
            augment = layer.transform_param.augment_param
            augment.Clear()
            for field, value in STRONG.items():
                setattr(augment, field, value)
            changed += 1
    if not changed:
        sys.exit(f"strong.py: {src} has no Data layer with an augment_param")
    write_prototxt(net, dst)
    return changed


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/full_res/strong.py OUT_DIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    n = strong(ROOT / "prototxt/AgeGenderNet_train_test.prototxt", out / "AgeGenderNet_train_test.prototxt")
    solver = (ROOT / "prototxt/AgeGenderNet_pretrain_solver.prototxt").read_text()
    (out / "AgeGenderNet_pretrain_solver.prototxt").write_text(retarget_solver(solver, out))
    print(f"{out}: AgeGenderNet with the stronger augmentation in {n} Data layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
