"""Write ``benchmarks/README.md``: one table of every benchmark's latest figures, read from
``benchmarks/results/*.json`` (no number is typed by hand), and how to reproduce each.

    python benchmarks/report.py [--check]

``--check`` exits 1 when the README on disk differs from what the results give (a test uses it,
so a results file committed without regenerating the README is caught).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.cli.grid import machines_note, scan_domains_of  # noqa: E402
from core.defenses import DEFENSES  # noqa: E402
from core.presets import PRESETS, matching_preset  # noqa: E402
from core.scan import ScanConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "README.md"
#: The product page, whose reference table is written between these markers from the same results.
PRODUCT_README = ROOT / "README.md"
MARKERS = ("<!-- reference-results:start (benchmarks/report.py writes this) -->", "<!-- reference-results:end -->")
#: The reference benchmark (issue 31): grids on Arabic Speech Commands, shown first.
REFERENCE = {
    "grid_asc10_round16_test_*": "ASC-10, today's Recommended (yes no up down left right stop start enable "
    "disable; 1,800 training clips, 18 speakers; models trained on this CPU with the per-clip floor, one per "
    "attack, their training seed beside it)",
    "grid_asc10_round23_c05_*": "ASC-10, today's Recommended at a 5 % clean share (90 clips, the scan's too; the "
    'SmallCNNs of today\'s Recommended table; on its ResNets the column "previous Recommended at 5 % clean" is '
    "today's Recommended at 5 %: their push's radius is not set again)",
    "grid_asc10_round25_base_*": "ASC-10, the baselines on today's Recommended table's SmallCNNs (defense seed 0; "
    "FT, Fine-Pruning, FT-SAM and CLP at their defaults, GN-FT at the paper's settings and at its best ASC-10 setting)",
    "grid_asc10_round9_test": "ASC-10, the previous Recommended on seven attacks (the H200 table's models, repaired "
    "on this CPU)",
    "grid_asc10_h200": "ASC-10, every attack and defense (models and most cells on an H200 GPU; other models "
    "of the same recipe)",
    "grid_asc30": "ASC-30 (all 30 words; 5,400 training clips, 18 speakers)",
}
#: The reference tables the product page shows (the rest are in ``benchmarks/README.md``), each with the columns it
#: keeps there (None: all): today's Recommended (and at 5 %), the baselines on its models, then every defense on the
#: H200 table's models (ResNets among them).
PRODUCT_TABLES: dict[str, tuple[str, ...] | None] = {
    "grid_asc10_round16_test_*": ("none", "gnft@recommended", "rec5"),
    "grid_asc10_round23_c05_*": None,
    "grid_asc10_round25_base_*": None,
    "grid_asc10_h200": (
        "none",
        "gnft@recommended",
        "gnft@recommended (previous)",
        "ft",
        "fp",
        "gnft@paper",
        "gnft_best",
        "ftsam",
        "clp",
    ),
}
#: Columns a reference table takes from another one's files, for the same models (stem -> (other stem, columns)):
#: today's Recommended beside the baselines run on its models.
BESIDE: dict[str, tuple[str, tuple[str, ...]]] = {
    "grid_asc10_round25_base_*": ("grid_asc10_round16_test_*", ("gnft@recommended",)),
}
#: Where a reference table's clean models are, when its own grids trained none (stem -> stem of grids that did,
#: ``--seed`` for ``--seed``): the clean model of each backdoored one's architecture, training seed and rate.
CLEAN_FROM: dict[str, str] = {
    "grid_asc10_round16_test_*": "grid_asc10_round26_clean_*",
    "grid_asc10_round23_c05_*": "grid_asc10_round26_clean_*",
    "grid_asc10_round25_base_*": "grid_asc10_round26_clean_*",
}
#: Where a reference table's notes are, when not beside it.
NOTES = {
    "grid_asc10_round9_test": "grid_asc10_validation",
    "grid_asc10_round16_test_*": "grid_asc10_validation",
    "grid_asc10_round23_c05_*": "grid_asc10_validation",
    "grid_asc10_round25_base_*": "grid_asc10_validation",
}
#: The column a ``gnft@recommended`` column becomes when its cells ran with another Recommended than today's.
PREVIOUS = "gnft@recommended (previous)"
COLUMN_TITLES = {
    "none": "backdoored",
    "ft": "FT",
    "fp": "Fine-Pruning",
    "gnft": "GN-FT",
    "gnft@paper": "GN-FT (paper)",
    "gnft_best": "GN-FT (best)",
    "gnft@recommended": "**Recommended**",
    "rec_c05": "Recommended at 5 % clean (its scan at 10 %)",
    "rec5": "previous Recommended at 5 % clean (its scan too)",
    "r21c5": "**Recommended at 5 % clean** (its scan too)",
    "refresh40": "Recommended, re-search every 40 epochs (opt-in)",
    "rec15": "earlier Recommended (no trigger pruning)",
    "tpu0": "Recommended with its pruning never undone (before b74f501)",
    "tpu": "Recommended of 2026-12-06 (no rescan pass)",
    "tp2": "previous Recommended (2026-12-07, its push's radius set once)",
    PREVIOUS: "previous Recommended",
    "ftsam": "FT-SAM",
    "clp": "CLP",
}
DATASET_CREDIT = (
    "Arabic Speech Commands: Ghandoura, Hjabo, Al Dakkak, Engineering Applications of Artificial Intelligence, "
    "2021; CC BY 4.0."
)

Row = tuple[str, str, str, str]  # figure, value, target, met


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _met(flag: bool | None) -> str:
    return "–" if flag is None else ("yes" if flag else "**no**")


def _foundation(d: dict) -> Iterator[Row]:
    targets = d.get("targets", {})
    for r in d["rows"]:
        if r.get("attack"):
            yield (
                f"{r['model']} on {r['data']}, {r['attack']}: ASR / CA",
                f"{_pct(r.get('attack_success_rate'))} / {_pct(r['clean_accuracy'])}",
                f"ASR ≥ {_pct(targets.get('asr', 0.95))}" if targets else "",
                "–",
            )
        else:
            yield (f"{r['model']} on {r['data']}: clean accuracy", _pct(r["clean_accuracy"]), "", "–")


def _attacks(d: dict) -> Iterator[Row]:
    t = d.get("targets", {})
    for r in d["rows"]:
        if r.get("attack") is None:
            continue
        if r.get("not_run") or "error" in r:
            yield (
                f"{r['model']} on {r['data']}, {r['attack']}",
                "not run (out of time)" if r.get("not_run") else f"error: {r['error']}",
                "",
                "**no**",
            )
            continue
        yield (
            f"{r['model']} on {r['data']}, {r['attack']}: ASR / CA drop",
            f"{_pct(r['attack_success_rate'])} / {_pct(r.get('clean_accuracy_drop'))}",
            f"ASR ≥ {_pct(t.get('asr'))}, drop ≤ {_pct(t.get('ca_drop'))}",
            _met(r.get("target_met")),
        )


def _grid(d: dict) -> Iterator[Row]:
    """One row per cell; a GN-FT cell meets the issue's target with ASR <= 10 % and CA within 2 points
    of the backdoored model's (the ``none`` cell of the same model and attack)."""
    before = {
        (r["model"], r["attack"]): r["clean_accuracy"]
        for r in d["rows"]
        if r["defense"] == "none" and not r.get("not_run")
    }
    for r in d["rows"]:
        if r["attack"] == "clean":
            continue
        if r.get("not_run"):
            yield (f"{r['model']}, {r['attack']}", "not run (no backdoored model yet)", "", "–")
            continue
        if r.get("failed"):
            yield (f"{r['model']}, {r['attack']}, defense {r['defense']}", f"failed: {r['failed']}", "", "–")
            continue
        met = "–"
        gnft = _gnft_column(d, r["defense"])
        if gnft:
            met = _repaired(r.get("attack_success_rate"), r["clean_accuracy"], before.get((r["model"], r["attack"])))
        yield (
            f"{r['model']}, {r['attack']}, defense {r['defense']}: CA / ASR",
            f"{_pct(r['clean_accuracy'])} / {_pct(r.get('attack_success_rate'))}",
            "GN-FT ASR ≤ 10 %, CA within 2 points" if gnft else "",
            met,
        )


def _gnft_column(d: dict, column: str) -> bool:
    """Whether a grid column runs GN-FT: ``gnft``, ``gnft@PRESET`` or a ``--variant`` of gnft."""
    variant = (d.get("variants") or {}).get(column)
    return (variant or {}).get("defense", column.split("@")[0]) == "gnft"


def _repaired(asr: float | None, ca_after: float, ca_before: float | None) -> str:
    """The defense target: ASR <= 10 % with clean accuracy within 2 points of the backdoored model's."""
    return _met(asr is not None and asr <= 0.10 and ca_before is not None and ca_before - ca_after <= 0.02)


def _defense_probe(d: dict) -> Iterator[Row]:
    before = d.get("before", {})
    for r in d["rows"]:
        cfg = r.get("config", {})
        extra = "".join(f", {k} {cfg[k]}" for k in ("alpha", "r", "norm", "rho", "epochs") if k in cfg)
        extra += f", max_grad_norm {cfg['max_grad_norm']}" if cfg.get("max_grad_norm") else ""
        if cfg.get("lr_schedule", "constant") != "constant":
            extra += f", {cfg['lr_schedule']} lr, warm-up {cfg.get('warmup_epochs', 0)} epochs"
        extra += f", spec_augment {cfg['spec_augment']}" if cfg.get("spec_augment") else ""
        extra += f", batchnorm {cfg['batchnorm']}" if cfg.get("batchnorm", "train") != "train" else ""
        yield (
            f"{r['defense']} (clean {_pct(r.get('clean_ratio'))}, lr {cfg.get('lr')}{extra}): CA / ASR "
            f"(before {_pct(before.get('clean_accuracy'))} / {_pct(before.get('attack_success_rate'))})",
            f"{_pct(r['clean_accuracy'])} / {_pct(r.get('attack_success_rate'))}",
            "ASR ≤ 10 %, CA within 2 pt",
            _repaired(r.get("attack_success_rate"), r["clean_accuracy"], before.get("clean_accuracy")),
        )


def _defend_report(d: dict) -> Iterator[Row]:
    """A ``python -m core.defend`` report kept as a probe."""
    cfg, b, a = d["defense"], d["before"], d["after"]
    preset = (d.get("preset") or {}).get("name")
    name = f"{cfg['name']} {preset} preset" if preset and preset != "custom" else cfg["name"]
    yield (
        f"{name} (clean {_pct(cfg.get('clean_ratio'))}, lr {cfg.get('lr')}, batch {cfg.get('batch_size')}, "
        f"{cfg.get('epochs')} epochs): CA / ASR (before {_pct(b['clean_accuracy'])} / "
        f"{_pct(b.get('attack_success_rate'))})",
        f"{_pct(a['clean_accuracy'])} / {_pct(a.get('attack_success_rate'))}",
        "ASR ≤ 10 %, CA within 2 pt",
        _repaired(a.get("attack_success_rate"), a["clean_accuracy"], b["clean_accuracy"]),
    )


def _gpu_path(d: dict) -> Iterator[Row]:
    s = d.get("setup", {})
    reference = s.get("reference", "eager")  # files written before the reference was named: eager
    for r in d["rows"]:
        speedup = r.get("speedup_over_reference", r.get("speedup_over_eager", "–"))
        diff = r.get("max_abs_weight_difference_to_reference", r.get("max_abs_weight_difference_to_eager"))
        yield (
            f"{s.get('defense')} on {s.get('model')}, {r['variant']}: seconds per epoch (after the first)",
            f"{r['steady_seconds_per_epoch']} s ({speedup}× {reference}; "
            f"max weight diff {'–' if diff is None else f'{diff:.1e}'})",
            "",
            "–",
        )


def _gnft_step(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        yield (
            f"{r['model']}, batch {r['batch_size']}: GN-FT step / FT step",
            f"{r['gnft_over_ft']:.2f}",
            f"≤ {r['target_gnft_over_ft']}",
            _met(r.get("meets_target")),
        )
        yield (
            f"{r['model']}, batch {r['batch_size']}: deep copy per step / in place",
            f"{r['copy_over_inplace']:.3f}",
            "",
            "–",
        )


def _zones_speed(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        yield (
            f"exact CLC/BLC of {r['layer']} ({r['neurons']} neurons): looped / batched",
            f"{r['speedup']:.1f}×",
            f"≥ {r['target_speedup']}×",
            _met(r.get("meets_target")),
        )


def _mechanism(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        yield (
            f"{r['case']}: grad norm of backdoor+hybrid / clean neurons",
            f"{r['backdoor_hybrid_over_clean_grad_norm_before']:.2f}",
            "> 1 (paper)",
            _met(r.get("claim_grad_norm_holds")),
        )
        b = r["zone_counts_before"]
        a = r["zone_counts_after"]
        yield (
            f"{r['case']}: backdoor+hybrid neurons before → after GN-FT",
            f"{b['backdoor'] + b['hybrid']} → {a['backdoor'] + a['hybrid']}",
            "fewer (paper)",
            _met(r.get("claim_fewer_backdoor_hybrid_after_holds")),
        )


def _timed(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        if "median_seconds" in r:
            yield (
                r["what"],
                f"{r['median_seconds']:.2f} s (median of {len(r['seconds'])})",
                f"< {r['target_seconds']} s",
                _met(r.get("meets_target")),
            )
        elif "max_gap_ms" in r:
            yield (
                f"{r['what']}{'' if r['config'].get('warm_up', True) else ' (cold start)'}",
                f"{r['max_gap_ms']:.0f} ms (p99 {r['p99_gap_ms']:.0f} ms)",
                f"≤ {r['target_ms']:.0f} ms",
                _met(r.get("meets_target")),
            )


def _synth_speed(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        if "ms_per_word_median" in r:
            yield (f"{r['what']} ({r.get('variant', '')})", f"{r['ms_per_word_median']:.2f} ms per word", "", "–")
        elif "clips_per_second" in r:
            yield (f"{r['what']} ({r.get('workers')} worker(s))", f"{r['clips_per_second']:.0f} clips/s", "", "–")


def _gnft_step_size(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        bn = ", BatchNorm frozen" if r.get("batchnorm", "train") != "train" else ""
        radius = f" at r {r['r']}" if r.get("r", 0.05) != 0.05 else ""
        yield (
            f"{Path(r['model']).stem}{bn}{radius}: first GN-FT gradient / FT gradient (per-tensor, global)",
            f"{r['ratio_per-tensor']:.1f}x, {r['ratio_global']:.1f}x",
            "",
            "–",
        )
        if "rise_per-tensor" in r:
            yield (
                f"{Path(r['model']).stem}{bn}{radius}: loss rise over ε, measured (quadratic model), per-tensor",
                f"{r['rise_per-tensor']:.3f} ({r['rise_quadratic_per-tensor']:.3f})",
                "",
                "–",
            )


def _allocator(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        yield (
            f"{r['model']} {r['defense']} step, batch {r['batch_size']}: glibc defaults / large buffers kept "
            "(the product's)",
            f"{r['seconds_per_step_system']:.2f} s / {r['seconds_per_step_keep']:.2f} s "
            f"({r['speedup_keep_over_system']:.2f}x)",
            "",
            "–",
        )


def _batchnorm_layout(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        yield (
            f"{r['model']} {r['defense']} step, batch {r['batch_size']}: contiguous / channels_last with exact "
            "BatchNorm / channels_last with PyTorch's (1e-3 off)",
            f"{r['seconds_per_step_contiguous']:.2f} s / {r['seconds_per_step_channels_last']:.2f} s / "
            f"{r['seconds_per_step_channels_last_plain']:.2f} s",
            "exact channels_last (the CPU default) no slower than contiguous",
            _met(r["seconds_per_step_channels_last"] <= r["seconds_per_step_contiguous"]),
        )


def _scan_speed(d: dict) -> Iterator[Row]:
    for arch, variants in d["summary"].items():
        threads = sorted({r["threads"] for r in d["rows"] if r["architecture"] == arch})
        names = [v for v in variants if v != "bf16"]
        default = variants.get("default")
        yield (
            f"{arch} scan ({'/'.join(map(str, threads))} thread(s), default domains): "
            + " / ".join(names)
            + " (the product's)",
            " / ".join(f"{variants[v]['seconds_per_scan']:.0f} s" for v in names)
            + (f" ({default['mean_speedup']:.2f}x)" if default and "mean_speedup" in default else ""),
            "≤ 300 s (ResNet, issue 33)" if arch == "resnet" else "",
            _met(default["seconds_per_scan"] <= 300) if arch == "resnet" and default else "–",
        )
        if "bf16" in variants and "mean_speedup" in variants["bf16"]:
            b = variants["bf16"]
            yield (
                f"{arch} scan with amp=bf16 (opt-in): seconds; scans whose verdict and class pointed at are the "
                "plain scan's",
                f"{b['seconds_per_scan']:.0f} s ({b['mean_speedup']:.2f}x); {b['same_verdict']} / "
                f"{b['same_class_pointed_at']} of {b['scans']}",
                "",
                "–",
            )


def _end_to_end(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        yield (
            f"{r['model']} {r['command']} end to end ({d['data']}, {d['threads']} thread(s)): seconds before "
            "issue 30 / now (speed-up)",
            f"{r['seconds_before']:.0f} / {r['seconds_after']:.0f} ({r['speedup']:.2f}x)",
            "≥ 2x",
            _met(r["speedup"] >= 2.0),
        )


def _throughput(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        yield (
            f"{r['model']} {r['step']} step, batch {r['batch_size']}: clips/s before issue 30 / product (speed-up)",
            f"{r['clips_per_second_before']:.0f} / {r['clips_per_second_product']:.0f} ({r['speedup']:.2f}x)",
            "≥ 2x (ResNet), ≥ 3x (SmallCNN)",
            _met(r["speedup"] >= (2.0 if r["model"] == "resnet" else 3.0)),
        )
        if r["model"] == "resnet":
            yield (
                f"resnet {r['step']} step: achieved GFLOP/s / this machine's best 3x3 conv rate",
                f"{r['gflops_product']:.1f} / {d['peaks']['conv3x3_gflops']:.1f} "
                f"({100 * r['fraction_of_conv_peak']:.0f} %)",
                "≥ 55 %",
                _met(r["fraction_of_conv_peak"] >= 0.55),
            )


def _threads(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        yield (
            f"{r['model']} {r['defense']} steps/s, batch {r['batch_size']}: 1 thread / 2 threads / two 1-thread "
            "workers, alone; beside a busy process",
            "; ".join(
                f"{r[f'steps_per_second_1_thread_{t}']:.3f} / {r[f'steps_per_second_2_threads_{t}']:.3f} / "
                f"{r[f'steps_per_second_two_1_thread_workers_{t}']:.3f}"
                for t in ("as_is", "busy")
            ),
            "",
            "–",
        )


def _gui_soak(d: dict) -> Iterator[Row]:
    for r in d["rows"]:
        g, m, delta = r["gui_thread"], r["rss_mb"], r["refcounts"]["delta"]
        ended = (
            "finished" if r["completed"] else f"crashed ({r['process'].get('signal') or r['process'].get('exit_code')})"
        )
        yield (
            f"live GN-FT soak in the window, {r['steps']} steps: outcome / worst GUI stall (p99) / RSS growth "
            "(steady, per 1000 steps)",
            f"{ended} / {g['max_stall_ms']:.0f} ms ({g['p99_stall_ms']:.0f} ms) / {m['growth']:+.0f} MB "
            f"({m['steady_per_1000_steps']} MB)",
            "no crash; None/True refcounts never fall",
            _met(bool(r["completed"]) and min(delta.values()) >= 0),
        )


def _hardening(d: dict) -> Iterator[Row]:
    """Issue 32: generated command lines per command that gave a traceback, a hang, a lost file or an unclear error."""
    kinds = ("tracebacks", "hangs", "lost_files", "temporaries_left", "other_exit_codes", "unclear_errors")
    for name, r in d["commands"].items():
        broken = sum(r[k] for k in kinds)
        yield (
            f"{name}: generated command lines with a traceback, hang, lost file or unclear error",
            f"{broken} of {r['tried']} ({r['ran']} ran, {r['refused']} refused in one line)",
            "0",
            _met(broken == 0),
        )


def _tradeoff(d: dict) -> Iterator[Row]:
    t = d["target"]
    for r in d["rows"]:
        if r["front"]:
            yield (
                f"{r['candidate']} ({r['label']}; {len(r['cells'])} cells): mean ASR, worst CA drop",
                f"{100 * r['mean_asr']:.1f} %, {100 * r['worst_ca_drop']:.1f} points",
                f"<= {100 * t['max_mean_asr']:g} %, <= {100 * t['max_ca_drop']:g} points",
                _met(r["meets"]),
            )


EXTRACTORS: dict[str, Callable[[dict], Iterator[Row]]] = {
    "tradeoff": _tradeoff,
    "hardening": _hardening,
    "gui_soak": _gui_soak,
    "allocator": _allocator,
    "foundation": _foundation,
    "attacks": _attacks,
    "gnft_step": _gnft_step,
    "gnft_step_size": _gnft_step_size,
    "zones_speed": _zones_speed,
    "mechanism": _mechanism,
    "gui_start": _timed,
    "gui_latency": _timed,
    "synth_speed": _synth_speed,
    "grid": _grid,
    "gnft_lr": _defense_probe,
    "gnft_ablation": _defense_probe,
    "gnft_probe": _defense_probe,
    "defend_": _defend_report,
    "gpu_path": _gpu_path,
    "batchnorm_layout": _batchnorm_layout,
    "threads": _threads,
    "throughput": _throughput,
    "end_to_end": _end_to_end,
    "scan_speed": _scan_speed,
}


def _extractor(name: str) -> Callable[[dict], Iterator[Row]] | None:
    for prefix in sorted(EXTRACTORS, key=len, reverse=True):
        if name.startswith(prefix):
            return EXTRACTORS[prefix]
    return None


def _device(d: dict) -> str:
    m = d.get("machine", {})
    dev = m.get("device") or m.get("torch_device") or ""
    gpu = m.get("gpu") or m.get("cuda_device_name")
    return f"{dev} ({gpu})" if gpu else (dev or "cpu")


def _columns(rows: list[dict]) -> list[str]:
    """The grid's defense columns in the order its rows give them, ``none`` first and the Recommended (today's
    or a previous one) next, whichever cells the first rows happen to have."""
    seen: list[str] = []
    for r in rows:
        if r["attack"] != "clean" and r["defense"] not in seen:
            seen.append(r["defense"])
    first = ("none", "gnft@recommended", PREVIOUS)
    return sorted(seen, key=lambda c: first.index(c) if c in first else len(first))


def _mean_sd(r: dict, key: str) -> str:
    sd = r.get(f"{key}_std")
    v = r.get(key)
    return "–" if v is None else (f"{100 * v:.1f}" if sd is None else f"{100 * v:.1f} ± {100 * sd:.1f}")


def _is_todays_recommended(settings: dict | None) -> bool:
    """Whether a column's recorded settings are today's Recommended preset (run fields aside)."""
    if settings is None:
        return False
    defense = PRESETS["recommended"].defense
    config = DEFENSES[defense].Config
    known = {f.name for f in dataclasses.fields(config)} & set(settings)  # a table may hold older fields
    return matching_preset(defense, config(**{k: settings[k] for k in known})) == "recommended"


def _reference_rows(results: Path, stem: str) -> tuple[dict, list[dict], bool] | None:
    """A reference table's rows, from ``<stem>.json`` or, for a stem ending in ``*``, from the grid files of one
    model each (their attack labelled with the model's seed, the grid's ``--seed``, so that two models of one
    attack stay two rows): the first file, the rows run or measured (a ``gnft@recommended`` column whose
    cells ran another preset than today's, or whose scans searched other domains, renamed :data:`PREVIOUS`; a
    variant that ran today's Recommended, where the table's ``gnft@recommended`` did not, renamed
    ``gnft@recommended``), and whether any file's scans searched other domains than today's scan. None when
    no file is there."""
    paths = sorted(results.glob(f"{stem}.json"))
    if not paths:
        return None
    rows: list[dict] = []
    other = False
    gnft = PRESETS["recommended"].defense
    first: dict | None = None
    for path in paths:
        d = json.loads(path.read_text())
        first = first or d
        other_scan = scan_domains_of(d) != ScanConfig().domains  # its repairs' scans searched other domains
        settings = d.get("defense_settings") or {}
        stale = other_scan or not _is_todays_recommended(settings.get("gnft@recommended"))
        today = next(  # a variant that is today's Recommended (the table was run before it was the preset)
            (
                c
                for c, v in (d.get("variants") or {}).items()
                if stale and not other_scan and v.get("defense") == gnft and _is_todays_recommended(settings.get(c))
            ),
            None,
        )
        seed = re.search(r"--seed[= ](\d+)", d.get("command", ""))
        for r in d["rows"]:
            if r.get("not_run") or r.get("failed"):
                continue
            if r["defense"] == "gnft@recommended" and stale:  # not today's Recommended
                r = {**r, "defense": PREVIOUS}
            elif r["defense"] == today:
                r = {**r, "defense": "gnft@recommended"}
            r = {**r, "model_seed": int(seed.group(1)) if seed else 0}
            if stem.endswith("*") and r["attack"] != "clean":
                r = {**r, "attack": f"{r['attack']}, model seed {r['model_seed']}"}
            rows.append(r)
        other |= other_scan
    return first or {}, rows, other


def reference_section(
    results: Path = RESULTS,
    level: str = "###",
    link: str = "results/",
    only: dict[str, tuple[str, ...] | None] | None = None,
) -> str:
    """The reference benchmark's tables (CA / ASR per cell, then per model each column's mean ASR and worst
    CA drop against the backdoored model), from ``grid_asc*.json``; empty when none is committed. ``only``
    (stem -> columns kept, None for all) picks the tables and columns shown, in :data:`REFERENCE`'s order."""
    parts: list[str] = []
    for stem, title in REFERENCE.items():
        if only is not None and stem not in only:
            continue
        loaded = _reference_rows(results, stem)
        if loaded is None:
            continue
        d, rows, other_scan = loaded
        joined = ""
        if stem in BESIDE and (other := _reference_rows(results, BESIDE[stem][0])) is not None:
            ours = {(r["model"], r["attack"]) for r in rows}
            rows = rows + [r for r in other[1] if r["defense"] in BESIDE[stem][1] and (r["model"], r["attack"]) in ours]
            joined = (
                f" Beside them, from the `benchmarks/results/{BESIDE[stem][0]}.json` files: "
                + ", ".join(COLUMN_TITLES.get(c, c).replace("*", "") for c in BESIDE[stem][1])
                + "."
            )
        clean_from = ""
        if stem in CLEAN_FROM and not any(r["attack"] == "clean" for r in rows):
            extra = _reference_rows(results, CLEAN_FROM[stem])
            rows = rows + [r for r in (extra[1] if extra else []) if r["attack"] == "clean"]
            clean_from = f" The clean models: the `benchmarks/results/{CLEAN_FROM[stem]}.json` files." if extra else ""
        columns = _columns(rows)
        kept = None if only is None else only[stem]
        if kept is not None:
            columns = [c for c in columns if c in kept]
        cells = {(r["model"], r["attack"], r["defense"]): r for r in rows if r["attack"] != "clean"}
        # the clean model of each architecture, training seed and rate (Ultrasonic's: 44.1 kHz)
        clean = {(r["model"], r["model_seed"], r.get("sample_rate")): r for r in rows if r["attack"] == "clean"}
        pairs = sorted({(m, a) for m, a, _ in cells})
        names = [COLUMN_TITLES.get(c, f"`{c}`") for c in columns]
        if other_scan:  # a variant of the Recommended (at 5 % clean) then was a variant of the previous one
            names = [f"previous {n}" if n.startswith("Recommended") else n for n in names]
        seeds = sorted({len(r.get("seeds", [0])) for r in rows if r["defense"] != "none"})
        source = (
            f"From the `benchmarks/results/{stem}.json` files (one per model; "
            if stem.endswith("*")
            else f"From [`benchmarks/results/{stem}.json`]({link}{stem}.json) ("
        )
        parts += [
            f"{level} {title}",
            "",
            f"CA / ASR in % on the {d.get('eval_split', 'test')} split; defense cells are the mean ± standard "
            f"deviation over {max(seeds, default=1)} defense seed(s) where more than one ran; `–` not run yet."
            f"{machines_note(rows)} {source}command inside; notes in `{NOTES.get(stem, stem)}.notes.md`).{joined}"
            f"{clean_from} "
            f"{DATASET_CREDIT}",
            "",
            "| model | attack | clean model CA | " + " | ".join(names) + " |",
            "|---|---|---|" + "---|" * len(columns),
        ]
        for m, a in pairs:
            backdoored = cells.get((m, a, "none")) or next(r for (mm, aa, _), r in cells.items() if (mm, aa) == (m, a))
            rate = backdoored.get("sample_rate")
            reference = clean.get((m, backdoored["model_seed"], rate))
            label = a if rate in (None, 16000) else f"{a} ({rate / 1000:g} kHz)"
            row = [m, label, _pct(reference["clean_accuracy"]).replace(" %", "") if reference else "–"]
            for c in columns:
                r = cells.get((m, a, c))
                row.append(
                    "–" if r is None else f"{_mean_sd(r, 'clean_accuracy')} / {_mean_sd(r, 'attack_success_rate')}"
                )
            parts.append("| " + " | ".join(row) + " |")
        parts += ["", "| model | " + " | ".join(names[1:]) + " |", "|---|" + "---|" * (len(columns) - 1)]
        for m in sorted({m for m, _ in pairs}):
            row = [f"{m}: mean ASR / worst CA drop (cells)"]
            for c in columns[1:]:
                done = [
                    (cells[(m, a, c)], cells.get((m, a, "none"))) for mm, a in pairs if mm == m and (m, a, c) in cells
                ]
                asr = [r["attack_success_rate"] for r, _ in done if r.get("attack_success_rate") is not None]
                drops = [b["clean_accuracy"] - r["clean_accuracy"] for r, b in done if b is not None]
                row.append(
                    "–"
                    if not done
                    else f"{100 * sum(asr) / len(asr):.1f} / {100 * max(drops):.1f} ({len(done)})"
                    if asr and drops
                    else "–"
                )
            parts.append("| " + " | ".join(row) + " |")
        parts.append("")
    return "\n".join(parts)


#: How a scan benchmark's corpus (``benchmarks/scan.py``'s group name up to its first ``_``) reads in a table.
CORPUS_NAMES = {"asc10": "ASC-10", "fsdd": "FSDD", "synth": "synthetic (espeak-ng)"}
#: The credit a corpus other than ASC-10 needs where its results are shown.
CORPUS_CREDITS = {"fsdd": "FSDD: the Free Spoken Digit Dataset (Jakobovski et al.), CC BY-SA 4.0."}


def scan_section(results: Path = RESULTS, level: str = "###", link: str = "results/") -> str:
    """The scan's tables (``scan.json``'s ``reference_reading``, then its ``corpora``): per architecture, the models
    it flagged with their target, the clean ones it flagged and the AUROC, read plainly and against a clean
    reference; then per corpus, plainly; empty when there is no reference reading."""
    path = results / "scan.json"
    d = json.loads(path.read_text()) if path.is_file() else {}
    both = d.get("reference_reading") or {}
    if not (both.get("plain") or {}).get("backdoored_models"):
        return ""
    t = d["targets"]
    readings = {"plain": "plain", "reference": "against clean models (`--reference`)"}
    seconds = d["summary"].get("seconds_per_scan", {})
    parts = [
        f"{level} The scan: a backdoor found without its trigger",
        "",
        "ASC-10 models of the H200 table's recipe (other seeds) and those of today's Recommended table (per-clip "
        "dB floor); each scanned once (`python -m core.scan`, default settings, seed 0), then read plainly and against "
        "the scans of the other clean models of its architecture and dB floor (never one trained with its seed; a "
        "per-clip model has one or two). Targets: AUROC "
        f"{t['auroc']:g}, the right target flagged on {100 * t['target_accuracy']:.0f} % of backdoored models, at "
        f"most {100 * t['false_positive_rate']:.0f} % of clean models flagged. Seconds a scan (1 thread, beside "
        "another job): "
        + ", ".join(f"{a} {v:.0f}" for a, v in seconds.items())
        + f". From [`benchmarks/results/scan.json`]({link}scan.json) (command inside). {DATASET_CREDIT}",
        "",
        "| models | reading | backdoored / clean | flagged with the right target | clean flagged | AUROC | "
        "class pointed at is the target | repaired, still flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def count(share: float | None, of: int) -> str:
        return "–" if share is None else f"{round(share * of)} of {of}"

    def figures(s: dict) -> str:
        """A summary's cells, from "backdoored / clean" to "repaired, still flagged"."""
        n, c, rep = s["backdoored_models"], s["clean_models"], s["repaired_models"]
        auroc = "–" if s["auroc"] is None else f"{s['auroc']:.2f}"
        return (
            f"{n} / {c} | {count(s['target_accuracy'], n)} | {count(s['false_positive_rate'], c)} | {auroc} | "
            f"{count(s['most_anomalous_is_target'], n)} | {count(s['repaired_still_flagged'], rep)} |"
        )

    groups = {"all": both, **both.get("architectures", {})}
    for name, group in groups.items():
        for key, label in readings.items():
            parts.append(f"| {name} | {label} | {figures(group[key])}")
    corpora = d.get("corpora") or {}
    if corpora:
        parts += [
            "",
            "Per corpus, every model whose scan kept its sizes, read plainly (read against a reference only where "
            "the rows hold clean models of its architecture from other training seeds, as in the table above)."
            + "".join(f" {CORPUS_CREDITS[name]}" for name in corpora if name in CORPUS_CREDITS),
            "",
            "| corpus | backdoored / clean | flagged with the right target | clean flagged | AUROC | "
            "class pointed at is the target | repaired, still flagged |",
            "|---|---|---|---|---|---|---|",
        ]
        parts += [f"| {CORPUS_NAMES.get(name, name)} | {figures(s)}" for name, s in corpora.items()]
    return "\n".join([*parts, ""])


def product_readme(text: str, results: Path = RESULTS) -> str:
    """``text`` (the product README) with the reference tables between :data:`MARKERS` regenerated: those of
    :data:`PRODUCT_TABLES`, with their columns, and the scan's."""
    start, end = MARKERS
    if start not in text or end not in text:
        return text
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    tables = reference_section(results, "####", "benchmarks/results/", PRODUCT_TABLES)
    scan = scan_section(results, "####", "benchmarks/results/")
    return head + start + "\n" + tables + ("\n" + scan if scan else "") + end + tail


def render(results: Path = RESULTS) -> str:
    """The README text for every ``*.json`` in ``results``."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; do not edit by hand.",
        "Every figure is the latest committed result; the command that made it is below its table. Ratios",
        "are measured side by side in one run. The CPU machine has 2 cores and is shared: absolute times vary.",
        "",
    ]
    reference = reference_section(results)
    scan = scan_section(results)
    if reference:
        lines += ["## Canonical results: the reference benchmark on real speech", "", reference]
    if scan:
        lines += [scan]
    lines += [
        "## Every benchmark",
        "",
        "| benchmark | figure | value | target | met | device |",
        "|---|---|---|---|---|---|",
    ]
    commands: list[tuple[str, str, str]] = []
    skipped: list[str] = []
    for path in sorted(results.glob("*.json")):
        extract = _extractor(path.stem)
        data: Any = json.loads(path.read_text())
        try:
            rows = list(extract(data)) if extract is not None and isinstance(data, dict) else None
        except (KeyError, TypeError):
            rows = None
        if not rows:
            skipped.append(path.name)
            continue
        device = _device(data)
        for figure, value, target, met in rows:
            lines.append(f"| {path.stem} | {figure} | {value} | {target} | {met} | {device} |")
        commands.append((path.stem, data.get("command", "(not recorded)"), (data.get("machine") or {}).get("date", "")))
    lines += ["", "## How to reproduce", ""]
    for stem, command, date in commands:
        lines.append(f"- `{stem}`: `{command}`" + (f" ({date})" if date else ""))
    notes = sorted(results.glob("*.notes.md"))
    if notes:
        lines += [
            "",
            "Notes on what was tried and what missed: "
            + ", ".join(f"[`{p.name}`](results/{p.name})" for p in notes)
            + ".",
        ]
    if any(stem.startswith("grid_asc") for stem, _, _ in commands):
        lines += [
            "",
            "`grid_asc*` rows are on the Arabic Speech Commands dataset (Ghandoura, Hjabo, Al Dakkak, Engineering",
            "Applications of Artificial Intelligence, 2021; CC BY 4.0).",
        ]
    if skipped:
        lines += [
            "",
            "Results without a table row here (read them directly): " + ", ".join(f"`{s}`" for s in skipped) + ".",
        ]
    lines += [
        "",
        "## GPU path",
        "",
        "CUDA (`--device cuda`), bf16 autocast and `torch.compile` are options of training",
        "(`python -m core.train --amp bf16 --compile`) and of every defense (`python -m core.defend --amp bf16",
        "--compile true`; the application's Defense form has both). `benchmarks/gpu_path.py` times them against",
        "eager float32 through the real `Defense.run` and checks the compiled weights against eager ones.",
        "Rows whose device column says `cuda` were measured on the GPU machine; where there is none, no GPU was",
        "lent to a session yet and the GPU speed-ups are not measured.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 if benchmarks/README.md is not up to date")
    args = p.parse_args()
    text = render()
    product = PRODUCT_README.read_text() if PRODUCT_README.is_file() else ""
    if args.check:
        current = README.read_text() if README.is_file() else ""
        stale = [
            p.name
            for p, now, new in ((README, current, text), (PRODUCT_README, product, product_readme(product)))
            if now != new
        ]
        if stale:
            print(f"{' and '.join(stale)} out of date: run python benchmarks/report.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(text)
    PRODUCT_README.write_text(product_readme(product))
    print(f"wrote {README} and the reference tables of {PRODUCT_README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
