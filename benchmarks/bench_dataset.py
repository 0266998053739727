"""Time the whole dataset stage on the real UTKFace Asian faces, through the doors a user runs:
download.sh -> build_dataset.py (lists, oversampling) -> create_lmdb.sh (4 LMDBs, 256x256) -> create_mean.sh.

    .venv/bin/python benchmarks/bench_dataset.py [SOURCE] [--keep] [--resize N] [--balanced age gender]

Runs in a fresh temporary folder (its data/ is deleted afterwards unless --keep), so the checkout's data/ is
untouched; checks the record counts and the mean's shape. Each stage's line gives its wall time and the CPU
time of its process (user + system, all threads), a figure other work on the machine hardly changes; the load
average before and after says how busy the machine was. The last line is the total wall time in seconds.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.caffe import lmdb_size, read_mean  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=str(ROOT.parent / "shared/datasets/utkface-asian"))
    parser.add_argument("--resize", default="256", help="create_lmdb.sh --resize (default 256)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    parser.add_argument("--balanced", nargs="+", choices=("age", "gender", "none"),
                        help="build_dataset.py --balanced (default: its own, the original's oversampled lists; "
                             "none: each face once)")
    args = parser.parse_args()
    source = str(Path(args.source).resolve()) if "://" not in args.source else args.source
    work = Path(tempfile.mkdtemp(prefix="bench_dataset."))
    stages = [("download", [str(ROOT / "download.sh"), source]),
              ("lists", [sys.executable, str(ROOT / "build_dataset.py"),
                         *(["--balanced", *args.balanced] if args.balanced else [])]),
              ("lmdb", [str(ROOT / "create_lmdb.sh"), "--resize", args.resize]),
              ("mean", [str(ROOT / "create_mean.sh")])]
    seconds = {}
    try:
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        for name, command in stages:
            began, cpu_before = time.perf_counter(), _children_cpu()
            proc = subprocess.run(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            seconds[name], cpu = time.perf_counter() - began, _children_cpu() - cpu_before
            if proc.returncode:
                raise SystemExit(f"bench_dataset: {name} failed (exit {proc.returncode}): {' '.join(command)}")
            print(f"{name:>9}: {seconds[name]:6.1f} s (CPU {cpu:5.1f} s)   {proc.stdout.strip().splitlines()[-1]}",
                  flush=True)
        counts = {db.name: lmdb_size(db) for db in sorted((work / "data/lmdb").iterdir())}
        mean = read_mean(work / "data/mean/mean.binaryproto")
        print(f"records: {counts}; mean 1x{'x'.join(map(str, mean.shape))}")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"load average after: {os.getloadavg()[0]:.1f}; CPU total {_children_cpu():.1f} s")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{sum(seconds.values()):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
