"""Tests of core.io.bands: parsing ``--bands`` and checking them against a raster."""

from __future__ import annotations

import pytest

from core.errors import KdmsiError
from core.io.bands import check_bands, default_bands, parse_bands


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3,2,1", (3, 2, 1)),
        ("1", (1,)),
        (" 4 , 1 ", (4, 1)),
        ("1,2,", (1, 2)),
        (None, None),
        ("", None),
    ],
)
def test_parse_bands_accepts_band_lists(text, expected):
    assert parse_bands(text) == expected


@pytest.mark.parametrize("text", ["0", "1,0", "-1", "a,b", "1.5", ",", "3;2;1"])
def test_parse_bands_refuses_other_text_with_an_example(text):
    with pytest.raises(KdmsiError, match=r"--bands 3,2,1"):
        parse_bands(text)


@pytest.mark.parametrize(
    ("count", "expected"), [(1, (1,)), (2, (1, 2)), (3, (1, 2, 3)), (13, (1, 2, 3))]
)
def test_default_bands_are_the_first_three(count, expected):
    assert default_bands(count) == expected


def test_check_bands_accepts_existing_bands():
    check_bands((4, 1), 4, "/data/a.tif")


def test_check_bands_error_names_the_file_the_band_and_the_count():
    with pytest.raises(KdmsiError) as info:
        check_bands((1, 5, 6), 4, "/data/after.tif")
    message = str(info.value)
    assert "/data/after.tif" in message
    assert "4 band(s)" in message
    assert "band 5" in message
