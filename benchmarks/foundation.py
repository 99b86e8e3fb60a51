"""Foundation benchmark: clean and BadNets-backdoored models on FSDD and synthetic SCD-10.

Runs ``python -m core.train`` for every row (resumable: a row whose report exists is not
run again), then gathers the reports into ``benchmarks/results/foundation.json`` with the
exact command, numbers and wall time of each. Targets (issue 2): ResNet on FSDD ≥ 95 % CA;
on synthetic SCD-10 ResNet ≥ 90 %, every other model ≥ 85 %; BadNets ResNet ASR ≥ 95 % with
CA within 2 points of the clean model.

    python benchmarks/foundation.py --synth-data runs/synth_scd10 --work runs/foundation --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import gather, run_row, this_command  # noqa: E402

from core.runtime import machine_info, write_json  # noqa: E402

MODELS = ["resnet", "smallcnn", "largecnn", "smalllstm", "lstm_attention", "rnn"]


#: Per-model training overrides (recorded in each row's command; they win over the common
#: arguments), chosen to fit the CPU time of one session on a 2-core machine: smaller
#: batches give the slower learners more optimiser steps per epoch at the same cost per
#: epoch, and the expensive models get an epoch cap (largecnn costs ~5x resnet per clip).
#: lstm_attention first ran with a 15-epoch cap and patience 6 (CA 0.73, stopped at epoch 14):
#: it gets more epochs and patience. rnn first ran with a 10-epoch cap (test CA 0.84 while
#: its validation accuracy was still rising at 0.95): it gets 30. Both stayed under 0.85 on
#: the voice-held-out test split while validation reached 0.85-0.95 (a generalisation gap,
#: not under-training), so their third runs train with ``--augment default`` (shift, speed
#: perturbation, coloured noise). largecnn sat at chance (loss 2.303) with Adam at 1e-3: it
#: now uses the authors' 1e-4: its second run (12-epoch cap, ~43 min) reached test CA 0.833 with
#: validation accuracy still rising (0.87 at epoch 11), so the third run continues from that
#: checkpoint (``--init-from``, a fresh Adam) for up to 8 more epochs: 20 epochs in all.
OVERRIDES = {
    "smallcnn": ["--batch-size", "64", "--epochs", "15"],
    "lstm_attention": ["--batch-size", "32", "--epochs", "40", "--patience", "10", "--augment", "default"],
    "smalllstm": ["--batch-size", "32", "--epochs", "10"],
    "rnn": ["--batch-size", "32", "--epochs", "30", "--patience", "8", "--augment", "default"],
    "largecnn": [
        "--batch-size",
        "32",
        "--epochs",
        "8",
        "--patience",
        "3",
        "--lr",
        "1e-4",
        "--init-from",
        "runs/foundation/attempt2_synth_largecnn_clean.safetensors",
    ],
}


def plan(fsdd: Path, synth: Path, models: list[str], epochs: int, patience: int) -> list[dict]:
    rows = []
    common = ["--epochs", str(epochs), "--patience", str(patience), "--seed", "0", "--device", "auto", "--quiet"]
    if fsdd.is_dir():
        for attack in (None, "badnets"):
            rows.append(
                {
                    "name": f"fsdd_resnet_{attack or 'clean'}",
                    "data": "fsdd",
                    "model": "resnet",
                    "attack": attack,
                    "args": [
                        "--data",
                        str(fsdd),
                        "--model",
                        "resnet",
                        *(["--attack", attack] if attack else []),
                        *common,
                    ],
                }
            )
    for model in models:
        attacks = (None, "badnets") if model == "resnet" else (None,)
        for attack in attacks:
            rows.append(
                {
                    "name": f"synth_{model}_{attack or 'clean'}",
                    "data": "synth-scd10",
                    "model": model,
                    "attack": attack,
                    "args": [
                        "--data",
                        str(synth),
                        "--vocab",
                        "scd10",
                        "--model",
                        model,
                        *(["--attack", attack] if attack else []),
                        *common,
                        *OVERRIDES.get(model, []),
                    ],
                }
            )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fsdd", default=str(REPO.parent / "shared" / "data" / "fsdd"))
    p.add_argument(
        "--synth-data", required=True, help="synthetic SCD-10 corpus (python -m core.data.synth --vocab scd10)"
    )
    p.add_argument("--work", default="runs/foundation", help="checkpoints and per-run reports")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--threads", type=int, help="torch threads per run (default: cores / jobs)")
    p.add_argument(
        "--rows", help="comma list of row names to run now (others are only gathered if their report exists)"
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "foundation.json"))
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = plan(Path(args.fsdd), Path(args.synth_data), args.models.split(","), args.epochs, args.patience)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    if args.rows:
        wanted = set(args.rows.split(","))
        unknown = wanted - {r["name"] for r in rows}
        if unknown:
            p.error(f"unknown rows: {', '.join(sorted(unknown))}")
        runnable = [r for r in rows if r["name"] in wanted]
    else:
        runnable = rows
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(lambda r: run_row(r, work, threads), runnable))
    results = [gather(r, work) for r in rows]
    results = [r for r in results if r is not None]
    out_rows = []
    clean_ca = {
        (r["data"], r["model"]): r["report"]["clean_accuracy"] for r in results if "report" in r and r["attack"] is None
    }
    for r in results:
        row = {"name": r["name"], "data": r["data"], "model": r["model"], "attack": r["attack"]}
        if "error" in r:
            row["error"] = r["error"]
        else:
            rep = r["report"]
            row.update(
                {
                    "clean_accuracy": rep["clean_accuracy"],
                    "attack_success_rate": rep.get("attack_success_rate"),
                    "robust_accuracy": rep.get("robust_accuracy"),
                    "seconds": rep["seconds"],
                    "epochs_run": rep["epochs_run"],
                    "best_epoch": rep["best_epoch"],
                    "train_clips": rep["data"]["splits"]["train"],
                    "test_clips": rep["data"]["splits"]["test"],
                    "command": rep["command"],
                }
            )
            if r["attack"] is not None and (r["data"], r["model"]) in clean_ca:
                row["clean_accuracy_drop_vs_clean_model"] = clean_ca[(r["data"], r["model"])] - rep["clean_accuracy"]
        out_rows.append(row)
    attempts = []  # earlier runs of a row, kept by renaming their report to attempt<N>_<row>.json.txt
    for path in sorted(work.glob("attempt*_*.json.txt")):
        rep = json.loads(path.read_text())
        attempts.append(
            {
                "row": path.name.split("_", 1)[1].removesuffix(".json.txt"),
                "clean_accuracy": rep["clean_accuracy"],
                "epochs_run": rep["epochs_run"],
                "best_epoch": rep["best_epoch"],
                "seconds": rep["seconds"],
                "command": rep["command"],
            }
        )
    write_json(
        args.out,
        {
            "command": this_command(),
            "machine": machine_info(),
            "targets": {
                "fsdd_resnet_ca": 0.95,
                "synth_resnet_ca": 0.90,
                "synth_other_ca": 0.85,
                "badnets_asr": 0.95,
                "badnets_ca_drop": 0.02,
            },
            "rows": out_rows,
            "earlier_attempts": attempts,
        },
    )
    for row in out_rows:
        print(
            json.dumps({k: row.get(k) for k in ("name", "clean_accuracy", "attack_success_rate", "seconds", "error")})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
