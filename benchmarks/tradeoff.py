"""ASR against CA drop over every repair tried on a validation split: the trade-off curve (issue 31).

    python benchmarks/tradeoff.py [--grids 'benchmarks/results/grid_asc10_validation*.json']
        [--out benchmarks/results/tradeoff_asc10_validation]

Reads the ``core.grid`` tables the choice of the Recommended repair was made from (no model is run), and
for every candidate (a defense and its effective settings, however its column was named) and every
backdoored model it was run on: the ASR after the repair and the CA drop from that model's own row
(``none``) in the same table, averaged over defense seeds and tables. Per candidate: the cells covered,
mean ASR, mean and worst CA drop, and whether it meets the issue's target (mean ASR <= 5 % with every
CA within 2 points); the candidates no other beats on both mean ASR and worst drop over the same cells
form the front. Writes ``<out>.json``, ``<out>.md`` and ``<out>.png`` (one point per cell and candidate).

A ``gnft@recommended`` column means the Recommended preset as it was when its table was written:
``ERAS`` says which tables predate which change (the preset's history is in
``benchmarks/results/grid_asc10_validation.notes.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.defenses import DEFENSES  # noqa: E402
from core.presets import PRESETS, RUN_FIELDS  # noqa: E402
from core.runtime import machine_info, write_json  # noqa: E402

#: The Recommended preset's settings before today's (``core.presets``), by the name the tables give them.
V1, V2, V3 = "Recommended v1 (GN-FT)", "Recommended v2 (+ pruning)", "Recommended v3 (+ unlearning the scan's trigger)"
V4 = "Recommended v4 (+ latent push, lr 0.003, 120 epochs)"
V5 = "Recommended v5 (+ pruning when the scan flags nothing, a rescan pass)"
BEFORE: dict[str, dict[str, Any]] = {
    V1: {"clean_ratio": 0.1, "r": 0.1, "lr": 0.01, "epochs": 60},
    V2: {"clean_ratio": 0.1, "r": 0.1, "lr": 0.01, "epochs": 60, "prune": 0.1},
    V3: {"clean_ratio": 0.1, "r": 0.1, "lr": 0.01, "epochs": 60, "prune": 0.1, "unlearn": 0.3},
    V4: {"clean_ratio": 0.1, "r": 0.1, "lr": 0.003, "epochs": 120, "unlearn": 0.3, "unlearn_latent": 0.3,
         "latent_reach": 0.2},
    V5: {"clean_ratio": 0.1, "r": 0.1, "lr": 0.003, "epochs": 120, "unlearn": 0.3, "unlearn_latent": 0.3,
         "latent_reach": 0.2, "trigger_prune": 0.05, "trigger_prune_when": "unflagged", "rescan_passes": 1},
}  # fmt: skip
#: Tables written before the Recommended became today's, and which one it was then.
ERAS: dict[str, str] = {
    "grid_asc10_validation_resnet": V1,
    "grid_asc10_validation_resnet_seeds": V1,
    "grid_asc10_validation_smallcnn": V1,
    "grid_asc10_validation_smallcnn_seeds": V1,
    "grid_asc10_validation_unlearn_resnet": V2,
    "grid_asc10_validation_unlearn_smallcnn": V2,
    "grid_asc10_validation_latent": V3,
    "grid_asc10_validation_round6": V3,
    "grid_asc10_validation_round7": V3,
}
#: options since removed, with the value that left them off: a grid recorded by their code lists them there
REMOVED_OFF = {"unlearn_match": 0.0, "match_depth": 1.0, "rescan_keep": False, "rescan_same": False}  # rounds 24, 25
MAX_DROP, MAX_ASR = 0.02, 0.05  # the target: every CA within 2 points, mean ASR <= 5 %


def effective(
    defense: str, preset: str | None, settings: dict[str, Any], table: str, recorded: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A column's settings that differ from its defense's defaults (run fields and settings idle in it left
    out): those its table recorded (``recorded``, a grid's ``defense_settings``) unless :data:`ERAS` names the
    table, else its preset's as it was then (:data:`ERAS`) or is today, with the column's own."""
    base: dict[str, Any] = {}
    if recorded is not None and table not in ERAS:
        base = dict(recorded)
    elif preset == "recommended":
        base = dict(BEFORE[ERAS[table]] if table in ERAS else PRESETS["recommended"].settings)
    elif preset:
        base = dict(PRESETS[preset].settings)
    config = DEFENSES[defense].Config
    defaults = dataclasses.asdict(config())
    merged = {k: v for k, v in {**base, **settings}.items() if k not in REMOVED_OFF or REMOVED_OFF[k] != v}
    idle = config(**{k: v for k, v in merged.items() if k in defaults}).idle_fields()
    return {k: v for k, v in sorted(merged.items()) if k not in RUN_FIELDS and k not in idle and defaults.get(k) != v}


def preset_name(defense: str, values: dict[str, Any]) -> str | None:
    """The name the tables give a Recommended of before today's whose settings ``values`` are, else None."""
    for name, settings in BEFORE.items():
        if effective(defense, None, settings, "") == values:
            return name
    return None


def label(defense: str, values: dict[str, Any]) -> str:
    """Readable settings: against today's Recommended for GN-FT, against the defense's defaults otherwise."""
    if defense == PRESETS["recommended"].defense:
        rec = effective(defense, "recommended", {}, "")
        if values == rec:
            return "the Recommended"
        config = DEFENSES[defense].Config
        defaults = dataclasses.asdict(config())
        # e.g. when to prune, where nothing is; a setting of an option since removed is shown, not checked
        idle = config(**{k: v for k, v in values.items() if k in defaults}).idle_fields()
        diff = {
            k: values.get(k, defaults.get(k))
            for k in sorted({*rec, *values})
            if values.get(k) != rec.get(k) and k not in idle
        }
        return "the Recommended with " + ", ".join(
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in diff.items()
        )
    return f"{defense}: " + (", ".join(f"{k} {v}" for k, v in values.items()) or "defaults")


def collect(paths: list[str]) -> dict[tuple, dict]:
    """candidate key -> {"names", "defense", "settings", "cells": {(model, attack): [(asr, drop), ...]}}"""
    found: dict[tuple, dict] = {}
    for path in paths:
        table = Path(path).stem
        d = json.loads(Path(path).read_text())
        if d.get("eval_split") != "validation":
            continue
        before = {(r["model"], r["attack"]): r for r in d["rows"] if r["defense"] == "none"}
        for r in d["rows"]:
            base = before.get((r["model"], r["attack"]))
            if r["defense"] == "none" or base is None or r.get("clean_accuracy") is None or r.get("failed"):
                continue
            v = d.get("variants", {}).get(r["defense"]) or {"defense": r["defense"], "preset": None, "settings": {}}
            recorded = (d.get("defense_settings") or {}).get(r["defense"])
            values = effective(v["defense"], v.get("preset"), v.get("settings", {}), table, recorded)
            key = (v["defense"], json.dumps(values, sort_keys=True))
            entry = found.setdefault(
                key, {"names": [], "defense": v["defense"], "settings": values, "cells": defaultdict(list)}
            )
            name = r["defense"]
            if r["defense"] == "gnft@recommended":  # the Recommended of the table's time
                name = ERAS.get(table) or preset_name(v["defense"], values) or name
            if name not in entry["names"]:
                entry["names"].append(name)
            runs = entry["cells"][(r["model"], r["attack"])]
            for s in r.get("per_seed") or [r]:
                point = (s["attack_success_rate"], base["clean_accuracy"] - s["clean_accuracy"])
                if point not in runs:  # the same run read from two tables counts once
                    runs.append(point)
    return found


def summarise(found: dict[tuple, dict]) -> list[dict]:
    rows = []
    for entry in found.values():
        cells = {
            f"{m} {a}": {
                "asr": sum(x for x, _ in pts) / len(pts),
                "ca_drop": sum(y for _, y in pts) / len(pts),
                "runs": len(pts),
            }
            for (m, a), pts in sorted(entry["cells"].items())
        }
        asr = [c["asr"] for c in cells.values()]
        drop = [c["ca_drop"] for c in cells.values()]
        rows.append(
            {
                "candidate": entry["names"][0],
                "columns": entry["names"],
                "defense": entry["defense"],
                "settings": entry["settings"],
                "label": label(entry["defense"], entry["settings"]),
                "cells": cells,
                "mean_asr": sum(asr) / len(asr),
                "mean_ca_drop": sum(drop) / len(drop),
                "worst_ca_drop": max(drop),
                "meets": sum(asr) / len(asr) <= MAX_ASR and max(drop) <= MAX_DROP,
            }
        )
    for row in rows:  # the front: no candidate over a superset of its cells is at least as good on both
        row["front"] = not any(
            o is not row
            and set(row["cells"]) <= set(o["cells"])
            and _over(o, row["cells"], "asr", worst=False) <= row["mean_asr"]
            and _over(o, row["cells"], "ca_drop", worst=True) <= row["worst_ca_drop"]
            and (
                _over(o, row["cells"], "asr", worst=False) < row["mean_asr"]
                or _over(o, row["cells"], "ca_drop", worst=True) < row["worst_ca_drop"]
            )
            for o in rows
        )
    rows.sort(key=lambda r: (-len(r["cells"]), r["mean_asr"]))
    return rows


def _over(row: dict, cells: dict, key: str, worst: bool) -> float:
    """``row``'s mean (or, with ``worst``, largest) ``key`` over the cells named by ``cells``."""
    values = [row["cells"][c][key] for c in cells]
    return max(values) if worst else sum(values) / len(values)


def markdown(rows: list[dict], command: str) -> str:
    cells = sorted({c for r in rows for c in r["cells"]})
    lines = [
        "# ASR against CA drop over every repair tried (ASC-10, validation split)",
        "",
        "Per candidate repair (a defense and its effective settings) and backdoored model: ASR after the repair "
        "/ CA drop from that model's own CA, in %, on the validation split (defense seeds and tables averaged). "
        f"Target: mean ASR <= {100 * MAX_ASR:g} % with every CA drop <= {100 * MAX_DROP:g} points. "
        "Front: no other candidate run on the same cells has both a lower mean ASR and a smaller worst drop.",
        "Data: Arabic Speech Commands (Ghandoura, Hjabo, Al Dakkak, 2021; CC BY 4.0), vocabulary asc10.",
        "",
        f"`{command}`",
        "",
        "| candidate | settings | " + " | ".join(cells) + " | mean ASR | worst drop | front | meets |",
        "|---|---|" + "---|" * len(cells) + "---|---|---|---|",
    ]
    for r in rows:
        per = [
            f"{100 * r['cells'][c]['asr']:.1f} / {100 * r['cells'][c]['ca_drop']:.1f}" if c in r["cells"] else "-"
            for c in cells
        ]
        lines.append(
            f"| {', '.join(r['columns'])} | {r['label']} | "
            + " | ".join(per)
            + f" | {100 * r['mean_asr']:.1f} | {100 * r['worst_ca_drop']:.1f} | {'yes' if r['front'] else ''}"
            + f" | {'**yes**' if r['meets'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    xmax = 16.0  # the interesting region; a drop beyond it is drawn at the edge with its value
    ax.axvspan(-100, 100 * MAX_DROP, color="#e8f4e8", zorder=0)
    ax.axhspan(-5, 100 * MAX_ASR, color="#e8f4e8", zorder=0)
    markers = {"resnet": "o", "smallcnn": "s"}
    shown = [r for r in rows if r["front"] or r["label"] == "the Recommended"]
    colors = plt.get_cmap("tab20")
    for i, r in enumerate(shown):
        color = colors(i % 20)
        for c, v in r["cells"].items():
            x, y = 100 * v["ca_drop"], 100 * v["asr"]
            ax.scatter(min(x, xmax - 0.3), y, marker=markers.get(c.split()[0], "^"), color=color, s=36, zorder=3)
        x, y = 100 * r["worst_ca_drop"], 100 * r["mean_asr"]
        name = r["candidate"] if r["label"] != "the Recommended" else f"today's Recommended ({r['candidate']})"
        name += "" if r["front"] else ", off the front"
        ax.scatter(
            min(x, xmax - 0.3), y, marker="*" if x < xmax else ">", s=220, color=color, edgecolor="black",
            zorder=4, label=f"{name} ({len(r['cells'])} cell{'s' if len(r['cells']) > 1 else ''})",
        )  # fmt: skip
        if x >= xmax:
            ax.annotate(f"{r['candidate']}: {x:.0f} pts", (xmax - 0.3, y), (-8, 8), textcoords="offset points",
                        ha="right", fontsize=8)  # fmt: skip
    ax.set_xlabel("CA drop, points (cells: o ResNet, s SmallCNN; *: worst drop, mean ASR)")
    ax.set_ylabel("ASR after the repair, %")
    ax.set_title("Repairs on the Pareto front and the Recommended, ASC-10 validation split")
    ax.set_xlim(-2, xmax)
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grids", action="append", help="glob of core.grid JSON tables (repeatable)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tradeoff_asc10_validation"))
    p.add_argument("--no-plot", action="store_true", help="write the JSON and the table only")
    args = p.parse_args(argv)
    patterns = args.grids or [str(ROOT / "benchmarks" / "results" / "grid_asc10_validation*.json")]
    paths = sorted({f for g in patterns for f in glob.glob(g)})
    if not paths:
        print(f"tradeoff: no table matches {', '.join(patterns)}", file=sys.stderr)
        return 2
    rows = summarise(collect(paths))
    out = Path(args.out)
    command = this_command()
    write_json(
        out.with_suffix(".json"),
        {
            "command": command,
            "machine": machine_info("cpu"),
            "tables": [
                str(Path(x).resolve().relative_to(ROOT)) if Path(x).resolve().is_relative_to(ROOT) else x for x in paths
            ],
            "target": {"max_ca_drop": MAX_DROP, "max_mean_asr": MAX_ASR},
            "rows": rows,
        },
    )
    out.with_suffix(".md").write_text(markdown(rows, command))
    if not args.no_plot:
        plot(rows, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
