"""Attack benchmark (issue 3): every attack against ResNet and SmallCNN on FSDD and synthetic SCD-10.

For each (data, model) a clean model is trained once (twice where an attack needs 44.1 kHz:
Ultrasonic), then one backdoored model per attack at 10 % poisoning (FlowMur: clean label at
its recipe's rate). Rows are resumable (a row whose report exists in ``--work`` is not run again)
and can be spread over processes; a row with no report in ``--work`` keeps its row from the
earlier ``--out`` JSON, so the committed table survives a fresh checkout (``runs/`` is not kept).
Writes ``benchmarks/results/attacks.json`` and ``attacks.md``:
CA of the clean model, CA and ASR of the backdoored one, the CA drop, wall time, command.
Target: ASR >= 95 % at a CA drop <= 2 points for every attack.

Epoch budgets can differ per row (``--budget 'synth-scd10_smallcnn_*=40/10'``: rows whose name
matches get 40 epochs at patience 10; the last matching rule wins) and ``--only`` picks rows by
name, so one command reruns a table whose models needed different budgets.

    python benchmarks/attacks.py --synth-data runs/synth_scd10 --work runs/attacks --jobs 2 \
        --budget 'synth-scd10_smallcnn_*=40/10'
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import gather, run_row, this_command  # noqa: E402

from core.runtime import machine_info, write_json  # noqa: E402

ATTACKS = ["badnets", "badnets-mfcc", "ultrasonic", "jingleback", "daba", "flowmur", "piba", "pbsm", "blend"]
MODELS = ["resnet", "smallcnn"]
HIGH_RATE = ["--sample-rate", "44100", "--n-fft", "1103", "--hop-length", "441"]  # Ultrasonic's pipeline
TARGETS = {"asr": 0.95, "ca_drop": 0.02}


def parse_budget(text: str) -> tuple[str, int, int]:
    """``PATTERN=EPOCHS/PATIENCE`` -> (pattern, epochs, patience); a clear error otherwise."""
    pattern, sep, budget = text.rpartition("=")
    epochs, slash, patience = budget.partition("/")
    if not sep or not pattern or not slash or not epochs.isdigit() or not patience.isdigit() or int(epochs) < 1:
        raise argparse.ArgumentTypeError(
            f"budget {text!r}: expected PATTERN=EPOCHS/PATIENCE, e.g. 'synth-scd10_smallcnn_*=40/10'"
        )
    return pattern, int(epochs), int(patience)


def budget_for(name: str, rules: list[tuple[str, int, int]], default: tuple[int, int]) -> tuple[int, int]:
    """(epochs, patience) of row ``name``: the last rule whose pattern matches it, else ``default``."""
    chosen = default
    for pattern, epochs, patience in rules:
        if fnmatch.fnmatchcase(name, pattern):
            chosen = (epochs, patience)
    return chosen


def plan(
    datasets: dict[str, list[str]],
    models: list[str],
    attacks: list[str],
    common: list[str],
    rules: list[tuple[str, int, int]] = (),
    default: tuple[int, int] = (30, 6),
) -> list[dict]:
    """Every (data, model) clean row(s) then one row per attack; each row's args carry its budget."""
    rows = []
    for data_name, data_args in datasets.items():
        for model in models:
            cells = [(None, rate) for rate in ["16k"] + (["44k"] if "ultrasonic" in attacks else [])]
            cells += [(attack, "44k" if attack == "ultrasonic" else "16k") for attack in attacks]
            for attack, rate in cells:
                name = f"{data_name}_{model}_{attack or f'clean_{rate}'}"
                epochs, patience = budget_for(name, rules, default)
                rows.append(
                    {
                        "name": name,
                        "data": data_name,
                        "model": model,
                        "attack": attack,
                        "rate": rate,
                        "args": [
                            *data_args,
                            "--model",
                            model,
                            *(["--attack", attack] if attack else []),
                            *(HIGH_RATE if rate == "44k" else []),
                            "--epochs",
                            str(epochs),
                            "--patience",
                            str(patience),
                            *common,
                        ],
                    }
                )
    return rows


def select(row: dict) -> dict:
    return {k: row[k] for k in ("name", "data", "model", "attack", "rate")}


def flat_row(result: dict) -> dict:
    """One table row from a gathered run: its report's figures, or its error."""
    row = select(result)
    if "error" in result:
        return {**row, "error": result["error"]}
    rep = result["report"]
    return {
        **row,
        "clean_accuracy": rep["clean_accuracy"],
        "attack_success_rate": rep.get("attack_success_rate"),
        "robust_accuracy": rep.get("robust_accuracy"),
        "poisoned_clips": rep.get("poisoned_clips"),
        "seconds": rep["seconds"],
        "epochs_run": rep["epochs_run"],
        "command": rep["command"],
        "epochs": rep.get("config", {}).get("epochs"),
        "patience": rep.get("config", {}).get("patience"),
    }


def previous_rows(path: Path) -> dict[str, dict]:
    """The rows that ran in an earlier results file, by name: kept when their work report is gone
    (the work folder holds checkpoints and is not committed; the results file is)."""
    if not path.is_file():
        return {}
    return {
        r["name"]: {
            k: v for k, v in r.items() if k not in ("clean_model_accuracy", "clean_accuracy_drop", "target_met")
        }
        for r in json.loads(path.read_text())["rows"]
        if not r.get("not_run") and "error" not in r
    }


def add_drops(rows: list[dict]) -> None:
    """Give each attack row the clean model's CA of its (data, model, rate), its CA drop and the target verdict."""
    clean = {
        (r["data"], r["model"], r["rate"]): r["clean_accuracy"]
        for r in rows
        if r["attack"] is None and "clean_accuracy" in r
    }
    for row in rows:
        reference = clean.get((row["data"], row["model"], row["rate"]))
        if row["attack"] is None or reference is None or "clean_accuracy" not in row:
            continue
        row["clean_model_accuracy"] = reference
        row["clean_accuracy_drop"] = reference - row["clean_accuracy"]
        row["target_met"] = (
            row["attack_success_rate"] >= TARGETS["asr"] and row["clean_accuracy_drop"] <= TARGETS["ca_drop"]
        )


def table(rows: list[dict]) -> str:
    lines = [
        "| data | model | attack | clean CA | backdoored CA | CA drop | ASR | met | epochs (cap / patience) "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("attack") is None:
            continue
        if r.get("not_run"):
            lines.append(f"| {r['data']} | {r['model']} | {r['attack']} | | | | | not run | | |")
            continue
        if "error" in r:
            lines.append(f"| {r['data']} | {r['model']} | {r['attack']} | | | | | error: {r['error']} | | |")
            continue

        def pct(v):
            return "" if v is None else f"{100 * v:.1f}"

        lines.append(
            f"| {r['data']} | {r['model']} | {r['attack']} | {pct(r.get('clean_model_accuracy'))} | "
            f"{pct(r['clean_accuracy'])} | {pct(r.get('clean_accuracy_drop'))} | "
            f"{pct(r['attack_success_rate'])} | {'yes' if r.get('target_met') else 'no'} | "
            f"{r.get('epochs_run', '')} ({r.get('epochs', '?')} / {r.get('patience', '?')}) | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fsdd", default=str(REPO.parent / "shared" / "data" / "fsdd"))
    p.add_argument("--synth-data", help="synthetic SCD-10 corpus (python -m core.data.synth --vocab scd10)")
    p.add_argument("--work", default="runs/attacks")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--attacks", default=",".join(ATTACKS))
    p.add_argument("--epochs", type=int, default=30, help="epoch cap of rows no --budget rule matches (default 30)")
    p.add_argument("--patience", type=int, default=6, help="patience of rows no --budget rule matches (default 6)")
    p.add_argument(
        "--budget",
        type=parse_budget,
        action="append",
        default=[],
        metavar="PATTERN=EPOCHS/PATIENCE",
        help="budget of the rows whose name (DATA_MODEL_ATTACK, clean rows DATA_MODEL_clean_16k/44k) "
        "matches the shell pattern; repeatable, the last match wins",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only the rows whose name matches (repeatable); the others are still tabulated",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, help="torch threads per run (default: cores / jobs)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: tabulate the rows whose reports exist (or that an earlier --out file "
        "holds), list the others as not run",
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "attacks"))
    args = p.parse_args()
    datasets: dict[str, list[str]] = {}
    if Path(args.fsdd).is_dir():
        datasets["fsdd"] = ["--data", args.fsdd]
    if args.synth_data:
        datasets["synth-scd10"] = ["--data", args.synth_data, "--vocab", "scd10"]
    if not datasets:
        p.error("no dataset: FSDD not found and no --synth-data")
    common = ["--seed", "0", "--device", args.device, "--quiet"]
    rows = plan(
        datasets, args.models.split(","), args.attacks.split(","), common, args.budget, (args.epochs, args.patience)
    )
    to_run = [r for r in rows if not args.only or any(fnmatch.fnmatchcase(r["name"], pat) for pat in args.only)]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    if not args.report_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda r: run_row(r, work, threads), to_run))
    previous = previous_rows(Path(f"{args.out}.json"))
    out_rows = []
    for r in rows:
        result = gather(r, work)
        out_rows.append(flat_row(result) if result else previous.get(r["name"], {**select(r), "not_run": True}))
    add_drops(out_rows)
    write_json(
        f"{args.out}.json", {"command": this_command(), "machine": machine_info(), "targets": TARGETS, "rows": out_rows}
    )
    Path(f"{args.out}.md").write_text(f"# Attacks\n\nCommand: `{this_command()}`\n\n{table(out_rows)}")
    print(table(out_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
