"""Placeholder GDAL package for a machine without GDAL (see _missing.py)."""

from . import gdal, ogr, osr

__all__ = ["gdal", "ogr", "osr"]
