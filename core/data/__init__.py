"""What the networks learn from.

Tiles, tags, in-memory tile sets, dataset folders, training sources and synthetic scenes.
"""
