"""Performance benchmarks of ``kdmsi perf``: one module per benchmark, inputs generated on the fly.

Modules: :mod:`core.perf.inputs` (synthetic georeferenced pairs, masks, datasets and a model
file under a work folder, reused between runs), :mod:`core.perf.child` (subprocess runs with
their peak memory), :mod:`core.perf.inference` (throughput against a naive per-tile loop),
:mod:`core.perf.memory` (peak memory of ``kdmsi detect`` by raster size),
:mod:`core.perf.overviews` (the time the output's internal overviews take to build),
:mod:`core.perf.vectorization` (``kdmsi vectorize`` against ``gdal_polygonize.py``),
:mod:`core.perf.training` (``kdmsi train`` throughput and memory), :mod:`core.perf.flops` (the
arithmetic bound), :mod:`core.perf.report` (JSON and the BENCHMARKS.md section) and
:mod:`core.perf.suite` (sizes, order and time of the whole run).
"""
