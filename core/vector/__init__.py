"""From a probability raster to polygons.

Threshold, polygonize, attributes and the Shapefile / GeoPackage writers.
"""
