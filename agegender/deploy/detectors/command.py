"""``agegender detector list|fetch``: which face detectors are installed, and fetching one's Caffe files from its
pinned public URLs (checked against their sha256) into GRAPH_DIR/detectors/NAME, only when asked
(``download.sh --detector NAME``). Nothing is downloaded by any other command."""
from __future__ import annotations

import argparse
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from agegender.deploy import detectors
from agegender.errors import AgegenderError

TIMEOUT_S = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="step", metavar="step", required=True)
    listing = sub.add_parser("list", help="the detectors, where their files are, and which one run_inference picks")
    listing.add_argument("--graph-dir", "--graph_dir", default="graph")
    listing.add_argument("--detector-dir", dest="detector_dir")
    fetch = sub.add_parser("fetch", help="download a detector's Caffe files (pinned URL + sha256)")
    fetch.add_argument("name", choices=[name for name, entry in detectors.REGISTRY.items() if entry.files])
    fetch.add_argument("--out", type=Path, help="folder (default: GRAPH_DIR/detectors/NAME)")
    fetch.add_argument("--graph-dir", "--graph_dir", default="graph")


def run(args: argparse.Namespace) -> int:
    if args.step == "list":
        dirs = detectors.search_dirs(args.detector_dir, args.graph_dir)
        present = detectors.installed(dirs)
        for name, entry in detectors.REGISTRY.items():
            files = detectors.find_files(entry, dirs) if entry.files else {}
            where = "built in" if not entry.files else (str(next(iter(files.values())).parent) if files else "not installed")
            print(f"{name:10s} {entry.title}; {where}")
        print(f"run_inference uses: {present[0] if present else 'haar'}")
        return 0
    out = fetch(detectors.REGISTRY[args.name], args.out or Path(args.graph_dir) / "detectors" / args.name)
    print(f"{args.name}: {len(detectors.REGISTRY[args.name].files)} files in {out}; run_inference.py picks it up "
          f"from there (--graph_dir {args.graph_dir}) or with --detector-dir {out}")
    return 0


def fetch(entry: detectors.Model, out: Path) -> Path:
    """Each file of ``entry`` into ``out``: kept when its sha256 already matches, else downloaded to a temporary
    name, checked, and renamed into place (an interrupted or wrong download leaves nothing behind)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, (url, sha256) in entry.files.items():
        target = out / name
        if target.is_file() and _sha256(target.read_bytes()) == sha256:
            continue
        data = _download(url)
        if _sha256(data) != sha256:
            raise AgegenderError(f"{url} is not the pinned file (sha256 {_sha256(data)[:16]}..., expected "
                                 f"{sha256[:16]}...); nothing written - report it, or put the real file in {out}")
        staged = out / f".{name}.{os.getpid()}.tmp"
        staged.write_bytes(data)
        os.replace(staged, target)
    return out


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AgegenderError(f"cannot download {url} ({getattr(exc, 'reason', exc)}); check the network, or copy "
                             f"the file by hand and pass --detector-dir") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
