"""run_inference on a folder of large photos stays within a stated memory bound (issue 15): images are decoded
one at a time and dropped once their faces are cropped, and none over the pixel cap is decoded at all."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from test_run_inference import build_graph

from conftest import ROOT

PHOTO = (4000, 6000)  # 24 MP: a 6000x4000 camera photo, 69 MiB as BGR
BOUND_OVER_SMALL = 400 << 20  # a folder of 24 MP photos may take at most 400 MiB more than one of small images


def max_rss_of(args: list[str]) -> tuple[int, subprocess.CompletedProcess]:
    """Peak resident memory (bytes) of ``python ARGS``, measured by a parent that runs nothing else."""
    probe = ("import resource, subprocess, sys\n"
             "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, proc.returncode)\n"
             "sys.stderr.write(proc.stderr)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    rss_kib, code = map(int, proc.stdout.split())
    proc.returncode = code
    return rss_kib * 1024, proc


def photos(folder: Path, size: tuple[int, int], count: int = 2) -> Path:
    """Smooth synthetic photos (gradients with a bright square), JPEG, quick to encode."""
    folder.mkdir()
    h, w = size
    for i in range(count):
        image = np.empty((h, w, 3), np.uint8)
        image[:] = (np.arange(w, dtype=np.uint32) * 255 // w).astype(np.uint8)[None, :, None]
        image[h // 3:h // 2, w // 3:w // 2] = 200 - 40 * i
        cv2.imwrite(str(folder / f"photo{i}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return folder


def test_a_folder_of_24_mp_photos_stays_under_the_memory_bound(tmp_path):
    graph = build_graph(tmp_path / "graph")
    runs = {}
    for name, size in (("small", (400, 600)), ("large", PHOTO)):
        folder = photos(tmp_path / name, size)
        rss, proc = max_rss_of([str(ROOT / "run_inference.py"), "--image_path", str(folder), "--graph_dir",
                                str(graph), "--output", str(tmp_path / f"{name}-annotated")])
        assert proc.returncode in (0, 3), proc.stderr  # 3: no face in synthetic photos, which is fine here
        runs[name] = rss
    print(f"max RSS: small photos {runs['small'] / 2**20:.0f} MiB, 24 MP photos {runs['large'] / 2**20:.0f} MiB")
    assert runs["large"] - runs["small"] < BOUND_OVER_SMALL, runs
