"""Tests of dataset folders in the A/B/label layout and their split lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.data.datasets import PairFiles, find_pairs, read_split_lists
from core.errors import KdmsiError


def touch(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"")


def test_pairs_are_matched_by_stem_and_sorted(tmp_path):
    touch(
        tmp_path,
        "A/b2.png",
        "A/a1.tif",
        "A/only_a.png",
        "A/notes.txt",
        "B/a1.tif",
        "B/b2.PNG",
        "B/only_b.png",
        "label/a1.png",
    )
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a1", "b2"]
    assert pairs[0] == PairFiles(
        "a1", tmp_path / "A/a1.tif", tmp_path / "B/a1.tif", tmp_path / "label/a1.png"
    )
    assert pairs[1].after == tmp_path / "B/b2.PNG"
    assert pairs[1].label is None
    assert pairs[0].key == f"{tmp_path.name}/a1"


def test_single_pair_with_differently_named_files(tmp_path):
    touch(tmp_path, "A/img1.tif", "B/img2.tif", "label/cm_change_0-255.tif")
    (pair,) = find_pairs(tmp_path)
    assert pair.name == "img1"
    assert pair.after == tmp_path / "B/img2.tif"
    assert pair.label == tmp_path / "label/cm_change_0-255.tif"


def test_no_label_folder(tmp_path):
    touch(tmp_path, "A/x.png", "B/x.png")
    assert find_pairs(tmp_path)[0].label is None


def test_unmatched_single_label_is_not_guessed_for_several_pairs(tmp_path):
    touch(tmp_path, "A/x.png", "A/y.png", "B/x.png", "B/y.png", "label/z.png")
    assert [p.label for p in find_pairs(tmp_path)] == [None, None]


@pytest.mark.parametrize("missing", ["A", "B"])
def test_missing_date_folder(tmp_path, missing):
    touch(tmp_path, "A/x.png", "B/x.png")
    for path in (tmp_path / missing).iterdir():
        path.unlink()
    (tmp_path / missing).rmdir()
    with pytest.raises(KdmsiError, match=f"no {missing}/ folder") as err:
        find_pairs(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_no_matching_names(tmp_path):
    touch(tmp_path, "A/x.png", "A/y.png", "B/u.png", "B/v.png")
    with pytest.raises(KdmsiError, match="no file names match"):
        find_pairs(tmp_path)


def test_split_lists(tmp_path):
    touch(tmp_path, "list/val.txt")
    (tmp_path / "list/train.txt").write_text("a.png\n b.tif \n\nsub/c\n")
    (tmp_path / "list/test.txt").write_text("d\n")
    lists = read_split_lists(tmp_path)
    assert lists == {"train": {"a", "b", "c"}, "val": set(), "test": {"d"}}


def test_no_split_lists(tmp_path):
    assert read_split_lists(tmp_path) == {}
