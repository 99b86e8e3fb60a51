"""The Recommended repair with and without a clean reference for its scan (issues 31 and 33): the same backdoored
models, the same scans (arm B re-reads arm A's kept scans against clean models of the other training seeds,
``core.grid --scan-reference``), the same repair; only the class it unlearns toward can differ.

    python docs/experiments/reference_repair_probe.py runs/refab --out docs/experiments/reference_repair_asc10.json

Reads each group's grid work folders ``A_<group>`` (plain) and ``B_<group>`` (read against the reference): the
backdoored model's CA/ASR (``none``), and per arm the repaired CA/ASR and the class unlearned, against the
attack's target (from the checkpoint: only this probe reads it). Writes the pairs and the means per arm.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.scan import truth  # noqa: E402

COLUMN = "gnft@recommended"


def cell(work: Path, attack: str, column: str) -> dict | None:
    """The defense cell of ``attack`` in a grid's work folder (``_seed<S>`` when the defense seed is not the
    grid's), None when not run yet."""
    found = sorted(work.glob(f"defend_smallcnn_{attack}_{column}*.json"))
    return json.loads(found[0].read_text()) if found else None


def grid_command(work: Path) -> str | None:
    """The command of the grid that wrote ``work``'s table (its last run)."""
    path = work / "grid.json"
    return json.loads(path.read_text()).get("command") if path.is_file() else None


def reference_class(work: Path, attack: str, group: str, clean: list[str]) -> str | None:
    """The class arm A's kept scan points at once read against the clean scans of the other training seeds
    (:meth:`core.scan.ScanResult.read_against`, as ``core.grid --scan-reference`` reads it); None without them."""
    from core.scan import ScanResult
    from core.scan.reference import read_reference

    found = sorted(work.glob(f"scan_smallcnn_{attack}_seed*.json"))
    own = group.rstrip("b")  # v21b shares v21's training seed
    refs = [c for c in clean if not Path(c).name.startswith(f"{own}_")]
    if not found or not refs:
        return None
    kept = json.loads(found[0].read_text())
    scanned = ScanResult.from_report(kept)
    reference = read_reference(",".join(refs), scanned.classes, kept["config"])
    read = scanned.read_against(reference, ",".join(refs))
    index = read.most_anomalous()
    return None if index is None else read.classes[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder of the A_<group> and B_<group> grid work folders")
    parser.add_argument(
        "--clean-scans",
        nargs="*",
        default=[],
        help="scans of clean SmallCNNs named <group>_smallcnn_clean_s<seed>.json: the reference of a group is those "
        "of the other training seeds; where it points a kept scan at the class arm A unlearned, arm B is the same "
        "repair (same class, trigger and seed) and is not run again",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    root = Path(args.root)
    pairs = []
    for plain in sorted(root.glob("A_*")):
        if not plain.is_dir():
            continue
        group = plain.name[2:]
        read = root / f"B_{group}"
        for model in sorted(plain.glob("train_smallcnn_*.safetensors")):
            attack = model.stem.split("_", 2)[2]
            a, b = cell(plain, attack, COLUMN), cell(read, attack, COLUMN)
            if a is None:
                continue
            known = truth(model)
            row = {
                "group": group,
                "attack": attack,
                "target": known["target"],
                "backdoored": {
                    "clean_accuracy": a["before"]["clean_accuracy"],
                    "asr": a["before"]["attack_success_rate"],
                },
            }
            pointed = reference_class(plain, attack, group, args.clean_scans)
            row["reference_class"] = pointed
            for arm, found in (("plain", a), ("reference", b)):
                same = arm == "reference" and found is None and pointed == a["defense_details"]["unlearn"]["class"]
                found = a if same else found
                if found is None:
                    row[arm] = None
                    continue
                unlearn = found["defense_details"]["unlearn"]
                row[arm] = {
                    "clean_accuracy": found["after"]["clean_accuracy"],
                    "asr": found["after"]["attack_success_rate"],
                    "ca_drop_points": round(
                        100 * (a["before"]["clean_accuracy"] - found["after"]["clean_accuracy"]), 2
                    ),
                    "unlearned": unlearn["class"],
                    "right_class": unlearn["class"] == known["target"],
                    "flagged": unlearn["flagged"],
                    "scan_reference": len(unlearn.get("scan_reference", [])),
                    "same_repair_as_plain": same,
                    "grid_command": grid_command(plain if same or arm == "plain" else read),
                }
            pairs.append(row)
    both = [p for p in pairs if p["plain"] and p["reference"]]
    summary = {
        arm: {
            "models": len(both),
            "mean_asr": round(100 * statistics.fmean(p[arm]["asr"] for p in both), 2) if both else None,
            "worst_ca_drop_points": max((p[arm]["ca_drop_points"] for p in both), default=None),
            "mean_ca_drop_points": round(statistics.fmean(p[arm]["ca_drop_points"] for p in both), 2) if both else None,
            "right_class": sum(p[arm]["right_class"] for p in both),
        }
        for arm in ("plain", "reference")
    }
    out = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "summary": summary}
    Path(args.out).write_text(json.dumps({**out, "pairs": pairs}, indent=1) + "\n")
    for p in pairs:
        cells = "  ".join(
            f"{arm}: {p[arm]['unlearned']:>7} ASR {100 * p[arm]['asr']:5.1f} CA {-p[arm]['ca_drop_points']:+5.1f}"
            + (" (same)" if p[arm]["same_repair_as_plain"] else "")
            if p[arm]
            else f"{arm}: -"
            for arm in ("plain", "reference")
        )
        print(
            f"{p['group']:5} {p['attack']:10} target {p['target']:8} ASR {100 * p['backdoored']['asr']:5.1f}  {cells}"
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
