"""Neural network models of KD-MSI: CNN backbones and the Siamese CAM change classifiers."""
