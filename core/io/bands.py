"""Choosing which bands of a raster the pair uses (``--bands 3,2,1``)."""

from __future__ import annotations

from core.errors import KdmsiError


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """Parse a comma-separated list of 1-based band indices.

    Args:
        text: e.g. ``"3,2,1"``; None or empty means "the default bands".

    Returns:
        The indices, or None for the default.

    Raises:
        KdmsiError: when an entry is not a positive integer.
    """
    if not text:
        return None
    try:
        bands = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        bands = ()
    if not bands or min(bands) < 1:
        raise KdmsiError(f"--bands {text!r} is not a list of band numbers; use e.g. --bands 3,2,1.")
    return bands


def default_bands(count: int) -> tuple[int, ...]:
    """The first three bands, or all of them when the raster has fewer."""
    return tuple(range(1, min(3, count) + 1))


def check_bands(bands: tuple[int, ...], count: int, path: str) -> None:
    """Raise a clear error when a requested band does not exist in the raster.

    Raises:
        KdmsiError: naming the raster and its band count.
    """
    missing = [b for b in bands if b > count]
    if missing:
        raise KdmsiError(
            f"{path} has {count} band(s) but band {missing[0]} was asked for; "
            f"choose bands between 1 and {count} with --bands."
        )
