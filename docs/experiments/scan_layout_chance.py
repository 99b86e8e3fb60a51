"""Summarise ``python -m core.scan`` reports of one model made with other seeds and layouts: per report its
verdict, the classes over the threshold, and which classes the mix domain reached (a size <= 1).

    for s in 0 1 2; do for f in contiguous auto; do
      python -m core.scan --model core/assets/demo_badnets_smallcnn.safetensors \\
        --data ~/.local/share/gnft-workbench/demo/scd10 --out runs/layout/demo_${f}_s$s.json \\
        --memory-format $f --seed $s --threads 1 --quiet
    done; done
    # the ASC-10 ResNets of benchmarks/results/scan_speed.json, seeds 1 and 2: the default path by the command,
    # the plain one (contiguous, BatchNorms run) by docs/experiments/scan_plain.py
    python -m core.scan --model runs/speed_asc10/train_resnet_clean.safetensors --data ../shared/data/arabic_sc \\
        --vocab asc10 --seed 1 --out runs/layout/resnet_clean_auto_s1.json   # and badnets, seed 2
    python docs/experiments/scan_plain.py runs/speed_asc10/train_resnet_clean.safetensors \\
        ../shared/data/arabic_sc 1 runs/layout/resnet_clean_plain_s1.json   # and badnets, seed 2
    python docs/experiments/scan_layout_chance.py runs/layout/*.json \\
        --out docs/experiments/scan_layout_chance.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def summary(report: dict) -> dict:
    """One report's verdict, flagged classes and the mix domain's reached classes."""
    classes, threshold = report["classes"], report["config"]["threshold"]
    mix = report["domains"].get("mix", {})
    return {
        "seed": report["config"]["seed"],
        "model": Path(report.get("model", "")).name,
        "memory_format": report["config"].get("memory_format", "contiguous"),
        "fold_batchnorm": report["config"].get("fold_batchnorm", False),
        "suspected_target": report["suspected_target"],
        "confidence": report["confidence"],
        "flagged": [c for c, a in zip(classes, report["pooled"]) if a > threshold],
        "mix_reached": [c for c, s in zip(classes, mix.get("sizes", [])) if s is not None and s <= 1.0],
        "mix_index_of_reached": [
            round(a, 2) for s, a in zip(mix.get("sizes", []), mix.get("anomaly_index", [])) if s is not None and s <= 1
        ],
        "seconds": report["seconds"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reports", nargs="+")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rows = [{"report": r, **summary(json.loads(Path(r).read_text()))} for r in sorted(args.reports)]
    rows.sort(key=lambda r: (r["model"], r["seed"], r["memory_format"], r["fold_batchnorm"]))
    Path(args.out).write_text(json.dumps({"command": "see the module docstring", "rows": rows}, indent=2) + "\n")
    for r in rows:
        print(r["model"], r["seed"], r["memory_format"], r["fold_batchnorm"], r["suspected_target"], r["confidence"],
              r["flagged"], r["mix_reached"])  # fmt: skip


if __name__ == "__main__":
    main()
