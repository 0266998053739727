"""convert_imageset's ``path label`` lists: one reader for the prior, the wild benchmark and the LMDB stage."""
from pathlib import Path

import pytest

from agegender.caffe.listfile import read_list
from agegender.errors import AgegenderError


def test_paths_with_spaces_and_blank_lines(tmp_path: Path):
    lists = tmp_path / "age_train.txt"
    lists.write_text("faces/a b.jpg 3\n\nfaces/c.jpg 0\n  \n")
    assert read_list(lists) == [("faces/a b.jpg", 3), ("faces/c.jpg", 0)]


@pytest.mark.parametrize("bad", ["faces/a.jpg", "faces/a.jpg x", "7", "faces/a.jpg -1", "faces/a.jpg ²"])
def test_a_bad_line_is_a_one_line_error_naming_it(tmp_path: Path, bad: str):
    lists = tmp_path / "l.txt"
    lists.write_text(f"faces/ok.jpg 1\n{bad}\n")
    with pytest.raises(AgegenderError, match=r"l\.txt line 2: expected 'path label'"):
        read_list(lists)


def test_on_bad_takes_bad_lines_and_the_rest_is_read(tmp_path: Path):
    lists = tmp_path / "l.txt"
    lists.write_text("faces/ok.jpg 1\nbroken\nfaces/next.jpg 2\n")
    seen = []
    assert read_list(lists, on_bad=lambda where, line: seen.append((where, line))) == [
        ("faces/ok.jpg", 1), ("faces/next.jpg", 2)]
    assert seen == [(f"{lists}:2", "broken")]


def test_a_missing_list_says_how_to_make_it(tmp_path: Path):
    with pytest.raises(AgegenderError, match="list not found: .*build_dataset.py"):
        read_list(tmp_path / "none.txt")
