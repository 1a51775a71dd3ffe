"""Reading and writing geodata.

Rasters and pairs, windows, tile grids, bands, the stretch, GeoTIFF (with internal overviews)
and GeoPackage writers and output checks.
"""
