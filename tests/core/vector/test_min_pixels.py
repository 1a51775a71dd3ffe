"""Tests of ``vectorize``'s smallest polygon in pixels (``--min-pixels``), in any CRS."""

from __future__ import annotations

import numpy as np
import pytest
from test_vectorize import PIXEL, read, write_tif

from core.errors import KdmsiError
from core.vector.vectorize import VectorizeParams, vectorize


def regions_of_at_least(mask: np.ndarray, pixels: int) -> int:
    """The number of 4-connected change regions of ``pixels`` or more (a plain flood fill)."""
    seen, count = np.zeros_like(mask, bool), 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        stack, size = [start], 0
        seen[start] = True
        while stack:
            r, c = stack.pop()
            size += 1
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                inside = 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1]
                if inside and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    stack.append((rr, cc))
        count += size >= pixels
    return count


@pytest.mark.parametrize("georef", [True, False])
@pytest.mark.parametrize("kind", ["probability", "mask", "simplified"])
def test_min_pixels_drops_regions_of_fewer_pixels_whatever_the_pixel_size(tmp_path, georef, kind):
    rng = np.random.default_rng(5)
    mask = rng.random((40, 40)) < 0.45  # regions of every size, many of one pixel
    assert regions_of_at_least(mask, 1) > regions_of_at_least(mask, 9) > 0
    prob = np.where(mask, 0.9, 0.1).astype(np.float32)
    array = mask.astype(np.uint8) if kind == "mask" else prob
    src = write_tif(tmp_path / "p.tif", array, georef=georef)
    simplify = 0.01 if kind == "simplified" else 0.0
    pixel_area = PIXEL**2 if georef else 1.0
    for pixels in (0, 2, 9, 20):
        out = tmp_path / f"{kind}{pixels}.gpkg"
        result = vectorize(src, out, VectorizeParams(0.5, simplify=simplify, min_pixels=pixels))
        assert result.count == regions_of_at_least(mask, max(pixels, 1)), pixels
        areas = [f["geom"].area / pixel_area for f in read(out)[0]]
        assert min(areas) >= max(pixels, 1) - 1e-6


def test_min_pixels_and_min_area_keep_the_larger_bound():
    params = VectorizeParams(min_area=500.0, min_pixels=9)
    assert params.smallest_area(100.0) == pytest.approx(850.0)  # 8.5 pixels: 9 and up kept
    assert params.smallest_area(10.0) == 500.0
    assert VectorizeParams(min_pixels=1).smallest_area(100.0) == 0.0
    with pytest.raises(KdmsiError, match="whole number of pixels"):
        VectorizeParams(min_pixels=-1)
