"""The paper's ablations read off one ``core.grid`` table: CA / ASR as one or two settings vary.

    python benchmarks/ablation.py --grid benchmarks/results/grid_asc10_ablation_resnet_h200.json
        [--model resnet --attack badnets] [--out benchmarks/results/ablation_asc10_resnet_h200]

A grid whose columns are variants of a defense (``--variant gnft_c05=gnft:clean_ratio=0.05,...``) holds an
ablation in its column list; this script lays it out as the paper does, from the settings each column
recorded (never from the column names). Two tables, each made where the grid has the columns for it:

- **by clean share** (Table IV): columns whose settings differ only in ``clean_ratio`` form a series (one
  per defense and shared settings); one row per share, one column per series.
- **alpha x r**: GN-FT columns whose settings differ only in ``alpha`` and ``r``; rows alpha, columns r.

Cells are CA / ASR in % (mean ± standard deviation over the grid's defense seeds) of the chosen model and
attack, with the backdoored model's own figures above each table. No model is run. Writes ``<out>.json``
(the series, for plots and tests) and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.presets import RUN_FIELDS  # noqa: E402
from core.runtime import write_json  # noqa: E402

NONE = "none"


def _cell(row: dict[str, Any]) -> dict[str, Any]:
    """A row's CA / ASR (fractions) with their standard deviations (0 for one seed) and seed count."""
    return {
        "clean_accuracy": row["clean_accuracy"],
        "attack_success_rate": row["attack_success_rate"],
        "clean_accuracy_std": row.get("clean_accuracy_std", 0.0),
        "attack_success_rate_std": row.get("attack_success_rate_std", 0.0),
        "seeds": len(row.get("seeds", [0])),
        "column": row["defense"],
        "ran_on": row.get("ran_on", []),
    }


def series(grid: dict[str, Any], model: str, attack: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The grid's columns grouped by everything but ``keys``: one series per defense and shared settings,
    each a list of points (the ``keys``' values and the cell), for ``model`` / ``attack``. A series needs two
    points or more; two columns with the same settings (and so the same point) keep the first."""
    rows = {r["defense"]: r for r in grid["rows"] if r["model"] == model and r["attack"] == attack}
    groups: dict[tuple, dict[tuple, dict[str, Any]]] = defaultdict(dict)
    fixed_of: dict[tuple, dict[str, Any]] = {}
    for column, settings in grid["defense_settings"].items():
        row = rows.get(column)
        if row is None or row.get("clean_accuracy") is None or any(k not in settings for k in keys):
            continue
        defense = row.get("defense_name", column)
        fixed = {k: v for k, v in settings.items() if k not in keys and k not in RUN_FIELDS}
        group = (defense, json.dumps(fixed, sort_keys=True))
        fixed_of[group] = {"defense": defense, **fixed}
        groups[group].setdefault(tuple(settings[k] for k in keys), _cell(row))
    out = []
    for group, points in groups.items():
        if len(points) >= 2:
            out.append(
                {
                    "settings": fixed_of[group],
                    "points": [{**dict(zip(keys, at, strict=True)), **cell} for at, cell in sorted(points.items())],
                }
            )
    return out


def _pct(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"

    def one(key: str) -> str:
        value = f"{100 * cell[key]:.1f}"
        return value + (f" ± {100 * cell[key + '_std']:.1f}" if cell["seeds"] > 1 else "")

    return f"{one('clean_accuracy')} / {one('attack_success_rate')}"


def _differs(all_settings: list[dict[str, Any]]) -> list[str]:
    """The settings every series has that differ between them (what names them in a table's header)."""
    keys = sorted(set.intersection(*(set(s) for s in all_settings)))
    return [k for k in keys if len({json.dumps(s.get(k)) for s in all_settings}) > 1]


def share_table(found: list[dict[str, Any]], train_clips: int | None) -> list[str]:
    """Rows: clean share; columns: one series each (named by its defense and what sets it apart)."""
    differ = _differs([s["settings"] for s in found])
    names = [
        " ".join(
            [
                s["settings"]["defense"],
                *(f"{k} {s['settings'][k]}" for k in differ if k != "defense" and k in s["settings"]),
            ]
        )
        for s in found
    ]
    shares = sorted({p["clean_ratio"] for s in found for p in s["points"]})
    lines = [
        "| clean share | " + ("clips | " if train_clips else "") + " | ".join(f"{n} CA / ASR" for n in names) + " |",
        "|---|" + ("---|" if train_clips else "") + "---|" * len(names),
    ]
    for share in shares:
        cells = [_pct(next((p for p in s["points"] if p["clean_ratio"] == share), None)) for s in found]
        clips = f"{round(share * train_clips)} | " if train_clips else ""
        lines.append(f"| {100 * share:g} % | {clips}" + " | ".join(cells) + " |")
    return lines


def grid_table(found: dict[str, Any], rows_key: str, cols_key: str) -> list[str]:
    """Rows ``rows_key``, columns ``cols_key`` of one two-setting series."""
    points = found["points"]
    row_values = sorted({p[rows_key] for p in points})
    col_values = sorted({p[cols_key] for p in points})
    lines = [
        f"| {rows_key} \\ {cols_key} | " + " | ".join(f"{v:g}" for v in col_values) + " |",
        "|---|" + "---|" * len(col_values),
    ]
    for rv in row_values:
        cells = [_pct(next((p for p in points if p[rows_key] == rv and p[cols_key] == cv), None)) for cv in col_values]
        lines.append(f"| {rv:g} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, help="a core.grid results JSON")
    p.add_argument("--model", default="resnet")
    p.add_argument("--attack", default="badnets")
    p.add_argument("--train-clips", type=int, default=None, help="training-split size, to show clips per share")
    p.add_argument("--out", required=True, help="results prefix: writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    grid = json.loads(Path(args.grid).read_text())
    before = next(
        (r for r in grid["rows"] if r["model"] == args.model and r["attack"] == args.attack and r["defense"] == NONE),
        None,
    )
    by_share = series(grid, args.model, args.attack, ("clean_ratio",))
    by_alpha_r = [
        s for s in series(grid, args.model, args.attack, ("alpha", "r")) if len({p["alpha"] for p in s["points"]}) > 1
    ]
    where = sorted({w for s in [*by_share, *by_alpha_r] for p in s["points"] for w in p["ran_on"]})
    md = [
        f"# Ablations: {args.model} / {args.attack}",
        "",
        f"CA / ASR in % on the {grid.get('eval_split', 'test')} split, mean ± standard deviation over defense seeds "
        f"{', '.join(map(str, grid.get('defense_seeds', [])))}; read from `{args.grid}` (its command is in "
        f"that file; cells ran on {', '.join(where) or 'a machine not recorded'}).",
        "",
        f"Backdoored model: {_pct(_cell(before)) if before else '-'}.",
    ]
    if by_share:
        shown = ("alpha", "r", "lr", "epochs", "batch_size")
        settings = "; ".join(
            f"{s['settings']['defense']}: " + ", ".join(f"{k} {s['settings'][k]}" for k in shown if k in s["settings"])
            for s in by_share
        )
        md += ["", "## By clean share (the paper's Table IV)", "", f"Same budget for each: {settings}.", ""]
        md += share_table(by_share, args.train_clips)
    for s in by_alpha_r:
        fixed = ", ".join(f"{k} {v}" for k, v in s["settings"].items() if k in ("clean_ratio", "lr", "epochs"))
        md += ["", f"## alpha x r ({s['settings']['defense']}, {fixed})", "", *grid_table(s, "alpha", "r")]
    md += ["", f"`{this_command()}`", ""]
    out = Path(args.out)
    write_json(
        out.with_suffix(".json"),
        {
            "command": this_command(),
            "grid": args.grid,
            "model": args.model,
            "attack": args.attack,
            "before": _cell(before) if before else None,
            "by_clean_share": by_share,
            "by_alpha_r": by_alpha_r,
        },
    )
    out.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
