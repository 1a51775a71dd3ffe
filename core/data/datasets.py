"""Dataset folders in the A/B/label layout: ``A/`` (before), ``B/`` (after), ``label/`` (masks).

Files are matched by name stem. An optional ``list/`` folder with ``train.txt`` / ``test.txt``
(one name per line, with or without suffix) fixes which pairs are for training and testing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import KdmsiError

RASTER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".vrt", ".img", ".jp2"}


@dataclass(frozen=True)
class PairFiles:
    """The files of one pair in a dataset folder."""

    name: str
    before: Path
    after: Path
    label: Path | None

    @property
    def key(self) -> str:
        """``dataset/name``: unique across pooled folders."""
        return f"{self.before.parent.parent.name}/{self.name}"


def _rasters(folder: Path) -> dict[str, Path]:
    """Raster files of a folder keyed by stem."""
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
    }


def find_pairs(root: Path) -> list[PairFiles]:
    """All pairs of a dataset folder, sorted by name.

    A label is matched by stem; when ``label/`` holds a single raster and there is a single pair,
    that raster is the pair's label whatever its name (e.g. OSCD's ``*_change_0-255.tif``).

    Raises:
        KdmsiError: when the folder lacks ``A/`` or ``B/`` or no names match.
    """
    root = Path(root)
    for sub in ("A", "B"):
        if not (root / sub).is_dir():
            raise KdmsiError(
                f"{root} has no {sub}/ folder; a dataset folder holds A/, B/ and label/."
            )
    before, after = _rasters(root / "A"), _rasters(root / "B")
    labels = _rasters(root / "label") if (root / "label").is_dir() else {}
    names = sorted(set(before) & set(after))
    if len(before) == len(after) == 1 and not names:
        names = [next(iter(before))]
        after = {names[0]: next(iter(after.values()))}
    if not names:
        raise KdmsiError(f"{root}: no file names match between A/ and B/; name each pair alike.")
    if len(names) == 1 and names[0] not in labels and len(labels) == 1:
        labels = {names[0]: next(iter(labels.values()))}
    return [PairFiles(n, before[n], after[n], labels.get(n)) for n in names]


def read_split_lists(root: Path) -> dict[str, set[str]]:
    """Names listed in ``list/train.txt``, ``list/val.txt`` and ``list/test.txt`` (when present)."""
    lists: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        path = Path(root) / "list" / f"{split}.txt"
        if path.is_file():
            lists[split] = {
                Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()
            }
    return lists
