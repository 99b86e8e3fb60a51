"""benchmarks/ablation.py: the series come from each column's recorded settings (never its name), a column
that repeats another's settings counts once, and the tables hold the grid's figures for the chosen cell."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ablation import main, series  # noqa: E402
from core.defenses import DEFENSES  # noqa: E402


def settings(defense: str, **changes) -> dict:
    return {**dataclasses.asdict(DEFENSES[defense].Config()), "lr": 0.01, "epochs": 60, **changes}


def grid() -> dict:
    columns = {
        "s5": settings("gnft", clean_ratio=0.05, alpha=0.7, r=0.1),
        "s10": settings("gnft", clean_ratio=0.1, alpha=0.7, r=0.1),
        "f5": settings("ft", clean_ratio=0.05),
        "f10": settings("ft", clean_ratio=0.1),
        "lo_lo": settings("gnft", clean_ratio=0.1, alpha=0.3, r=0.02),
        "lo_hi": settings("gnft", clean_ratio=0.1, alpha=0.3, r=0.1),
        "hi_lo": settings("gnft", clean_ratio=0.1, alpha=0.7, r=0.02),
        "hi_hi": settings("gnft", clean_ratio=0.1, alpha=0.7, r=0.1),  # the same settings as s10
    }
    figures = {"s5": 0.5, "s10": 0.2, "f5": 0.99, "f10": 0.98, "lo_lo": 0.97, "lo_hi": 0.6, "hi_lo": 0.9, "hi_hi": 0.3}
    rows = [
        {"model": "resnet", "attack": "badnets", "defense": "none", "clean_accuracy": 0.9, "attack_success_rate": 1}
    ]
    for name, asr in figures.items():
        defense = "ft" if name.startswith("f") else "gnft"
        rows.append(
            {
                "model": "resnet",
                "attack": "badnets",
                "defense": name,
                "defense_name": defense,
                "clean_accuracy": 0.8,
                "attack_success_rate": asr,
                "seeds": [0, 1],
                "clean_accuracy_std": 0.01,
                "attack_success_rate_std": 0.02,
                "ran_on": ["NVIDIA H200 (cuda)"] * 2,
            }
        )
        rows.append({**rows[-1], "model": "smallcnn", "attack_success_rate": 0.0})  # another model: not read
    return {"command": "python -m core.grid ...", "defense_seeds": [0, 1], "defense_settings": columns, "rows": rows}


def test_series_follow_the_recorded_settings_and_a_repeated_setting_counts_once():
    by_share = series(grid(), "resnet", "badnets", ("clean_ratio",))
    named = {
        s["settings"]["defense"]: [(p["clean_ratio"], p["attack_success_rate"]) for p in s["points"]] for s in by_share
    }
    assert named == {"gnft": [(0.05, 0.5), (0.1, 0.2)], "ft": [(0.05, 0.99), (0.1, 0.98)]}
    (two,) = series(grid(), "resnet", "badnets", ("alpha", "r"))  # ft has no alpha: no series of its own
    points = {(p["alpha"], p["r"]): p["attack_success_rate"] for p in two["points"]}
    assert points == {(0.3, 0.02): 0.97, (0.3, 0.1): 0.6, (0.7, 0.02): 0.9, (0.7, 0.1): 0.2}  # s10 came first


def test_the_tables_show_the_chosen_cell_in_percent(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(grid()))
    assert main(["--grid", str(path), "--train-clips", "1800", "--out", str(tmp_path / "abl")]) == 0
    md = (tmp_path / "abl.md").read_text()
    assert "Backdoored model: 90.0 / 100.0." in md and "cells ran on NVIDIA H200 (cuda)" in md
    assert "| 5 % | 90 | 80.0 ± 1.0 / 50.0 ± 2.0 | 80.0 ± 1.0 / 99.0 ± 2.0 |" in md
    assert "| 0.3 | 80.0 ± 1.0 / 97.0 ± 2.0 | 80.0 ± 1.0 / 60.0 ± 2.0 |" in md
    saved = json.loads((tmp_path / "abl.json").read_text())
    assert saved["before"]["attack_success_rate"] == 1 and len(saved["by_clean_share"]) == 2
