"""GPU machine, run 2: arm A (20 epochs) against arm B (60 epochs) over more training seeds.

Usage (from this folder; see README.md):
    python3 gpu_seeds.py [cuda|cpu] DEADLINE_S        every job at once
    python3 gpu_seeds.py job ARM SPLIT OFF DEVICE     one training, started by the above

Fixed before this run: B becomes the default only if, over nine pairs (splits 0 / 1 / 2 x training
seeds +0 (run 1), +100, +200; the held-out fifth stays the split's own), the training tiles' MSI
F1 rises by >= 0.01 on average and on at least 7 of the 9 pairs. Test tiles: measured, never used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gpu_run as g

OFFS = (100, 200)


def launch(device: str) -> dict[tuple[str, int, int], subprocess.Popen]:
    """One process per arm, split and training-seed offset, one CPU thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = {}
    for arm in ("A", "B"):
        for split in g.SEEDS:
            for off in OFFS:
                work = g.WORK / f"{arm}{split}_{off}"
                work.mkdir(parents=True, exist_ok=True)
                err = (work / "stderr.txt").open("w")
                command = [sys.executable, __file__, "job", arm, str(split), str(off), device]
                procs[(arm, split, off)] = subprocess.Popen(
                    command, env=env, stdout=err, stderr=err
                )
    return procs


def collect(procs: dict[tuple[str, int, int], subprocess.Popen]) -> dict[str, dict]:
    """Kill what still runs, print one line per finished job and return the results."""
    results = {}
    for (arm, split, off), p in procs.items():
        work = g.WORK / f"{arm}{split}_{off}"
        if p.poll() is None:
            p.kill()
            print("killed", arm, split, off)
        elif (work / "result.json").exists():
            r = json.loads((work / "result.json").read_text())
            results[f"{arm}{split}_{off}"] = r
            tr, te = r["rows"]["msi_train"], r["rows"]["msi_test"]
            print(
                f"{arm} split {split} seed +{off}: best epoch {r['best_epoch']} auc "
                f"{r['val_auc']:.3f} thr {r['threshold']:.3f} | MSI train F1 {tr['f1']:.3f} | "
                f"MSI test F1 {te['f1']:.3f} (P {te['precision']:.3f} R {te['recall']:.3f}) best "
                f"{te['best_f1']:.3f} | single test {r['rows']['single_test']['f1']:.3f} | "
                f"{r['train_seconds']:.0f}s",
                flush=True,
            )
        else:
            print("FAILED", arm, split, off, (work / "stderr.txt").read_text()[-1500:])
    return results


def main() -> None:
    """The orchestrator, or one job."""
    if sys.argv[1:2] == ["job"]:
        g.job(sys.argv[2], int(sys.argv[3]), sys.argv[5], int(sys.argv[4]))
        return
    device, deadline = sys.argv[1], float(sys.argv[2])
    out = Path(os.environ.get("OUT", "/tmp/gpu_out"))
    out.mkdir(parents=True, exist_ok=True)
    procs = launch(device)
    start = time.time()
    while time.time() - start < deadline and any(p.poll() is None for p in procs.values()):
        time.sleep(15)
        done = sum(p.poll() is not None for p in procs.values())
        print(f"{time.time() - start:5.0f}s {done}/{len(procs)} done", flush=True)
    (out / "seeds.json").write_text(json.dumps(collect(procs), indent=1))


if __name__ == "__main__":
    main()
