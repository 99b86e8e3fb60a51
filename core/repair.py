"""The one repair pipeline: measure, defend a copy, measure again, and say what happened.

:func:`repair` is what ``core.defend``, ``core.grid``, the application's session and the
benchmarks run; :class:`RepairResult` is the only place that builds a defense's checkpoint
history entry (:meth:`RepairResult.history_entry`) and its report (:meth:`RepairResult.report`).
The model given is never modified; a cancelled run hands it back as it was.

A defense with ``unlearn`` > 0 fine-tunes partly on clips carrying the suspected trigger with their true
labels: the trigger given, or else the one a scan of the model reconstructs (:func:`core.scan.scan`, the
most anomalous class's waveform pattern; the user rarely knows the real one), found here before the
fine-tuning and reported in ``details["unlearn"]``. Every scan a repair makes reads at most the repair's own
clean share (:func:`repair_scan_config`): a user with 90 clean clips has only those for both.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.attacks import Attack
from core.data.audioset import AudioSet
from core.defenses import Defense, DefenseConfig, DefenseResult
from core.errors import ConfigError
from core.evaluation import evaluate
from core.events import SCAN_PHASE, Cancelled, EvalInfo, NeuronStats, NullObserver, Observer, StepInfo
from core.metrics import defense_effectiveness_rating, defense_findings
from core.presets import preset_record
from core.runtime import machine_info, resolve_device
from core.scan import AUDIO_DOMAINS, ScanConfig, ScanResult, scan, search_class, trigger_success_on

__all__ = [
    "METRIC_KEYS",
    "RepairResult",
    "RepairWatcher",
    "repair",
    "metrics_only",
    "record_repair",
    "unlearn_choice",
    "check_unlearn_scan",
    "check_scan_share",
    "repair_scan_config",
]

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
    scan: ScanResult | None = None  # the scan that found the trigger to unlearn, when one ran
    final_scan: ScanResult | None = None  # a scan of the repaired model made by the repair (rescan_passes)

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
    trigger: torch.Tensor | None = None,
    trigger_record: dict[str, Any] | None = None,
    scan_config: ScanConfig | None = None,
    unlearn_class: str | None = None,
) -> RepairResult:
    """Run ``defense`` on a copy of ``model`` with its clean share of ``data``'s training split.

    ``model`` and ``data`` must be on the defense's device. Before, after and every
    ``eval_every`` epochs the model is measured on ``split`` (for the record only: nothing is
    chosen by it), with ASR/RA when ``attack`` is known. The observer gets the "before"
    evaluation, every step and evaluation, and may cancel; ``base_preset`` names the preset the
    config started from (see :func:`core.presets.preset_record`). With ``unlearn`` > 0 the
    trigger to unlearn is ``trigger`` (a waveform; ``trigger_record`` says where it came from) or,
    when None, the one a scan with ``scan_config`` (default: the defense's clean share, seed and device; a larger
    share than the defense's is refused, :func:`repair_scan_config`)
    reconstructs first; the observer sees the scan's steps (phases "scan ...") and may cancel it.
    ``unlearn_class`` names the suspected target when the user knows it: the scan's trigger of that class
    is unlearned instead of that of the class (or the ``unlearn_top`` classes) the scan points at, and a
    given ``trigger`` is recorded as sending clips there (the latent push, ``unlearn_latent``, points at it
    either way). With ``rescan_passes`` > 0 the repaired model is scanned again (``scan_config``) and, while that
    scan flags a class not unlearned yet, repaired again unlearning its trigger (:func:`_repair_again`;
    ``details["rescan_passes"]``, and :attr:`RepairResult.final_scan` when the last scan was of the model
    returned).
    """
    observer = observer or NullObserver()
    watcher = watcher or RepairWatcher()
    started = time.perf_counter()
    config = defense.config
    found, unlearning = None, None
    scans = config.unlearns() and (trigger is None or config.rescan_passes > 0)
    searches = scans or (config.unlearns() and config.unlearn > 0 and config.unlearn_refresh > 0)  # reads clips
    settings = repair_scan_config(config, scan_config if searches else None)  # every scan or search it makes
    if scans:  # each must give a trigger
        check_unlearn_scan(settings)
    if config.unlearns():
        if trigger is None:
            try:
                found = scan(model, data, settings, observer)
            except Cancelled:
                return _cancelled(model, data, defense, attack, attack_source, base_preset, split, started)
            trigger, unlearning = unlearn_choice(found, unlearn_class, config.unlearn_top)
        else:
            named = unlearn_class is not None or "class" in (trigger_record or {})
            if config.unlearn > 0 and config.unlearn_refresh > 0 and not named:
                raise ConfigError(
                    "unlearn_refresh searches the trigger's class again, and a given trigger names none: name "
                    "the class it sends clips to (unlearn class) or set unlearn_refresh 0"
                )
            unlearning = dict(trigger_record or {"source": "given"})
            if unlearn_class is not None:
                unlearning.update({"class": unlearn_class, "class_from": "user"})
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

    target = _unlearn_targets(unlearning, data.classes)
    refresh = _refresher(config, data, target, settings, unlearning, observer)
    choice = unlearning or {}  # a scan's trigger, found here or handed over with its record, says its verdict
    flagged = choice.get("flagged") if choice.get("source") == "scan" else None
    run = defense.run(
        model, data, observer, evaluate=measure, trigger=trigger, target=target, refresh=refresh, flagged=flagged
    )
    final_scan, passes = None, []
    if not run.cancelled and config.rescan_passes > 0 and config.unlearns():
        names = (unlearning or {}).get("classes", [(unlearning or {}).get("class")])
        run, final_scan, passes = _repair_again(
            defense, run, data, split, settings, set(names), observer, measure, cache, attack
        )
        if run.cancelled:
            run = dataclasses.replace(run, model=model)
    after = before if run.cancelled else evaluate(run.model, data, split, attack, cache=cache)
    if not run.cancelled:
        watcher.after(run.model)
    device = resolve_device(defense.config.device)
    if unlearning is not None and "class" in unlearning and trigger is not None and not run.cancelled:
        unlearning.update(_trigger_asrs(model, run.model, data, split, trigger, unlearning))
    details = run.details if unlearning is None else {**run.details, "unlearn": unlearning}
    if passes:
        details["rescan_passes"] = passes
    return RepairResult(
        model=run.model,
        cancelled=run.cancelled,
        defense=defense.name,
        config=defense.config,
        preset=preset_record(defense.name, defense.config, base=base_preset),
        before=before,
        after=after,
        seconds=run.seconds if found is None else run.seconds + found.seconds,
        clean_clips=run.clean_clips,
        classes=len(data.classes),
        device=str(device),
        history=run.history,
        details=details,
        attack=attack,
        attack_source=attack_source or ("given" if attack is not None else "none"),
        eval_split=split,
        scan=found,
        final_scan=final_scan,
    )


class _Shifted(NullObserver):
    """The observer of a later pass (``rescan_passes``): its epochs and steps counted on from the passes before
    (each as long as this one), so that progress, curves and logs run on instead of starting again."""

    def __init__(self, inner: Observer, passes_before: int, epochs: int) -> None:
        self.inner, self.before, self.epochs = inner, passes_before, epochs
        self.wants_grad_norms = bool(getattr(inner, "wants_grad_norms", False))  # the neuron view's, per step

    def on_step(self, info: StepInfo) -> None:
        if info.phase.startswith(SCAN_PHASE):  # a search again mid-run: its own steps
            self.inner.on_step(info)
            return
        done = self.before * info.total_steps
        self.inner.on_step(
            dataclasses.replace(
                info,
                epoch=info.epoch + self.before * self.epochs,
                step=info.step + done,
                total_steps=info.total_steps + done,
            )
        )

    def on_eval(self, info: EvalInfo) -> None:
        self.inner.on_eval(dataclasses.replace(info, epoch=info.epoch + self.before * self.epochs))

    def on_neurons(self, stats: NeuronStats) -> None:
        self.inner.on_neurons(stats)

    def should_stop(self) -> bool:
        return self.inner.should_stop()


def _repair_again(
    defense: Defense,
    run: DefenseResult,
    data: AudioSet,
    split: str,
    settings: ScanConfig,
    unlearned: set[str | None],
    observer: Observer,
    measure: Callable[[nn.Module], dict[str, float]],
    cache: dict[str, torch.Tensor],
    attack: Attack | None,
) -> tuple[DefenseResult, ScanResult | None, list[dict[str, Any]]]:
    """``rescan_passes``: scan the repaired model and, while the scan flags a class not unlearned yet, run the
    defense again on it, unlearning that class's reconstructed trigger (at most ``rescan_passes`` more runs).

    Returns the last run, with every pass's history (epochs counted on, each entry with its ``pass``) and
    seconds (scans included); the scan of the model returned when the last scan was of it (None when the
    passes ran out); one record per scan: its verdict and, for a pass it started, the figures the pass started
    from, what it unlearned (with that trigger's ASR on ``split`` before and after the pass) and its details.
    A cancel during a scan or a pass returns a run marked cancelled."""
    c = defense.config
    passes: list[dict[str, Any]] = []
    history = [{**h, "pass": 1} for h in run.history]
    seconds = run.seconds
    for number in range(2, c.rescan_passes + 2):
        try:
            found = scan(run.model, data, settings, observer)
        except Cancelled:
            return dataclasses.replace(run, cancelled=True, history=history), None, passes
        seconds += found.seconds
        flagged = found.suspected_target if found.backdoored else None
        pointed = found.most_anomalous()
        chosen = flagged if flagged is not None and flagged not in unlearned else None
        record: dict[str, Any] = {
            "scan": {
                "flagged": found.backdoored,
                "class": flagged,
                "anomaly_index": round(found.anomaly(found.classes.index(flagged)), 3) if flagged else None,
                "most_anomalous": found.classes[pointed] if pointed is not None else None,
                "most_anomalous_index": round(found.anomaly(pointed), 3) if pointed is not None else None,
                "seconds": found.seconds,
            },
            "repaired": chosen is not None,
        }
        passes.append(record)
        if not record["repaired"]:
            return dataclasses.replace(run, history=history, seconds=seconds), found, passes
        trigger, unlearning = unlearn_choice(found)  # the flagged class's
        target = found.classes.index(chosen)
        record["pass"] = number
        record["started_from"] = metrics_only(evaluate(run.model, data, split, attack, cache=cache))
        refresh = _refresher(c, data, target, settings, unlearning, observer)
        again = defense.run(
            run.model,
            data,
            _Shifted(observer, number - 1, c.epochs),
            evaluate=measure,
            trigger=trigger,
            target=target,
            refresh=refresh,
            flagged=True,
        )
        history += [{**h, "epoch": h["epoch"] + (number - 1) * c.epochs, "pass": number} for h in again.history]
        seconds += again.seconds
        if again.cancelled:
            return dataclasses.replace(run, cancelled=True, history=history, seconds=seconds), None, passes
        unlearning.update(_trigger_asrs(run.model, again.model, data, split, trigger, unlearning))
        record.update(unlearn=unlearning, details=again.details)
        unlearned.add(chosen)
        run = dataclasses.replace(again, history=history, seconds=seconds, details=run.details)
    return run, None, passes


def check_scan_share(
    scan_share: float, clean_share: float, scan_option: str = "the scan's clean_ratio", option: str = "clean_ratio"
) -> None:
    """Refuse, in one line naming both options, a repair's scan that would read a larger share of the training
    split than the repair's clean set: both draw the same seeded clips (:func:`core.defenses.base.clean_subset`),
    so a share no larger reads only clips the repair has."""
    if scan_share > clean_share:
        raise ConfigError(
            f"{scan_option} {scan_share:g} is larger than the repair's {option} {clean_share:g}: a repair's scan may "
            "read only the clean clips the repair has; give a share no larger, or none to use the repair's"
        )


def repair_scan_config(config: DefenseConfig, scan_config: ScanConfig | None = None) -> ScanConfig:
    """The settings of every scan a repair with ``config`` makes: ``scan_config`` (checked by
    :func:`check_scan_share`), or by default the scan's defaults at the repair's clean share, seed and device."""
    if scan_config is None:
        return ScanConfig(clean_ratio=config.clean_ratio, seed=config.seed, device=config.device)
    check_scan_share(scan_config.clean_ratio, config.clean_ratio)
    return scan_config


def check_unlearn_scan(config: ScanConfig, option: str = "domains") -> None:
    """Refuse, before any work, a scan that cannot give a trigger to unlearn (no audio domain)."""
    if not set(AUDIO_DOMAINS) & set(config.domain_list()):
        raise ConfigError(
            f"unlearning a scanned trigger needs an audio domain of the scan: {option} must include "
            f"{' or '.join(AUDIO_DOMAINS)}, got {config.domains!r}"
        )


def unlearn_choice(found: ScanResult, name: str | None = None, top: int = 1) -> tuple[torch.Tensor, dict[str, Any]]:
    """The trigger a repair unlearns from a scan: class ``name``'s waveform pattern when the user names the
    target, else that of the class the scan points at (:meth:`ScanResult.most_anomalous`: the suspected
    target when the model is flagged, else, read against a clean reference, the class of its largest pooled
    index, else the top class of its mix or spectrum domain), and the record of that choice
    for the report. With ``top`` > 1 and nothing flagged or named, the patterns ``[top, T]`` of the ``top``
    classes of the largest pooled index (:meth:`ScanResult.pointed_classes`), listed in ``classes``."""
    if name is not None and name not in found.classes:
        raise ConfigError(f"unlearn class {name!r} is not one of the model's classes: {', '.join(found.classes)}")
    chosen = [found.classes.index(name)] if name is not None else found.pointed_classes(top)
    if found.triggers is None or not chosen:
        raise ConfigError("unlearning a scanned trigger needs an audio domain of the scan: this scan searched none")
    record = {
        "source": "scan",
        "class": found.classes[chosen[0]],
        "class_from": "user" if name is not None else "scan",
        "flagged": found.backdoored,
        "anomaly_index": round(found.anomaly(chosen[0]), 3),
        "scan_seconds": found.seconds,
        "scan_domains": found.config.get("domains"),  # which searches the choice rests on (the cell's scan)
        "scan_clean_ratio": found.config.get("clean_ratio"),  # and on how many clean clips
        "scan_clean_clips": found.clean_clips,
    }
    if found.reference:  # the clean reference the scan was read against (its reports)
        record["scan_reference"] = found.reference["reports"]
    if found.trigger_domains:
        domain = found.trigger_domains[chosen[0]]
        record["trigger_domain"] = domain
        sizes = found.domains.get(domain, {})
        if "sizes" in sizes and "success" in sizes:  # the first trigger's, to set the searches again beside
            first = _size_and_success(sizes["sizes"][chosen[0]], sizes["success"][chosen[0]])
            record.update({f"trigger_{k}": v for k, v in first.items()})
    if len(chosen) == 1:
        return found.triggers[chosen[0]], record
    record["classes"] = [found.classes[i] for i in chosen]
    record["anomaly_indices"] = [round(found.anomaly(i), 3) for i in chosen]
    return found.triggers[chosen], record


def _unlearn_targets(unlearning: dict[str, Any] | None, classes: list[str]) -> int | list[int] | None:
    """The class index (or indices, for several suspected classes) a repair's latent push points at."""
    if not unlearning:
        return None
    if "classes" in unlearning:
        return [classes.index(c) for c in unlearning["classes"]]
    return classes.index(unlearning["class"]) if unlearning.get("class") in classes else None


def _refresher(
    config: DefenseConfig,
    data: AudioSet,
    target: int | list[int] | None,
    settings: ScanConfig,
    unlearning: dict[str, Any] | None,
    observer: Observer,
) -> Callable[[nn.Module, int], tuple[torch.Tensor, dict[str, Any]]] | None:
    """The mid-run search a pass hands ``Defense.run`` with ``unlearn_refresh`` (:func:`_search_again`, in the
    domain the unlearned trigger came from), or None when it does not search again."""
    if not (config.unlearn > 0 and config.unlearn_refresh > 0 and target is not None):
        return None
    domain = (unlearning or {}).get("trigger_domain", "waveform")
    return _search_again(data, target, settings, domain if domain in AUDIO_DOMAINS else "waveform", observer)


def _search_again(
    data: AudioSet, target: int | list[int], config: ScanConfig, domain: str, observer: Observer
) -> Callable[[nn.Module, int], tuple[torch.Tensor, dict[str, Any]]]:
    """What a repair with ``unlearn_refresh`` calls mid-run: the trigger toward each suspected class searched
    again on the model as it is then (:func:`core.scan.search_class`, the scan's settings, seeded by the
    epoch), ``[T]`` for one class, ``[k, T]`` for several, and what was found (per class its size and its
    success on the search's clips, as the scan reports them) for the repair's record."""

    def search(model: nn.Module, epoch: int) -> tuple[torch.Tensor, dict[str, Any]]:
        started = time.perf_counter()
        classes = [target] if isinstance(target, int) else list(target)
        found = [
            search_class(model, data, i, config, domain=domain, seed=config.seed + epoch, observer=observer)
            for i in classes
        ]
        triggers = [f.triggers[0] for f in found]
        about = {
            "found": [
                {"class": data.classes[i], "domain": domain, **_size_and_success(f.sizes[0], f.success[0])}
                for i, f in zip(classes, found, strict=True)
            ],
            "seconds": round(time.perf_counter() - started, 2),
        }
        return (triggers[0] if isinstance(target, int) else torch.stack(triggers)), about

    return search


def _size_and_success(size: float | None, success: float) -> dict[str, float | None]:
    """A search's smallest trigger size (None when none reached the scan's success: a scan's record keeps
    that as None, a search's as inf) and its success, rounded."""
    return {"size": round(size, 4) if size is not None and math.isfinite(size) else None, "success": round(success, 3)}


def _trigger_asrs(
    model: nn.Module, repaired: nn.Module, data: AudioSet, split: str, trigger: torch.Tensor, unlearning: dict
) -> dict[str, Any]:
    """The unlearned trigger's attack success rate on ``split`` (clips of the other classes sent to its
    class) through the model before and after the repair: did the repair unlearn what it was shown? With
    several triggers (``unlearning["classes"]``), the first class's, and every class's in ``asr_per_class``."""
    names = unlearning.get("classes", [unlearning["class"]])
    patterns = trigger.reshape(len(names), -1)
    rates = [
        {
            "class": name,
            "asr_before": trigger_success_on(model, data, split, pattern, data.classes.index(name)),
            "asr_after": trigger_success_on(repaired, data, split, pattern, data.classes.index(name)),
        }
        for name, pattern in zip(names, patterns, strict=True)
    ]
    out = {"split": split, "asr_before": rates[0]["asr_before"], "asr_after": rates[0]["asr_after"]}
    return out if len(rates) == 1 else {**out, "asr_per_class": rates}


def _cancelled(
    model: nn.Module,
    data: AudioSet,
    defense: Defense,
    attack: Attack | None,
    attack_source: str | None,
    base_preset: str | None,
    split: str,
    started: float,
) -> RepairResult:
    """The result of a repair cancelled before any measurement (during its scan): the model as given."""
    return RepairResult(
        model=model,
        cancelled=True,
        defense=defense.name,
        config=defense.config,
        preset=preset_record(defense.name, defense.config, base=base_preset),
        before={},
        after={},
        seconds=time.perf_counter() - started,
        clean_clips=0,
        classes=len(data.classes),
        device=str(resolve_device(defense.config.device)),
        attack=attack,
        attack_source=attack_source or ("given" if attack is not None else "none"),
        eval_split=split,
    )
