"""benchmarks/pose_lists.py: lines repeated by their chip's cached head turn, age and gender lists repeated alike
(the pre-training reads them in lockstep), and an unreadable image refused instead of counted as frontal."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "pose_lists.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def write_lists(tmp_path, turns: dict[str, float]):
    lists = tmp_path / "lists"
    lists.mkdir()
    paths = list(turns)
    (lists / "age_pretrain.txt").write_text("".join(f"{p} {i % 9}\n" for i, p in enumerate(paths)))
    (lists / "gender_pretrain.txt").write_text("".join(f"{p} {i % 2}\n" for i, p in enumerate(paths)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "turns.tsv").write_text("".join(f"{p}\t{t:.4f}\n" for p, t in turns.items()))
    return lists, out


def test_lines_repeated_by_cached_turn_and_alike_in_both_lists(tmp_path):
    turns = {"a/front.jpg": 0.01, "a/slight.jpg": 0.15, "a/turned.jpg": 0.25, "a/profile.jpg": 0.45}
    lists, out = write_lists(tmp_path, turns)
    # an oversampled copy (build_dataset.py's naming) takes its chip's turn, which the cache holds
    with open(lists / "age_pretrain.txt", "a") as f:
        f.write("a_augmented/profile.jpg.chip.jpg_flip_noise1.jpg 3\n")
    with open(lists / "gender_pretrain.txt", "a") as f:
        f.write("a_augmented/profile.jpg.chip.jpg_flip_noise1.jpg 1\n")
    with open(out / "turns.tsv", "a") as f:
        f.write("a/profile.jpg.chip.jpg\t0.4500\n")
    result = run(out, lists / "age_pretrain.txt", lists / "gender_pretrain.txt", "--repeat", "0.2:2,0.3:4")
    assert result.returncode == 0, result.stderr
    age = (out / "age_pretrain.txt").read_text().splitlines()
    gender = (out / "gender_pretrain.txt").read_text().splitlines()
    counts = Counter(line.split()[0] for line in age)
    assert counts == {"a/front.jpg": 1, "a/slight.jpg": 1, "a/turned.jpg": 2, "a/profile.jpg": 4,
                      "a_augmented/profile.jpg.chip.jpg_flip_noise1.jpg": 4}
    assert [line.split()[0] for line in gender] == [line.split()[0] for line in age]
    assert "5 lines -> 12" in result.stdout


def test_unreadable_image_is_refused_not_counted_frontal(tmp_path, fixtures):
    lists, out = write_lists(tmp_path, {"a/front.jpg": 0.0})
    with open(lists / "age_pretrain.txt", "a") as f:
        f.write("no/such/chip.jpg 2\n")
    result = run(out, lists / "age_pretrain.txt", "--detector-dir", fixtures)
    assert result.returncode != 0
    assert "cannot read" in result.stderr and "no/such/chip.jpg" in result.stderr
    assert "Traceback" not in result.stderr


def test_cache_elsewhere_is_read_and_out_gets_no_copy(tmp_path):
    lists, out = write_lists(tmp_path, {"a/front.jpg": 0.0, "a/profile.jpg": 0.5})
    cache = tmp_path / "shared" / "turns.tsv"
    cache.parent.mkdir()
    (out / "turns.tsv").rename(cache)
    result = run(out, lists / "age_pretrain.txt", "--cache", cache)
    assert result.returncode == 0, result.stderr
    assert Counter(line.split()[0] for line in (out / "age_pretrain.txt").read_text().splitlines()) == {
        "a/front.jpg": 1, "a/profile.jpg": 4}
    assert not (out / "turns.tsv").exists()
