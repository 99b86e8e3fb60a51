"""Read ``python -m core.scan`` reports against a reference of clean models (issue 33): is a class's minimal
trigger small because the model was backdoored toward it, or because that class is easy to reach in any model of
this vocabulary? Divide each class's size by the same class's size in scans of clean models of the same
vocabulary, trained with other seeds, and take the anomaly index of the ratios instead of the sizes.

    python docs/experiments/scan_reference_probe.py runs/scanval/*.json runs/layout/resnet_*_auto_*.json \\
        --holdout runs/scanval2/*.json --out docs/experiments/scan_reference_probe.json

The truth (attack, target, training seed) is read from each report's checkpoint here; a reference is a clean
model (as a user's own clean baseline would be), never the scanned model, and never one trained with the scanned
model's seed (that one would share its initialisation and batch order). Nothing here is tuned: the only free
choice, the threshold of the operating points, is read on the reports given first (``chosen_on``) and checked on
``--holdout``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.scan import auroc, truth  # noqa: E402
from core.checkpoint import read_metadata  # noqa: E402
from core.scan import ScanConfig, anomaly_index, lead, pooled_index  # noqa: E402
from core.scan.reference import finite_sizes, reference_sizes, relative_sizes  # noqa: E402

THRESHOLDS = (2.5, 3.0, 3.5, 4.0, 4.5)


def calibrated_index(scan: dict, refs: list[dict]) -> list[float]:
    """The pooled index of ``scan`` read against ``refs`` as the product reads it (``python -m core.scan
    --reference``: :mod:`core.scan.reference`); the plain pooled index when ``refs`` is empty."""
    domains = list(scan["sizes"])
    reference = (
        reference_sizes([{"domains": {d: {"sizes": r["sizes"][d]} for d in domains}} for r in refs], domains)
        if refs
        else {}
    )
    records = {
        name: {"anomaly_index": anomaly_index(relative_sizes(sizes, reference[name]) if refs else finite_sizes(sizes))}
        for name, sizes in scan["sizes"].items()
    }
    return pooled_index(records)


def read(path: str, part: str) -> dict | None:
    report = json.loads(Path(path).read_text())
    if "domains" not in report or "model" not in report:
        return None
    model = Path(report["model"])
    return {
        "report": path,
        "set": part,
        "model": str(model),
        "seed": report["config"]["seed"],
        "train_seed": read_metadata(model)["provenance"].get("seed"),
        **truth(model),
        "classes": report["classes"],
        "sizes": {k: rec["sizes"] for k, rec in report["domains"].items()},
    }


def product_rule(rows: list[dict], key: str) -> dict:
    """Flags by the product's rule (pooled index above ScanConfig's threshold and at least its standout margin
    above the next class), overall and per architecture."""
    rule = ScanConfig()

    def flags(subset: list[dict]) -> dict:
        hit = [r for r in subset if r[key]["score"] > rule.threshold and r[key]["lead"] >= rule.standout]
        return {
            "scans": len(subset),
            "clean": sum(r["attack"] == "clean" for r in subset),
            "clean_flagged": sum(r["attack"] == "clean" for r in hit),
            "right_target_flagged": sum(r["attack"] != "clean" and r[key]["top"] == r["target"] for r in hit),
            "wrong_class_flagged": sum(r["attack"] != "clean" and r[key]["top"] != r["target"] for r in hit),
        }

    archs = sorted({r["architecture"] for r in rows})
    return {
        "threshold": rule.threshold,
        "standout": rule.standout,
        **flags(rows),
        "by_architecture": {a: flags([r for r in rows if r["architecture"] == a]) for a in archs},
    }


def evaluate(rows: list[dict], key: str) -> dict:
    """AUROC of ``key``'s top score, how often its top class is the target, and flags per threshold."""
    rows = [r for r in rows if r[key] is not None]
    pos = [r[key]["score"] for r in rows if r["attack"] != "clean"]
    neg = [r[key]["score"] for r in rows if r["attack"] == "clean"]
    right = [r[key]["top"] == r["target"] for r in rows if r["attack"] != "clean"]
    lead = {
        k: [r[key]["score"] - r[key]["second"] for r in rows if (r["attack"] == "clean") == (k == "clean")]
        for k in ("clean", "backdoored")
    }
    return {
        "scans": len(rows),
        "backdoored": len(pos),
        "clean": len(neg),
        "auroc": auroc(pos, neg) if pos and neg else None,
        "clean_max": max(neg, default=None),
        "top_is_target": round(sum(right) / len(right), 3) if right else None,
        # how far the top class stands above the next (the product's standout margin reads this on the plain index)
        "auroc_of_lead": auroc(lead["backdoored"], lead["clean"]) if pos and neg else None,
        "clean_lead_max": round(max(lead["clean"], default=0.0), 3),
        # the product's rule (ScanConfig's threshold and standout margin) on this reading
        "product_rule": product_rule(rows, key),
        "flags": {
            str(t): {
                "clean_flagged": sum(s > t for s in neg),
                "right_target_flagged": sum(
                    r[key]["score"] > t and r[key]["top"] == r["target"] for r in rows if r["attack"] != "clean"
                ),
                "wrong_class_flagged": sum(
                    r[key]["score"] > t and r[key]["top"] != r["target"] for r in rows if r["attack"] != "clean"
                ),
            }
            for t in THRESHOLDS
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="scans to choose the threshold on")
    parser.add_argument("--holdout", nargs="*", default=[], help="scans to check it on")
    parser.add_argument(
        "--share-refs",
        nargs="*",
        default=[],
        help="scans of clean models trained on a 10 %% clean share only (a reference a user without a clean model "
        "could make): the reading clean_share, for the scans of their architecture",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    scans = [read(p, "chosen_on") for p in sorted(args.reports)] + [read(p, "holdout") for p in sorted(args.holdout)]
    scans = [s for s in scans if s is not None]
    clean = [s for s in scans if s["attack"] == "clean" and not s["repaired"]]
    share = [r for r in (read(p, "share") for p in sorted(args.share_refs)) if r is not None]
    readings = {
        "plain": lambda s: [],
        # clean models of the same architecture and vocabulary, other training seeds
        "same_architecture": lambda s: [
            r
            for r in clean
            if r["classes"] == s["classes"]
            and r["architecture"] == s["architecture"]
            and r["train_seed"] != s["train_seed"]
        ],
        # clean models of the other architectures only: a reference for a model whose architecture one lacks
        "other_architecture": lambda s: [
            r for r in clean if r["classes"] == s["classes"] and r["architecture"] != s["architecture"]
        ],
    }
    if share:  # models trained on a clean share only, of the same architecture
        readings["clean_share"] = lambda s: [
            r for r in share if r["classes"] == s["classes"] and r["architecture"] == s["architecture"]
        ]
    rows = []
    for s in scans:
        row = {k: s[k] for k in ("report", "set", "model", "seed", "train_seed", "architecture", "attack", "target")}
        for name, pick in readings.items():
            refs = pick(s)
            if name != "plain" and not refs:
                row[name] = None
                continue
            index = calibrated_index(s, refs)
            ranked = sorted(range(len(index)), key=lambda i: -index[i])
            row[name] = {
                "references": len(refs),
                "top": s["classes"][ranked[0]],
                "score": round(index[ranked[0]], 3),
                "second": round(index[ranked[1]], 3),
                "lead": round(lead(index)[1], 3),
                "target_score": round(index[s["classes"].index(s["target"])], 3) if s["target"] else None,
                "target_rank": ranked.index(s["classes"].index(s["target"])) + 1 if s["target"] else None,
            }
        rows.append(row)
    parts = {
        part: {name: evaluate([r for r in rows if part == "all" or r["set"] == part], name) for name in readings}
        for part in ("chosen_on", "holdout", "all")
    }
    for part, reading in parts.items():  # the plain reading on exactly the scans a reference reading covers
        for name in reading:
            covered = [r for r in rows if (part == "all" or r["set"] == part) and r[name] is not None]
            plain = evaluate(covered, "plain")
            reading[name]["plain_on_these_scans"] = {k: plain[k] for k in ("scans", "auroc", "top_is_target")}
    out = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "readings": parts,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    width = max(len(Path(r["report"]).stem) for r in rows)
    for r in rows:
        cells = "  ".join(
            f"{name}: {r[name]['top'][:7]:>7} {r[name]['score']:5.2f} (target #{r[name]['target_rank']})"
            if r[name]
            else f"{name}: -"
            for name in readings
        )
        print(f"{Path(r['report']).stem:{width}} {r['set'][:4]} {r['attack'][:6]:>6}/{str(r['target'])[:7]:7}  {cells}")
    for part, reading in parts.items():
        for name, summary in reading.items():
            print(part, name, {k: v for k, v in summary.items() if k != "flags"})
            print("   ", summary["flags"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
