"""Probe (issue 31): between the backdoored model and its repair, is there a point that keeps the repair's removal
and more of the clean accuracy? The Recommended costs the ResNet 3-5 points of CA (validation and test); the
cost is in the weights (re-estimating BatchNorm statistics gives nothing back: bn_recalibration_probe.md).

For each repaired cell: every parameter and BatchNorm buffer at ``theta0 + lam * (theta_rep - theta0)``, for
``lam`` in ``--lams``, evaluated on ``--split`` (CA, and ASR with the checkpoint's attack record: a probe, not
the product, which could choose ``lam`` only with what needs no trigger). One such trigger-free candidate is
measured at ``--reach-lams``: the share of the clean share's clips (10 % of the training split, seed 0: the
repair's) that a latent push of the repair's own calibrated radius sends to the class the repair pushed toward,
against the mean and largest share over the other classes. From the repository root, one torch thread:

    python docs/experiments/interpolation_probe.py runs/r10_resnet_val runs/r9_s6 runs/r9_s8 runs/r9_s10_left \\
        --data ../shared/data/arabic_sc --split validation --out docs/experiments/interpolation_probe.json

(``--skip-done`` then adds the cells repaired since, keeping the rows already measured.)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_cells import add_cell_arguments  # noqa: E402

from benchmarks.common import this_command  # noqa: E402
from core.attacks.base import attack_from_dict  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data.speech_commands import load_speech_commands  # noqa: E402
from core.defenses.base import clean_subset, clip_features  # noqa: E402
from core.defenses.latent import LatentAdversary  # noqa: E402
from core.evaluation import evaluate  # noqa: E402
from core.models import split_front_end  # noqa: E402
from core.runtime import machine_info  # noqa: E402


@torch.no_grad()
def between(start: torch.nn.Module, end: torch.nn.Module, lam: float) -> torch.nn.Module:
    """A copy of ``start`` with every float parameter and buffer at ``start + lam * (end - start)``."""
    out = copy.deepcopy(start)
    ends = end.state_dict()
    state = {k: (v + lam * (ends[k] - v)) if v.is_floating_point() else ends[k] for k, v in start.state_dict().items()}
    out.load_state_dict(state)
    return out.eval()


def reaches(model: torch.nn.Module, waves: torch.Tensor, labels: torch.Tensor, radius: float, k: int) -> list[float]:
    """Per class, the share of the clips not of it that a last-layer push of ``radius`` (3 steps) sends there."""
    front, body = split_front_end(model)
    with torch.no_grad():
        x = waves if front is None else clip_features(front, waves, 256)
    out = []
    for c in range(k):
        adversary = LatentAdversary(body, 1.0, 1.0, radius, 3, c, torch.Generator().manual_seed(0))
        try:
            out.append(round(adversary.reach(body, x, labels, radius), 3))
        finally:
            adversary.remove()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_cell_arguments(p)
    p.add_argument("--lams", default="0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.25,1.5,2.0")
    p.add_argument("--reach-lams", default="0,0.3,0.5,0.7,1.0", help="where to measure the push's reach")
    p.add_argument("--skip-done", action="store_true", help="keep --out's rows and measure only cells not in it")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    lams = [float(v) for v in args.lams.split(",")]
    reach_lams = [float(v) for v in args.reach_lams.split(",")] if args.reach_lams else []
    data = None
    earlier = json.loads(Path(args.out).read_text()) if args.skip_done and Path(args.out).exists() else None
    rows = list(earlier["rows"]) if earlier else []
    done = {(r["folder"], r["cell"]) for r in rows}
    for folder in map(Path, args.folders):
        found = [
            *folder.glob(f"defend_*_{args.defense}.safetensors"),
            *folder.glob(f"defend_*_{args.defense}_seed0.safetensors"),
        ]
        for repaired_path in sorted(found):
            stem = repaired_path.stem[len("defend_") :].split(f"_{args.defense}")[0]
            if (str(folder), stem) in done:
                continue
            backdoored, meta = load_checkpoint(folder / f"train_{stem}.safetensors")
            repaired, _ = load_checkpoint(repaired_path)
            if data is None:
                data = load_speech_commands(args.data, args.vocab, sample_rate=meta["sample_rate"])
            attack = attack_from_dict(meta["provenance"]["attack"], meta["sample_rate"])
            latent = json.loads(repaired_path.with_suffix(".json").read_text())["defense_details"]["latent"]
            pushed, radius = latent["target"], latent["radius"]
            share = clean_subset(data, 0.1, 0)
            row = {"folder": str(folder), "cell": stem, "pushed_toward": data.classes[pushed], "points": []}
            for lam in sorted({0.0, *lams, *reach_lams}):
                model = between(backdoored, repaired, lam)
                m = evaluate(model, data, args.split, attack)
                point = {
                    "lam": lam,
                    "ca": round(100 * m["clean_accuracy"], 1),
                    "asr": round(100 * m["attack_success_rate"], 1),
                }
                if lam in reach_lams:
                    per_class = reaches(model, data.waves[share], data.labels[share], radius, len(data.classes))
                    others = [v for c, v in enumerate(per_class) if c != pushed]
                    point["reach_pushed_class"] = per_class[pushed]
                    point["reach_others_mean"] = round(sum(others) / len(others), 3)
                    point["reach_others_max"] = max(others)
                row["points"].append(point)
                print(json.dumps({"cell": f"{folder.name}/{stem}", **point}), flush=True)
            rows.append(row)
    commands = [*(earlier.get("commands", [earlier["command"]]) if earlier else []), this_command()]
    out = {"command": commands[0], "commands": commands, "machine": machine_info(), "split": args.split, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
