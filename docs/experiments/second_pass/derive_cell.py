"""Write the tp2 cell (today's Recommended with rescan_passes 1) of a tpu cell whose rescan flagged nothing.

A repair with rescan_passes scans the model it returned and stops there when the scan flags no class (or one
already unlearned): its model and figures are then the tpu run's, bit for bit (tests/core/test_rescan_passes.py).
The scan is the repair's own (same settings: the CLI defaults, the defense seed, one thread), run separately on
the tpu cell's checkpoint; its report is named in the derived cell. A scan that flags a class not unlearned is
refused: that cell must be run for real.

    python docs/experiments/second_pass/derive_cell.py CELL.json SCAN.json

(runs/q18/derive_all.sh ran it on the 24 tpu cells of round 18; the scans: the reports in rescans/ beside it, one
`python -m core.scan --model CELL.safetensors --data ../shared/data/arabic_sc --vocab asc10 --seed SEED --device cpu
--threads 1` each, and the scan benchmark's, benchmarks/results/scan.json group asc10_clip.)
"""

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository
from core.defenses import DEFENSES  # noqa: E402
from core.presets import preset_record  # noqa: E402

cell, scan_path = Path(sys.argv[1]), Path(sys.argv[2])
if cell.with_name(cell.name.replace("_tpu_seed", "_tp2_seed")).exists() or not scan_path.exists():
    sys.exit(print("skip", cell, "(done)" if scan_path.exists() else "(no scan yet)"))
row, found = json.loads(cell.read_text()), json.loads(Path(scan_path).read_text())
seed = int(cell.stem.rsplit("seed", 1)[1])
assert found["config"]["seed"] == seed and found["config"]["steps"] == 200 and found["config"]["clean_ratio"] == 0.1
assert found["machine"]["torch_threads"] == 1
unlearned = row["defense_details"]["unlearn"]
names = set(unlearned.get("classes", [unlearned["class"]]))
flagged = found["suspected_target"] if found["backdoored"] else None
assert flagged is None or flagged in names, f"{scan_path} flags {flagged}: run the cell"
pointed = found.get("most_anomalous") or {}
record = {
    "scan": {
        "flagged": found["backdoored"],
        "class": flagged,
        "anomaly_index": round(found["confidence"], 3) if flagged else None,
        "most_anomalous": pointed.get("class"),
        "most_anomalous_index": round(found["pooled"][pointed["index"]], 3) if pointed else None,  # pooled, as repair
        "seconds": found["seconds"],
    },
    "repaired": False,
}
config = DEFENSES["gnft"].Config(**{**{k: v for k, v in row["defense"].items() if k != "name"}, "rescan_passes": 1})
out = dict(row)
out["defense"] = {"name": "gnft", **{k: getattr(config, k) for k in row["defense"] if k != "name"}, "rescan_passes": 1}
out["preset"] = preset_record("gnft", config, base="recommended")
out["defense_details"] = {**row["defense_details"], "rescan_passes": [record]}
out["history"] = [{**h, "pass": 1} for h in row["history"]]
out["seconds"] = round(row["seconds"] + found["seconds"], 2)
target = cell.with_name(cell.name.replace("_tpu_seed", "_tp2_seed"))
out["checkpoint"] = str(target.with_suffix(".safetensors"))
out["derived"] = {
    "from": str(cell),
    "rescan": str(scan_path),
    "by": "docs/experiments/second_pass/derive_cell.py",
    "why": "the scan of the repaired model flagged no class left to unlearn: the run is the tpu run",
}
assert not target.exists(), target
target.write_text(json.dumps(out, indent=2) + "\n")
shutil.copyfile(cell.with_suffix(".safetensors"), target.with_suffix(".safetensors"))
print(target, record["scan"])
