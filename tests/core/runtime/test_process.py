"""Tests for core.runtime.process: process defaults that respect the user's own settings."""

from __future__ import annotations

from osgeo import gdal

from core.runtime.process import GDAL_CACHE_MB, configure_process


def test_defaults_are_applied_when_unset() -> None:
    before = gdal.GetCacheMax()
    env: dict[str, str] = {}
    try:
        configure_process(env)
        assert env["OMP_WAIT_POLICY"] == "PASSIVE"
        assert gdal.GetCacheMax() == GDAL_CACHE_MB * 1024 * 1024
    finally:
        gdal.SetCacheMax(before)


def test_user_settings_win() -> None:
    before = gdal.GetCacheMax()
    gdal.SetCacheMax(123 * 1024 * 1024)
    env = {"OMP_WAIT_POLICY": "ACTIVE", "GDAL_CACHEMAX": "123"}
    try:
        configure_process(env)
        assert env["OMP_WAIT_POLICY"] == "ACTIVE"
        assert gdal.GetCacheMax() == 123 * 1024 * 1024
    finally:
        gdal.SetCacheMax(before)
