"""From tags to a model file.

The trainer, batches and augmentation, epoch and threshold selection, the refinement network
and the training history.
"""
