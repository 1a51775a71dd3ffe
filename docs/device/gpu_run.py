"""GPU machine, run 1: CUDA check of KD-MSI training + MSI, then a comparison of arms.

Usage (from this folder; see README.md):
    python3 gpu_run.py [cuda|cpu] [deadline_s]   the check, then every arm x seed at once
    python3 gpu_run.py job ARM SEED DEVICE       one training, started by the above

Rule fixed before the run: an arm replaces today's defaults (arm A) if the training tiles' MSI F1
at the model's own tag-chosen threshold rises on every seed (0, 1, 2) and by >= 0.01 on average.
Test tiles are scored for every arm as a measurement; nothing is chosen on them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "stub"), str(HERE / "site"), str(HERE.parents[1])]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import core.train.pipeline as learn  # noqa: E402
from core.callbacks import Callbacks  # noqa: E402
from core.data.tilesets import TileSet  # noqa: E402
from core.detect.predictors import predict_tiles  # noqa: E402
from core.detect.tiled import Predictor  # noqa: E402
from core.eval.metrics import ConfusionMatrix, ThresholdSweep  # noqa: E402
from core.models.model_file import load_model, save_model  # noqa: E402
from core.train.refinement import RefineParams  # noqa: E402
from core.train.trainer import TrainParams  # noqa: E402

ARMS: dict[str, dict[str, Any]] = {
    "A": {"epochs": 20},  # the defaults of the time
    "B": {"epochs": 60},
    "C": {"epochs": 60, "output_stride": 8, "lr": 1e-3},
    "D": {"epochs": 20, "frozen_stages": 0},
    "E": {"epochs": 60, "lr": 1e-3},
}
SEEDS = (0, 1, 2)
WORK = Path("/tmp/gj")
T0 = time.time()
QUICK = os.environ.get("GPU_RUN_QUICK") == "1"  # smoke test: one epoch on 40 tiles
if QUICK:
    ARMS = {k: dict(v, epochs=1) for k, v in ARMS.items()}

Split = tuple[TileSet, TileSet, np.ndarray, np.ndarray]


def load(seed: int) -> Split:
    """Training tiles, test tiles and their pixel truth (scoring only) of split ``seed``."""
    d = np.load(HERE / "data.npz")
    names = [str(n) for n in d["names"]]
    tiles = TileSet(d["before"], d["after"], d["valid"], d["labels"], names, [None] * len(names))
    tr_idx, te_idx = d[f"train{seed}"], d[f"test{seed}"]
    if QUICK:
        tr_idx = np.concatenate([tr_idx[d["labels"][tr_idx] == c][:20] for c in (0, 1)])
        te_idx = te_idx[:16]
    return tiles.subset(tr_idx), tiles.subset(te_idx), d["truth"][tr_idx], d["truth"][te_idx]


def file_log(path: Path) -> Callbacks:
    """Callbacks that append timed log lines to ``path``."""
    fh = path.open("a", buffering=1)
    start = time.time()

    def log(level: str, msg: str) -> None:
        fh.write(f"{time.time() - start:8.2f}s {level}: {msg}\n")

    return Callbacks(log=log)


def scores(
    predictor: Predictor, tiles: TileSet, truth: np.ndarray, thr: float, dev: torch.device
) -> dict[str, float]:
    """Changed-class metrics at ``thr`` and the F1 at the best threshold (ground truth)."""
    prob = predict_tiles(predictor, tiles, dev)
    m = ConfusionMatrix().update(prob >= thr, truth, tiles.valid)
    sweep = ThresholdSweep()
    sweep.update(prob, truth, tiles.valid)
    best_thr, best = sweep.best()
    return dict(m.as_dict(), best_f1=best.f1, best_thr=float(best_thr))


def job(arm: str, seed: int, device: str, off: int = 0) -> None:
    """Train ``arm`` on split ``seed`` and write result.json; ``off`` shifts the training seed.

    With ``off`` the held-out fifth stays the split seed's, as in the benchmark; only the
    initialisation and batch order change.
    """
    dev = torch.device(device)
    work = WORK / (f"{arm}{seed}" if not off else f"{arm}{seed}_{off}")
    work.mkdir(parents=True, exist_ok=True)
    tr, te, t_tr, t_te = load(seed)
    if off:
        split = learn.split_tags
        learn.split_tags = lambda tiles, fraction, _s, cb: split(tiles, fraction, seed, cb)
    params = TrainParams(seed=seed + off, precision="bf16", **ARMS[arm])
    start = time.time()
    res = learn.train_model(
        tr,
        params,
        (1, 2, 3),
        work,
        dev,
        file_log(work / "log.txt"),
        refine_params=RefineParams(epochs=0),
    )
    seconds = time.time() - start
    info, states = load_model(res.model_path)
    multi, single = learn.student_predictors(info, states, res.model_path, dev, torch.bfloat16)
    rows = {}
    for name, pred, thr in (
        ("msi", multi, info.threshold),
        ("single", single, info.threshold_single),
    ):
        rows[f"{name}_train"] = scores(pred, tr, t_tr, thr, dev)
        rows[f"{name}_test"] = scores(pred, te, t_te, thr, dev)
    save_model(work / "student.pt", info, {"student": states["student"]})
    result = {
        "arm": arm,
        "seed": seed,
        "off": off,
        "params": ARMS[arm],
        "train_seconds": seconds,
        "best_epoch": res.best_epoch,
        "val_auc": res.best_auc,
        "threshold": info.threshold,
        "threshold_single": info.threshold_single,
        "rows": rows,
    }
    (work / "result.json").write_text(json.dumps(result, indent=1))


def _timed_predictions(predictor: Predictor, tiles: TileSet, dev: torch.device) -> tuple:
    """Probabilities of ``tiles`` and the seconds of a second, warm pass."""
    predict_tiles(predictor, tiles, dev)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.time()
    prob = predict_tiles(predictor, tiles, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return prob, time.time() - start


def _peak_mib(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0.0


def cuda_check(dev: torch.device, out: Path) -> None:
    """Train 3 epochs at the default precision (float16 + scaling on CUDA), then time MSI."""
    tr, te, _, t_te = load(0)
    work = WORK / "check"
    work.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    start = time.time()

    def log(level: str, msg: str) -> None:
        lines.append(f"{time.time() - start:8.2f}s {level}: {msg}")
        print("  check", lines[-1], flush=True)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    params = TrainParams(epochs=1 if QUICK else 3, seed=0)
    res = learn.train_model(
        tr, params, (1, 2, 3), work, dev, Callbacks(log=log), refine_params=RefineParams(epochs=0)
    )
    check: dict[str, Any] = {
        "train_3_epochs_s": time.time() - start,
        "peak_train_mib": _peak_mib(dev),
    }
    info, states = load_model(res.model_path)
    dtype = torch.float16 if dev.type == "cuda" else None
    multi, single = learn.student_predictors(info, states, res.model_path, dev, dtype)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for name, pred in (("msi", multi), ("single", single)):
        prob, seconds = _timed_predictions(pred, te, dev)
        f1 = ConfusionMatrix().update(prob >= info.threshold, t_te, te.valid).as_dict()["f1"]
        check[f"{name}_s"] = seconds
        print(
            f"  check {name}: {len(te)} test tiles in {seconds:.3f}s ({len(te) / seconds:.1f} "
            f"tiles/s), finite {bool(np.isfinite(prob).all())}, F1 {f1:.3f}",
            flush=True,
        )
    check.update(
        device=str(dev),
        name=torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
        torch=torch.__version__,
        peak_msi_mib=_peak_mib(dev),
        threshold=info.threshold,
        best_epoch=res.best_epoch,
        val_auc=res.best_auc,
        log=lines,
        train_tiles=len(tr),
        test_tiles=len(te),
    )
    (out / "check.json").write_text(json.dumps(check, indent=1))
    print(
        f"CHECK train 3 epochs {check['train_3_epochs_s']:.1f}s peak {check['peak_train_mib']:.0f} "
        f"MiB; MSI {check['msi_s']:.2f}s single {check['single_s']:.2f}s peak "
        f"{check['peak_msi_mib']:.0f} MiB",
        flush=True,
    )


def launch(device: str) -> dict[tuple[str, int], subprocess.Popen]:
    """Start one job process per arm and seed, one CPU thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = {}
    for arm in ARMS:
        for seed in SEEDS:
            work = WORK / f"{arm}{seed}"
            work.mkdir(parents=True, exist_ok=True)
            err = (work / "stderr.txt").open("w")
            procs[(arm, seed)] = subprocess.Popen(
                [sys.executable, __file__, "job", arm, str(seed), device],
                env=env,
                stderr=err,
                stdout=err,
            )
    return procs


def _epochs(work: Path) -> int:
    csv = work / "log.csv"
    return max(0, len(csv.read_text().splitlines()) - 1) if csv.exists() else 0


def wait(procs: dict[tuple[str, int], subprocess.Popen], deadline: float) -> None:
    """Report epochs every 10 s; kill what still runs at ``deadline`` s after the start."""
    while time.time() - T0 < deadline and any(p.poll() is None for p in procs.values()):
        time.sleep(10)
        done = sum(p.poll() is not None for p in procs.values())
        epochs = " ".join(f"{a}{s}:{_epochs(WORK / f'{a}{s}')}" for a, s in procs)
        print(f"{time.time() - T0:6.0f}s: {done}/{len(procs)} done; epochs {epochs}", flush=True)
    for (arm, seed), p in procs.items():
        if p.poll() is None:
            p.kill()
            print(f"killed {arm}{seed} at the deadline", flush=True)
        elif p.returncode:
            print(
                f"FAILED {arm}{seed}: " + (WORK / f"{arm}{seed}" / "stderr.txt").read_text()[-1500:]
            )


def _print_row(arm: str, seed: int, r: dict[str, Any]) -> None:
    tr, te, si = r["rows"]["msi_train"], r["rows"]["msi_test"], r["rows"]["single_test"]
    print(
        f"{arm}   {seed}    {r['params'].get('epochs')}  {r['best_epoch']:7d} {r['val_auc']:.3f} "
        f"{r['threshold']:.3f} | {tr['f1']:.3f}        | {te['f1']:.3f} ({te['precision']:.3f}/"
        f"{te['recall']:.3f}) {te['best_f1']:.3f} | {si['f1']:.3f}          | "
        f"{r['train_seconds']:.0f}"
    )


def verdict(arm: str, results: dict[tuple[str, int], dict]) -> dict[str, Any]:
    """The rule of this run for ``arm`` against arm A (training tiles only)."""
    gains = [
        results[(arm, s)]["rows"]["msi_train"]["f1"] - results[("A", s)]["rows"]["msi_train"]["f1"]
        for s in SEEDS
    ]
    test = [results[(arm, s)]["rows"]["msi_test"]["f1"] for s in SEEDS]
    adopt = bool(min(gains) > 0 and np.mean(gains) >= 0.01)
    print(
        f"rule {arm} vs A: training-tile MSI F1 gains {[round(g, 3) for g in gains]} mean "
        f"{np.mean(gains):+.3f} -> {'ADOPT' if adopt else 'no'}; test MSI F1 mean "
        f"{np.mean(test):.3f}"
    )
    return {
        "gains": gains,
        "mean_gain": float(np.mean(gains)),
        "adopt": adopt,
        "test_mean": float(np.mean(test)),
    }


def summarise(out: Path) -> None:
    """Print the table and the rule's verdicts; write results.json and the best arm's students."""
    results = {}
    for arm in ARMS:
        for seed in SEEDS:
            path = WORK / f"{arm}{seed}" / "result.json"
            if path.exists():
                results[(arm, seed)] = json.loads(path.read_text())
    print(
        "arm seed epochs  best_ep auc   thr   | MSI train F1 | MSI test F1 (P/R) best "
        "| single test F1 | train s"
    )
    for (arm, seed), r in sorted(results.items()):
        _print_row(arm, seed, r)
    verdicts = {
        arm: verdict(arm, results)
        for arm in ARMS
        if arm != "A" and all((a, s) in results for a in (arm, "A") for s in SEEDS)
    }
    payload = {"results": {f"{a}{s}": r for (a, s), r in results.items()}, "verdicts": verdicts}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    if verdicts:  # the students of the arm best by the rule's quantity, to score through detect
        best = max(verdicts, key=lambda a: verdicts[a]["mean_gain"])
        for s in SEEDS:
            src = WORK / f"{best}{s}" / "student.pt"
            if src.exists():
                (out / f"student_{best}{s}.pt").write_bytes(src.read_bytes())
        print(f"brought back the students of arm {best}", flush=True)


def main() -> None:
    """The orchestrator, or one job."""
    if sys.argv[1:2] == ["job"]:
        job(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    deadline = float(sys.argv[2]) if len(sys.argv) > 2 else 450
    out = Path(os.environ.get("OUT", "/tmp/gpu_out"))
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"torch {torch.__version__} numpy {np.__version__} cuda {torch.cuda.is_available()}",
        flush=True,
    )
    cuda_check(torch.device(device), out)
    wait(launch(device), deadline)
    summarise(out)
    print(f"total {time.time() - T0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
