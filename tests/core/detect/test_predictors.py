"""Tests of core.detect.predictors: the one way a learned method becomes a predictor."""

from __future__ import annotations

import pytest
import torch

from core.detect.predictors import make_predictor
from core.errors import KdmsiError


def test_make_predictor_unknown_method(saved):
    path, info, states = saved
    with pytest.raises(KdmsiError, match="unknown"):
        make_predictor("magic", info, states, path, torch.device("cpu"))


@pytest.mark.parametrize("method", ["kdmsi", "cam"])
def test_make_predictor_outputs_probabilities(saved, method):
    path, info, states = saved
    predictor = make_predictor(method, info, states, path, torch.device("cpu"), scales=(1.0,))
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 48, 40, generator=gen), torch.rand(2, 3, 48, 40, generator=gen)
    with torch.inference_mode():
        prob = predictor(a, b)
    assert prob.shape == (2, 1, 48, 40)
    assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0


def pair_batch(shape=(2, 3, 64, 64)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)


@pytest.mark.parametrize("scales", [(1.0,), (0.5, 1.0, 1.25, 2.0)])
def test_the_student_predictor_is_the_networks_msi_up_to_rounding(saved, scales):
    """Folding batch norms and channels-last change only float rounding, not the map."""
    from core.detect.msi import msi
    from core.models.rebuild import build_network

    path, info, states = saved
    cpu = torch.device("cpu")
    predictor = make_predictor("kdmsi", info, states, path, cpu, scales, len(scales) > 1)
    plain = build_network(info, states, "student", path)
    a, b = pair_batch()
    with torch.inference_mode():
        fast = predictor(a, b)
        reference = msi(plain, a, b, scales=scales, flip=len(scales) > 1)
    assert torch.allclose(fast, reference, atol=1e-4)


def test_the_teacher_predictor_is_the_networks_cam_up_to_rounding(saved):
    from core.detect.msi import cam_probability
    from core.models.rebuild import build_network

    path, info, states = saved
    predictor = make_predictor("cam", info, states, path, torch.device("cpu"))
    plain = build_network(info, states, "teacher", path)
    a, b = pair_batch()
    with torch.inference_mode():
        assert torch.allclose(predictor(a, b), cam_probability(plain, a, b), atol=1e-4)


def test_thresholds_are_chosen_on_the_predictor_detect_runs(saved):
    """The end of training scores tiles with the same predictors as ``kdmsi detect``."""
    from core.train.pipeline import student_predictors

    path, info, states = saved
    cpu = torch.device("cpu")
    multi, single = student_predictors(info, states, path, cpu, None)
    a, b = pair_batch()
    with torch.inference_mode():
        assert torch.equal(multi(a, b), make_predictor("kdmsi", info, states, path, cpu)(a, b))
        one = make_predictor("kdmsi", info, states, path, cpu, (1.0,), False)
        assert torch.equal(single(a, b), one(a, b))
