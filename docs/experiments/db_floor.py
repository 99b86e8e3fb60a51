"""How much a model's figures depended on the batch its clips were measured in (the front end's dB floor).

Before 2026-12-06 the front end gave torchaudio a ``[B, T]`` batch, and torchaudio floors the log scale 80 dB
under the loudest bin of the whole batch: a quiet clip's features changed with its neighbours. For each model,
CA and ASR on the given splits as the product measured them (``core.evaluation.evaluate``, batches of 512)
against each clip alone (batches of 1: its own floor), and how many answers differ:

    python docs/experiments/db_floor.py --data ../shared/data/arabic_sc --vocab asc10 \
        --models runs/j/legacy_v21_blend/train_smallcnn_blend.safetensors ... --out docs/experiments/db_floor.json

A model made after the fix (checkpoint format 2, ``db_floor`` clip) must give the same figures both ways.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from core.attacks import attack_from_dict
from core.checkpoint import load_checkpoint
from core.data import load_dataset
from core.models import split_front_end
from core.runtime import machine_info, write_json


@torch.no_grad()
def answers(model: torch.nn.Module, waves: torch.Tensor, batch: int) -> torch.Tensor:
    """The model's answer for every clip, the clips taken ``batch`` at a time."""
    if waves.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([model(waves[i : i + batch]).argmax(1) for i in range(0, waves.shape[0], batch)])


def measure(path: str, data, splits: list[str]) -> dict:
    """CA / ASR per split in batches of 512 and alone, and the share of answers that differ."""
    model, meta = load_checkpoint(path)
    model.eval()
    recorded = meta["provenance"].get("attack")
    attack = attack_from_dict(recorded, sample_rate=meta["sample_rate"]) if recorded else None  # None: clean
    front, _ = split_front_end(model)
    out = {"model": path, "db_floor": front.config.db_floor, "format_version": meta["format_version"]}
    for split in splits:
        idx = data.splits[split]
        waves, labels = data.waves[idx], data.labels[idx]
        triggered = waves[:0]
        if attack is not None:
            triggered = attack.apply_test(waves, data.sample_rate)[labels != attack.params.target]
        row = {}
        for name, batch in (("batched", 512), ("alone", 1)):
            clean, trig = answers(model, waves, batch), answers(model, triggered, batch)
            row[name] = {
                "ca": round(100 * float((clean == labels).float().mean()), 2),
                "asr": None if attack is None else round(100 * float((trig == attack.params.target).float().mean()), 2),
                "clean_answers": clean,
                "triggered_answers": trig,
            }
        b, a = row["batched"], row["alone"]
        out[split] = {
            "clips": int(idx.numel()),
            "batched": {"ca": b["ca"], "asr": b["asr"]},
            "alone": {"ca": a["ca"], "asr": a["asr"]},
            "clean_answers_differ": int((b["clean_answers"] != a["clean_answers"]).sum()),
            "triggered_answers_differ": int((b["triggered_answers"] != a["triggered_answers"]).sum()),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--vocab", default=None)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--splits", default="validation,test")
    p.add_argument("--out", required=True)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset(args.data, vocab=args.vocab)
    rows = [measure(m, data, args.splits.split(",")) for m in args.models]
    write_json(
        Path(args.out),
        {"command": "python docs/experiments/db_floor.py " + " ".join(argv), "machine": machine_info(), "models": rows},
    )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
