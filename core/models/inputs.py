"""The one input-layout helper: tiles as stored (uint8, channels first) to network inputs."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images become float in [0, 1] (channels-last); other arrays become float tensors.

    Images are moved and reordered as uint8 (a quarter of the bytes) and converted to float in
    one pass.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    if array.dtype == np.uint8:
        if tensor.ndim == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor.float().div_(255.0)
    return tensor.float()
