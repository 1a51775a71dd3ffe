"""Reading and writing geodata.

Rasters and pairs, windows, tile grids, bands, the stretch, GeoTIFF and GeoPackage writers
and output checks.
"""
