"""Placeholders for GDAL names on a machine without GDAL (the lent GPU machine).

``core`` modules import ``gdal``, ``ogr`` and ``osr`` and read a few constants at import time; a
placeholder stands in for every name and raises as soon as it is called or looked into, so a
real GDAL call fails loudly instead of doing nothing.
"""

from __future__ import annotations

from typing import Any, Callable, NoReturn


class Missing:
    """A GDAL name that is not there."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError(f"osgeo stub: {self.name} is not available on the GPU machine")

    def __getattr__(self, attr: str) -> NoReturn:
        raise RuntimeError(f"osgeo stub: {self.name}.{attr} is not available on the GPU machine")


def use_exceptions() -> None:
    """``UseExceptions``: nothing to switch on."""


def module_getattr(module: str) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` that returns a placeholder for every public name."""

    def getattr_(name: str) -> Missing:
        if name.startswith("__"):
            raise AttributeError(name)
        return Missing(f"{module}.{name}")

    return getattr_
