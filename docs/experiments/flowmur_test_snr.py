"""Probe (issue 31, FlowMur): a FlowMur victim's attack success when its trigger is played at other SNRs.

The model is trained with the trigger mixed at ``snr_db`` (30 dB, the recipe's); this measures the ASR on
the test split with the same trigger at 30, 25, 20, 15 and 10 dB (louder), the clean accuracy alongside
(unchanged by construction). It tells a backdoor that was not learnt from one learnt but weaker than the
poisoning loudness (FlowMur's public code tests with ``(x + trigger) / 2``, far louder than 30 dB). From
the repository root, one torch thread:

    python docs/experiments/flowmur_test_snr.py runs/flowmur/smallcnn_flowmur_aux20_s6.safetensors \\
        --data ../shared/data/arabic_sc --vocab asc10 --out docs/experiments/flowmur_test_snr.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.common import this_command  # noqa: E402
from core.attacks.base import attack_from_dict  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data.speech_commands import load_speech_commands  # noqa: E402
from core.evaluation import evaluate  # noqa: E402
from core.runtime import machine_info  # noqa: E402

SNRS = (30.0, 25.0, 20.0, 15.0, 10.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--vocab", default="asc10")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    model, meta = load_checkpoint(args.model)
    record = meta["provenance"]["attack"]
    data = load_speech_commands(args.data, args.vocab, sample_rate=meta["sample_rate"])
    rows = []
    for snr in SNRS:
        attack = attack_from_dict({**record, "params": {**record["params"], "snr_db": snr}}, meta["sample_rate"])
        m = evaluate(model, data, "test", attack)
        rows.append(
            {"test_snr_db": snr, "clean_accuracy": m["clean_accuracy"], "attack_success_rate": m["attack_success_rate"]}
        )
        print(f"{snr:g} dB: ASR {100 * m['attack_success_rate']:.1f} %", flush=True)
    out = {
        "command": this_command(),
        "machine": machine_info(),
        "model": args.model,
        "poisoned_at_snr_db": record["params"]["snr_db"],
        "attack_params": dict(record["params"]),
        "training": {k: meta["provenance"]["training"].get(k) for k in ("seed", "epochs_run", "best_epoch", "seconds")},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
