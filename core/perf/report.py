"""The machine description, the JSON file and the markdown section of ``kdmsi perf``.

The section goes into BENCHMARKS.md between ``<!-- perf:start -->`` and ``<!-- perf:end -->``;
a later run replaces it and leaves the rest of the file as it was (the markers are appended to
the end of the file the first time).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

START = "<!-- perf:start -->"
END = "<!-- perf:end -->"


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM and the versions that matter for speed."""
    import numpy
    import torch
    from osgeo import gdal

    cpu, memory_kb = platform.processor() or "unknown", 0
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]  # fmt: skip
        cpu = models[0] if models else cpu
    if meminfo.is_file():
        memory_kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gb": round(memory_kb / 1024**2, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gdal": gdal.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def write_json(path: Path, results: dict) -> None:
    """Write the results (atomically: a partial file renamed)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(path)


def replace_section(path: Path, section: str) -> None:
    """Put ``section`` between the markers of ``path``, replacing what was there."""
    text = path.read_text() if path.is_file() else ""
    block = f"{START}\n{section.rstrip()}\n{END}"
    if START in text and END in text.split(START, 1)[1]:
        before, rest = text.split(START, 1)
        text = before + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


_VARIANT_NAMES = {
    "public": "`detect` default ({precision})",
    "fp32": "`detect --engine torch --precision fp32`",
    "onnx": "`detect --engine onnx` (float32)",
    "naive": "naive loop (float32)",
}


def _inference(r: dict) -> list[str]:
    precision = r.get("precision", "float32")
    lines = [
        f"### Inference throughput ({r['width']} x {r['height']} px pair, CPU, {r['threads']} "
        f"threads, median of {r['repeats']})",
        "",
        "| mode | variant | s | MP/s | vs float32 | vs naive | max abs diff to float32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, m in r["modes"].items():
        for name in r["variants"]:
            diff = m["max_abs_difference_to_fp32"].get(name)
            lines.append(
                f"| {mode} | {_VARIANT_NAMES[name].format(precision=precision)} | "
                f"{_f(m[f'{name}_median_s'])} | {_f(m[f'{name}_mp_per_s'])} | "
                f"{_f(m[f'{name}_speedup_over_fp32'])}x | {_f(m[f'{name}_speedup_over_naive'])}x | "
                f"{'-' if diff is None else f'{diff:.1e}'} |"
            )
    lines += [
        "",
        f"MSI / single-scale cost: {_f(r['msi_over_single_public'])}x on the public path, "
        f"{_f(r['msi_over_single_naive'])}x in the naive loop; the scales' pixel count predicts "
        f"{_f(r['predicted_msi_over_single_scales'])}x, "
        f"{_f(r['predicted_msi_over_single_with_flips'])}x with flips. Naive loop: window "
        f"{r['naive_window']}, overlap {r['naive_overlap']}, margin {r['naive_margin']}; the "
        "public path picks its own windows, so those maps differ along window seams (the torch "
        "and ONNX engines cut the same windows). Times include loading the model and the "
        "pair's stretch.",
    ]
    return lines


def _memory(r: dict) -> list[str]:
    lines = [
        "### Peak memory of `kdmsi detect` (fresh process per run, peak RSS = VmHWM)",
        "",
        "| pair px | method | complete | fraction done | wall s | MP/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        method = row["method"] + (" single-scale" if row["method"] == "kdmsi" else "")
        done = "yes" if row["complete"] else f"no (cancelled at {row['cap_s']:g} s)"
        lines.append(
            f"| {row['size']} | {method} | {done} | {row['fraction_done']:.2f} | "
            f"{row['wall_s']:.0f} | {_f(row['mp_per_s'])} | {row['peak_rss_mb']:.0f} |"
        )
    lines += ["", f"Target: under {r['target_mb']} MB at every size: "
              f"{'met' if r['all_under_target'] else 'NOT met'}."]  # fmt: skip
    return lines + (_overviews(r["overviews"]) if r.get("overviews") else [])


def _overviews(r: dict) -> list[str]:
    lines = [
        "",
        "#### Internal overviews of the probability output (built before the file is renamed)",
        "",
        "| output px | levels | build s | MP/s | file MB | with overviews MB | increase | "
        "peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        levels = ", ".join(str(level) for level in row["levels"]) or "none"
        lines.append(
            f"| {row['size']} | {levels} | {row['build_s']:.1f} | {_f(row['mp_per_s'])} | "
            f"{row['file_mb']:.0f} | {row['with_overviews_mb']:.0f} | "
            f"+{row['increase_mb']:.0f} MB ({row['increase_pct']:.0f} %) | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    return [*lines, "", f"{r['resampling']} resampling, {r['compression']}-compressed, in a "
            "fresh process on a stand-in float32 probability (noisy, nodata border) written "
            "with `GeoTiffWriter`; the complete `detect` runs above include this step in their "
            "wall time."]  # fmt: skip


_VECTOR_HEADER = (
    "| input -> output | kdmsi s | gdal_polygonize.py s | ratio | polygons kdmsi / gdal | "
    "area kdmsi / gdal | peak RSS MB kdmsi / gdal |",
    "|---|---|---|---|---|---|---|",
)


def _vector_row(name: str, v: dict) -> str:
    """One line of a vectorization table."""
    return (
        f"| {name} | {v['kdmsi_median_s']:.2f} | {v['gdal_median_s']:.2f} | "
        f"{v['time_ratio_kdmsi_over_gdal']:.2f} | {v['kdmsi_count']} / {v['gdal_count']} | "
        f"{v['kdmsi_area']:.6g} / {v['gdal_area']:.6g} | "
        f"{v['kdmsi_peak_rss_mb']:.0f} / {v['gdal_peak_rss_mb']:.0f} |"
    )


def _vectorization(r: dict) -> list[str]:
    lines = [
        f"### Vectorization of a {r['mask_px'][0]} x {r['mask_px'][1]} px mask, dense change "
        f"({r['changed_px']} change pixels), median of {r['repeats']}",
        "",
        *_VECTOR_HEADER,
    ]
    cases = [(f"0/1 mask -> .{k}", v) for k, v in r["formats"].items()]
    cases += [(f"float32 probability -> .{k}", r[f"probability_{k}"]) for k in ("shp", "gpkg")
              if f"probability_{k}" in r]  # fmt: skip
    lines += [_vector_row(name, v) for name, v in cases]
    sparse = r.get("sparse")
    if sparse:
        lines += [
            "",
            f"Sparse change: a {sparse['mask_px'][0]} x {sparse['mask_px'][1]} px float32 "
            f"probability with {sparse['blobs']} change blobs ({sparse['changed_px']} change "
            "pixels) against `gdal_polygonize.py` of its mask at 0.5:",
            "",
            *_VECTOR_HEADER,
            *(_vector_row(f"float32 probability -> .{k}", sparse[f"probability_{k}"])
              for k in ("shp", "gpkg")),
        ]  # fmt: skip
        if "plain_shp" in sparse:
            name = "the same, written by another tool (no block maxima) -> .shp"
            lines.append(_vector_row(name, sparse["plain_shp"]))
    return [*lines, "", f"Target ratio: at most {r['target_ratio']} (kdmsi time / GDAL time)."]


def _training(r: dict) -> list[str]:
    lines = [
        "### Training, 1 epoch of `kdmsi train` on CPU (fresh process per run)",
        "",
        "| tile px | batch | precision | steps | tiles/s (steady, from step events) | wall s | "
        "peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['tile']} | {row['batch_size']} | {row.get('precision', 'auto')} | "
            f"{row['steps']} | {_f(row['tiles_per_s_steady'])} | {row['wall_s']:.0f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    return [*lines, "", f"Steady rate: steps after the first {r.get('warmup_steps', 1)}, "
            "the last (partial) step left out."]  # fmt: skip


def _flops(r: dict) -> list[str]:
    scales = ", ".join(f"{s}: {v / 1e9:.1f}" for s, v in r["flops_per_mp_by_scale"].items())
    precision = r.get("precision", "float32")
    lines = [
        "### Arithmetic bound",
        "",
        f"Student GFLOP per megapixel of a {r['window']} px window, by scale: {scales}; single "
        f"scale {r['gflop_per_mp_single']:.1f}, MSI with flips "
        f"{r['gflop_per_mp_msi_with_flips']:.1f} ({r['flop_ratio_msi_over_single']:.2f}x). "
        f"Peak matrix product ({r['threads']} threads): float32 {r['peak_gflops_matmul']:.1f} "
        f"GFLOP/s, {precision} {r.get('peak_gflops_matmul_precision', 0):.1f} GFLOP/s.",
    ]
    for mode in ("single", "msi"):
        for key, name in ((mode, f"`detect` default ({precision})"), (f"{mode}_fp32", "float32")):
            if f"{key}_fraction_of_peak" in r:
                lines.append(
                    f"- {mode}, {name}: {r[f'{key}_achieved_gflops']:.2f} GFLOP/s achieved, "
                    f"{100 * r[f'{key}_fraction_of_peak']:.1f} % of that precision's peak "
                    f"(bound {r[f'{key}_bound_mp_per_s']:.2f} MP/s without tiling overlap)"
                )
    return lines


def markdown(results: dict) -> str:
    """The BENCHMARKS.md section of one run."""
    m = results["machine"]
    lines = [
        "## Performance (`make bench` = `kdmsi perf`)",
        "",
        f"Command: `{results['command']}`. Date {results['date']}, wall time "
        f"{results['wall_s'] / 60:.1f} min. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gb']} GB RAM, torch {m['torch']} ({m['torch_threads']} threads), GDAL "
        f"{m['gdal']}, numpy {m['numpy']}; load average at start "
        f"{m['load_average_at_start'][0]:.1f}"
        " (other jobs on the machine slow every number; ratios come from one run).",
        "Inputs are generated (synthetic 3-band uint8 GeoTIFF pairs, a model of untrained "
        "ImageNet-initialised EfficientNet-Lite0 networks: weights do not change speed).",
    ]
    for key, render in (("inference", _inference), ("memory", _memory),
                        ("vectorization", _vectorization), ("training", _training),
                        ("flops", _flops)):  # fmt: skip
        if results.get(key):
            lines += ["", *render(results[key])]
    for note in results.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"
