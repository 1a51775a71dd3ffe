"""Tests of core.choices: the typed option sets, the defaults declared once, one validator."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from core.choices import (
    CHOICES,
    DEFAULTS,
    DEFAULTS_FILE,
    LEARNED_METHODS,
    Backbone,
    Engine,
    Fusion,
    LearnedMethod,
    Method,
    Precision,
    TeacherFusion,
    check_choice,
)
from core.errors import KdmsiError


def test_the_literal_types_and_the_shared_file_name_the_same_choices():
    assert get_args(Method) == CHOICES["method"]
    assert get_args(Engine) == CHOICES["engine"]
    assert get_args(Precision) == CHOICES["precision"]
    assert get_args(Backbone) == CHOICES["backbone"]
    assert get_args(Fusion) == CHOICES["fusion"]
    assert get_args(TeacherFusion) == CHOICES["teacher_fusion"]
    assert get_args(LearnedMethod) == LEARNED_METHODS
    assert set(LEARNED_METHODS) < set(CHOICES["method"])


def test_every_default_is_one_of_its_choices():
    for kind in ("method", "engine", "precision", "device", "backbone"):
        assert getattr(DEFAULTS, kind) in CHOICES[kind]
    assert DEFAULTS.teacher_fusion in CHOICES["teacher_fusion"]
    assert DEFAULTS.student_fusion in CHOICES["fusion"]


def test_the_parameter_dataclasses_and_the_command_line_use_the_declared_defaults():
    from core.cli.main import build_parser
    from core.detect.msi import MSI_SCALES
    from core.detect.params import DetectParams
    from core.eval.benchmark import BenchmarkParams
    from core.train.trainer import TrainParams

    train = TrainParams()
    assert (train.epochs, train.lr, train.batch_size) == (
        DEFAULTS.epochs,
        DEFAULTS.lr,
        DEFAULTS.batch_size,
    )
    assert (train.backbone, train.teacher_fusion, train.student_fusion, train.precision) == (
        DEFAULTS.backbone,
        DEFAULTS.teacher_fusion,
        DEFAULTS.student_fusion,
        DEFAULTS.precision,
    )
    detect = DetectParams()
    assert detect.scales == MSI_SCALES == BenchmarkParams().scales == DEFAULTS.scales
    assert (detect.method, detect.engine, detect.device) == ("auto", "auto", "auto")
    parser = build_parser()
    args = parser.parse_args(["train", "--out", "run", "--data", "d"])
    assert (args.epochs, args.lr, args.batch_size, args.tile) == (
        DEFAULTS.epochs,
        DEFAULTS.lr,
        DEFAULTS.batch_size,
        DEFAULTS.tile,
    )
    args = parser.parse_args(["detect", "--before", "a", "--after", "b", "--out", "p.tif"])
    assert tuple(args.scales) == DEFAULTS.scales
    assert (args.method, args.engine, args.precision) == ("auto", "auto", "auto")


def test_the_file_is_plain_json_that_the_plugin_can_read():
    data = json.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))
    assert set(data) >= {"defaults", "choices"}
    assert tuple(data["defaults"]["scales"]) == DEFAULTS.scales


@pytest.mark.parametrize(
    ("value", "kind"),
    [("fp16", "precision"), ("onnx", "engine"), ("cuda:1", "device"), ("cam", "learned_method")],
)
def test_check_choice_accepts_members(value, kind):
    assert check_choice(value, kind) == value


@pytest.mark.parametrize(
    ("value", "kind", "option"),
    [
        ("fp8", "precision", "--precision"),
        ("tpu", "device", "--device"),
        ("cuda:x", "device", "--device"),
        ("cva", "learned_method", "method"),
        ("sum", "fusion", None),
    ],
)
def test_check_choice_names_the_option_and_what_to_use(value, kind, option):
    with pytest.raises(KdmsiError) as error:
        check_choice(value, kind, option)
    message = str(error.value)
    assert repr(value) in message and "use one of" in message
    assert (option or kind) in message
