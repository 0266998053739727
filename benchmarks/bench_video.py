"""How steady run_inference's answers are on a video: each face's age and gender from frame to frame, with
--track N averaging (the default 15) against tracks without averaging (--track 1), in the same run.

    .venv/bin/python benchmarks/bench_video.py [--video ../shared/photos/video/short_hamilton_clip.mp4]
        [--windows 1,15] [--infer-args "--detector-dir ../shared/caffe-fixtures"]

For each --track N: run_inference.py --json on the video; per track, the frames it lasts and how often its
age bin or its gender changes from one of its frames to the next (flips per 100 track-frames; no labels exist
for this clip, so steadiness, not accuracy, is what is measured), and the wall time of the run.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender.deploy.faces import NEAR_PROFILE  # noqa: E402

VIDEO = ROOT.parent / "shared" / "photos" / "video" / "short_hamilton_clip.mp4"


def flips(records: list[dict]) -> dict:
    """Per task, label changes between consecutive frames of the same track; tracks and their lengths."""
    last: dict[int, dict[str, str]] = {}
    changes, pairs, lengths, turned = defaultdict(int), 0, defaultdict(int), 0
    for record in records:
        for face in record.get("faces", []):
            track = face["track"]
            lengths[track] += 1
            turned += face.get("head_turn", 0.0) >= NEAR_PROFILE
            labels = {task: face[task]["label"] for task in ("age", "gender")}
            if track in last:
                pairs += 1
                for task, label in labels.items():
                    changes[task] += label != last[track][task]
            last[track] = labels
    return {"tracks": len(lengths), "track_frames": sum(lengths.values()), "pairs": pairs,
            "longest": max(lengths.values(), default=0), "near_profile": turned,
            **{f"{task}_flips_per_100": 100 * changes[task] / max(pairs, 1) for task in ("age", "gender")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--windows", default="1,15", help="the --track values compared (default 1,15)")
    parser.add_argument("--infer-args", default=f"--detector-dir {ROOT.parent / 'shared' / 'caffe-fixtures'}")
    args = parser.parse_args()
    if any(int(w) < 1 for w in args.windows.split(",")):
        sys.exit("--windows: give --track values of 1 or more (0 has no tracks to follow)")
    if not args.video.is_file():
        sys.exit(f"{args.video} is absent: the benchmark reads the video of ../shared/photos/video")
    print(f"video {args.video.name}; run_inference.py --json {args.infer_args}")
    print("| --track | tracks | track-frames (near profile) | longest track | age bin changes per 100 frames "
          "| gender changes per 100 frames | wall s |")
    print("|---|---|---|---|---|---|---|")
    for window in args.windows.split(","):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "run_inference.py"), "--image_path", str(args.video),
                               "--json", "--track", window, *shlex.split(args.infer_args)],
                              capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"run_inference.py failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1]}")
        r = flips([json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")])
        print(f"| {window} | {r['tracks']} | {r['track_frames']} ({r['near_profile']}) | {r['longest']} "
              f"| {r['age_flips_per_100']:.1f} | {r['gender_flips_per_100']:.1f} | {seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
