"""Pack the benchmark's pooled LEVIR + WHU 128 px tiles and the seed 0 / 1 / 2 splits into data.npz.

Runs where GDAL is (this machine); the GPU machine has no GDAL, so it reads the tiles from here.
Usage: python docs/device/pack_tiles.py [DATA_DIR]   (default: ../shared/data beside the repo)
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from core.callbacks import Callbacks  # noqa: E402
from core.eval.benchmark_data import load_benchmark_data  # noqa: E402

data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data"
roots = [data_dir / "levir_cd_full_scm", data_dir / "whu_cd_scm"]
out, ref = {}, None
for seed in (0, 1, 2):
    d = load_benchmark_data(roots, 128, None, 0.7, seed, Callbacks())
    if ref is None:
        ref = d
        out.update(
            before=d.tiles.before,
            after=d.tiles.after,
            valid=d.tiles.valid,
            labels=d.tiles.labels,
            names=np.array(d.tiles.names),
            truth=d.truth,
        )
    else:  # the tiles are the same for every seed; only the split differs
        assert np.array_equal(ref.tiles.before, d.tiles.before)
        assert np.array_equal(ref.truth, d.truth)
    out[f"train{seed}"], out[f"test{seed}"] = d.train, d.test
    print(seed, d.summary)
np.savez_compressed(HERE / "data.npz", **out)
