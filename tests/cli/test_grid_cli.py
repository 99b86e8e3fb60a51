"""``python -m core.grid``: cells on disk, resuming, the paper-style table, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.attacks import attack_from_dict
from core.checkpoint import load_checkpoint
from core.cli import grid
from core.cli.grid import _attack_rate, main
from core.data.speech_commands import load_speech_commands
from core.defenses import DEFENSES
from core.errors import AttackError, ConfigError
from core.evaluation import evaluate
from core.presets import PRESETS
from core.repair import metrics_only
from core.runtime import machine_info, ran_on
from core.scan import ScanConfig, anomaly_index, pooled_index
from core.scan.reference import relative_sizes
from tests.conftest import write_speech_commands

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--vocab",
    "yes,no,up,down",
    "--n-coeffs",
    "20",
    "--n-mels",
    "40",
    "--hop-length",
    "320",
    "--models",
    "smallcnn",
    "--attacks",
    "badnets",
    "--attack-arg",
    "badnets.kind=noise",
    "--attack-arg",
    "badnets.poison_rate=0.2",
    "--train-epochs",
    "3",
    "--train-batch-size",
    "32",
    "--train-lr",
    "3e-3",
    "--device",
    "cpu",
    "--quiet",
    "--defense-arg",
    "ft.epochs=2",
    "--defense-arg",
    "gnft.epochs=2",
    "--defense-arg",
    "ft.clean_ratio=0.5",
    "--defense-arg",
    "gnft.clean_ratio=0.5",
    "--defense-arg",
    "gnft.eval_every=1",
]


def test_grid_writes_cells_table_and_resumes(tiny_sc, tmp_path, capsys):
    out = tmp_path / "grid_tiny.v1"  # a dot in the prefix must not be taken for a suffix
    assert main(["--data", str(tiny_sc), *TINY, "--defenses", "none,ft,gnft,clp", "--out", str(out)]) == 0
    work = tmp_path / "grid_tiny.v1_work"
    names = sorted(p.name for p in work.iterdir())
    assert names == [
        "defend_smallcnn_badnets_clp.json",
        "defend_smallcnn_badnets_clp.safetensors",
        "defend_smallcnn_badnets_ft.json",
        "defend_smallcnn_badnets_ft.safetensors",
        "defend_smallcnn_badnets_gnft.json",
        "defend_smallcnn_badnets_gnft.safetensors",
        "train_smallcnn_badnets.json",
        "train_smallcnn_badnets.safetensors",
        "train_smallcnn_clean.json",
        "train_smallcnn_clean.safetensors",
    ]
    result = json.loads((tmp_path / "grid_tiny.v1.json").read_text())
    assert result["command"].startswith("python -m core.grid") and "machine" in result
    assert result["eval_split"] == "test"  # the default
    assert not any(p.name.startswith("eval_") for p in work.iterdir())  # the training report holds test figures
    rows = {(r["attack"], r["defense"]): r for r in result["rows"]}
    assert set(rows) == {
        ("clean", "none"),
        ("badnets", "none"),
        ("badnets", "ft"),
        ("badnets", "gnft"),
        ("badnets", "clp"),
    }
    assert rows[("clean", "none")]["attack_success_rate"] is None
    backdoored = rows[("badnets", "none")]
    _, meta = load_checkpoint(work / "train_smallcnn_badnets.safetensors")
    assert backdoored["clean_accuracy"] == meta["provenance"]["training"]["test"]["clean_accuracy"]
    gnft_cell = json.loads((work / "defend_smallcnn_badnets_gnft.json").read_text())
    assert gnft_cell["eval_split"] == "test"
    assert gnft_cell["before"]["attack_success_rate"] == backdoored["attack_success_rate"]
    assert rows[("badnets", "gnft")]["attack_success_rate"] == gnft_cell["after"]["attack_success_rate"]
    assert gnft_cell["defense"]["epochs"] == 2 and gnft_cell["defense"]["alpha"] == 0.7
    assert [h["epoch"] for h in gnft_cell["history"]] == [1, 2]
    repaired, repaired_meta = load_checkpoint(work / "defend_smallcnn_badnets_gnft.safetensors")
    assert repaired_meta["provenance"]["defenses"][-1]["defense"]["name"] == "gnft"
    assert (
        repaired_meta["provenance"]["defenses"][-1]["after"]["clean_accuracy"] == gnft_cell["after"]["clean_accuracy"]
    )
    assert rows[("badnets", "clp")]["clean_clips"] == 0  # data-free
    assert result["defense_settings"]["ft"]["clean_ratio"] == 0.5
    md = (tmp_path / "grid_tiny.v1.md").read_text()
    assert "| model | attack | clean model CA | none | ft | gnft | clp |" in md
    assert "CA / ASR in % on the test split" in md
    line = next(row for row in md.splitlines() if row.startswith("| smallcnn | badnets |"))
    assert f"{100 * rows[('badnets', 'gnft')]['clean_accuracy']:.1f} / " in line
    # resume: finished cells are reused, only the new defense runs
    stamps = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    capsys.readouterr()
    assert (
        main(
            [
                "--data",
                str(tiny_sc),
                *TINY,
                "--defenses",
                "none,ft,gnft,clp,fp",
                "--defense-arg",
                "fp.epochs=1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir() if p.name in stamps} == stamps
    assert (work / "defend_smallcnn_badnets_fp.json").is_file()
    again = json.loads((tmp_path / "grid_tiny.v1.json").read_text())
    assert (
        len(again["rows"]) == 6
        and (work / "defend_smallcnn_badnets_fp.safetensors").is_file()
        and [r for r in again["rows"] if r["defense"] != "fp"] == result["rows"]
    )
    # a model in the work folder is reused only for the recipe that made it: another target, seed or training
    # setting is refused before any work, naming what differs (it was reused silently, and the table's command
    # then did not say how its model was made)
    stamps = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    for extra, model, named in (
        (["--attack-arg", "badnets.target=3"], "badnets", "badnets.target 2 there, 3 now"),
        (["--seed", "5"], "clean", "seed 0 there, 5 now"),  # the clean model is checked first
        (["--seed", "5", "--no-clean"], "badnets", "badnets.seed 0 there, 5 now; seed 0 there, 5 now"),
        (["--train-epochs", "4"], "clean", "epochs 3 there, 4 now"),
        (["--n-coeffs", "13", "--no-clean"], "badnets", "front end n_coeffs 20 there, 13 now"),
    ):
        run = ["--data", str(tiny_sc), *TINY[: TINY.index("--defense-arg")], *extra, "--defenses", "none"]
        with pytest.raises(ConfigError, match=re.escape(named)) as refused:
            main([*run, "--out", str(out)])
        assert str(refused.value).startswith(f"{work / f'train_smallcnn_{model}.safetensors'} was trained with")
        assert "delete it and its .json to train the cell again, or use another --work" in str(refused.value)
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == stamps
    # --reuse: models trained elsewhere become a new grid's cells, checked and re-measured, not retrained
    other = tmp_path / "elsewhere"
    no_defense = TINY[: TINY.index("--defense-arg")]
    assert (
        main(
            [
                "--data",
                str(tiny_sc),
                *no_defense,
                "--defenses",
                "none",
                "--out",
                str(other),
                "--reuse",
                str(work / "train_{model}_{attack}.safetensors"),
                "--train-epochs",
                "1",
            ]
        )
        == 0
    )
    for name in ("train_smallcnn_badnets", "train_smallcnn_clean"):
        copied = tmp_path / "elsewhere_work" / f"{name}.safetensors"
        assert copied.read_bytes() == (work / f"{name}.safetensors").read_bytes()
        assert json.loads(copied.with_suffix(".json").read_text())["reused_from"] == str(work / f"{name}.safetensors")
    reused = {(r["attack"], r["defense"]): r for r in json.loads(other.with_suffix(".json").read_text())["rows"]}
    for key in (("clean", "none"), ("badnets", "none")):
        assert reused[key]["clean_accuracy"] == rows[key]["clean_accuracy"]
        assert reused[key]["attack_success_rate"] == rows[key]["attack_success_rate"]
    with pytest.raises(
        ConfigError, match=r"does not fit cell smallcnn/badnets: attack 'clean' \(the cell needs 'badnets'\)"
    ):
        main(
            [
                "--data",
                str(tiny_sc),
                *no_defense,
                "--defenses",
                "none",
                "--out",
                str(tmp_path / "wrong"),
                "--reuse",
                str(work / "train_{model}_clean.safetensors"),
            ]
        )
    # --no-train: a cell with no model to adopt is reported as not run; nothing is trained or defended
    partial = tmp_path / "partial"
    assert (
        main(
            [
                "--data",
                str(tiny_sc),
                *no_defense,
                "--attacks",
                "badnets,blend",
                "--defenses",
                "none,ft",
                "--defense-arg",
                "ft.epochs=1",
                "--no-train",
                "--out",
                str(partial),
                "--reuse",
                str(work / "train_{model}_{attack}.safetensors"),
            ]
        )
        == 0
    )
    made = sorted(p.name for p in (tmp_path / "partial_work").iterdir())
    assert made == [
        "defend_smallcnn_badnets_ft.json",
        "defend_smallcnn_badnets_ft.safetensors",
        "train_smallcnn_badnets.json",
        "train_smallcnn_badnets.safetensors",
        "train_smallcnn_clean.json",
        "train_smallcnn_clean.safetensors",
    ]
    partial_rows = json.loads(partial.with_suffix(".json").read_text())["rows"]
    assert [(r["attack"], r["defense"]) for r in partial_rows if r.get("not_run")] == [("blend", "none")]
    assert not any(r["attack"] == "blend" and r["defense"] == "ft" for r in partial_rows)
    assert "| smallcnn | blend | " in partial.with_suffix(".md").read_text()
    assert "| not run | - |" in partial.with_suffix(".md").read_text()


def test_keep_earlier_extends_a_committed_table_without_its_work_folder(tiny_sc, tmp_path):
    """A fresh checkout has the results file but not the work folder: --keep-earlier keeps the
    earlier pairs (with their commands) beside the new ones, and refuses other settings or data."""
    out = tmp_path / "grid"
    base = ["--data", str(tiny_sc), *TINY, "--defenses", "none,ft,gnft", "--no-train", "--no-clean", "--out", str(out)]
    assert main(base) == 0  # nothing to adopt: a not-run row, this data's summary and these settings
    made = json.loads(out.with_suffix(".json").read_text())
    earlier_rows = [
        {
            "model": "smallcnn",
            "attack": "blend",
            "defense": "none",
            "sample_rate": 16000,
            "clean_accuracy": 0.9,
            "attack_success_rate": 0.99,
            "robust_accuracy": 0.0,
        },
        {
            "model": "smallcnn",
            "attack": "blend",
            "defense": "gnft",
            "sample_rate": 16000,
            "clean_accuracy": 0.8,
            "attack_success_rate": 0.05,
            "robust_accuracy": 0.7,
        },
        {
            "model": "smallcnn",
            "attack": "badnets",
            "defense": "none",
            "sample_rate": 16000,
            "clean_accuracy": 0.7,
            "attack_success_rate": 1.0,
            "robust_accuracy": 0.0,
        },
    ]
    out.with_suffix(".json").write_text(
        json.dumps({**made, "command": "python -m core.grid EARLIER", "rows": earlier_rows})
    )
    assert main([*base, "--keep-earlier"]) == 0
    rows = {(r["attack"], r["defense"]): r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows[("blend", "gnft")]["attack_success_rate"] == 0.05
    assert rows[("blend", "gnft")]["command"] == "python -m core.grid EARLIER"
    # badnets had a model then and none now: the earlier figures stay rather than a 'not run'
    assert rows[("badnets", "none")]["clean_accuracy"] == 0.7
    assert rows[("badnets", "none")]["command"] == "python -m core.grid EARLIER"
    md = out.with_suffix(".md").read_text()
    assert "| smallcnn | blend | - | 90.0 / 99.0 | - | 80.0 / 5.0 |" in md
    # a defense only the earlier file ran keeps its settings in the file
    earlier_settings = {**made["defense_settings"], "clp": {"u": 3.0}}
    out.with_suffix(".json").write_text(
        json.dumps({**made, "defense_settings": earlier_settings, "rows": earlier_rows})
    )
    assert main([*base, "--keep-earlier"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["defense_settings"] == earlier_settings
    # without the flag the earlier rows are not kept
    out.with_suffix(".json").write_text(json.dumps({**made, "rows": earlier_rows}))
    assert main(base) == 0
    assert {r["attack"] for r in json.loads(out.with_suffix(".json").read_text())["rows"]} == {"badnets"}
    # other defense settings or other data: refused, and the earlier file is left as it was
    out.with_suffix(".json").write_text(json.dumps({**made, "rows": earlier_rows}))
    with pytest.raises(ConfigError, match="other gnft settings"):
        main([*base, "--keep-earlier", "--defense-arg", "gnft.alpha=0.5"])
    other_data = {**made, "data": {**made["data"], "clips": made["data"]["clips"] + 1}, "rows": earlier_rows}
    out.with_suffix(".json").write_text(json.dumps(other_data))
    with pytest.raises(ConfigError, match="other data"):
        main([*base, "--keep-earlier"])
    assert json.loads(out.with_suffix(".json").read_text()) == other_data


def test_ultrasonic_cells_run_at_its_recipe_rate_beside_16k_cells(tiny_sc, tmp_path):
    """A 16 kHz grid with Ultrasonic: its cells (and a clean reference) at 44.1 kHz, windows kept in time."""
    out = tmp_path / "mixed"
    assert (
        main(
            [
                "--data",
                str(tiny_sc),
                *TINY,
                "--attacks",
                "badnets,ultrasonic",
                "--defenses",
                "none,ft,gnft",
                "--attack-arg",
                "ultrasonic.poison_rate=0.2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    work = tmp_path / "mixed_work"
    rates = {}
    for name in ("clean", "clean_44k", "badnets", "ultrasonic"):
        _, meta = load_checkpoint(work / f"train_smallcnn_{name}.safetensors")
        rates[name] = (
            meta["sample_rate"],
            meta["front_end"]["n_fft"],
            meta["front_end"]["hop_length"],
            meta["front_end"]["num_samples"],
        )
    assert rates["clean"] == rates["badnets"] == (16000, 400, 320, 16000)
    assert rates["clean_44k"] == rates["ultrasonic"] == (44100, 1103, 882, 44100)
    _, repaired = load_checkpoint(work / "defend_smallcnn_ultrasonic_ft.safetensors")
    assert repaired["sample_rate"] == 44100
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    by_key = {(r["attack"], r["defense"], r["sample_rate"]): r for r in rows}
    assert set(by_key) == {
        ("clean", "none", 16000),
        ("clean", "none", 44100),
        *(("badnets", d, 16000) for d in ("none", "ft", "gnft")),
        *(("ultrasonic", d, 44100) for d in ("none", "ft", "gnft")),
    }
    assert by_key[("ultrasonic", "ft", 44100)]["attack_success_rate"] is not None
    md = out.with_suffix(".md").read_text()
    clean_44k = by_key[("clean", "none", 44100)]["clean_accuracy"]
    clean_16k = by_key[("clean", "none", 16000)]["clean_accuracy"]
    assert f"| smallcnn | ultrasonic (44.1 kHz) | {100 * clean_44k:.1f} |" in md
    assert f"| smallcnn | badnets (16 kHz) | {100 * clean_16k:.1f} |" in md
    # the 44.1 kHz copy of the data was dropped when the 16 kHz cells began: one copy held, not both
    assert [d.sample_rate for d in grid._DATA.values()] == [16000]


def test_attack_rate_moves_only_attacks_that_cannot_exist_at_the_grid_rate():
    assert _attack_rate("ultrasonic", {}, 16000) == 44100
    assert _attack_rate("ultrasonic", {}, 44100) == 44100
    assert _attack_rate("ultrasonic-near-nyquist", {}, 16000) == 16000  # the audible substitute stays
    assert _attack_rate("badnets", {}, 16000) == 16000
    with pytest.raises(AttackError, match="size"):
        _attack_rate("ultrasonic", {"size": "200"}, 16000)  # wrong at every rate: refused, not moved


def test_defense_seeds_repeat_each_defense_cell_and_report_mean_and_spread(tiny_sc, tmp_path):
    """--defense-seeds: the --seed cell keeps its name (an earlier grid's cell is reused), each other
    seed is its own cell; the row is the seeds' mean with per-seed figures and standard deviations."""
    out = tmp_path / "seeds"
    work = tmp_path / "seeds_work"
    ft_only = [a for a, b in zip(TINY, [*TINY[1:], ""]) if not a.startswith("gnft.") and not b.startswith("gnft.")]
    base = ["--data", str(tiny_sc), *ft_only, "--defenses", "none,ft", "--no-clean", "--out", str(out)]
    assert main(base) == 0
    first = (work / "defend_smallcnn_badnets_ft.json").stat().st_mtime_ns
    assert main([*base, "--defense-seeds", "0,1,2"]) == 0
    assert (work / "defend_smallcnn_badnets_ft.json").stat().st_mtime_ns == first  # seed 0: reused
    cells = {
        s: json.loads((work / f"defend_smallcnn_badnets_ft{'' if s == 0 else f'_seed{s}'}.json").read_text())
        for s in (0, 1, 2)
    }
    assert [cells[s]["defense"]["seed"] for s in (0, 1, 2)] == [0, 1, 2]
    assert (work / "defend_smallcnn_badnets_ft_seed1.safetensors").read_bytes() != (
        work / "defend_smallcnn_badnets_ft.safetensors"
    ).read_bytes()
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["defense_seeds"] == [0, 1, 2]
    row = next(r for r in result["rows"] if r["defense"] == "ft")
    for key in ("clean_accuracy", "attack_success_rate"):
        vals = [cells[s]["after"][key] for s in (0, 1, 2)]
        mean = sum(vals) / 3
        assert row[key] == pytest.approx(mean)
        assert row[f"{key}_std"] == pytest.approx((sum((v - mean) ** 2 for v in vals) / 2) ** 0.5)
    assert [p["seed"] for p in row["per_seed"]] == [0, 1, 2]
    assert row["per_seed"][1]["clean_accuracy"] == cells[1]["after"]["clean_accuracy"]
    md = out.with_suffix(".md").read_text()
    assert "mean ± standard deviation over defense seeds 0, 1, 2" in md
    line = next(row for row in md.splitlines() if row.startswith("| smallcnn | badnets |"))
    assert f"{100 * row['clean_accuracy']:.1f} ± {100 * row['clean_accuracy_std']:.1f} / " in line
    none_row = next(r for r in result["rows"] if r["defense"] == "none")
    assert "seeds" not in none_row  # the backdoored model is trained once
    here = ran_on(machine_info(torch.device("cpu")))
    assert none_row["ran_on"] == here and row["ran_on"] == [here] * 3  # where each seed's cell ran
    assert f"Defense cells ran on: {here} (3)." in md

    # a grid resumed elsewhere: each cell keeps the machine it ran on, and the caption counts both
    moved = {**cells[2], "machine": {**cells[2]["machine"], "device": "cuda", "gpu": "NVIDIA H200"}}
    (work / "defend_smallcnn_badnets_ft_seed2.json").write_text(json.dumps(moved))
    assert main([*base, "--defense-seeds", "0,1,2", "--no-defend"]) == 0
    row = next(r for r in json.loads(out.with_suffix(".json").read_text())["rows"] if r["defense"] == "ft")
    assert row["ran_on"] == [here, here, "NVIDIA H200 (cuda)"]
    assert f"Defense cells ran on: {here} (2), NVIDIA H200 (cuda) (1)." in out.with_suffix(".md").read_text()

    # --no-defend tabulates what --work holds: seed 3 and the gnft column were never run and are not now
    (work / "defend_smallcnn_badnets_ft_seed1.json").unlink()
    before = sorted(p.name for p in work.iterdir())
    partial_argv = [*base[:-2], "--out", str(out) + "_partial", "--work", str(work), "--defenses", "none,ft,fp"]
    assert main([*partial_argv, "--defense-seeds", "0,1,3", "--no-defend"]) == 0
    assert sorted(p.name for p in work.iterdir()) == before  # nothing run, nothing written in --work
    partial = json.loads(Path(str(out) + "_partial.json").read_text())
    row = next(r for r in partial["rows"] if r["defense"] == "ft")
    assert row["seeds"] == [0] and row["clean_accuracy"] == cells[0]["after"]["clean_accuracy"]
    assert not any(r["defense"] == "fp" for r in partial["rows"])
    line = next(r for r in Path(str(out) + "_partial.md").read_text().splitlines() if r.startswith("| smallcnn |"))
    assert line.endswith(" (seed 0 only) | - |")


def test_variants_are_columns_of_their_own_cells_and_resume_only_with_their_settings(tiny_sc, tmp_path, monkeypatch):
    """gnft three times in one table: the plain column (with --defense-arg), a preset (gnft@recommended)
    and user variants (one from the paper preset, one from gnft's defaults); each is its own cell file,
    row and column, and a finished cell is reused only while its column declares the same settings."""
    # the Recommended's own settings but 3 epochs, so the suite stays fast (its values: tests/core/test_presets.py)
    short = dataclasses.replace(PRESETS["recommended"], settings={**PRESETS["recommended"].settings, "epochs": 3})
    monkeypatch.setitem(PRESETS, "recommended", short)
    out, work = tmp_path / "variants", tmp_path / "variants_work"
    variants = [
        "--variant",
        "paper2=gnft@paper:epochs=2,eval_every=1",
        "--variant",
        "r02=gnft:r=0.2,clean_ratio=0.5,epochs=1",
    ]
    columns = "none,ft,gnft,gnft@recommended,paper2,r02"
    base = ["--data", str(tiny_sc), *TINY, "--no-clean", "--defenses", columns, "--out", str(out)]
    assert main([*base, *variants]) == 0
    cells = {
        c: json.loads((work / f"defend_smallcnn_badnets_{c}.json").read_text())
        for c in ("ft", "gnft", "gnft@recommended", "paper2", "r02")
    }
    assert all((work / f"defend_smallcnn_badnets_{c}.safetensors").is_file() for c in cells)
    recommended = cells["gnft@recommended"]["defense"]
    assert {k: recommended[k] for k in PRESETS["recommended"].settings} == dict(PRESETS["recommended"].settings)
    assert recommended["epochs"] == 3 and recommended["alpha"] == 0.7  # --defense-arg gnft.* is the plain column's
    assert cells["gnft@recommended"]["preset"] == {"name": "recommended"}
    assert cells["gnft"]["defense"]["epochs"] == 2 and cells["gnft"]["defense"]["clean_ratio"] == 0.5
    paper2 = cells["paper2"]["defense"]
    assert (paper2["epochs"], paper2["lr"], paper2["r"], paper2["clean_ratio"]) == (2, 0.001, 0.05, 0.05)
    assert cells["paper2"]["preset"] == {"name": "custom", "from": "paper", "changed": {"epochs": 2, "eval_every": 1}}
    r02 = cells["r02"]["defense"]
    assert (r02["name"], r02["r"], r02["clean_ratio"], r02["epochs"], r02["lr"]) == ("gnft", 0.2, 0.5, 1, 0.001)
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["variants"] == {
        "gnft@recommended": {"defense": "gnft", "preset": "recommended", "settings": {}},
        "paper2": {"defense": "gnft", "preset": "paper", "settings": {"epochs": 2, "eval_every": 1}},
        "r02": {"defense": "gnft", "preset": None, "settings": {"r": 0.2, "clean_ratio": 0.5, "epochs": 1}},
    }
    assert result["defense_settings"]["r02"] == {k: v for k, v in r02.items() if k != "name"}
    assert result["defense_settings"]["gnft"]["epochs"] == 2
    rows = {r["defense"]: r for r in result["rows"]}
    assert list(rows) == columns.split(",")
    for c, cell in cells.items():
        assert rows[c]["attack_success_rate"] == cell["after"]["attack_success_rate"]
        assert rows[c]["clean_accuracy"] == cell["after"]["clean_accuracy"]
        assert rows[c]["defense_name"] == cell["defense"]["name"] and rows[c]["preset"] == cell["preset"]
    assert rows["r02"]["clean_clips"] == cells["r02"]["clean_clips"] > rows["gnft@recommended"]["clean_clips"]
    md = out.with_suffix(".md").read_text()
    assert "| model | attack | clean model CA | none | ft | gnft | gnft@recommended | paper2 | r02 |" in md
    assert "| mean over model × attack | none | ft | gnft | gnft@recommended | paper2 | r02 |" in md
    assert "`paper2`: gnft, preset paper, with epochs=2, eval_every=1" in md
    assert "`r02`: gnft with r=0.2, clean_ratio=0.5, epochs=1" in md
    line = next(row for row in md.splitlines() if row.startswith("| smallcnn | badnets |"))
    assert line.count(" / ") == 6
    asr_means = next(row for row in md.splitlines() if row.startswith("| ASR |")).split(" | ")[1:]
    assert asr_means[-1].rstrip(" |") == f"{100 * rows['r02']['attack_success_rate']:.1f}"
    # resume with the same declarations: every cell is reused
    stamps = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    assert main([*base, *variants]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == stamps
    # a variant now declared otherwise: its old cell is refused before any work, and left as it was
    changed = [*variants[:3], "r02=gnft:r=0.3,clean_ratio=0.5,epochs=1"]
    with pytest.raises(
        ConfigError,
        match=r"defend_smallcnn_badnets_r02\.json was made with other r02 settings .*r 0\.2 there, 0\.3 now",
    ):
        main([*base, *changed])
    # the same for a plain column whose --defense-arg changed
    with pytest.raises(ConfigError, match=r"other gnft settings .*alpha 0\.7 there, 0\.5 now"):
        main([*base, *variants, "--defense-arg", "gnft.alpha=0.5"])
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == stamps
    # a setting that acts only with latent unlearning, which these cells did not run: the cell is reused
    assert main([*base, *variants, "--defense-arg", "gnft.latent_radius=0.9"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == stamps
    with pytest.raises(ConfigError, match=r"other gnft settings .*unlearn_latent 0\.0 there, 0\.2 now"):
        main([*base, *variants, "--defense-arg", "gnft.unlearn_latent=0.2"])
    # deleting the cell runs it again with the new settings; the others are still reused
    (work / "defend_smallcnn_badnets_r02.json").unlink()
    assert main([*base, *changed]) == 0
    assert json.loads((work / "defend_smallcnn_badnets_r02.json").read_text())["defense"]["r"] == 0.3
    assert (work / "defend_smallcnn_badnets_paper2.json").stat().st_mtime_ns == stamps[
        "defend_smallcnn_badnets_paper2.json"
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--variant", "x"], "--variant takes NAME=DEFENSE[@PRESET][:KEY=VALUE,KEY=VALUE...], got 'x'"),
        (["--variant", "x=gnft:"], "--variant takes NAME=DEFENSE"),
        (["--defenses", "none,x", "--variant", "x=gnft:r"], "--variant x takes key=value, got 'r'"),
        (["--defenses", "none,x", "--variant", "x=gnft@best"], "--variant x: unknown preset 'best' (one of"),
        (["--defenses", "none,x", "--variant", "x=magic"], "--variant x: unknown defense 'magic'"),
        (["--defenses", "none,gnft@best"], "--defenses gnft@best: unknown preset 'best'"),
        (["--defenses", "none,x", "--variant", "x=ft@recommended"], "--variant x: preset 'recommended' is a gnft"),
        (["--defenses", "none,x", "--variant", "x=gnft:beta=1"], "--variant x gnft.beta: gnft has no such setting"),
        (["--defenses", "none,x", "--variant", "x=gnft@paper:alpha=2"], "--variant x: alpha must be in [0, 1]"),
        (["--defenses", "none,x", "--variant", "x=gnft:lr=fast"], "--variant x gnft.lr: cannot read 'fast'"),
        (["--variant", "x=gnft"], "--variant x is declared but not in --defenses"),
        (["--defenses", "none,x", "--variant", "x=gnft", "--variant", "x=ft"], "--variant x is declared twice"),
        (["--defenses", "none,gnft", "--variant", "gnft=ft"], "'gnft' is a column of its own already"),
        (["--defenses", "none,g_seed1", "--variant", "g_seed1=gnft"], "not ending in _seed<N>"),
        (["--defenses", "none,gnft,gnft"], "--defenses names gnft more than once"),
        (["--defenses", "none,gnft@paper", "--defense-arg", "gnft.epochs=2"], "sets the plain gnft column only"),
        (["--defenses", "none,x", "--variant", "x=gnft", "--defense-arg", "x.epochs=2"], "plain x column only"),
    ],
)
def test_bad_variants_are_refused_naming_the_option_before_any_work(tiny_sc, tmp_path, extra, message):
    with pytest.raises(ConfigError) as caught:
        main(
            [
                "--data",
                str(tiny_sc),
                "--vocab",
                "yes,no,up,down",
                "--defenses",
                "none,ft",
                *extra,
                "--out",
                str(tmp_path / "g"),
            ]
        )
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "g_work").exists()


def test_keep_earlier_compares_a_variant_with_its_defense_defaults(tmp_path):
    """A variant column of an earlier file is compared like a plain one, a missing setting read as the
    default of the variant's defense."""
    now = dataclasses.asdict(PRESETS["paper"].config())
    older = {k: v for k, v in now.items() if k != "spec_augment"}
    path = tmp_path / "g.json"
    path.write_text(
        json.dumps({"command": "OLD", "data": {"clips": 3}, "defense_settings": {"gnft@paper": older}, "rows": []})
    )
    _, settings = grid._with_earlier_rows([], path, {"gnft@paper": now}, {"clips": 3}, {"gnft@paper": "gnft"})
    assert settings == {"gnft@paper": now}
    with pytest.raises(ConfigError, match="other gnft@paper settings"):
        grid._with_earlier_rows([], path, {"gnft@paper": {**now, "lr": 0.01}}, {"clips": 3}, {"gnft@paper": "gnft"})


def test_keep_earlier_refuses_a_table_whose_scans_searched_other_domains(tmp_path):
    """An unlearning column's cells rest on the scan's domains: a table of scans of other domains (recorded,
    named by its command, or, with neither, the default before the record) is not extended."""
    now = dataclasses.asdict(PRESETS["recommended"].config())
    path = tmp_path / "g.json"

    def earlier(**extra):
        base = {"command": "OLD", "data": {"clips": 3}, "defense_settings": {"gnft@recommended": now}, "rows": []}
        path.write_text(json.dumps({**base, **extra}))

    args = ([], path, {"gnft@recommended": now}, {"clips": 3}, {"gnft@recommended": "gnft"}, "test")
    earlier(scan_domains="features,waveform,spectrum,mix")
    assert grid._with_earlier_rows(*args, "features,waveform,spectrum,mix")[1] == {"gnft@recommended": now}
    with pytest.raises(ConfigError, match="scans of features,waveform,spectrum,mix and this run scans features"):
        grid._with_earlier_rows(*args, "features,waveform")
    earlier(command="python -m core.grid --scan-domains features,mix --out g")
    assert grid.scan_domains_of(json.loads(path.read_text())) == "features,mix"
    earlier()  # written before the record, by a command without --scan-domains: the default of then
    assert grid.scan_domains_of(json.loads(path.read_text())) == grid.SCAN_DOMAINS_BEFORE_RECORD
    with pytest.raises(ConfigError, match="--scan-domains"):
        grid._with_earlier_rows(*args, ScanConfig().domains)
    assert grid._with_earlier_rows(*args, None)[1] == {"gnft@recommended": now}  # no column unlearns: not checked


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--defense-seeds", "0,0"], "no repeats"),
        (["--defense-seeds", "0,x"], "comma list of integers"),
        (["--attacks", "ultrasonic", "--attack-arg", "ultrasonic.size=500"], "size is a percentage"),
        (["--defenses", "none,magic"], "unknown attack or defense: magic"),
        (["--defense-arg", "gnft.alpha=2"], "alpha must be in [0, 1]"),
        (["--defense-arg", "gnft.beta=1"], "gnft has no such setting"),
        (["--defense-arg", "ft.lr=fast"], "cannot read 'fast' as float"),
        (["--defense-arg", "epochs=3"], "takes NAME.key=value"),
        (["--models", "transformer"], "transformer"),
        (["--defenses", "none,ft@paper"], "--defenses ft@paper: preset 'paper' is a gnft preset; it cannot run ft"),
        (["--defenses", "none,x", "--variant", "x=gnft:beta=1"], "--variant x gnft.beta: gnft has no such setting"),
    ],
)
def test_bad_input_is_one_line_before_any_work(tiny_sc, tmp_path, extra, message):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.grid",
            "--data",
            str(tiny_sc),
            "--vocab",
            "yes,no,up,down",
            "--defenses",
            "none,ft,gnft",
            *extra,
            "--out",
            str(tmp_path / "g"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "g_work").exists()


def test_keep_earlier_keys_clean_models_by_rate(tmp_path):
    """A run that adopts only the 44.1 kHz clean model keeps the earlier 16 kHz one (the bug: it was dropped)."""

    def row(attack, rate, ca, **extra):
        return {
            "model": "resnet",
            "attack": attack,
            "defense": "none",
            "sample_rate": rate,
            "clean_accuracy": ca,
            "attack_success_rate": None,
            "robust_accuracy": None,
            **extra,
        }

    path = tmp_path / "g.json"
    path.write_text(
        json.dumps(
            {
                "command": "python -m core.grid OLD",
                "data": {"clips": 3},
                "defense_settings": {},
                "rows": [row("clean", 16000, 0.95), row("badnets", 16000, 0.9)],
            }
        )
    )
    now = [
        row("clean", 16000, None, not_run=True),
        row("clean", 44100, 0.91, command="NEW"),
        row("badnets", 16000, 0.8, command="NEW"),
    ]
    merged, settings = grid._with_earlier_rows(now, path, {"gnft": {"lr": 0.01}}, {"clips": 3})
    assert settings == {"gnft": {"lr": 0.01}}
    by_cell = {(r["attack"], r["sample_rate"]): r for r in merged}
    assert len(merged) == 3 and not any(r.get("not_run") for r in merged)
    assert by_cell[("clean", 16000)]["clean_accuracy"] == 0.95
    assert by_cell[("clean", 16000)]["command"] == "python -m core.grid OLD"
    assert by_cell[("clean", 44100)]["command"] == "NEW" and by_cell[("badnets", 16000)]["clean_accuracy"] == 0.8


def test_keep_earlier_reads_a_setting_added_since_as_its_default(tmp_path):
    """A file written before a defense gained a setting ran with that setting's default; only a run
    that sets it otherwise is refused."""
    now = dataclasses.asdict(DEFENSES["gnft"].Config())
    older = {k: v for k, v in now.items() if k != "spec_augment"}  # the field did not exist yet
    path = tmp_path / "g.json"
    path.write_text(
        json.dumps({"command": "OLD", "data": {"clips": 3}, "defense_settings": {"gnft": older}, "rows": []})
    )
    merged, settings = grid._with_earlier_rows([], path, {"gnft": now}, {"clips": 3})
    assert settings == {"gnft": now}
    with pytest.raises(ConfigError, match="other gnft settings"):
        grid._with_earlier_rows([], path, {"gnft": {**now, "spec_augment": 0.2}}, {"clips": 3})
    with pytest.raises(ConfigError, match="other gnft settings"):
        grid._with_earlier_rows([], path, {"gnft": {**now, "alpha": 0.5}}, {"clips": 3})


def test_jobs_run_the_cells_in_worker_processes_with_the_same_numbers(tiny_sc, tmp_path):
    """``--jobs 2 --threads 1``: the cells run in two spawned workers, defenses as soon as their model is
    trained, and give the in-process grid's numbers and cell files."""
    common = ["--data", str(tiny_sc), *TINY, "--defenses", "none,ft,gnft", "--threads", "1"]
    assert main([*common, "--out", str(tmp_path / "inline")]) == 0
    assert main([*common, "--jobs", "2", "--out", str(tmp_path / "jobs")]) == 0

    def rows(name):
        return [
            {k: v for k, v in r.items() if k != "seconds"} for r in json.loads((tmp_path / name).read_text())["rows"]
        ]

    assert len(rows("inline.json")) == 4 and rows("jobs.json") == rows("inline.json")
    result = json.loads((tmp_path / "jobs.json").read_text())
    assert (result["jobs"], result["threads_per_cell"], result["machine"]["torch_threads"]) == (2, 1, 1)
    assert sorted(p.name for p in (tmp_path / "jobs_work").iterdir()) == sorted(
        p.name for p in (tmp_path / "inline_work").iterdir()
    )
    cell = "defend_smallcnn_badnets_gnft.json"
    inline, jobs = (json.loads((tmp_path / w / cell).read_text()) for w in ("inline_work", "jobs_work"))
    assert jobs["history"] == inline["history"] and jobs["after"] == inline["after"]
    with pytest.raises(ConfigError, match=r"--jobs must be in \[1, 1024\], got 0"):
        main([*common, "--jobs", "0", "--out", str(tmp_path / "none")])


def _figures(checkpoint: Path, data_dir: Path, split: str) -> dict[str, float]:
    """CA / ASR / RA of a grid checkpoint on ``split``, measured here with the attack it records."""
    model, meta = load_checkpoint(checkpoint)
    attack = attack_from_dict(meta["provenance"]["attack"], sample_rate=meta["sample_rate"])
    return metrics_only(evaluate(model, load_speech_commands(data_dir, ["yes", "no", "up", "down"]), split, attack))


def test_a_validation_grid_reuses_the_test_grids_models_and_measures_on_validation(tmp_path):
    """--eval-split validation: the trained model's figures (its own eval cell, not redone on resume)
    and every defense cell are on the validation split, equal to core.evaluation's there and not the
    test figures; the split is recorded, named in the table, and a cell, grid or earlier file of the
    other split is refused."""
    # three validation speakers to the test split's one: the two splits' figures cannot coincide by chance
    data_dir = write_speech_commands(tmp_path / "sc")
    speakers = [f"{i:08x}" for i in (0xA0, 0xA2, 0xA3)]
    (data_dir / "validation_list.txt").write_text(
        "".join(f"{w}/{s}_nohash_{n}.wav\n" for w in ("yes", "no", "up", "down") for s in speakers for n in (0, 1))
    )
    ft_only = [a for a, b in zip(TINY, [*TINY[1:], ""]) if not a.startswith("gnft.") and not b.startswith("gnft.")]
    base = ["--data", str(data_dir), *ft_only, "--defenses", "none,ft", "--no-clean"]
    test_out, test_work = tmp_path / "test_grid", tmp_path / "test_grid_work"
    assert main([*base, "--out", str(test_out)]) == 0
    val_out, val_work = tmp_path / "val_grid", tmp_path / "val_work"
    reuse = ["--reuse", str(test_work / "train_{model}_{attack}.safetensors")]
    val = [*base, "--eval-split", "validation", "--work", str(val_work), "--out", str(val_out), *reuse]
    assert main(val) == 0
    # the trained model is adopted, not retrained, and measured on validation in a cell of its own
    model = val_work / "train_smallcnn_badnets.safetensors"
    assert model.read_bytes() == (test_work / "train_smallcnn_badnets.safetensors").read_bytes()
    assert sorted(p.name for p in val_work.iterdir()) == [
        "defend_smallcnn_badnets_ft.json",
        "defend_smallcnn_badnets_ft.safetensors",
        "eval_smallcnn_badnets_validation.json",
        "train_smallcnn_badnets.json",
        "train_smallcnn_badnets.safetensors",
    ]
    on_validation, on_test = _figures(model, data_dir, "validation"), _figures(model, data_dir, "test")
    assert on_validation != on_test  # the two splits give different figures here
    result, earlier = (json.loads(p.with_suffix(".json").read_text()) for p in (val_out, test_out))
    assert (result["eval_split"], earlier["eval_split"]) == ("validation", "test")
    rows = {r["defense"]: r for r in result["rows"]}
    test_rows = {r["defense"]: r for r in earlier["rows"]}
    assert {k: rows["none"][k] for k in on_validation} == on_validation
    assert {k: test_rows["none"][k] for k in on_test} == on_test
    assert rows["none"]["reused_from"] == str(test_work / "train_smallcnn_badnets.safetensors")
    eval_cell = json.loads((val_work / "eval_smallcnn_badnets_validation.json").read_text())
    assert eval_cell["eval_split"] == "validation" and eval_cell["model"] == str(model)
    # the defense cell: before is the model's validation figures, after the repaired model's there
    cell = json.loads((val_work / "defend_smallcnn_badnets_ft.json").read_text())
    assert cell["eval_split"] == "validation" and cell["before"] == on_validation
    repaired_model = val_work / "defend_smallcnn_badnets_ft.safetensors"
    assert (
        cell["after"] == _figures(repaired_model, data_dir, "validation") != _figures(repaired_model, data_dir, "test")
    )
    assert rows["ft"]["attack_success_rate"] == cell["after"]["attack_success_rate"]
    assert rows["ft"]["clean_accuracy"] == cell["after"]["clean_accuracy"]
    _, repaired_meta = load_checkpoint(val_work / "defend_smallcnn_badnets_ft.safetensors")
    assert repaired_meta["provenance"]["defenses"][-1]["eval_split"] == "validation"
    assert "CA / ASR in % on the validation split" in val_out.with_suffix(".md").read_text()
    assert "CA / ASR in % on the test split" in test_out.with_suffix(".md").read_text()
    # resuming redoes nothing, the evaluation cell included
    stamps = {p.name: p.stat().st_mtime_ns for p in val_work.iterdir()}
    assert main(val) == 0
    assert {p.name: p.stat().st_mtime_ns for p in val_work.iterdir()} == stamps
    # an evaluation cell of another checkpoint (the model was replaced since) is measured again
    eval_path = val_work / "eval_smallcnn_badnets_validation.json"
    eval_path.write_text(json.dumps({**eval_cell, "model_sha256": "0" * 64, "clean_accuracy": 0.123}))
    assert main(val) == 0
    assert json.loads(eval_path.read_text()) == eval_cell
    # a cell measured on the other split is refused before any work, either way
    with pytest.raises(ConfigError, match=r"measured on the test split and this run measures on the validation"):
        main([*val[: val.index("--work")], "--work", str(test_work), "--out", str(tmp_path / "x"), *reuse])
    with pytest.raises(ConfigError, match=r"measured on the validation split and this run measures on the test"):
        main([*base, "--work", str(val_work), "--out", str(tmp_path / "y")])
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
    # a cell from before the field existed was measured on the test split
    test_cell = test_work / "defend_smallcnn_badnets_ft.json"
    test_cell.write_text(json.dumps({k: v for k, v in json.loads(test_cell.read_text()).items() if k != "eval_split"}))
    with pytest.raises(ConfigError, match=r"measured on the test split"):
        main([*val[: val.index("--work")], "--work", str(test_work), "--out", str(tmp_path / "x"), *reuse])
    repaired = (test_work / "defend_smallcnn_badnets_ft.safetensors").stat().st_mtime_ns
    assert main([*base, "--out", str(test_out)]) == 0  # the test grid still reuses it
    assert (test_work / "defend_smallcnn_badnets_ft.safetensors").stat().st_mtime_ns == repaired
    # --keep-earlier will not mix a test table with validation rows
    before = test_out.with_suffix(".json").read_text()
    with pytest.raises(ConfigError, match=r"--keep-earlier: .* measured on the test split and this run on the valid"):
        main([*val[: val.index("--out")], "--out", str(test_out), *reuse, "--keep-earlier"])
    assert test_out.with_suffix(".json").read_text() == before


def test_a_dataset_without_the_split_is_one_line_before_any_work(tmp_path):
    """A Speech Commands folder with a testing list only has no validation clips: refused, exit 2."""
    data = write_speech_commands(tmp_path / "sc")
    (data / "validation_list.txt").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "core.grid", "--data", str(data), "--vocab", "yes,no,up,down", "--defenses", "none,ft"]
        + ["--eval-split", "validation", "--out", str(tmp_path / "g")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "--eval-split validation: the data has no validation split" in errors[0]
    assert not (tmp_path / "g_work").exists()


def test_unlearning_columns_share_one_scan_of_each_model_and_seed(tiny_sc, tmp_path):
    """Two columns that unlearn the scanned trigger: the model is scanned once (the core.scan report and its
    triggers in --work), both cells unlearn that scan's most anomalous class, and a resumed grid reads it."""
    out, work = tmp_path / "unlearn", tmp_path / "unlearn_work"
    variants = ["--variant", "u3=gnft:clean_ratio=0.5,epochs=1,unlearn=0.3"]
    variants += ["--variant", "u5=ft:clean_ratio=0.5,epochs=1,unlearn=0.5"]
    scan = ["--scan-steps", "4", "--scan-batch-size", "2", "--scan-clean-ratio", "0.5"]
    tiny = TINY[: TINY.index("--defense-arg")]  # no plain columns to set
    base = ["--data", str(tiny_sc), *tiny, "--no-clean", "--defenses", "none,u3,u5", "--out", str(out), *scan]
    assert main([*base, *variants]) == 0
    report = json.loads((work / "scan_smallcnn_badnets_clean0.5_seed0.json").read_text())
    assert report["config"]["steps"] == 4 and report["config"]["seed"] == 0
    assert (work / "scan_smallcnn_badnets_clean0.5_seed0.safetensors").is_file()
    assert sorted(p.name for p in work.glob("scan_*")) == [
        "scan_smallcnn_badnets_clean0.5_seed0.json",
        "scan_smallcnn_badnets_clean0.5_seed0.safetensors",
    ]
    index = max(
        range(len(report["classes"])), key=lambda i: max(d["anomaly_index"][i] for d in report["domains"].values())
    )
    target = report["suspected_target"] or report["classes"][index]
    for column in ("u3", "u5"):
        cell = json.loads((work / f"defend_smallcnn_badnets_{column}.json").read_text())
        record = cell["defense_details"]["unlearn"]
        assert record["source"] == "scan" and record["class"] == target and record["flagged"] == report["backdoored"]
    (work / "defend_smallcnn_badnets_u5.json").unlink()
    stamp = (work / "scan_smallcnn_badnets_clean0.5_seed0.json").stat().st_mtime_ns
    assert main([*base, *variants]) == 0  # u5 again, from the kept scan
    assert (work / "scan_smallcnn_badnets_clean0.5_seed0.json").stat().st_mtime_ns == stamp
    again = json.loads((work / "defend_smallcnn_badnets_u5.json").read_text())
    assert again["defense_details"]["unlearn"]["class"] == target
    assert again["defense_details"]["unlearn"]["scan_domains"] == report["config"]["domains"]
    assert json.loads(out.with_name(out.name + ".json").read_text())["scan_domains"] == report["config"]["domains"]
    # the run's scan now searches other domains: the kept cells rest on another scan, refused before any work
    stamps = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    with pytest.raises(ConfigError, match=r"defend_smallcnn_badnets_u3\.json unlearned the trigger of a scan of other"):
        main([*base, *variants, "--scan-domains", "features,waveform,spectrum"])
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == stamps
    assert report["model_sha256"] == grid._file_digest(work / "train_smallcnn_badnets.safetensors")
    # read against a clean reference: the kept cells rest on a plain reading and are refused; the kept scan is
    # not searched again but read against the reference, and the cells unlearn the class it then points at
    ref = tmp_path / "clean_scan.json"
    sizes = {d: [0.1 * (1 + 0.05 * i) for i in range(len(report["classes"]))] for d in report["domains"]}
    domains = {d: {"sizes": v} for d, v in sizes.items()}
    kept = {"model": "o.safetensors", "classes": report["classes"], "config": report["config"], "domains": domains}
    ref.write_text(json.dumps(kept))
    with pytest.raises(ConfigError, match=r"u3\.json unlearned the trigger of a scan read against another clean"):
        main([*base, *variants, "--scan-reference", str(ref)])
    for column in ("u3", "u5"):
        (work / f"defend_smallcnn_badnets_{column}.json").unlink()
    assert main([*base, *variants, "--scan-reference", str(ref)]) == 0
    assert (work / "scan_smallcnn_badnets_clean0.5_seed0.json").stat().st_mtime_ns == stamp
    relative = {
        d: {"anomaly_index": anomaly_index(relative_sizes(r["sizes"], sizes[d]))} for d, r in report["domains"].items()
    }
    pooled = pooled_index(relative)
    read = json.loads((work / "defend_smallcnn_badnets_u3.json").read_text())["defense_details"]["unlearn"]
    assert read["scan_reference"] == [str(ref)] and read["class"] == report["classes"][pooled.index(max(pooled))]
    # the kept scan is read by the run's rule too: nothing is flagged at a threshold of 100 (no second search)
    (work / "defend_smallcnn_badnets_u5.json").unlink()
    assert main([*base, *variants, "--scan-reference", str(ref), "--scan-threshold", "100"]) == 0
    assert (work / "scan_smallcnn_badnets_clean0.5_seed0.json").stat().st_mtime_ns == stamp
    high = json.loads((work / "defend_smallcnn_badnets_u5.json").read_text())["defense_details"]["unlearn"]
    assert high["flagged"] is False and high["class"] == read["class"]  # read against the reference: the pooled top
    with pytest.raises(ConfigError, match="--scan-reference: a clean reference is of one architecture; this grid"):
        main([*base, *variants, "--scan-reference", str(ref), "--models", "smallcnn,resnet"])


def test_each_unlearning_column_scans_at_its_own_clean_share(tiny_sc, tmp_path):
    """Without --scan-clean-ratio a column's scan reads the column's clean share (at 25 % the scan reads no clip
    the repair lacks); an explicit share larger than a column's is refused before any work, and a kept cell
    that unlearned a scan of another share is refused too."""
    out, work = tmp_path / "shares", tmp_path / "shares_work"
    variants = ["--variant", "half=gnft:clean_ratio=0.5,epochs=1,unlearn=0.3"]
    variants += ["--variant", "quarter=gnft:clean_ratio=0.25,epochs=1,unlearn=0.3"]
    tiny = TINY[: TINY.index("--defense-arg")]
    scan = ["--scan-steps", "4", "--scan-batch-size", "2"]
    base = ["--data", str(tiny_sc), *tiny, "--no-clean", "--defenses", "none,half,quarter", "--out", str(out), *scan]
    assert main([*base, *variants]) == 0
    assert sorted(p.name for p in work.glob("scan_*.json")) == [
        "scan_smallcnn_badnets_clean0.25_seed0.json",
        "scan_smallcnn_badnets_clean0.5_seed0.json",
    ]
    for column, share in (("half", 0.5), ("quarter", 0.25)):
        cell = json.loads((work / f"defend_smallcnn_badnets_{column}.json").read_text())
        scanned = json.loads((work / f"scan_smallcnn_badnets_clean{share:g}_seed0.json").read_text())
        assert scanned["config"]["clean_ratio"] == share and scanned["clean_clips"] == cell["clean_clips"]
        assert cell["defense_details"]["unlearn"]["scan_clean_ratio"] == share
    assert json.loads(out.with_name(out.name + ".json").read_text())["scan_clean_ratios"] == {
        "half": 0.5,
        "quarter": 0.25,
    }
    stamps = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    with pytest.raises(ConfigError) as refused:
        main([*base, *variants, "--scan-clean-ratio", "0.5"])
    assert str(refused.value) == (
        "--scan-clean-ratio 0.5 is larger than the repair's quarter's clean_ratio 0.25: a repair's scan may read "
        "only the clean clips the repair has; give a share no larger, or none to use the repair's"
    )
    with pytest.raises(ConfigError, match=r"half\.json unlearned the trigger of a scan of another clean share"):
        main([*base, *variants, "--scan-clean-ratio", "0.25"])
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == stamps


def test_a_failing_cell_is_left_out_and_the_others_go_on(tiny_sc, tmp_path, monkeypatch, capsys):
    """One cell raising (here: seed 1 of the FT column, as a GPU error would) costs that cell only: the other
    cells run and are tabulated, the table says `failed`, the exit code is 1 with the cell named; the next run
    of the same command runs it again."""
    real = grid.repair

    def broken_on_seed_1(model, data, defense, *args, **kwargs):
        if defense.config.seed == 1 and type(defense).__name__.lower().startswith("f"):
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail")
        return real(model, data, defense, *args, **kwargs)

    monkeypatch.setattr(grid, "repair", broken_on_seed_1)
    out, work = tmp_path / "g", tmp_path / "g_work"
    ft_only = [a for a, b in zip(TINY, [*TINY[1:], ""]) if not a.startswith("gnft.") and not b.startswith("gnft.")]
    argv = ["--data", str(tiny_sc), *ft_only, "--defenses", "none,ft,fp", "--no-clean", "--defense-seeds", "0,1"]
    argv += ["--defense-arg", "fp.epochs=1", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: 2 cell(s) failed" in err and "defend smallcnn/badnets/ft seed 1: RuntimeError: CUDA error" in err
    assert "more detail" not in err  # one line per cell
    assert (work / "defend_smallcnn_badnets_ft.json").is_file() and (work / "defend_smallcnn_badnets_fp.json").is_file()
    assert not (work / "defend_smallcnn_badnets_ft_seed1.json").exists()
    rows = {r["defense"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["ft"]["seeds"] == [0] and rows["ft"]["failed_seeds"] == {"1": rows["fp"]["failed_seeds"]["1"]}
    assert rows["ft"]["clean_accuracy"] is not None
    monkeypatch.setattr(grid, "repair", real)
    assert main(argv) == 0  # the same command again: only the failed cells run
    rows = {r["defense"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["ft"]["seeds"] == [0, 1] and "failed_seeds" not in rows["ft"]


def test_ctrl_c_stops_a_jobs_grid_at_once_with_one_line(tiny_sc, tmp_path):
    """Ctrl-C in a terminal reaches the grid and its --jobs workers (one process group): the grid ends at
    once with "interrupted" and exit code 130, without waiting for the cells in flight (it used to wait for
    them, and for the next queued one, printing a worker's traceback) and without a traceback."""
    import os
    import signal
    import time

    ft_only = [a for a, b in zip(TINY, [*TINY[1:], ""]) if not a.startswith("gnft.") and not b.startswith("gnft.")]
    argv = ["--data", str(tiny_sc), *ft_only, "--defenses", "none,ft", "--jobs", "2", "--threads", "1"]
    argv = [a for a in argv if a != "--quiet"] + ["--train-epochs", "5000", "--train-patience", "5000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.grid", *argv, "--out", str(tmp_path / "g")],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    lines = []
    for line in proc.stderr:  # wait until a worker is training
        lines.append(line)
        if line.startswith("epoch 2:"):
            break
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    assert time.monotonic() - sent < 60  # 5000 epochs of a training cell were not waited for
    assert "interrupted" in rest and "Traceback" not in "".join(lines) + rest
    assert not (tmp_path / "g.json").exists()
