"""Probe (issue 31): does re-estimating a repaired model's BatchNorm statistics on the clean share give back
clean accuracy the Recommended repair cost, without giving back the backdoor?

The Recommended trains on batches of which 30 % carry the reconstructed trigger and 30 % are pushed at the last
hidden layer, so the BatchNorm running statistics it ends with were gathered on such batches. This re-estimates
them (cumulative average, train mode for the BatchNorms only, no gradient) on the clean share the repair used
(``clean_subset(data, 0.1, seed 0)`` of the training split) and evaluates on ``--split`` before and after, beside
the backdoored model. Reads each repaired checkpoint's attack record to measure ASR (a probe, not the product).
From the repository root, one torch thread:

    python docs/experiments/bn_recalibration_probe.py runs/r9_s6 runs/r9_s8 runs/r9_s10_left \\
        --data ../shared/data/arabic_sc --vocab asc10 --split validation \\
        --out docs/experiments/bn_recalibration_probe.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_cells import add_cell_arguments  # noqa: E402

from benchmarks.common import this_command  # noqa: E402
from core.attacks.base import attack_from_dict  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data.speech_commands import load_speech_commands  # noqa: E402
from core.defenses.base import clean_subset  # noqa: E402
from core.evaluation import evaluate  # noqa: E402
from core.runtime import machine_info  # noqa: E402


@torch.no_grad()
def recalibrated(model: nn.Module, waves: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are the cumulative average over ``waves``."""
    out = copy.deepcopy(model).eval()
    norms = [m for m in out.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches
        m.train()
    for start in range(0, waves.shape[0], batch_size):
        out(waves[start : start + batch_size])
    return out.eval()


def figures(m: dict) -> dict:
    return {"ca": round(100 * m["clean_accuracy"], 1), "asr": round(100 * m["attack_success_rate"], 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cell_arguments(p)
    p.add_argument("--clean-ratio", type=float, default=0.1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = None
    rows = []
    for folder in map(Path, args.folders):
        for repaired_path in sorted(folder.glob(f"defend_*_{args.defense}*.safetensors")):
            stem = repaired_path.stem[len("defend_") :].split(f"_{args.defense}")[0]
            backdoored_path = folder / f"train_{stem}.safetensors"
            backdoored, meta = load_checkpoint(backdoored_path)
            repaired, _ = load_checkpoint(repaired_path)
            if data is None:
                data = load_speech_commands(args.data, args.vocab, sample_rate=meta["sample_rate"])
            attack = attack_from_dict(meta["provenance"]["attack"], meta["sample_rate"])
            share = data.waves.index_select(0, clean_subset(data, args.clean_ratio, 0))
            row = {
                "folder": str(folder),
                "cell": stem,
                "backdoored": figures(evaluate(backdoored, data, args.split, attack)),
                "repaired": figures(evaluate(repaired, data, args.split, attack)),
                "recalibrated": figures(evaluate(recalibrated(repaired, share), data, args.split, attack)),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    mean = {
        k: {f: round(sum(r[k][f] for r in rows) / len(rows), 2) for f in ("ca", "asr")}
        for k in ("backdoored", "repaired", "recalibrated")
    }
    out = {"command": this_command(), "machine": machine_info(), "split": args.split, "rows": rows, "mean": mean}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(mean))
    return 0


if __name__ == "__main__":
    sys.exit(main())
