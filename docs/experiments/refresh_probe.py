"""The Recommended repair against variants of it on the validation split (issue 31, round 10): the models where it
points at the right class and still leaves much of the backdoor (``runs/refab`` arm A). Each model's grid work
folder (``runs/strength/<group>_<attack>``, made by ``runs/strength/qv.sh``) holds the backdoored model's
validation figures and one defense cell per column; the scans are arm A's (the same class and first trigger).

    python docs/experiments/refresh_probe.py runs/strength --out docs/experiments/refresh_probe_asc10.json
    python docs/experiments/refresh_probe.py runs/refresh_test --out docs/experiments/refresh_probe_asc10_test.json

(the second: the candidate on the test split, ``runs/refresh_test/q.sh``, after the choice; each grid names its
split).

Round 12 adds the column ``refresh40_if_flagged`` (derived, see :func:`gate`) and, for the cells that recorded it,
the size of each trigger searched again beside the first one's and the real ASR at that epoch.

    python docs/experiments/refresh_probe.py runs/resnet_refresh --out docs/experiments/refresh_probe_asc10_resnet.json

Writes, per model and column, CA / ASR on the split, the CA change against the backdoored model and
the class unlearned; per column, the mean ASR and the worst CA drop over the models every column has.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def gate(row: dict) -> None:
    """Add the column a search-again-when-flagged rule would give: refresh 40's cell where the scan flagged the
    model, the Recommended's elsewhere (both cells were run; the rule only picks between them)."""
    cells = row["cells"]
    if "gnft@recommended" in cells and "refresh40" in cells:
        chosen = cells["refresh40"] if cells["gnft@recommended"]["flagged"] else cells["gnft@recommended"]
        cells["refresh40_if_flagged"] = {**chosen, "derived": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder of the grids' work folders (<group>_<attack>)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    models, columns, splits = [], {}, set()
    for work in sorted(p for p in args.root.iterdir() if p.is_dir() and (p / "grid.json").is_file()):
        grid = json.loads((work / "grid.json").read_text())
        base = next(r for r in grid["rows"] if r["defense"] == "none")  # the backdoored model on the grid's split
        splits.add(grid["eval_split"])
        row = {
            "model": work.name,
            "command": grid.get("command"),
            "backdoored": {"ca": base["clean_accuracy"], "asr": base["attack_success_rate"]},
            "cells": {},
        }
        for path in sorted(work.glob("defend_*_seed0.json")):
            cell = json.loads(path.read_text())
            name = path.stem.split("_", 3)[3].removesuffix("_seed0")
            after = cell["after"]
            details = cell["defense_details"]
            asr_at = {h["epoch"]: h.get("attack_success_rate") for h in cell.get("history", [])}
            searches = [  # what each search found (recorded since round 12), beside the real ASR at that epoch
                {"epoch": s["epoch"], "size": f["size"], "asr_then": asr_at.get(s["epoch"])}
                for s in details.get("searched_again", [])
                for f in s.get("found", [])
            ]
            row["cells"][name] = {
                "ca": after["clean_accuracy"],
                "asr": after["attack_success_rate"],
                "ca_change": after["clean_accuracy"] - base["clean_accuracy"],
                "class": details.get("unlearn", {}).get("class"),
                "flagged": details.get("unlearn", {}).get("flagged"),
                "searched_again": len(details.get("searched_again", [])),
                **({"first_size": details["unlearn"].get("trigger_size"), "searches": searches} if searches else {}),
                "seconds": cell["seconds"],
            }
        gate(row)
        models.append(row)
    names = sorted({c for m in models for c in m["cells"]})
    for name in names:
        having = [m for m in models if all(n in m["cells"] for n in ("gnft@recommended", name))]
        if not having:
            continue
        cells = [m["cells"][name] for m in having]
        columns[name] = {
            "models": [m["model"] for m in having],
            "mean_asr": statistics.mean(c["asr"] for c in cells),
            "worst_ca_drop": -min(c["ca_change"] for c in cells),
            "mean_ca_change": statistics.mean(c["ca_change"] for c in cells),
            "recommended_mean_asr_same_models": statistics.mean(m["cells"]["gnft@recommended"]["asr"] for m in having),
        }
    args.out.write_text(json.dumps({"split": sorted(splits), "models": models, "columns": columns}, indent=1) + "\n")
    for m in models:
        cells = "  ".join(
            f"{n} {100 * c['ca']:.1f}/{100 * c['asr']:.1f} ({100 * c['ca_change']:+.1f})" for n, c in m["cells"].items()
        )
        print(f"{m['model']}: backdoored {100 * m['backdoored']['ca']:.1f}/{100 * m['backdoored']['asr']:.1f}  {cells}")
    for name, c in columns.items():
        rec = 100 * c["recommended_mean_asr_same_models"]
        print(
            f"{name}: {len(c['models'])} models, mean ASR {100 * c['mean_asr']:.1f} (Recommended {rec:.1f}), "
            f"worst CA drop {100 * c['worst_ca_drop']:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
