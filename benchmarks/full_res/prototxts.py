"""The Levi & Hassner nets at their own 227x227 input: every prototxt/ net without its pool0 (conv1 reads
``data``), and every solver pointing at those copies, written to OUT_DIR (fc6's input grows from 384x3x3 to
384x7x7); the solvers snapshot under models/full_res/.

    python benchmarks/full_res/prototxts.py OUT_DIR
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from agegender.caffe.net import read_net, write_prototxt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def without_pool0(src: Path, dst: Path) -> None:
    net = read_net(src)
    pool0 = [layer for layer in net.layer if layer.name == "pool0"]
    if len(pool0) != 1 or list(pool0[0].bottom) != ["data"]:
        sys.exit(f"prototxts.py: {src} has no single pool0 reading data")
    net.layer.remove(pool0[0])
    for layer in net.layer:
        layer.bottom[:] = ["data" if bottom == "pool0" else bottom for bottom in layer.bottom]
    write_prototxt(net, dst)


def retarget_solver(text: str, out: Path) -> str:
    """A committed solver's text training the net copy in ``out`` and snapshotting under models/full_res/
    (beside, never over, the pool0 nets' models/NAME/)."""
    text = re.sub(r'^net: "prototxt/', f'net: "{out.as_posix()}/', text, flags=re.M)
    return re.sub(r'^snapshot_prefix: "models/', 'snapshot_prefix: "models/full_res/', text, flags=re.M)


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted((ROOT / "prototxt").glob("*.prototxt")):
        if "solver" in src.name:
            (out / src.name).write_text(retarget_solver(src.read_text(), out))
        else:
            without_pool0(src, out / src.name)
    print(f"{out}: {len(list(out.glob('*.prototxt')))} prototxts without pool0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
