"""When the backdoor goes during the Recommended repair, and whether it comes back (issue 31, round 13).

Reads the histories the repairs already recorded (every 10 epochs: CA and ASR on the grid's split) from the
Recommended's cells of every grid work folder under the given roots, and writes per model the ASR and CA per
evaluated epoch, the lowest ASR and its epoch, and the last:

    python docs/experiments/backdoor_return.py runs/strength runs/resnet_refresh runs/grid_asc30 \
        --out docs/experiments/backdoor_return.json

A model whose ASR falls near 0 early and climbs back while the CA recovers loses its backdoor in the repair's
first epochs and gets it back from the clean fine-tuning that follows; nothing here is run again.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

CELL = "defend_*_gnft@recommended*.json"


def history_of(path: Path) -> dict:
    """One repair's record: the model, its split and its ASR / CA per evaluated epoch."""
    d = json.loads(path.read_text())
    epochs = [h["epoch"] for h in d["history"]]
    asr = [round(100 * h["attack_success_rate"], 1) for h in d["history"]]
    low = min(range(len(asr)), key=asr.__getitem__)
    return {
        "cell": str(path),
        "model": d["model"],
        "split": d.get("eval_split", "test"),
        "backdoored": {
            "ca": round(100 * d["before"]["clean_accuracy"], 1),
            "asr": round(100 * d["before"]["attack_success_rate"], 1),
        },
        "epochs": epochs,
        "asr": asr,
        "ca": [round(100 * h["clean_accuracy"], 1) for h in d["history"]],
        "lowest": {"epoch": epochs[low], "asr": asr[low]},
        "last": {"epoch": epochs[-1], "asr": asr[-1]},
        "returned": round(asr[-1] - asr[low], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding grid work folders (or cells)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows, seen = [], set()
    for path in (p for root in args.roots for p in sorted(root.rglob(CELL))):
        row = history_of(path)
        key = (row["model"], row["split"], tuple(row["asr"]))
        if key not in seen:  # a cell copied into a second work folder counts once
            seen.add(key)
            rows.append(row)
    back = [r for r in rows if r["lowest"]["asr"] <= 10 and r["returned"] >= 10]
    out = {
        "command": "python docs/experiments/backdoor_return.py "
        + " ".join(map(str, args.roots))
        + f" --out {args.out}",
        "models": len(rows),
        "gone_then_back": {
            "note": "lowest ASR at most 10 % and the last at least 10 points above it",
            "models": len(back),
            "median_return": statistics.median(r["returned"] for r in back) if back else None,
        },
        "rows": rows,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for r in rows:
        low, last = r["lowest"], r["last"]
        print(f"{r['model']:60s} lowest {low['asr']:5.1f} at {low['epoch']:3d}, last {last['asr']:5.1f}")
    print(json.dumps(out["gone_then_back"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
