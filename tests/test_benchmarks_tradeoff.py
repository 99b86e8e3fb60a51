"""benchmarks/tradeoff.py: candidates are their effective settings (however a column was named, whatever the
Recommended preset was when a table was written), CA drops are against each table's own backdoored row,
a run read from two tables counts once, and the front and the target are computed over the same cells."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tradeoff import (  # noqa: E402
    BEFORE,
    ERAS,
    V1,
    V2,
    V4,
    V5,
    collect,
    effective,
    label,
    main,
    preset_name,
    summarise,
)
from core.presets import PRESETS  # noqa: E402


def cell(model, attack, defense, ca, asr, per_seed=None):
    r = {"model": model, "attack": attack, "defense": defense, "clean_accuracy": ca, "attack_success_rate": asr}
    if per_seed:
        r["per_seed"] = [
            {"seed": i, "clean_accuracy": c, "attack_success_rate": a} for i, (c, a) in enumerate(per_seed)
        ]
    return r


def table(path, rows, variants, split="validation"):
    path.write_text(json.dumps({"eval_split": split, "variants": variants, "rows": rows}))
    return str(path)


def test_a_recommended_column_means_the_preset_of_its_tables_era():
    old = next(t for t, era in ERAS.items() if era == V1)
    assert effective("gnft", "recommended", {}, "a_later_table") == {
        k: v for k, v in PRESETS["recommended"].settings.items()
    }
    then = effective("gnft", "recommended", {}, old)
    assert then != effective("gnft", "recommended", {}, "a_later_table") and "unlearn" not in then
    assert label("gnft", effective("gnft", "recommended", {}, "x")) == "the Recommended"
    assert label("gnft", effective("gnft", "recommended", {"lr": 0.01}, "x")) == "the Recommended with lr 0.01"
    assert label("ft", {"clean_ratio": 0.1}) == "ft: clean_ratio 0.1"


def test_a_table_that_recorded_its_settings_is_read_by_them_and_an_earlier_recommended_named(tmp_path):
    """A table's recorded ``defense_settings`` say what its columns ran (not today's preset); settings idle in a
    column do not count, and a Recommended column that ran an earlier Recommended is named after it."""
    assert effective("gnft", "recommended", {}, "x", {**BEFORE[V4], "seed": 3, "trigger_prune_when": "unflagged"}) == {
        k: v for k, v in BEFORE[V4].items()
    }  # trigger_prune_when is idle while trigger_prune is 0
    assert preset_name("gnft", effective("gnft", None, BEFORE[V2], "")) == V2
    assert preset_name("gnft", effective("gnft", None, BEFORE[V5], "")) == V5  # the one before today's
    assert effective("gnft", None, BEFORE[V5], "") != effective("gnft", "recommended", {}, "a_later_table")
    assert preset_name("gnft", effective("gnft", None, {"lr": 0.5}, "")) is None
    rows = [cell("smallcnn", "daba", "none", 0.9, 1.0), cell("smallcnn", "daba", "gnft@recommended", 0.88, 0.2)]
    path = tmp_path / "g.json"
    recorded = {"gnft@recommended": {**BEFORE[V1], "seed": 0}}
    variants = {"gnft@recommended": {"defense": "gnft", "preset": "recommended", "settings": {}}}
    path.write_text(json.dumps({"eval_split": "validation", "variants": variants, "rows": rows,
                                "defense_settings": recorded}))  # fmt: skip
    (only,) = summarise(collect([str(path)]))
    assert only["candidate"] == V1 and only["settings"] == effective("gnft", None, BEFORE[V1], "")


def test_candidates_drops_dedup_front_and_target(tmp_path):
    rec = {"defense": "gnft", "preset": "recommended", "settings": {}}
    push = {"defense": "gnft", "preset": "recommended", "settings": {"latent_reach": 0.5}}
    a = table(
        tmp_path / "a.json",
        [
            cell("resnet", "badnets", "none", 0.90, 1.0),
            cell("resnet", "badnets", "gnft@recommended", 0.89, 0.30),
            cell("resnet", "badnets", "p", 0.80, 0.0, per_seed=[(0.78, 0.0), (0.82, 0.0)]),
            cell("smallcnn", "blend", "none", 0.95, 1.0),
            cell("smallcnn", "blend", "gnft@recommended", 0.94, 0.90),
        ],
        {"gnft@recommended": rec, "p": push},
    )
    b = table(  # another table: a different backdoored model's CA, the same push named differently, a repeat
        tmp_path / "b.json",
        [
            cell("smallcnn", "blend", "none", 0.93, 1.0),
            cell("smallcnn", "blend", "latent", 0.92, 0.02),
            cell("resnet", "badnets", "none", 0.90, 1.0),
            cell("resnet", "badnets", "gnft@recommended", 0.89, 0.30),  # the same run as in a.json
        ],
        {"latent": push, "gnft@recommended": rec},
    )
    ignored = table(tmp_path / "c.json", [cell("resnet", "badnets", "none", 0.5, 1.0)], {}, split="test")
    rows = {r["candidate"]: r for r in summarise(collect([a, b, ignored]))}
    assert set(rows) == {"gnft@recommended", "p"}
    assert rows["p"]["columns"] == ["p", "latent"] and rows["p"]["label"] == "the Recommended with latent_reach 0.5"
    assert rows["p"]["cells"]["resnet badnets"]["ca_drop"] == pytest.approx(0.10)  # the mean of the seeds' drops
    assert rows["p"]["cells"]["resnet badnets"]["runs"] == 2
    assert rows["p"]["cells"]["smallcnn blend"]["ca_drop"] == pytest.approx(0.01)  # against b.json's own row
    assert rows["gnft@recommended"]["cells"]["resnet badnets"]["runs"] == 1  # read twice, counted once
    assert rows["p"]["mean_asr"] == pytest.approx(0.01) and rows["p"]["worst_ca_drop"] == pytest.approx(0.10)
    assert not rows["p"]["meets"]  # 10 points on the ResNet
    assert rows["p"]["front"] and rows["gnft@recommended"]["front"]  # each better on one of the two
    assert rows["gnft@recommended"]["mean_asr"] == pytest.approx(0.60)


def test_the_command_writes_its_three_files_and_refuses_an_empty_glob(tmp_path, capsys):
    a = table(
        tmp_path / "a.json",
        [cell("resnet", "badnets", "none", 0.90, 1.0), cell("resnet", "badnets", "ft", 0.895, 0.01)],
        {},
    )
    out = tmp_path / "t"
    assert main(["--grids", a, "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["rows"][0]["meets"] and data["rows"][0]["label"] == "ft: defaults"
    assert "| ft | ft: defaults | 1.0 / 0.5 |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert main(["--grids", str(tmp_path / "none*.json"), "--out", str(out)]) == 2
    assert "no table matches" in capsys.readouterr().err


def test_a_removed_option_recorded_off_is_dropped_and_recorded_on_is_shown():
    """A grid made by code that had an option since removed records it among its settings: at its off value the
    column is what it would be without it, at another value the label still says what ran."""
    recorded = {**PRESETS["recommended"].settings, "unlearn_match": 0.0, "match_depth": 1.0}
    assert effective("gnft", "recommended", {}, "x", recorded) == effective("gnft", "recommended", {}, "x")
    tried = effective("gnft", "recommended", {}, "x", {**recorded, "unlearn_match": 1.0, "match_depth": 0.5})
    assert tried["unlearn_match"] == 1.0 and tried["match_depth"] == 0.5
    assert label("gnft", tried) == "the Recommended with match_depth 0.5, unlearn_match 1"
