"""The one repair pipeline: measure, defend a copy, measure again, and say what happened.

:func:`repair` is what ``core.defend``, ``core.grid``, the application's session and the
benchmarks run; :class:`RepairResult` is the only place that builds a defense's checkpoint
history entry (:meth:`RepairResult.history_entry`) and its report (:meth:`RepairResult.report`).
The model given is never modified; a cancelled run hands it back as it was.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.attacks import Attack
from core.data.audioset import AudioSet
from core.defenses import Defense, DefenseConfig
from core.evaluation import evaluate
from core.events import EvalInfo, NullObserver, Observer
from core.metrics import defense_effectiveness_rating, defense_findings
from core.presets import preset_record
from core.runtime import machine_info, resolve_device

__all__ = ["METRIC_KEYS", "RepairResult", "RepairWatcher", "repair", "metrics_only", "record_repair"]

#: The figures a report and a history entry keep of each evaluation.
METRIC_KEYS = ("clean_accuracy", "attack_success_rate", "robust_accuracy")
NO_ATTACK_NOTE = (
    "no attack information (none recorded in the checkpoint and no --attack): only clean accuracy "
    "is measured; the backdoor's removal cannot be checked"
)


def metrics_only(metrics: dict[str, float]) -> dict[str, float]:
    """CA, ASR and RA of an :func:`~core.evaluation.evaluate` result (losses dropped)."""
    return {k: metrics[k] for k in METRIC_KEYS if k in metrics}


class RepairWatcher:
    """Sees the model at the pipeline's fixed points (the application draws neuron zones there);
    every hook defaults to nothing. Hooks run in the pipeline's thread."""

    def before(self, model: nn.Module) -> None:
        pass

    def evaluated(self, model: nn.Module, number: int, metrics: dict[str, float]) -> None:
        """After the ``number``-th evaluation during the run (1-based)."""

    def after(self, model: nn.Module) -> None:
        pass


@dataclass
class RepairResult:
    """A finished (or cancelled) repair: the model, what was measured, and how it was run."""

    model: nn.Module
    cancelled: bool
    defense: str
    config: DefenseConfig
    preset: dict[str, Any]
    before: dict[str, float]
    after: dict[str, float]
    seconds: float
    clean_clips: int
    classes: int
    device: str
    history: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    attack: Attack | None = None
    attack_source: str = "none"
    eval_split: str = "test"  # the split before, after and history were measured on

    @property
    def rating(self) -> float | None:
        """The defense effectiveness rating (0-1), None without an attack."""
        return defense_effectiveness_rating(self.before, self.after) if self.attack is not None else None

    @property
    def findings(self) -> list[str]:
        """What a user should know before trusting the repaired model (see ``defense_findings``)."""
        return defense_findings(
            metrics_only(self.before),
            metrics_only(self.after),
            self.history,
            self.clean_clips,
            self.classes,
            self.details,
        )

    def history_entry(self) -> dict[str, Any]:
        """The record appended to the checkpoint's ``provenance.defenses``."""
        return {
            "defense": {"name": self.defense, **dataclasses.asdict(self.config)},
            "preset": self.preset,
            "defense_details": self.details,
            "before": metrics_only(self.before),
            "after": metrics_only(self.after),
            "seconds": round(self.seconds, 2),
            "clean_clips": self.clean_clips,
            "eval_split": self.eval_split,
        }

    def report(self, **context: Any) -> dict[str, Any]:
        """The JSON report: ``context`` first (command, model, checkpoint: whatever the caller knows),
        then the run, the figures, the findings and the machine."""
        report: dict[str, Any] = {
            **context,
            "device": self.device,
            "seconds": round(self.seconds, 2),
            "defense": {"name": self.defense, **dataclasses.asdict(self.config)},
            "preset": self.preset,
            "clean_clips": self.clean_clips,
            "defense_details": self.details,
            "attack": self.attack.to_dict() if self.attack is not None else None,
            "attack_source": self.attack_source,
            "eval_split": self.eval_split,
            "before": metrics_only(self.before),
            "after": metrics_only(self.after),
            "history": self.history,
        }
        if self.attack is not None:
            report["defense_effectiveness_rating"] = self.rating
        else:
            report["note"] = NO_ATTACK_NOTE
        report["findings"] = self.findings
        report["machine"] = machine_info(torch.device(self.device))
        return report


def record_repair(meta: dict[str, Any], result: RepairResult) -> dict[str, Any]:
    """Checkpoint metadata with ``result``'s history entry appended (``meta`` itself is not changed)."""
    provenance = meta["provenance"]
    return dict(meta, provenance=dict(provenance, defenses=[*provenance.get("defenses", []), result.history_entry()]))


def repair(
    model: nn.Module,
    data: AudioSet,
    defense: Defense,
    *,
    attack: Attack | None = None,
    attack_source: str | None = None,
    base_preset: str | None = None,
    observer: Observer | None = None,
    watcher: RepairWatcher | None = None,
    split: str = "test",
) -> RepairResult:
    """Run ``defense`` on a copy of ``model`` with its clean share of ``data``'s training split.

    ``model`` and ``data`` must be on the defense's device. Before, after and every
    ``eval_every`` epochs the model is measured on ``split`` (for the record only: nothing is
    chosen by it), with ASR/RA when ``attack`` is known. The observer gets the "before"
    evaluation, every step and evaluation, and may cancel; ``base_preset`` names the preset the
    config started from (see :func:`core.presets.preset_record`).
    """
    observer = observer or NullObserver()
    watcher = watcher or RepairWatcher()
    cache: dict[str, torch.Tensor] = {}  # the triggered clips of the split, made once
    before = evaluate(model, data, split, attack, cache=cache)
    observer.on_eval(
        EvalInfo(
            "before",
            0,
            before["clean_accuracy"],
            before.get("clean_loss"),
            before.get("attack_success_rate"),
            before.get("robust_accuracy"),
        )
    )
    watcher.before(model)
    evaluations = itertools.count(1)

    def measure(m: nn.Module) -> dict[str, float]:
        metrics = evaluate(m, data, split, attack, cache=cache)
        watcher.evaluated(m, next(evaluations), metrics)
        return metrics

    run = defense.run(model, data, observer, evaluate=measure)
    after = before if run.cancelled else evaluate(run.model, data, split, attack, cache=cache)
    if not run.cancelled:
        watcher.after(run.model)
    device = resolve_device(defense.config.device)
    return RepairResult(
        model=run.model,
        cancelled=run.cancelled,
        defense=defense.name,
        config=defense.config,
        preset=preset_record(defense.name, defense.config, base=base_preset),
        before=before,
        after=after,
        seconds=run.seconds,
        clean_clips=run.clean_clips,
        classes=len(data.classes),
        device=str(device),
        history=run.history,
        details=run.details,
        attack=attack,
        attack_source=attack_source or ("given" if attack is not None else "none"),
        eval_split=split,
    )
