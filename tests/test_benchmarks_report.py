"""``benchmarks/report.py``: the benchmarks README is generated from the results files and kept current."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_readme_matches_the_results():
    proc = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_rows_come_from_the_json(tmp_path):
    (tmp_path / "gnft_step_gpu.json").write_text(
        json.dumps(
            {
                "command": "python benchmarks/gnft_step.py --device cuda",
                "machine": {"device": "cuda", "gpu": "H100"},
                "rows": [
                    {
                        "model": "resnet",
                        "batch_size": 256,
                        "gnft_over_ft": 1.87654,
                        "copy_over_inplace": 1.2,
                        "target_gnft_over_ft": 2.0,
                        "meets_target": True,
                    }
                ],
            }
        )
    )
    (tmp_path / "unknown_thing.json").write_text(json.dumps({"rows": [{"x": 1}]}))
    text = _report().render(tmp_path)
    assert "| gnft_step_gpu | resnet, batch 256: GN-FT step / FT step | 1.88 | ≤ 2.0 | yes | cuda (H100) |" in text
    assert "`python benchmarks/gnft_step.py --device cuda`" in text
    assert "`unknown_thing.json`" in text  # listed, not silently dropped


def test_a_grid_gnft_cell_meets_the_target_only_with_its_clean_accuracy_kept(tmp_path):
    def cell(attack, defense, ca, asr):
        return {
            "model": "resnet",
            "attack": attack,
            "defense": defense,
            "clean_accuracy": ca,
            "attack_success_rate": asr,
        }

    (tmp_path / "grid_x.json").write_text(
        json.dumps(
            {
                "command": "python -m core.grid",
                "machine": {"device": "cpu"},
                "rows": [
                    cell("blend", "none", 0.98, 1.0),
                    cell("blend", "gnft", 0.847, 0.0),  # CA -13.3
                    cell("daba", "none", 0.90, 0.96),
                    cell("daba", "gnft", 0.89, 0.05),
                ],
            }
        )
    )
    text = _report().render(tmp_path)
    target = "GN-FT ASR ≤ 10 %, CA within 2 points"
    assert f"| grid_x | resnet, blend, defense gnft: CA / ASR | 84.7 % / 0.0 % | {target} | **no** |" in text
    assert f"| grid_x | resnet, daba, defense gnft: CA / ASR | 89.0 % / 5.0 % | {target} | yes |" in text


def test_a_probe_row_meets_the_target_only_with_its_clean_accuracy_kept(tmp_path):
    """Probe files (gnft_ablation, gnft_probe) hold the same target as the grid: ASR <= 10 % is not
    enough when clean accuracy fell by more than 2 points."""

    def row(ratio, ca, asr, **cfg):
        return {
            "defense": "gnft",
            "clean_ratio": ratio,
            "clean_accuracy": ca,
            "attack_success_rate": asr,
            "config": {"lr": 0.01, **cfg},
        }

    (tmp_path / "gnft_ablation_x.json").write_text(
        json.dumps(
            {
                "command": "python benchmarks/gnft_ablation.py",
                "machine": {"device": "cpu"},
                "before": {"clean_accuracy": 0.983, "attack_success_rate": 0.989},
                "rows": [
                    row(0.1, 0.893, 0.096),
                    row(0.2, 0.975, 0.05, max_grad_norm=2.0),
                    row(0.05, 0.9, 0.2, lr_schedule="cosine", warmup_epochs=5, spec_augment=0.2),
                    row(0.02, 0.8, 0.3, lr_schedule="constant"),
                    row(0.1, 0.9, 0.1, batchnorm="frozen"),
                ],
            }
        )
    )
    text = _report().render(tmp_path)
    assert "| 89.3 % / 9.6 % | ASR ≤ 10 %, CA within 2 pt | **no** |" in text
    assert (
        "max_grad_norm 2.0): CA / ASR (before 98.3 % / 98.9 %) | 97.5 % / 5.0 % | ASR ≤ 10 %, CA within 2 pt | yes |"
        in text
    )
    assert "gnft (clean 5.0 %, lr 0.01, cosine lr, warm-up 5 epochs, spec_augment 0.2): CA / ASR" in text
    assert "gnft (clean 2.0 %, lr 0.01): CA / ASR" in text  # the default schedule is not spelt out
    assert "gnft (clean 10.0 %, lr 0.01, batchnorm frozen): CA / ASR" in text


def test_the_reference_tables_come_from_the_asc_grids_and_fill_the_product_readme(tmp_path):
    """The canonical results (Arabic Speech Commands grids) come first, per cell and per model (mean ASR,
    worst CA drop); variant columns of GN-FT are held to GN-FT's target; the product README's block between
    the markers is regenerated and the rest of it kept."""

    def cell(model, attack, defense, ca, asr, **extra):
        return {"model": model, "attack": attack, "defense": defense, "clean_accuracy": ca,
                "attack_success_rate": asr, **extra}  # fmt: skip

    rows = [
        cell("resnet", "clean", "none", 0.9, None),
        cell("resnet", "badnets", "none", 0.89, 0.99),
        cell("resnet", "blend", "none", 0.88, 0.97),
        cell("resnet", "badnets", "gnft_best", 0.885, 0.04, clean_accuracy_std=0.01, seeds=[0, 1]),
        cell("resnet", "blend", "gnft_best", 0.84, 0.02, seeds=[0, 1]),
        cell("resnet", "badnets", "ft", 0.89, 0.9),
    ]
    best = {"defense": "gnft", "preset": "recommended", "settings": {"prune": 0.1}}
    grid = {"command": "python -m core.grid", "machine": {"device": "cpu"}, "eval_split": "test", "rows": rows,
            "variants": {"gnft_best": best}}  # fmt: skip
    (tmp_path / "grid_asc10_h200.json").write_text(json.dumps(grid))
    report = _report()
    text = report.render(tmp_path)
    assert text.index("Canonical results") < text.index("## Every benchmark")
    assert "| resnet | badnets | 90.0 | 89.0 / 99.0 | 88.5 ± 1.0 / 4.0 | 89.0 / 90.0 |" in text
    # mean ASR (4 + 2) / 2 = 3.0; worst CA drop 88 - 84 = 4.0 points, over 2 cells; FT ran on one cell
    assert "| resnet: mean ASR / worst CA drop (cells) | 3.0 / 4.0 (2) | 90.0 / 0.0 (1) |" in text
    assert "| grid_asc10_h200 | resnet, blend, defense gnft_best: CA / ASR | 84.0 % / 2.0 % | GN-FT ASR" in text
    assert "| 84.0 % / 2.0 % | GN-FT ASR ≤ 10 %, CA within 2 points | **no** |" in text
    start, end = report.MARKERS
    page = f"# Product\n\nintro\n{start}\nold table\n{end}\nafter\n"
    new = report.product_readme(page, tmp_path)
    assert new.startswith("# Product\n\nintro\n") and new.endswith(f"{end}\nafter\n") and "old table" not in new
    assert "(benchmarks/results/grid_asc10_h200.json)" in new and "#### ASC-10" in new
    assert report.product_readme("# no markers\n", tmp_path) == "# no markers\n"


def test_the_product_page_shows_its_tables_and_columns_and_the_benchmarks_page_all(tmp_path):
    """The product README keeps the tables of ``PRODUCT_TABLES`` with their columns (the per-model summary too);
    ``benchmarks/README.md`` keeps every table and column."""
    rows = [
        {"model": "resnet", "attack": "badnets", "defense": d, "clean_accuracy": ca, "attack_success_rate": a}
        for d, ca, a in (("none", 0.9, 0.99), ("ft", 0.89, 0.97), ("rec_c05", 0.8, 0.3), ("gnft_best", 0.88, 0.5))
    ]
    grid = {"command": "python -m core.grid", "eval_split": "test", "rows": rows}
    (tmp_path / "grid_asc10_h200.json").write_text(json.dumps(grid))
    (tmp_path / "grid_asc30.json").write_text(json.dumps(grid))
    report = _report()
    start, end = report.MARKERS
    page = report.product_readme(f"# Product\n{start}\n{end}\n", tmp_path)
    assert "#### ASC-10, every attack" in page and "#### ASC-30" not in page
    assert "| backdoored | FT | GN-FT (best) |" in page and "at 5 % clean" not in page
    assert "| resnet: mean ASR / worst CA drop (cells) | 97.0 / 1.0 (1) | 50.0 / 2.0 (1) |" in page
    everything = report.reference_section(tmp_path)  # two tables, each naming the column twice
    assert "### ASC-30" in everything and everything.count("Recommended at 5 % clean (its scan at 10 %)") == 4


def test_a_table_takes_the_recommended_column_beside_it_from_the_same_models_other_files(tmp_path):
    """The baselines' table (``BESIDE``) shows today's Recommended from the Recommended table's files, on its own
    models only (the same model seed and attack), and names where that column comes from."""
    import dataclasses

    from core.presets import PRESETS
    from core.scan import ScanConfig

    today = dataclasses.asdict(PRESETS["recommended"].config(seed=0, device="cpu"))

    def grid(seed, attack, cells, settings=None):
        rows = [
            {"model": "smallcnn", "attack": attack, "defense": d, "clean_accuracy": ca, "attack_success_rate": a}
            for d, ca, a in cells
        ]
        return {"command": f"python -m core.grid --seed {seed}", "eval_split": "test", "rows": rows,
                "defense_settings": settings or {}, "scan_domains": ScanConfig().domains}  # fmt: skip

    recommended = {"gnft@recommended": today}
    for seed, attack in ((21, "piba"), (22, "daba")):
        cells = [("none", 0.9, 0.99), ("gnft@recommended", 0.88, 0.05)]
        (tmp_path / f"grid_asc10_round16_test_s{seed}_{attack}.json").write_text(
            json.dumps(grid(seed, attack, cells, recommended))
        )
    base = grid(21, "piba", [("none", 0.9, 0.99), ("ft", 0.89, 0.97)])
    (tmp_path / "grid_asc10_round25_base_s21_piba.json").write_text(json.dumps(base))
    section = _report().reference_section(tmp_path)
    table = section.split("### ")[2]
    assert table.startswith("ASC-10, the baselines") and "| backdoored | **Recommended** | FT |" in table
    assert "| smallcnn | piba, model seed 21 | – | 90.0 / 99.0 | 88.0 / 5.0 | 89.0 / 97.0 |" in table
    assert "daba" not in table and "Beside them, from the `benchmarks/results/grid_asc10_round16_test_*" in table
    assert "| smallcnn: mean ASR / worst CA drop (cells) | 5.0 / 2.0 (1) | 97.0 / 1.0 (1) |" in table


def test_the_clean_model_ca_comes_from_the_clean_grids_of_the_same_seed_and_rate(tmp_path):
    """A table whose grids trained no clean model (``CLEAN_FROM``) takes each row's clean model from the clean
    grids: the same architecture, training seed and rate (Ultrasonic's 44.1 kHz), never another seed's."""

    def row(attack, defense, ca, asr, rate=16000):
        return {"model": "smallcnn", "attack": attack, "defense": defense, "clean_accuracy": ca,
                "attack_success_rate": asr, "sample_rate": rate}  # fmt: skip

    def grid(seed, rows):
        return {"command": f"python -m core.grid --seed {seed}", "eval_split": "test", "rows": rows}

    tables = {
        "grid_asc10_round16_test_s21_piba": grid(21, [row("piba", "none", 0.9, 0.99)]),
        "grid_asc10_round16_test_s21_ultrasonic": grid(21, [row("ultrasonic", "none", 0.85, 1.0, 44100)]),
        "grid_asc10_round16_test_s23_jingleback": grid(23, [row("jingleback", "none", 0.9, 0.99)]),
        "grid_asc10_round26_clean_s21": grid(
            21, [row("clean", "none", 0.911, None), row("clean", "none", 0.877, None, 44100)]
        ),
        "grid_asc10_round26_clean_s22": grid(22, [row("clean", "none", 0.5, None)]),
    }
    for stem, d in tables.items():
        (tmp_path / f"{stem}.json").write_text(json.dumps(d))
    table = _report().reference_section(tmp_path).split("### ")[1]
    assert "| smallcnn | piba, model seed 21 | 91.1 | 90.0 / 99.0 |" in table
    assert "| smallcnn | ultrasonic, model seed 21 (44.1 kHz) | 87.7 | 85.0 / 100.0 |" in table
    assert "| smallcnn | jingleback, model seed 23 | – | 90.0 / 99.0 |" in table  # no clean model of seed 23
    assert "50.0" not in table and "The clean models: the `benchmarks/results/grid_asc10_round26_clean_*" in table


def test_a_recommended_column_run_with_another_preset_is_shown_as_the_previous_one(tmp_path):
    """The README's Recommended column is today's preset: a table whose `gnft@recommended` cells recorded other
    settings (an earlier Recommended) shows them as the previous Recommended, and today's as the Recommended."""
    import dataclasses

    from core.presets import PRESETS
    from core.scan import ScanConfig

    def grid(settings, scan_domains=None):
        rows = [  # the Recommended's cell after another column's: the table still shows it right after `none`
            {"model": "resnet", "attack": "badnets", "defense": d, "clean_accuracy": 0.9, "attack_success_rate": a}
            for d, a in (("none", 0.99), ("ft", 0.97), ("gnft@recommended", 0.05))
        ]
        return {"command": "python -m core.grid", "eval_split": "test", "rows": rows,
                "defense_settings": {"gnft@recommended": settings},
                "scan_domains": scan_domains or ScanConfig().domains}  # fmt: skip

    today = dataclasses.asdict(PRESETS["recommended"].config(seed=3, device="cpu"))  # run fields do not count
    (tmp_path / "grid_asc10_round16_test_s0_badnets.json").write_text(json.dumps(grid(today)))
    (tmp_path / "grid_asc10_h200.json").write_text(json.dumps(grid({**today, "lr": 0.01, "epochs": 60})))
    section = _report().reference_section(tmp_path)
    first, second = section.split("### ")[1:]  # today's Recommended first, then the other table
    assert "today's Recommended" in first and "| backdoored | **Recommended** |" in first
    assert "previous Recommended" not in first
    assert "| backdoored | previous Recommended |" in second and "**Recommended**" not in second
    # today's settings, but its scans searched other domains than today's scan does: the previous Recommended,
    # and a variant of it (at 5 % clean) a variant of the previous one
    older = grid(today, "features,waveform")
    older["rows"].append({**older["rows"][-1], "defense": "rec_c05", "attack_success_rate": 0.2})
    (tmp_path / "grid_asc10_h200.json").write_text(json.dumps(older))
    second = _report().reference_section(tmp_path).split("### ")[2]
    assert "| backdoored | previous Recommended | FT | previous Recommended at 5 % clean (its scan at 10 %) |" in second
    assert "**Recommended**" not in second


def test_a_reference_table_of_one_file_per_model_keeps_two_models_of_one_attack_apart(tmp_path):
    """A reference stem ending in ``*`` reads every grid file of one model each; the attack's label names the
    model's seed (the grid's ``--seed``), so two DABA models are two rows, and the per-model summary counts both;
    a variant that ran today's Recommended is its column."""
    import dataclasses

    from core.presets import PRESETS
    from core.scan import ScanConfig

    today = dataclasses.asdict(PRESETS["recommended"].config(seed=0, device="cpu"))
    for seed, asr, column in ((21, 0.1, "gnft@recommended"), (22, 0.7, "tpu")):
        rows = [  # seed 22's table ran today's Recommended as a variant, tpu, before it was the preset
            {"model": "smallcnn", "attack": "daba", "defense": d, "clean_accuracy": ca, "attack_success_rate": a}
            for d, ca, a in (("none", 0.92, 0.95), (column, 0.90 - seed / 1000, asr))
        ]
        settings = {"gnft@recommended": {**today, "lr": 0.5}, column: today}  # the column last: its own settings
        variants = {"tpu": {"defense": "gnft", "preset": "recommended", "settings": {}}}
        grid = {"command": f"python -m core.grid --attacks daba --seed {seed}", "eval_split": "test", "rows": rows,
                "defense_settings": settings, "variants": variants, "scan_domains": ScanConfig().domains}  # fmt: skip
        (tmp_path / f"grid_asc10_part_s{seed}_daba.json").write_text(json.dumps(grid))
    report = _report()
    first, rows, other = report._reference_rows(tmp_path, "grid_asc10_part_*")
    assert not other and first["eval_split"] == "test" and len(rows) == 4
    assert {r["attack"] for r in rows} == {"daba, model seed 21", "daba, model seed 22"}
    assert {r["defense"] for r in rows} == {"none", "gnft@recommended"}  # tpu is today's Recommended
    assert report._reference_rows(tmp_path, "grid_asc10_absent_*") is None
    report.REFERENCE = {"grid_asc10_part_*": "ASC-10, one model per file"}
    section = report.reference_section(tmp_path)
    assert "| smallcnn | daba, model seed 21 | – | 92.0 / 95.0 | 87.9 / 10.0 |" in section
    assert "| smallcnn | daba, model seed 22 | – | 92.0 / 95.0 | 87.8 / 70.0 |" in section
    assert "| smallcnn: mean ASR / worst CA drop (cells) | 40.0 / 4.2 (2) |" in section  # 92.0 - 87.8
    assert "`benchmarks/results/grid_asc10_part_*.json` files (one per model" in section


def test_the_scan_table_reads_both_readings_per_architecture_from_scan_json(tmp_path):
    """The scan's rows in the reference section: counts are the summary's shares of its model counts, plain and
    against a clean reference, for all models and each architecture; no table without a reference reading."""

    def summary(n, clean, right, fp, auroc, pointed):
        return {"backdoored_models": n, "clean_models": clean, "repaired_models": 0, "target_accuracy": right,
                "false_positive_rate": fp, "auroc": auroc, "most_anomalous_is_target": pointed,
                "repaired_still_flagged": None}  # fmt: skip

    plain, ref = summary(4, 2, 0.5, 0.5, 0.625, 0.75), summary(4, 2, 1.0, 0.0, 1.0, 1.0)
    scan = {"targets": {"auroc": 0.95, "target_accuracy": 0.9, "false_positive_rate": 0.1},
            "summary": {"seconds_per_scan": {"smallcnn": 400.0}},
            "reference_reading": {"plain": plain, "reference": ref,
                                  "architectures": {"smallcnn": {"plain": plain, "reference": ref}}},
            "corpora": {"asc10": plain, "fsdd": summary(2, 1, 0.5, 0.0, None, 1.0)}}  # fmt: skip
    (tmp_path / "scan.json").write_text(json.dumps(scan))
    report = _report()
    text = report.scan_section(tmp_path)
    assert "| ASC-10 | 4 / 2 | 2 of 4 | 1 of 2 | 0.62 | 3 of 4 | – |" in text  # per corpus, plainly
    assert "| FSDD | 2 / 1 | 1 of 2 | 0 of 1 | – | 2 of 2 | – |" in text
    assert "| all | plain | 4 / 2 | 2 of 4 | 1 of 2 | 0.62 | 3 of 4 | – |" in text
    assert "| smallcnn | against clean models (`--reference`) | 4 / 2 | 4 of 4 | 0 of 2 | 1.00 | 4 of 4 | – |" in text
    assert "smallcnn 400" in text and "CC BY 4.0" in text
    assert "The scan" in report.render(tmp_path)
    scan["reference_reading"] = {}
    (tmp_path / "scan.json").write_text(json.dumps(scan))
    assert report.scan_section(tmp_path) == "" and "The scan" not in report.render(tmp_path)
