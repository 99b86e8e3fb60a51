"""Probe (issue 31, issue 33): is a fresh scan of a part-way model a trigger-free signal of removal?

interpolation_probe.md found the ResNet BadNets repair's backdoor gone half-way between the backdoored weights
and the repair's, while the others' falls to the end, and that the latent push's reach (which the repair trains
against) cannot tell them apart. A scan is a signal the repair did not train on: this scans, with the product's
scan (default domains, seed 0, the 10 % clean share), the models at ``theta0 + lam (theta_rep - theta0)`` for
the given cells and ``lam`` values, and records the verdict, the pooled index of the class the repair pushed
toward and the true ASR there (from interpolation_probe.json). From the repository root, one torch thread:

    python docs/experiments/interpolated_rescan.py --data ../shared/data/arabic_sc \\
        --cells runs/r10_resnet_val/resnet_badnets --lams 0.5 --out docs/experiments/interpolated_rescan_resnet.json
    python docs/experiments/interpolated_rescan.py --data ../shared/data/arabic_sc \\
        --cells runs/r9_s6/smallcnn_blend runs/r9_s10_left/smallcnn_blend --lams 0.5,1.0 \\
        --out docs/experiments/interpolated_rescan_smallcnn.json

(run side by side, one per core; an existing ``--out`` is added to.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from interpolation_probe import between  # noqa: E402

from benchmarks.common import this_command  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data.speech_commands import load_speech_commands  # noqa: E402
from core.runtime import machine_info  # noqa: E402
from core.scan import ScanConfig, scan  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--vocab", default="asc10")
    p.add_argument("--cells", nargs="+", required=True, help="<work folder>/<model>_<attack>")
    p.add_argument("--defense", default="gnft@recommended")
    p.add_argument("--lams", default="0.5")
    p.add_argument("--probe", default="docs/experiments/interpolation_probe.json", help="for the true ASR")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    curves = {(r["folder"], r["cell"]): r for r in json.loads(Path(args.probe).read_text())["rows"]}
    earlier = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {"rows": [], "commands": []}
    rows, data = list(earlier["rows"]), None
    for cell in args.cells:
        folder, stem = str(Path(cell).parent), Path(cell).name
        found = [*Path(folder).glob(f"defend_{stem}_{args.defense}.safetensors")]
        found += [*Path(folder).glob(f"defend_{stem}_{args.defense}_seed0.safetensors")]
        backdoored, meta = load_checkpoint(Path(folder) / f"train_{stem}.safetensors")
        repaired, _ = load_checkpoint(found[0])
        if data is None:
            data = load_speech_commands(args.data, args.vocab, sample_rate=meta["sample_rate"])
        curve = curves[(folder, stem)]
        pushed = data.classes.index(curve["pushed_toward"])
        for lam in (float(v) for v in args.lams.split(",")):
            result = scan(between(backdoored, repaired, lam), data, ScanConfig(device="cpu"))
            point = next(q for q in curve["points"] if q["lam"] == lam)
            row = {
                "cell": f"{Path(folder).name}/{stem}",
                "lam": lam,
                "true_ca": point["ca"],
                "true_asr": point["asr"],
                "flagged": result.backdoored,
                "suspected_target": result.suspected_target,
                "confidence": result.confidence,
                "pushed_toward": curve["pushed_toward"],
                "pooled_of_pushed": result.pooled[pushed],
                "pooled_rank_of_pushed": sorted(range(len(data.classes)), key=lambda c: -result.pooled[c]).index(pushed)
                + 1,
                "max_per_domain": {d: max(v["anomaly_index"]) for d, v in result.domains.items()},
                "seconds": round(result.seconds, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = {"commands": [*earlier["commands"], this_command()], "machine": machine_info(), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
