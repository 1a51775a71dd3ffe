"""How much the benchmark's numbers move when every row uses the graph ``kdmsi detect`` runs.

Before issue 17, the benchmark's tile rows and the thresholds chosen at the end of training ran
the networks as trained (batch norms separate, channels-first); ``kdmsi detect`` ran them with
batch norms folded into the convolutions and channels-last. Both are the same function up to
float rounding. This script takes one benchmark run (its ``model.pt`` and the whole-pair maps it
wrote) and scores the test tiles both ways, on the same model, with the same rules: thresholds by
Otsu on the held-out changed-tagged tiles (tags only), the CAM's on the training tiles.

Usage (after ``kdmsi benchmark ... --seeds 0 --out RUN.json``; the run folder is ``RUN/``)::

    python docs/experiments/unified_predictors.py RUN/seed0 DATA_DIR [DATA_DIR ...]
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.callbacks import Callbacks  # noqa: E402
from core.data.datasets import find_pairs  # noqa: E402
from core.detect.msi import MAX_PIXELS, cam_probability, msi  # noqa: E402
from core.detect.predictors import make_predictor, predict_tiles  # noqa: E402
from core.eval.benchmark import score  # noqa: E402
from core.eval.benchmark_data import load_benchmark_data  # noqa: E402
from core.eval.whole_pair import read_map, tiles_from_maps  # noqa: E402
from core.models.model_file import load_model  # noqa: E402
from core.models.rebuild import build_network  # noqa: E402
from core.train.pipeline import split_tags  # noqa: E402
from core.train.threshold_choice import otsu_on_changed_tiles  # noqa: E402


def old_graph(info, states, path, device):  # noqa: ANN001, ANN201
    """The predictors as the benchmark and the threshold choice built them before (unfolded)."""
    student = build_network(info, states, "student", path).to(device)
    teacher = build_network(info, states, "teacher", path).to(device)
    return {
        "cam": partial(cam_probability, teacher),
        "single": partial(msi, student, scales=(1.0,), flip=False, max_pixels=MAX_PIXELS),
        "msi": partial(msi, student, max_pixels=MAX_PIXELS),
    }


def new_graph(info, states, path, device):  # noqa: ANN001, ANN201
    """The predictors of :func:`core.detect.predictors.make_predictor` (what detect runs)."""
    build = partial(make_predictor, info=info, states=states, path=path, device=device)
    return {
        "cam": build("cam"),
        "single": build("kdmsi", scales=(1.0,), flip=False),
        "msi": build("kdmsi"),
    }


def main(run_dir: Path, roots: list[Path], seed: int = 0, tile: int = 128) -> dict:
    """Score seed ``seed``'s test tiles with both graphs; return the table as a dict."""
    torch.set_grad_enabled(False)
    device, callbacks = torch.device("cpu"), Callbacks()
    data = load_benchmark_data(roots, tile, None, 0.7, seed, callbacks)
    train = data.tiles.subset(data.train)
    _, held = split_tags(train, 0.2, seed, callbacks)
    test = data.tiles.subset(data.test)
    model = run_dir / "model.pt"
    info, states = load_model(model)
    out: dict = {}
    probs: dict = {}
    for name, graph in (("before", old_graph), ("after", new_graph)):
        predictors = graph(info, states, model, device)
        tagged = {"cam": train, "single": held, "msi": held}  # as the benchmark and training do
        cut = {
            key: otsu_on_changed_tiles(tiles, predict_tiles(predictors[key], tiles, device))
            for key, tiles in tagged.items()
        }
        rows = {}
        for key, predictor in predictors.items():
            prob = predict_tiles(predictor, test, device)
            probs[(name, key)] = prob
            matrix, _ = score(prob, data, cut[key].value)
            rows[key] = {"threshold": cut[key].value, **matrix.as_dict()}
        out[name] = rows
    # The whole-pair maps kdmsi detect wrote in the run are the same for both graphs (detect
    # always ran the folded one); only the threshold it is cut at differs.
    maps = {
        files.key: read_map(run_dir / "detect" / "kdmsi" / f"{root.name}_{files.name}_kdmsi.tif")
        for root in roots
        for files in find_pairs(root)
    }
    prob = tiles_from_maps(data, maps)[data.test]
    for name in ("before", "after"):
        threshold = out[name]["msi"]["threshold"]
        matrix, _ = score(prob, data, threshold)
        out[name]["msi_through_detect"] = {"threshold": threshold, **matrix.as_dict()}
    out["max_abs_difference"] = {
        key: float(np.abs(probs[("before", key)] - probs[("after", key)]).max())
        for key in ("cam", "single", "msi")
    }
    return out


if __name__ == "__main__":
    result = main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
    print(json.dumps(result, indent=2, default=float))
