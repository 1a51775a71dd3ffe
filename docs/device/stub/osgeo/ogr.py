"""Placeholder ogr module (see _missing.py)."""

from osgeo._missing import module_getattr, use_exceptions

UseExceptions = use_exceptions
__getattr__ = module_getattr("ogr")
