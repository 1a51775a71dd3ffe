"""Where and how the work runs.

Torch devices, arithmetic precision, distributed ranks and process-wide settings.
"""
