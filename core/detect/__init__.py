"""From a pair (and a model) to a change probability.

MSI, CVA, Otsu, the predictors of each method, tiled and parallel inference, ONNX.
"""
