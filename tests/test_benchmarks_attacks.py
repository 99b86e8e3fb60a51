"""``benchmarks/attacks.py``: per-row epoch budgets and row selection, so one command reruns the table."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _attacks():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_attacks", ROOT / "benchmarks" / "attacks.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_the_last_matching_budget_rule_wins_and_reaches_the_row_args():
    m = _attacks()
    rules = [m.parse_budget("synth-scd10_*=40/10"), m.parse_budget("synth-scd10_resnet_*=30/6")]
    rows = m.plan(
        {"fsdd": ["--data", "F"], "synth-scd10": ["--data", "S"]},
        ["resnet", "smallcnn"],
        ["blend"],
        ["--seed", "0"],
        rules,
        (20, 5),
    )
    budgets = {
        r["name"]: (r["args"][r["args"].index("--epochs") + 1], r["args"][r["args"].index("--patience") + 1])
        for r in rows
    }
    assert budgets["fsdd_resnet_blend"] == ("20", "5")
    assert budgets["fsdd_smallcnn_clean_16k"] == ("20", "5")
    assert budgets["synth-scd10_smallcnn_blend"] == ("40", "10")
    assert budgets["synth-scd10_smallcnn_clean_16k"] == ("40", "10")
    assert budgets["synth-scd10_resnet_blend"] == ("30", "6")
    assert all(r["args"].count("--epochs") == 1 for r in rows)


@pytest.mark.parametrize("text", ["40/10", "x=40", "x=40/", "x=a/10", "x=0/3", "=40/10"])
def test_a_malformed_budget_is_refused_with_the_expected_form(text):
    with pytest.raises(argparse.ArgumentTypeError, match="PATTERN=EPOCHS/PATIENCE"):
        _attacks().parse_budget(text)


def test_only_runs_the_chosen_row_with_its_budget_and_tabulates_the_rest(tmp_path, tiny_fsdd):
    work, out = tmp_path / "work", tmp_path / "attacks"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/attacks.py",
            "--fsdd",
            str(tiny_fsdd),
            "--models",
            "smallcnn",
            "--attacks",
            "badnets",
            "--only",
            "fsdd_smallcnn_badnets",
            "--budget",
            "fsdd_*=2/1",
            "--threads",
            "1",
            "--work",
            str(work),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert not (work / "fsdd_smallcnn_clean_16k.json").exists()  # not chosen: not trained
    report = json.loads((work / "fsdd_smallcnn_badnets.json").read_text())
    assert (report["config"]["epochs"], report["config"]["patience"]) == (2, 1)
    rows = {r["name"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["fsdd_smallcnn_clean_16k"]["not_run"] is True
    badnets = rows["fsdd_smallcnn_badnets"]
    assert (badnets["epochs"], badnets["patience"]) == (2, 1)
    assert badnets["epochs_run"] == report["epochs_run"] <= 2
    assert badnets["attack_success_rate"] == report["attack_success_rate"]
    assert f"| {badnets['epochs_run']} (2 / 1) |" in out.with_suffix(".md").read_text()


def test_rows_missing_from_the_work_folder_keep_their_earlier_results(tmp_path, tiny_fsdd):
    """A fresh checkout has no work folder: the committed table must not turn into 'not run'."""
    work, out = tmp_path / "work", tmp_path / "attacks"
    args = [
        sys.executable,
        "benchmarks/attacks.py",
        "--fsdd",
        str(tiny_fsdd),
        "--models",
        "smallcnn",
        "--attacks",
        "badnets",
        "--work",
        str(work),
        "--out",
        str(out),
    ]
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "rows": [
                    {
                        "name": "fsdd_smallcnn_clean_16k",
                        "data": "fsdd",
                        "model": "smallcnn",
                        "attack": None,
                        "rate": "16k",
                        "clean_accuracy": 0.9,
                        "seconds": 10.0,
                        "epochs_run": 3,
                        "command": "python -m core.train A",
                    },
                    {
                        "name": "fsdd_smallcnn_badnets",
                        "data": "fsdd",
                        "model": "smallcnn",
                        "attack": "badnets",
                        "rate": "16k",
                        "clean_accuracy": 0.85,
                        "attack_success_rate": 0.99,
                        "seconds": 12.0,
                        "epochs_run": 4,
                        "command": "python -m core.train B",
                        "clean_model_accuracy": 0.5,
                        "clean_accuracy_drop": 0.35,
                    },
                ]
            }
        )
    )
    proc = subprocess.run([*args, "--report-only"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["fsdd_smallcnn_clean_16k"]["command"] == "python -m core.train A"
    badnets = rows["fsdd_smallcnn_badnets"]
    assert badnets["command"] == "python -m core.train B" and badnets["attack_success_rate"] == 0.99
    # the drop is recomputed from the clean row now in the table, not copied from the old file
    assert badnets["clean_model_accuracy"] == 0.9
    assert badnets["clean_accuracy_drop"] == pytest.approx(0.05)
    assert badnets["target_met"] is False  # drop 5 points > 2

    # a row that now has a work report replaces the earlier one
    (work / "fsdd_smallcnn_clean_16k.json").write_text(
        json.dumps(
            {
                "clean_accuracy": 0.86,
                "seconds": 5.0,
                "epochs_run": 2,
                "command": "python -m core.train C",
                "config": {"epochs": 2, "patience": 1},
            }
        )
    )
    proc = subprocess.run([*args, "--report-only"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["fsdd_smallcnn_clean_16k"]["command"] == "python -m core.train C"
    assert rows["fsdd_smallcnn_badnets"]["clean_accuracy_drop"] == pytest.approx(0.01)
    assert rows["fsdd_smallcnn_badnets"]["target_met"] is True
