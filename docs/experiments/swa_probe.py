"""Probe (round 25): would averaging the weights of a repair's last evaluations (stochastic weight averaging,
Izmailov et al. 2018) keep more clean accuracy, and does the backdoor's return survive the average?

One Recommended repair per model (the grid's scan of the model read from its work folder, no rescan pass), on the
validation split; every evaluation's weights are kept, and after the run the weights of the evaluations from
epoch S on are averaged, then the BatchNorm statistics are measured again on the repair's own clean clips (in
training mode, a cumulative average over them). The repair's last epoch and each average are measured side by
side, on the same run.

    python docs/experiments/swa_probe.py runs/j/c05_v21_piba --attack piba --data ../shared/data/arabic_sc \
        --clean-ratio 0.1 --seed 0 --start 60,90 --out docs/experiments/round25/swa_piba21.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bn_recalibration_probe import recalibrated  # noqa: E402

from core.checkpoint import load_checkpoint  # noqa: E402
from core.cli.grid import _recorded_attack  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.defenses import DEFENSES  # noqa: E402
from core.defenses.base import clean_subset  # noqa: E402
from core.evaluation import evaluate  # noqa: E402
from core.presets import PRESETS  # noqa: E402
from core.repair import RepairWatcher, repair, unlearn_choice  # noqa: E402
from core.runtime import set_threads  # noqa: E402
from core.scan import ScanResult  # noqa: E402


class Keep(RepairWatcher):
    """Every evaluation's weights, in order (the first at epoch ``eval_every``)."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def evaluated(self, model: nn.Module, number: int, metrics: dict[str, float]) -> None:
        self.states.append({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()})


def averaged(model: nn.Module, states: list[dict[str, torch.Tensor]], waves: torch.Tensor, batch: int) -> nn.Module:
    """``model`` with the mean of ``states`` (integer buffers from the last) and its BatchNorm statistics measured
    again on ``waves`` (:func:`bn_recalibration_probe.recalibrated`: a cumulative average)."""
    out = copy.deepcopy(model)
    mean = {
        k: (torch.stack([s[k].float() for s in states]).mean(0) if v.is_floating_point() else states[-1][k])
        for k, v in states[-1].items()
    }
    out.load_state_dict(mean)
    return recalibrated(out, waves, batch)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a grid work folder with train_smallcnn_<attack>.* and its scan")
    p.add_argument("--attack", required=True)
    p.add_argument("--model", default="smallcnn")
    p.add_argument("--data", required=True)
    p.add_argument("--vocab", default="asc10")
    p.add_argument("--clean-ratio", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", default="60,90", help="epochs from which the evaluations' weights are averaged")
    p.add_argument("--split", default="validation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="instead of the Recommended's (a quick check)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    set_threads(a.threads)
    started = time.perf_counter()
    model, meta = load_checkpoint(a.folder / f"train_{a.model}_{a.attack}.safetensors")
    data = load_dataset(a.data, vocab=a.vocab, sample_rate=meta["sample_rate"])
    attack = _recorded_attack(meta)
    config = dataclasses.replace(
        PRESETS["recommended"].config(seed=a.seed, device="cpu"), clean_ratio=a.clean_ratio, rescan_passes=0
    )
    if a.epochs:
        config = dataclasses.replace(config, epochs=a.epochs)
    share = "" if a.clean_ratio == 0.1 else f"_clean{a.clean_ratio:g}"
    scan_path = a.folder / f"scan_{a.model}_{a.attack}{share}_seed{a.seed}.json"
    report = json.loads(scan_path.read_text())
    assert report["config"]["clean_ratio"] == a.clean_ratio, scan_path
    found = ScanResult.from_report(report, load_file(str(scan_path.with_suffix(".safetensors")))["triggers"])
    trigger, record = unlearn_choice(found, top=config.unlearn_top)
    keep = Keep()
    result = repair(
        model, data, DEFENSES["gnft"](config), attack=attack, watcher=keep, split=a.split, trigger=trigger,
        trigger_record=record,
    )  # fmt: skip
    rows = clean_subset(data, config.clean_ratio, config.seed)
    waves = data.waves.index_select(0, rows)
    epochs = [config.eval_every * (i + 1) for i in range(len(keep.states))]
    assert epochs[-1] == config.epochs, epochs
    out = {
        "command": "python " + " ".join(sys.argv),
        "model": str(a.folder / f"train_{a.model}_{a.attack}.safetensors"),
        "scan": {"file": str(scan_path), "flagged": found.backdoored, "class": record.get("class")},
        "config": {"clean_ratio": a.clean_ratio, "seed": a.seed, "rescan_passes": 0, "split": a.split},
        "before": {k: result.before.get(k) for k in ("clean_accuracy", "attack_success_rate")},
        "last_epoch": {k: result.after.get(k) for k in ("clean_accuracy", "attack_success_rate")},
        "history": [{k: h.get(k) for k in ("epoch", "clean_accuracy", "attack_success_rate")} for h in result.history],
        "averaged": [],
    }
    for start in (int(s) for s in a.start.split(",")):
        picked = [s for e, s in zip(epochs, keep.states, strict=True) if e >= start]
        m = averaged(result.model, picked, waves, config.batch_size)
        metrics = evaluate(m, data, a.split, attack)
        out["averaged"].append(
            {"from_epoch": start, "states": len(picked),
             **{k: metrics.get(k) for k in ("clean_accuracy", "attack_success_rate")}}
        )  # fmt: skip
    # the last epoch's own weights with the BatchNorm statistics measured the same way (what the average adds
    # beyond measuring the statistics again)
    m = averaged(result.model, keep.states[-1:], waves, config.batch_size)
    metrics = evaluate(m, data, a.split, attack)
    out["last_epoch_bn_again"] = {k: metrics.get(k) for k in ("clean_accuracy", "attack_success_rate")}
    out["seconds"] = round(time.perf_counter() - started, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: out[k] for k in ("before", "last_epoch", "averaged", "last_epoch_bn_again")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
