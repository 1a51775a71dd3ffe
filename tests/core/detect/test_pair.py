"""Tests of change detection with a model file over a whole pair (random ResNet-18 networks)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from osgeo import gdal

from core.callbacks import Callbacks
from core.data.magnitude import magnitude, pair_cue
from core.detect.affinity import refine
from core.detect.cva import run_cva
from core.detect.fusion import cva_share, fuse
from core.detect.msi import cam_probability, msi
from core.detect.pair import CVA_PASS_SHARE, detect_with_model
from core.detect.params import METHOD_NAMES, DetectParams
from core.errors import KdmsiError
from core.io.rasters import RasterPair
from core.io.stretch import compute_stretch
from core.io.windows import Window
from core.models.model_file import AFFINITY_ROUNDS, ModelInfo, load_model, save_model
from core.models.teacher_student import CamConfig, TeacherStudent

gdal.UseExceptions()
# exact, and one 128 px window holds the whole 90 x 70 pair (the model's tile is 32 px)
SINGLE = DetectParams(scales=(1.0,), flip=False, device="cpu", precision="fp32", window=128)


@pytest.fixture(scope="module")
def networks() -> TeacherStudent:
    torch.manual_seed(0)
    return TeacherStudent(CamConfig(backbone="resnet18", pretrained=False)).eval()


@pytest.fixture(scope="module")
def model(networks, tmp_path_factory):
    """A model file trained on bands 4, 3, 2; thresholds 0.41 (MSI) and 0.37 (single scale)."""
    path = tmp_path_factory.mktemp("model") / "model.pt"
    info = ModelInfo(
        "resnet18", "minus", "cat", 16, [4, 3, 2], 32, threshold=0.41, threshold_single=0.37
    )
    save_model(
        path,
        info,
        {"student": networks.student.state_dict(), "teacher": networks.teacher.state_dict()},
    )
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory, write_raster, scene):
    folder = tmp_path_factory.mktemp("pair")
    before = write_raster(folder / "a.tif", scene(90, 70, bands=4, seed=1))
    after = write_raster(folder / "b.tif", scene(90, 70, bands=4, seed=2))
    return before, after


M = 0  # the student and the teacher see no context beyond their windows


def whole_pair(before, after, bands, align: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The stretched pair as one batch as the tiled prediction sees it: reflected by the margin,
    and further at the bottom and right up to a multiple of ``align``."""
    with RasterPair.open(before, after, bands) as pair:
        stretch = compute_stretch(pair)
        data = pair.read(Window(0, 0, pair.grid.width, pair.grid.height))
        a, b = stretch.before.apply(data.before), stretch.after.apply(data.after)
    grow = [-(-(n + 2 * M) // align) * align - n - M for n in a.shape[1:]]
    pad = ((0, 0), (M, grow[0]), (M, grow[1]))
    a, b = np.pad(a, pad, mode="reflect"), np.pad(b, pad, mode="reflect")
    return torch.from_numpy(a[None]), torch.from_numpy(b[None])


def read(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def test_single_scale_kdmsi_equals_the_student_on_the_whole_pair(networks, model, pair, tmp_path):
    out = tmp_path / "p.tif"
    threshold = detect_with_model(*pair, model, out, SINGLE)
    assert threshold == pytest.approx(0.37)
    a, b = whole_pair(*pair, (4, 3, 2))
    with torch.inference_mode():
        expected = msi(networks.student, a, b, scales=(1.0,), flip=False)[
            0, 0, M : M + 70, M : M + 90
        ]
    got = read(out)
    assert got.shape == (70, 90)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
    ds, src = gdal.Open(str(out)), gdal.Open(str(pair[0]))
    assert ds.GetGeoTransform() == src.GetGeoTransform()
    assert ds.GetSpatialRef().IsSame(src.GetSpatialRef())
    metadata = ds.GetMetadata()
    assert metadata["kdmsi_method"] == "kdmsi"
    assert metadata["kdmsi_network"] == "student"
    assert float(metadata["kdmsi_threshold"]) == pytest.approx(0.37)
    assert metadata["kdmsi_scales"] == "1"
    assert metadata["kdmsi_model"] == str(model.resolve())


def test_cam_method_uses_the_teacher(networks, model, pair, tmp_path):
    out = tmp_path / "cam.tif"
    detect_with_model(*pair, model, out, replace(SINGLE, method="cam"))
    a, b = whole_pair(*pair, (4, 3, 2))
    with torch.inference_mode():
        expected = cam_probability(networks.teacher, a, b)[0, 0, M : M + 70, M : M + 90].numpy()
    np.testing.assert_allclose(read(out), expected, atol=1e-4)
    assert gdal.Open(str(out)).GetMetadata()["kdmsi_network"] == "teacher"


@pytest.mark.parametrize(
    ("method", "margin"), [("kdmsi", 0), ("kdmsi-cva", 0), ("cam", 0), ("kdmsi-refined", 32)]
)
def test_windows_default_to_the_training_tile(method, margin):
    tiling = DetectParams(method).tiling(128)
    assert (tiling.window, tiling.overlap, tiling.margin) == (128, 32, margin)
    assert tiling.align == (64 if method in ("kdmsi", "kdmsi-cva") else 16)
    wider = DetectParams(method, window=512, scales=(1.0,)).tiling(128)
    assert (wider.window, wider.overlap, wider.margin, wider.align) == (512, 128, margin, 16)


def test_msi_over_several_windows_stays_in_unit_range(model, pair, tmp_path):
    out = tmp_path / "msi.tif"
    params = DetectParams(scales=(0.5, 1.0), flip=True, device="cpu", window=48, batch_size=3)
    detect_with_model(*pair, model, out, params)
    got = read(out)
    assert got.shape == (70, 90)
    assert np.isfinite(got).all() and got.min() >= 0.0 and got.max() <= 1.0
    assert gdal.Open(str(out)).GetMetadata()["kdmsi_scales"] == "0.5,1"


def test_model_bands_are_used_unless_bands_are_given(model, pair, tmp_path):
    default, chosen, other = tmp_path / "d.tif", tmp_path / "c.tif", tmp_path / "o.tif"
    detect_with_model(*pair, model, default, SINGLE)
    detect_with_model(*pair, model, chosen, SINGLE, bands=(4, 3, 2))
    detect_with_model(*pair, model, other, SINGLE, bands=(1, 2, 3))
    assert np.array_equal(read(default), read(chosen))
    assert not np.allclose(read(default), read(other))


def test_wrong_band_count_is_a_user_error(model, pair, tmp_path):
    with pytest.raises(KdmsiError, match=r"trained on 3 band\(s\)") as err:
        detect_with_model(*pair, model, tmp_path / "p.tif", SINGLE, bands=(1, 2))
    assert str(model) in str(err.value)
    assert not (tmp_path / "p.tif").exists()


def test_refined_method_without_refined_network(model, pair, tmp_path):
    params = DetectParams(method="kdmsi-refined", device="cpu")
    with pytest.raises(KdmsiError, match="no refined network"):
        detect_with_model(*pair, model, tmp_path / "p.tif", params)
    assert not (tmp_path / "p.tif").exists()


def test_existing_output_needs_overwrite(model, pair, tmp_path):
    out = tmp_path / "p.tif"
    detect_with_model(*pair, model, out, SINGLE)
    with pytest.raises(KdmsiError, match="already exists"):
        detect_with_model(*pair, model, out, SINGLE)
    detect_with_model(*pair, model, out, SINGLE, overwrite=True)
    assert read(out).shape == (70, 90)


def test_auto_method_runs_the_refined_network_when_the_model_has_one(networks, pair, tmp_path):
    from core.models.refinement_net import ChangeSegNet, SegNetConfig

    torch.manual_seed(1)
    refined = ChangeSegNet(SegNetConfig(backbone="resnet18", in_channels=3, pretrained=False))
    states = {"student": networks.student.state_dict(), "teacher": networks.teacher.state_dict()}
    plain = tmp_path / "plain.pt"
    info = ModelInfo("resnet18", "minus", "cat", 16, [4, 3, 2], 32, 0.41, 0.37)
    save_model(plain, info, states)
    with_refined = tmp_path / "refined.pt"
    save_model(
        with_refined,
        replace(info, refined_output_stride=16),
        {**states, "refined": refined.eval().state_dict()},
    )
    auto = replace(SINGLE, method="auto")
    assert auto == DetectParams(
        scales=(1.0,), flip=False, device="cpu", precision="fp32", window=128
    )
    for model, method, threshold in ((plain, "kdmsi", 0.37), (with_refined, "kdmsi-refined", 0.5)):
        out = tmp_path / f"{model.stem}.tif"
        assert detect_with_model(*pair, model, out, auto) == pytest.approx(threshold)
        assert gdal.Open(str(out)).GetMetadataItem("kdmsi_method") == method
        explicit = tmp_path / f"{model.stem}-explicit.tif"
        detect_with_model(*pair, model, explicit, replace(auto, method=method))
        np.testing.assert_array_equal(read(out), read(explicit))


def box_mean(image: np.ndarray, window: int) -> np.ndarray:
    """Mean over each pixel's ``window`` x ``window`` neighbourhood within the image."""
    pad = window // 2
    padded = np.pad(image, pad)
    counts = np.pad(np.ones_like(image), pad)
    total, count = np.zeros_like(image), np.zeros_like(image)
    for dr in range(window):
        for dc in range(window):
            total += padded[dr : dr + image.shape[0], dc : dc + image.shape[1]]
            count += counts[dr : dr + image.shape[0], dc : dc + image.shape[1]]
    return total / count


def with_rounds(model, rounds: int, tmp_path):
    """A copy of ``model`` whose combined map is refined ``rounds`` times."""
    info, states = load_model(model)
    assert (info.cva_window, info.affinity_rounds) == (5, AFFINITY_ROUNDS)  # written by this code
    path = tmp_path / f"rounds{rounds}.pt"
    save_model(path, replace(info, affinity_rounds=rounds), states)
    return path


def test_kdmsi_cva_combines_the_student_map_with_the_cva_map(model, pair, tmp_path):
    fused, student, cva = (tmp_path / f"{name}.tif" for name in ("fused", "student", "cva"))
    fused_params = replace(SINGLE, method="kdmsi-cva")
    plain = with_rounds(model, 0, tmp_path)
    detect_with_model(*pair, plain, fused, fused_params)
    detect_with_model(*pair, plain, student, SINGLE)
    with RasterPair.open(*pair, (4, 3, 2)) as opened:
        measured = run_cva(opened, cva, tmp_path / "cva_mask.tif").threshold
        stretch = compute_stretch(opened)
        data = opened.read(Window(0, 0, 90, 70))
    share = box_mean(magnitude(data.before, data.after, stretch), 5) / (2 * measured)
    # one window holds the whole pair, so the combination is exact pixel by pixel, except on the
    # last rows and columns, whose neighbourhoods hold the reflected pixels that grow the window
    expected = np.sqrt(read(student) * np.clip(share, 0, 1))
    np.testing.assert_allclose(read(fused)[:-2, :-2], expected[:-2, :-2], atol=1e-5)
    np.testing.assert_allclose(read(fused), expected, atol=0.05)
    stored = gdal.Open(str(fused)).GetMetadata()
    assert stored["kdmsi_method"] == "kdmsi-cva" and stored["kdmsi_network"] == "student"
    assert float(stored["kdmsi_cva_threshold"]) == pytest.approx(measured, rel=1e-5)
    assert stored["kdmsi_cva_window"] == "5" and stored["kdmsi_affinity_rounds"] == "0"
    given = tmp_path / "given.tif"  # a threshold in the parameters is used as it is
    detect_with_model(*pair, plain, given, replace(fused_params, pair_cva_threshold=2 * measured))
    assert read(given).mean() < read(fused).mean()


def test_detect_divides_the_student_map_by_the_flat_field_of_its_scales(model, pair, tmp_path):
    plain = with_rounds(model, 0, tmp_path)
    info, states = load_model(plain)
    assert not info.flat_field  # the fixture's file: the undivided map
    flat = tmp_path / "flat.pt"  # MSI's field 4, single scale's 2: fused = sqrt(s / 2 * cva)
    fields = replace(info, flat_field=[4.0] * 32**2, flat_field_single=[2.0] * 32**2)
    save_model(flat, fields, states)
    flattened = tmp_path / "flattened.pt"  # since session 22 the student's own map is divided too
    save_model(flattened, replace(fields, student_flattened=True), states)
    maps = {}
    runs = {"plain": (plain, "kdmsi-cva"), "flat": (flat, "kdmsi-cva"),
            "student": (plain, "kdmsi"), "flat student": (flat, "kdmsi"),
            "flattened student": (flattened, "kdmsi"),
            "flattened student, torch": (flattened, "kdmsi")}  # fmt: skip
    said: list[str] = []
    for name, (path, method) in runs.items():
        callbacks = Callbacks(log=lambda _level, message, n=name: said.append(f"{n}: {message}"))
        engine = "torch" if name.endswith("torch") else SINGLE.engine  # float32: ONNX if there
        params = replace(SINGLE, method=method, engine=engine)
        detect_with_model(*pair, path, tmp_path / f"{name}.tif", params, callbacks=callbacks)
        maps[name] = read(tmp_path / f"{name}.tif")
    evens = [m.split(": ")[0] for m in said if "divided by its average over the tagged" in m]
    assert evens == ["flat", "flattened student", "flattened student, torch"]  # once per run
    assert sum("before it is combined" in m for m in said) == 1
    np.testing.assert_allclose(maps["flat"], maps["plain"] / np.sqrt(2.0), atol=1e-5)
    stored = {name: gdal.Open(str(tmp_path / f"{name}.tif")).GetMetadata() for name in runs}
    assert (
        stored["flat"]["kdmsi_flat_field"] == "1" and stored["plain"]["kdmsi_flat_field"] == "none"
    )
    np.testing.assert_array_equal(maps["flat student"], maps["student"])  # kdmsi: as it was
    assert stored["flat student"]["kdmsi_flat_field"] == "none"
    for name in ("flattened student", "flattened student, torch"):  # both engines divide
        np.testing.assert_allclose(maps[name], maps["student"] / 2.0, atol=1e-5)
        assert stored[name]["kdmsi_flat_field"] == "1"
    assert stored["flattened student, torch"]["kdmsi_engine"] == "torch"


def test_kdmsi_cva_standardises_one_band_pairs_for_models_that_chose_so(
    tmp_path, write_raster, scene
):
    torch.manual_seed(0)
    config = CamConfig(backbone="resnet18", pretrained=False, in_channels=1)
    networks = TeacherStudent(config).eval()
    states = {"student": networks.student.state_dict(), "teacher": networks.teacher.state_dict()}
    new, old = tmp_path / "new.pt", tmp_path / "old.pt"
    info = ModelInfo("resnet18", "minus", "cat", 16, [1], 32)
    save_model(new, info, states)
    save_model(old, replace(info, cva_standardised=False), states)  # a file of session 19
    before = write_raster(tmp_path / "a.tif", scene(90, 70, bands=1, seed=1))
    after = write_raster(tmp_path / "b.tif", scene(90, 70, bands=1, seed=2))
    params = replace(SINGLE, method="kdmsi-cva")
    maps = {name: tmp_path / f"{name}.tif" for name in ("new", "old", "student")}
    detect_with_model(before, after, new, maps["new"], params)
    detect_with_model(before, after, old, maps["old"], params)
    detect_with_model(before, after, new, maps["student"], SINGLE)
    with RasterPair.open(before, after) as opened:
        stretch = compute_stretch(opened)
        cue = pair_cue(opened, stretch)
        data = opened.read(Window(0, 0, 90, 70))
    z = magnitude(data.before, data.after, stretch, cue.standard)
    share = np.clip(box_mean(z, 5) / (2 * cue.standard_threshold), 0, 1)
    expected = np.sqrt(read(maps["student"]) * share)
    np.testing.assert_allclose(read(maps["new"])[:-2, :-2], expected[:-2, :-2], atol=1e-5)
    stored = gdal.Open(str(maps["new"])).GetMetadata()
    assert float(stored["kdmsi_cva_threshold"]) == pytest.approx(cue.standard_threshold, rel=1e-5)
    assert [float(v) for v in stored["kdmsi_cva_standard"].split(",")] == pytest.approx(
        cue.standard.values, rel=1e-5
    )
    stored = gdal.Open(str(maps["old"])).GetMetadata()  # the difference its thresholds know
    assert float(stored["kdmsi_cva_threshold"]) == pytest.approx(cue.threshold, rel=1e-5)
    assert stored["kdmsi_cva_standard"] == "none"
    assert np.abs(read(maps["new"]) - read(maps["old"])).max() > 0.01


def test_kdmsi_cva_refines_each_window_with_its_colours(networks, model, pair, tmp_path):
    refined, plain = tmp_path / "refined.tif", tmp_path / "plain.tif"
    params = replace(SINGLE, method="kdmsi-cva")
    detect_with_model(*pair, with_rounds(model, 10, tmp_path), refined, params)
    detect_with_model(*pair, with_rounds(model, 0, tmp_path), plain, params)
    threshold = float(gdal.Open(str(refined)).GetMetadata()["kdmsi_cva_threshold"])
    a, b = whole_pair(*pair, (4, 3, 2))  # the one window detect predicts
    with torch.inference_mode():
        combined = fuse(msi(networks.student, a, b, (1.0,), False), cva_share(a, b, threshold, 5))
        expected = refine(combined, torch.cat([a, b], dim=1), 10)[0, 0, :70, :90].numpy()
    np.testing.assert_allclose(read(refined), expected, atol=1e-4)
    assert np.abs(read(refined) - read(plain)).mean() > 1e-3  # the refinement did something
    assert gdal.Open(str(refined)).GetMetadata()["kdmsi_affinity_rounds"] == "10"


def test_kdmsi_cva_progress_runs_once_from_0_to_1(model, pair, tmp_path):
    # the pass that measures the pair's CVA threshold is the first few percent, not its own 0-100 %
    seen: list[float] = []
    callbacks = Callbacks(progress=lambda fraction, message: seen.append(fraction))
    detect_with_model(*pair, model, tmp_path / "fused.tif", replace(SINGLE, method="kdmsi-cva"),
                      callbacks=callbacks)  # fmt: skip
    assert seen and all(b >= a for a, b in zip(seen, seen[1:]))
    assert 0 < seen[0] <= CVA_PASS_SHARE and seen[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("chosen", ["cam", "cva", "kdmsi-cva"])
def test_auto_method_runs_the_map_chosen_on_held_out_tags(networks, pair, tmp_path, chosen):
    states = {"student": networks.student.state_dict(), "teacher": networks.teacher.state_dict()}
    info = ModelInfo(
        "resnet18", "minus", "cat", 16, [4, 3, 2], 32, 0.41, 0.37, threshold_cam=0.3,
        threshold_fused=0.2, threshold_fused_single=0.25,
    )  # fmt: skip
    leader = "cva" if chosen == "kdmsi-cva" else None  # the map that ranked the tags better
    choice = {"method": chosen, "reliable": False, "reason": f"{chosen} ranks them best"}
    choice["leader"] = leader
    model = tmp_path / "chosen.pt"
    save_model(model, replace(info, method_choice=choice), states)
    messages = []
    callbacks = Callbacks(log=lambda level, message: messages.append((level, message)))
    auto = replace(SINGLE, method="auto")
    out, explicit = tmp_path / "auto.tif", tmp_path / "explicit.tif"
    threshold = detect_with_model(*pair, model, out, auto, callbacks=callbacks)
    assert threshold == pytest.approx({"cam": 0.3, "cva": 0.5, "kdmsi-cva": 0.25}[chosen])
    if chosen == "cva":
        with RasterPair.open(*pair, (4, 3, 2)) as opened:
            run_cva(opened, explicit, tmp_path / "explicit_mask.tif")
        assert (tmp_path / "auto_mask.tif").exists()
    else:
        detect_with_model(*pair, model, explicit, replace(auto, method=chosen))
    np.testing.assert_array_equal(read(out), read(explicit))
    name = f"{METHOD_NAMES[chosen]} ({chosen})"
    assert ("info", f"Detect runs {name}, because {chosen} ranks them best.") in messages
    assert any(level == "warning" and "unreliable" in m for level, m in messages)
    named = [m for level, m in messages if "run detect with --method cva to compare" in m]
    assert len(named) == (1 if leader else 0)


def test_a_model_from_a_canceled_training_is_flagged(networks, pair, tmp_path):
    states = {"student": networks.student.state_dict(), "teacher": networks.teacher.state_dict()}
    info = ModelInfo("resnet18", "minus", "cat", 16, [4, 3, 2], 32, 0.41, 0.37)
    for name, rule in (("canceled", info.threshold_rule), ("finished", "Otsu on 4 tiles")):
        model = tmp_path / f"{name}.pt"
        save_model(model, replace(info, threshold_rule=rule), states)
        messages: list[tuple[str, str]] = []
        callbacks = Callbacks(
            log=lambda level, message, into=messages: into.append((level, message))
        )
        detect_with_model(*pair, model, tmp_path / f"{name}.tif", SINGLE, callbacks=callbacks)
        warned = any(level == "warning" and "did not finish" in m for level, m in messages)
        assert warned == (name == "canceled")


def test_detect_reads_the_model_file_once(networks, pair, tmp_path, monkeypatch):
    """``auto`` resolving to ``kdmsi-cva`` used to read the 27 MB file five times per pair."""
    states = {"student": networks.student.state_dict(), "teacher": networks.teacher.state_dict()}
    info = ModelInfo("resnet18", "minus", "cat", 16, [4, 3, 2], 32, 0.41, 0.37,
                     threshold_fused=0.2, threshold_fused_single=0.25)  # fmt: skip
    model = tmp_path / "fused.pt"
    save_model(model, replace(info, method_choice={"method": "kdmsi-cva"}), states)
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    auto = replace(SINGLE, method="auto", engine="torch")
    assert detect_with_model(*pair, model, tmp_path / "p.tif", auto) == pytest.approx(0.25)
    assert reads == [model]
