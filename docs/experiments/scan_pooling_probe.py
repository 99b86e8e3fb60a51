"""Probe (issue 33): would another way of pooling the scan's four domains rank backdoored models above clean ones
better than Stouffer's sum (:func:`core.scan.pooled_index`)?

Reads the models of a ``benchmarks/scan.py`` results file (its rows name each model, its truth and where its
scan report is) and the kept reports in ``--work`` (the first scan, ``<group>_<folder>_<stem>.json`` or the
``core.grid`` scan cell a row names, plus the ``_extra1.json`` scan that added the mix domain), computes
every domain's anomaly indices again from the kept sizes (:func:`benchmarks.scan.reindexed`), and reads each
model with several pooling rules. No scan is run. From the repository root:

    python docs/experiments/scan_pooling_probe.py --results benchmarks/results/scan_mix.json --work runs/scan \\
        --out docs/experiments/scan_pooling_probe.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from benchmarks.scan import auroc, reindexed  # noqa: E402
from core.scan import pooled_index  # noqa: E402

DOMAINS = ("features", "waveform", "spectrum", "mix")
THRESHOLD = 3.0


def columns(idx: dict[str, list[float]]) -> list[list[float]]:
    """Per class, its anomaly index in each of :data:`DOMAINS`."""
    return [list(v) for v in zip(*(idx[d] for d in DOMAINS))]


RULES: dict[str, Callable[[dict[str, list[float]]], list[float]]] = {
    "stouffer (the product's)": lambda idx: pooled_index({d: {"anomaly_index": idx[d]} for d in DOMAINS}),
    "largest domain": lambda idx: [max(v) for v in columns(idx)],
    "mean of the largest two": lambda idx: [sum(sorted(v)[-2:]) / 2 for v in columns(idx)],
    "second largest": lambda idx: [sorted(v)[-2] for v in columns(idx)],
    "(largest + stouffer) / 2": lambda idx: [(max(v) + sum(v) / 2) / 2 for v in columns(idx)],
    "euclidean norm": lambda idx: [math.sqrt(sum(x * x for x in v)) for v in columns(idx)],
}


def load_models(results: Path, work: Path) -> list[dict[str, Any]]:
    """Each row's truth and its four domains' anomaly indices (recomputed from the kept sizes)."""
    models = []
    for row in json.loads(results.read_text())["rows"]:
        path = Path(row["model"])
        stem = f"{row['group']}_{path.parent.name}_{path.stem}"
        source = row.get("source", "")
        cell = source.startswith("core.grid scan cell")
        first = ROOT / source.split("cell ", 1)[1] if cell else work / f"{stem}.json"
        report = json.loads(first.read_text())
        domains = dict(report["domains"])
        extra = work / f"{stem}_extra1.json"
        if extra.is_file():
            domains.update({k: v for k, v in json.loads(extra.read_text())["domains"].items() if k not in domains})
        if not all(d in domains for d in DOMAINS):
            continue
        models.append(
            {
                "group": row["group"],
                "model": row["model"],
                "attack": row["attack"],
                "target": row["target"],
                "classes": report["classes"],
                "idx": {d: reindexed(domains[d])["anomaly_index"] for d in DOMAINS},
            }
        )
    return models


def counts(models: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "backdoored": sum(m["attack"] != "clean" for m in models),
        "clean": sum(m["attack"] == "clean" for m in models),
    }


def read(rule: Callable, models: list[dict[str, Any]]) -> dict[str, Any]:
    """AUROC of the largest pooled value, and at :data:`THRESHOLD`: detection, false positives, right target."""
    scored = []
    for m in models:
        pooled = rule(m["idx"])
        top = max(pooled)
        scored.append((m, top, m["classes"][pooled.index(top)]))
    bad = [s for s in scored if s[0]["attack"] != "clean"]
    clean = [s for s in scored if s[0]["attack"] == "clean"]
    return {
        "auroc": round(auroc([s[1] for s in bad], [s[1] for s in clean]), 3),
        "detection_rate": round(sum(s[1] > THRESHOLD for s in bad) / len(bad), 3),
        "false_positives": f"{sum(s[1] > THRESHOLD for s in clean)}/{len(clean)}",
        "right_target": round(sum(s[1] > THRESHOLD and s[2] == s[0]["target"] for s in bad) / len(bad), 3),
        "top_is_target": round(sum(s[2] == s[0]["target"] for s in bad) / len(bad), 3),
        "clean_largest": round(max(s[1] for s in clean), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="benchmarks/results/scan_mix.json")
    p.add_argument("--work", default="runs/scan")
    p.add_argument("--out", default="docs/experiments/scan_pooling_probe.json")
    args = p.parse_args()
    models = load_models(Path(args.results), Path(args.work))
    subsets = {
        "all": models,
        "asc10": [m for m in models if m["group"].startswith("asc10")],
        "asc10 validation": [m for m in models if m["group"] == "asc10_val"],
        "the others": [m for m in models if m["group"] != "asc10_val"],
    }
    out = {
        "command": this_command(),
        "what": "the scan's four domains (features, waveform, spectrum, mix) read with several pooling rules, "
        f"threshold {THRESHOLD} for the rates",
        "models": {k: counts(v) for k, v in subsets.items()},
        "readings": {k: {name: read(rule, v) for name, rule in RULES.items()} for k, v in subsets.items()},
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for k, rows in out["readings"].items():
        print(k, out["models"][k])
        for name, r in rows.items():
            print(f"  {name:28s} {r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
