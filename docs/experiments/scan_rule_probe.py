"""Read ``python -m core.scan`` reports by candidate verdict rules (issue 33): does a rule that asks how far a
class stands out beyond the next one keep the backdoored models flagged and stop flagging the clean ones whose
smallest classes come in clusters (the clean ASC-10 ResNet's spectrum domain: `up`, `right`, `stop` together)?

    python docs/experiments/scan_rule_probe.py runs/scanval/*.json runs/layout/*_auto_*.json \\
        --holdout runs/scanval2/*.json --out docs/experiments/scan_rule_probe.json

The reports given first are the ones the product's margin was chosen on; ``--holdout`` reports (models trained
after that choice) are read apart, so the chosen rule is checked on scans it was not fitted to.

The truth (attack, target) is read from each report's checkpoint here, never by the scan. The JSON keeps every
report's per-domain sizes, so later rules can be read on these scans without them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.scan import auroc, truth  # noqa: E402
from core.scan import anomaly_index  # noqa: E402


def margin(index: list[float], share: float = 1.0) -> list[float]:
    """Per class: its index less ``share`` x the largest other class's (0 when below): a class must stand out
    beyond the next one, so a cluster of equally small classes (a natural easy target, or the mix search
    reaching four classes) counts for none of them."""
    out = []
    for c, z in enumerate(index):
        others = max((v for j, v in enumerate(index) if j != c), default=0.0)
        out.append(max(0.0, z - share * others))
    return out


def discount(index: list[float]) -> list[float]:
    """Per class: its index divided by how many classes reach at least half of it (itself included)."""
    return [z / max(1, sum(v >= z / 2 for v in index)) if z > 0 else 0.0 for z in index]


RULES = {
    "pooled": lambda idx: idx,
    "margin": margin,
    "margin_half": lambda idx: margin(idx, 0.5),
    "discount": discount,
    "pooled_gap": None,  # the pooled index less the next class's pooled index (margin after pooling)
}


def pooled(domains: dict[str, list[float]], rule) -> list[float]:
    """Stouffer's pooling (the product's) of each domain's per-class score under ``rule``."""
    columns = zip(*(rule(anomaly_index(sizes)) for sizes in domains.values()))
    return [sum(col) / math.sqrt(len(domains)) for col in columns]


def sizes_of(report: dict) -> dict[str, list[float]]:
    return {
        name: [math.inf if s is None else float(s) for s in rec["sizes"]] for name, rec in report["domains"].items()
    }


def evaluate(rows: list[dict]) -> dict:
    """AUROC and ranking per rule, the two-seed consensus, and the flag's operating points on ``rows``."""
    summary = {}
    for name in RULES:
        pos = [r[name]["score"] for r in rows if r["attack"] != "clean"]
        neg = [r[name]["score"] for r in rows if r["attack"] == "clean"]
        right = [r[name]["top"] == r["target"] for r in rows if r["attack"] != "clean"]
        summary[name] = {
            "auroc": auroc(pos, neg),
            "clean_max": max(neg, default=None),
            "backdoored_scores": sorted(pos),
            "top_is_target": round(sum(right) / len(right), 3) if right else None,
        }
    # per model: the smaller of its seeds' scores for the class both seeds rank first (two-seed consensus)
    by_model = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    consensus = {}
    for name in RULES:
        pos, neg = [], []
        for rs in by_model.values():
            if len(rs) < 2:
                continue
            tops = {r[name]["top"] for r in rs}
            value = min(r[name]["score"] for r in rs) if len(tops) == 1 else 0.0
            (neg if rs[0]["attack"] == "clean" else pos).append(value)
        consensus[name] = {"auroc": auroc(pos, neg), "backdoored": sorted(pos), "clean": sorted(neg)}
    # the flag (pooled index above T; the product's T is 3) with a second condition: the class stands at least G
    # above the next class's pooled index
    operating = {}
    for t, g in [(t, g) for t in (2.0, 2.5, 3.0) for g in (0.0, 0.5, 1.0, 1.5, 2.0)]:
        flags = [(r, r["pooled"]["score"] > t and r["pooled_gap"]["score"] >= g) for r in rows]
        operating[f"threshold_{t}_standout_{g}"] = {
            "clean_flagged": sum(f for r, f in flags if r["attack"] == "clean"),
            "right_target_flagged": sum(f and r["pooled"]["top"] == r["target"] for r, f in flags if r["target"]),
            "wrong_class_flagged": sum(f and r["pooled"]["top"] != r["target"] for r, f in flags if r["target"]),
            "clean_scans": sum(r["attack"] == "clean" for r in rows),
            "backdoored_scans": sum(r["attack"] != "clean" for r in rows),
        }
    return {"summary": summary, "two_seed_consensus": consensus, "operating_points": operating}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="the scans the product's rule was chosen on")
    parser.add_argument("--holdout", nargs="*", default=[], help="scans of models made after that choice")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    scans = []
    for path in [*sorted(args.reports), *sorted(args.holdout)]:
        report = json.loads(Path(path).read_text())
        if "domains" not in report or "model" not in report:
            continue
        model = Path(report["model"])
        fact = truth(model)
        scans.append(
            {
                "report": path,
                "set": "holdout" if path in args.holdout else "chosen_on",
                "model": str(model),
                "seed": report["config"]["seed"],
                **fact,
                "classes": report["classes"],
                "sizes": {k: [None if math.isinf(s) else s for s in v] for k, v in sizes_of(report).items()},
            }
        )
    rows = []
    for s in scans:
        sizes = {k: [math.inf if v is None else v for v in vals] for k, vals in s["sizes"].items()}
        reading = {}
        for name, rule in RULES.items():
            score = pooled(sizes, rule) if name != "pooled_gap" else margin(pooled(sizes, RULES["pooled"]))
            top = max(range(len(score)), key=lambda i: score[i])
            ranked = sorted(range(len(score)), key=lambda i: -score[i])
            reading[name] = {
                "score": round(score[top], 3),
                "top": s["classes"][top],
                "second": round(score[ranked[1]], 3),
                "target_score": round(score[s["classes"].index(s["target"])], 3) if s["target"] else None,
            }
        keys = ("report", "set", "model", "seed", "architecture", "attack", "target")
        rows.append({k: s[k] for k in keys} | reading)
    chosen_on = evaluate([r for r in rows if r["set"] == "chosen_on"])
    out = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        **chosen_on,
        "holdout": evaluate([r for r in rows if r["set"] == "holdout"]) if args.holdout else None,
        "all": evaluate(rows) if args.holdout else None,
        "rows": rows,
        "scans": scans,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    width = max(len(Path(r["report"]).stem) for r in rows)
    print(f"{'report':{width}}  attack/target  " + "  ".join(f"{n:>22}" for n in RULES))
    for r in rows:
        cells = "  ".join(f"{r[n]['top'][:7]:>7} {r[n]['score']:5.2f}/{r[n]['second']:5.2f}" for n in RULES)
        print(f"{Path(r['report']).stem:{width}}  {r['attack'][:6]:>6}/{str(r['target'])[:6]:6}  {cells}")
    for part in ("chosen_on", "holdout", "all"):
        reading = chosen_on if part == "chosen_on" else out[part]
        if reading is None:
            continue
        print(f"== {part}")
        for name in RULES:
            print(name, reading["summary"][name], "consensus", reading["two_seed_consensus"][name])
        for name, point in reading["operating_points"].items():
            print(name, point)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
