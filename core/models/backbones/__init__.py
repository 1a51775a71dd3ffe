"""CNN backbones.

The shared interface and weight loading (``base``), one module per family
(``efficientnet_lite``, ``resnet``) and the name registry (``registry``).
"""
