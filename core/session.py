"""What the application has open, without Qt: a model, a dataset, an attack, a repair awaiting a decision.

:class:`Session` is to ``gnft_gui.main_window.MainWindow`` what napari's ``ViewerModel`` is to its
window: the window displays and drives it; everything it changes goes through here. Repairs run
through :func:`core.repair.repair`, their history through :func:`core.repair.record_repair` and
exports through :func:`core.reports.write_export`, as in the command-line tools. Failures are
:class:`~core.errors.GnftError` subclasses with one-line messages, for the window to show.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.attacks import Attack, attack_from_dict, get_attack
from core.audio import write_wav
from core.checkpoint import import_pt, load_checkpoint
from core.data import load_dataset
from core.data.audioset import AudioSet
from core.defenses import DEFENSES, Defense, DefenseConfig
from core.defenses.base import add_trigger
from core.errors import CheckpointError, ConfigError
from core.events import Observer
from core.metrics import percent, predict_logits
from core.options import PathRole, comma_items
from core.repair import RepairResult, RepairWatcher, record_repair, repair, unlearn_choice
from core.reports import write_export
from core.runtime import resolve_device
from core.scan import ScanConfig, ScanResult, scan, trigger_success_on
from core.scan.reference import Reference, read_reference
from core.validate import check_paths

__all__ = ["MismatchError", "ScanRecord", "Session", "mix_trigger", "predict_clips", "repair_summary"]

STATE_DICT_SUFFIXES = (".pt", ".pth")


class MismatchError(ConfigError):
    """The model and the dataset have different classes."""


def predict_clips(model: nn.Module, data: AudioSet) -> tuple[list[str], list[float]]:
    """Every clip's top-1 class name and its probability under ``model``."""
    with torch.no_grad():
        probs = torch.softmax(predict_logits(model, data.waves), dim=1)
    conf, idx = probs.max(dim=1)
    return [data.classes[i] for i in idx.tolist()], conf.tolist()


def repair_summary(metrics: dict[str, float]) -> str:
    """A repaired model in a few words: ``CA 91.0 %, ASR 2.0 %`` (ASR only when measured)."""
    text = f"CA {percent(metrics['clean_accuracy'])}"
    if metrics.get("attack_success_rate") is not None:
        text += f", ASR {percent(metrics['attack_success_rate'])}"
    return text


def mix_trigger(clip: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
    """``clip`` with ``trigger`` added from its start (cropped or zero-padded to the clip), clamped to
    [-1, 1]: what a scan's reconstructed trigger does to a clip, to listen to."""
    return add_trigger(clip.detach().to("cpu", torch.float32).reshape(1, -1), trigger)[0]


def input_trigger_asr(model: nn.Module, data: AudioSet, baseline: ScanResult | None) -> float | None:
    """The test-split attack success rate through ``model`` of ``baseline``'s (the model-as-opened's scan)
    reconstructed waveform trigger of its most anomalous class (None without a scan, an audio domain or test
    clips)."""
    if baseline is None or baseline.triggers is None or baseline.most_anomalous() is None:
        return None
    target = baseline.most_anomalous()
    return trigger_success_on(model, data, "test", baseline.triggers[target], target)


@dataclass
class ScanRecord:
    """A finished scan and which model it scanned: ``repairs`` accepted in this session before it
    (0: the model as it was opened), ``version``: the session's model at the time (see
    :attr:`Session.model_version`)."""

    result: ScanResult
    version: int
    repairs: int
    model_name: str
    #: the attack success rate, on the test split, of the trigger the scan of the model as opened
    #: reconstructed (its most anomalous class) through the model this record scanned; None unknown
    input_trigger_asr: float | None = None

    @property
    def of_input(self) -> bool:
        """Whether the scan is of the model as it was opened (no repair accepted since)."""
        return self.repairs == 0


class Session:
    """The open model (with its checkpoint metadata), dataset and attack, and the repair awaiting Accept.

    Plain Python: :meth:`run_repair`, :meth:`read_data` and :func:`predict_clips` may run in a worker
    thread (they change nothing); every other method is called from one thread.
    """

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        #: the checkpoint's metadata; an accepted repair is appended to its ``provenance.defenses``
        self.meta: dict[str, Any] | None = None
        self.model_path: Path | None = None
        self.data: AudioSet | None = None
        self.data_path: Path | None = None
        self.attack: Attack | None = None
        #: a finished repair awaiting :meth:`accept` or :meth:`revert`
        self.pending: RepairResult | None = None
        #: the summary of an accepted repair not exported since ("" when none)
        self.unsaved_repair = ""
        #: changes whenever the current model does (opened, imported, a repair accepted)
        self.model_version = 0
        #: repairs accepted since the model was opened
        self.repairs_accepted = 0
        #: the last scan kept (:meth:`finish_scan`), of the current model or an earlier one of this session
        self.scan: ScanRecord | None = None
        #: the last scan of the model as it was opened (kept after a repair is accepted, for before/after)
        self.input_scan: ScanRecord | None = None
        #: the WAV written for each (scan, class, folder) used as the attack, with its scan: written once
        self._trigger_files: dict[tuple[int, int, str], tuple[ScanResult, Path]] = {}

    # ------------------------------------------------------------------ model
    def open_model(self, path: str | os.PathLike) -> None:
        """Load a ``.safetensors`` checkpoint as the current model (a ``.pt`` needs :meth:`import_model`)."""
        path = Path(path)
        if path.suffix.lower() in STATE_DICT_SUFFIXES:
            raise CheckpointError(f"{path}: a PyTorch state dict; import it with its architecture named")
        try:
            model, meta = load_checkpoint(path)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: cannot read the model ({err})") from err
        self.set_model(model, meta, path)

    def import_model(
        self,
        path: str | os.PathLike,
        architecture: str,
        classes: Sequence[str],
        front_end: dict[str, Any] | None = None,
        arch_args: dict[str, Any] | None = None,
    ) -> None:
        """Import a ``.pt`` state dict into ``architecture`` (see :func:`core.checkpoint.import_pt`)."""
        model, meta = import_pt(path, architecture, classes, front_end, arch_args=arch_args)
        self.set_model(model, meta, Path(path))

    def set_model(self, model: nn.Module, meta: dict[str, Any], path: Path) -> None:
        """Make ``model`` current, its recorded attack the attack; refused when the open data's classes differ."""
        path = Path(path)
        if self.data is not None and list(meta["classes"]) != list(self.data.classes):
            raise MismatchError(f"{path.name} classifies {meta['classes']}, the open dataset has {self.data.classes}")
        self.model, self.meta, self.model_path = model.eval(), meta, path
        self.attack = self.recorded_attack()
        self.pending = None
        self.unsaved_repair = ""
        self.model_version += 1
        self.repairs_accepted = 0
        self.scan = self.input_scan = None

    def recorded_attack(self) -> Attack | None:
        """The attack recorded in the model's checkpoint (None without a model or a record)."""
        recorded = self.meta["provenance"].get("attack") if self.meta else None
        return attack_from_dict(recorded, sample_rate=self.meta["sample_rate"]) if recorded else None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The defenses recorded in the current model's checkpoint, oldest first."""
        return list(self.meta["provenance"].get("defenses", [])) if self.meta else []

    # ------------------------------------------------------------------ data and attack
    def read_data(self, path: str | os.PathLike) -> AudioSet:
        """Decode a dataset folder at the model's sample rate, length and classes; changes nothing."""
        meta = self.meta
        return load_dataset(
            Path(path),
            vocab=list(meta["classes"]) if meta else None,
            sample_rate=meta["sample_rate"] if meta else 16000,
            num_samples=meta["front_end"]["num_samples"] if meta else 16000,
        )

    def set_data(self, path: str | os.PathLike, data: AudioSet) -> None:
        """Make ``data`` the open dataset; refused when the model's classes differ."""
        path = Path(path)
        if self.meta is not None and list(data.classes) != list(self.meta["classes"]):
            raise MismatchError(
                f"{path.name} has the classes {list(data.classes)}, the open model classifies {self.meta['classes']}"
            )
        self.data, self.data_path = data, path

    def load_data(self, path: str | os.PathLike) -> AudioSet:
        """:meth:`read_data` then :meth:`set_data`."""
        data = self.read_data(path)
        self.set_data(path, data)
        return data

    def set_attack(self, attack: Attack | None) -> None:
        """The trigger that ASR/RA and the neuron zones are measured with (None: clean accuracy only)."""
        self.attack = attack

    @property
    def attack_source(self) -> str:
        """Where the attack comes from, as reports say it: the checkpoint's record, chosen here, or none."""
        if self.attack is None:
            return "none"
        recorded = self.meta["provenance"].get("attack") if self.meta else None
        same = recorded and _plain(self.attack.to_dict()) == _plain(recorded)
        return "checkpoint metadata" if same else "chosen in the application"

    # ------------------------------------------------------------------ repair
    def run_repair(
        self,
        defense: str | Defense,
        config: DefenseConfig | None = None,
        *,
        base_preset: str | None = None,
        observer: Observer | None = None,
        watcher: RepairWatcher | None = None,
        split: str = "test",
        scan_config: ScanConfig | None = None,
    ) -> RepairResult:
        """Run ``defense`` (a name with ``config``, or a Defense) on a copy of the model; changes nothing.

        With ``unlearn`` > 0 the trigger unlearned is that of the kept scan of the current model
        (:attr:`scan`) when it read no larger a clean share than the repair's, or else the one a scan with
        ``scan_config`` finds first (see :func:`core.repair.repair`).
        Safe in a worker thread: hand the result to :meth:`finish_repair` afterwards."""
        model, data, attack, source = self.model, self.data, self.attack, self.attack_source
        if model is None or data is None:
            raise ConfigError("open a model and its dataset first")
        if isinstance(defense, str):
            if defense not in DEFENSES:
                raise ConfigError(f"unknown defense {defense!r}; one of: {', '.join(sorted(DEFENSES))}")
            defense = DEFENSES[defense](config)
        elif config is not None:
            raise ConfigError("give a defense's name with a config, or a Defense (which has its own)")
        device = resolve_device(defense.config.device)
        trigger, record = None, None
        kept = self.scan
        if defense.config.unlearns() and kept is not None and kept.version == self.model_version:
            share = kept.result.config.get("clean_ratio", 1.0)
            fits = share <= defense.config.clean_ratio  # it read no clip the repair does not have
            if kept.result.triggers is not None and fits:  # this model's scan: its trigger, no second scan
                trigger, record = unlearn_choice(kept.result, top=defense.config.unlearn_top)
        return repair(
            copy.deepcopy(model).to(device),
            data.to(device),
            defense,
            attack=attack,
            attack_source=source,
            base_preset=base_preset,
            observer=observer,
            watcher=watcher,
            split=split,
            trigger=trigger,
            trigger_record=record,
            scan_config=scan_config,
        )

    def finish_repair(self, result: RepairResult) -> bool:
        """Keep a finished run as the pending repair (a cancelled one is dropped); True when pending. A scan
        the repair ran to find the trigger to unlearn is of the current model (nothing else is opened or
        accepted while a repair runs): it is kept as this model's scan (:meth:`finish_scan`)."""
        if not result.cancelled and result.scan is not None:
            name = self.model_path.name if self.model_path is not None else "model"
            unlearned = result.details.get("unlearn", {})
            of_input = self.repairs_accepted == 0 and unlearned.get("split") == "test"
            asr = _scan_trigger_asr(result.scan, unlearned) if of_input else None
            self.finish_scan(ScanRecord(result.scan, self.model_version, self.repairs_accepted, name, asr))
        self.pending = None if result.cancelled else result
        return self.pending is not None

    def accept(self) -> RepairResult:
        """The pending repair's model becomes the current one, its run appended to the checkpoint history; a scan
        the repair made of the model it returned (``rescan_passes``) becomes the current model's scan."""
        result = self.pending
        if result is None or self.meta is None:
            raise ConfigError("no repair to accept: run a defense first")
        self.meta = record_repair(self.meta, result)
        self.model = result.model.to("cpu").eval()
        self.pending = None
        self.unsaved_repair = repair_summary(result.after)
        self.model_version += 1
        self.repairs_accepted += 1
        if result.final_scan is not None:  # the repair scanned the model it returned (rescan_passes): keep it
            name = self.model_path.name if self.model_path is not None else "model"
            unlearned = result.details.get("unlearn", {})
            source = self.input_scan.result if self.input_scan is not None and self.repairs_accepted == 1 else None
            asr = None
            if source is not None and unlearned.get("split") == "test":
                asr = _scan_trigger_asr(source, unlearned, "asr_after")
            self.finish_scan(ScanRecord(result.final_scan, self.model_version, self.repairs_accepted, name, asr))
        return result

    def revert(self) -> None:
        """Drop the pending repair: the current model stays as it was."""
        self.pending = None

    # ------------------------------------------------------------------ scan
    def run_scan(self, config: ScanConfig | None = None, observer: Observer | None = None) -> ScanRecord:
        """Scan the current model for a backdoor on the open data's clean clips (:func:`core.scan.scan`);
        changes nothing. Safe in a worker thread: hand the record to :meth:`finish_scan` afterwards.
        Raises :class:`core.events.Cancelled` when the observer asks to stop."""
        model, data = self.model, self.data
        if model is None or data is None:
            raise ConfigError("open a model and its dataset first")
        version, repairs = self.model_version, self.repairs_accepted
        name = self.model_path.name if self.model_path is not None else "model"
        config = config or ScanConfig()
        result = scan(model, data, config, observer, self.scan_reference(config))
        baseline = result if repairs == 0 else (self.input_scan.result if self.input_scan is not None else None)
        return ScanRecord(result, version, repairs, name, input_trigger_asr(model, data, baseline))

    def scan_reference(self, config: ScanConfig, option: str = "reference") -> Reference | None:
        """The clean reference ``config.reference`` names, checked against the open model (its classes,
        architecture and file: :func:`core.scan.reference.read_reference`); None when it names none. Raises
        :class:`ConfigError` naming ``option`` for one that does not fit."""
        if not comma_items(config.reference):
            return None
        if self.meta is None:
            raise ConfigError("open a model and its dataset first")
        return read_reference(
            config.reference,
            list(self.meta["classes"]),
            asdict(config),
            architecture=self.meta.get("architecture"),
            front_end=self.meta.get("front_end"),
            model=str(self.model_path) if self.model_path is not None else None,
            option=option,
        )

    def finish_scan(self, record: ScanRecord) -> bool:
        """Keep a finished scan (and, when it is of the model as opened, as the input's scan); a scan of a
        model that is no longer current (another opened, a repair accepted meanwhile) is dropped. True
        when kept."""
        if record.version != self.model_version:
            return False
        self.scan = record
        if record.of_input:
            self.input_scan = record
        return True

    def scan_comparison(self) -> tuple[ScanRecord, ScanRecord] | None:
        """(the input model's scan, the current model's) once a repaired model has been scanned too."""
        now, before = self.scan, self.input_scan
        if now is None or before is None or now is before or now.of_input or now.version != self.model_version:
            return None
        return before, now

    def scan_trigger(self, class_index: int) -> torch.Tensor:
        """The last scan's reconstructed audio trigger for ``class_index`` (``[samples]``)."""
        record = self.scan
        if record is None:
            raise ConfigError("no scan yet: scan the model first")
        triggers = record.result.triggers
        if triggers is None:
            raise ConfigError("the scan searched no audio domain (waveform, mix): no trigger to use")
        if not 0 <= class_index < triggers.shape[0]:
            raise ConfigError(f"class index {class_index} is outside 0..{triggers.shape[0] - 1}")
        return triggers[class_index].detach().to("cpu", torch.float32)

    def use_scan_trigger(self, class_index: int, folder: str | os.PathLike) -> Attack:
        """Make the last scan's waveform trigger for ``class_index`` the attack, with that class as its
        target: written to ``folder`` as a 32-bit float WAV (exact samples), read back as a ``custom``
        attack added at the clip's start; ASR, RA, the neuron zones and repairs are then measured
        against it. Returns the attack."""
        trigger = self.scan_trigger(class_index)
        record = self.scan
        assert record is not None
        rate = record.result.sample_rate
        key = (id(record.result), class_index, str(folder))
        written, path = self._trigger_files.get(key, (None, None))
        if written is not record.result or path is None or not path.is_file():  # written once per scan and class
            stem = Path(record.model_name).stem or "model"
            base = f"scan-{stem}-class{class_index}-{time.strftime('%Y%m%d-%H%M%S')}"
            path, n = Path(folder) / f"{base}.wav", 1
            while path.exists():
                n += 1
                path = Path(folder) / f"{base}-{n}.wav"
            write_wav(path, trigger, rate, subtype="FLOAT")
            self._trigger_files[key] = (record.result, path)
        attack = get_attack("custom", sample_rate=rate, file=str(path), target=class_index, position="start")
        self.set_attack(attack)
        return attack

    # ------------------------------------------------------------------ export
    def is_input(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` (with ``.safetensors``) is the file the current model was opened from."""
        path = _checkpoint_path(path)
        if self.model_path is None:
            return False
        try:
            return path.resolve() == self.model_path.resolve()
        except (OSError, RuntimeError):  # a link loop: not the model's file (export then names the loop)
            return False

    def suggested_export_name(self) -> str:
        """The model's file name, with ``_repaired`` when its history holds a repair."""
        stem = self.model_path.stem if self.model_path is not None else "model"
        if self.history and not stem.endswith("_repaired"):
            stem += "_repaired"
        return f"{stem}.safetensors"

    def export(self, path: str | os.PathLike, overwrite_input: bool = False) -> Path:
        """Write the model (``.safetensors``) with ``<stem>.json`` and ``<stem>.md`` beside it; returns its path.

        Refuses the model's own file unless ``overwrite_input``; clears the unsaved repair."""
        if self.model is None or self.meta is None:
            raise ConfigError("nothing to export: open a model first")
        path = _checkpoint_path(path)
        # the commands' own checks (a name the file system takes, links, a writable folder) before writing
        role = PathRole("output", suffixes=(".safetensors",), also=_export_companions)
        check_paths([("the export name", path, role)])
        if not overwrite_input and self.is_input(path):
            raise ConfigError(f"{path} is the model's own file; choose another name (or confirm overwriting it)")
        write_export(path, self.model, self.meta, self.model_path)
        self.unsaved_repair = ""
        return path

    # ------------------------------------------------------------------ predictions
    def predict_all(self) -> tuple[list[str], list[float]]:
        """Every clip's predicted class and confidence under the current model."""
        if self.model is None or self.data is None:
            raise ConfigError("open a model and its dataset first")
        return predict_clips(self.model, self.data)

    def top3(self, wave: torch.Tensor) -> list[tuple[str, float]] | None:
        """The current model's three likeliest classes for one waveform (None without a model)."""
        if self.model is None or self.meta is None:
            return None
        with torch.no_grad():
            probs = torch.softmax(predict_logits(self.model, wave.view(1, -1)), dim=1)[0]
        values, idx = probs.topk(min(3, probs.numel()))
        return [(self.meta["classes"][i], float(v)) for v, i in zip(values.tolist(), idx.tolist())]


def _plain(value: Any) -> Any:
    """``value`` as stored in a checkpoint's JSON (tuples as lists), to compare with a record."""
    return json.loads(json.dumps(value, default=str))


def _export_companions(path: str) -> dict[str, str]:
    stem = Path(path)
    return {"the export's report": str(stem.with_suffix(".json")), "its summary": str(stem.with_suffix(".md"))}


def _checkpoint_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_suffix(".safetensors")


def _scan_trigger_asr(found: ScanResult, unlearned: dict[str, Any], when: str = "asr_before") -> float | None:
    """The ASR the repair measured of the scan's own trigger (that of the class it points at) before
    repairing (``when`` "asr_after": through the repaired model), or None when the repair unlearned other
    classes' triggers only."""
    pointed = found.most_anomalous()
    name = found.classes[pointed] if pointed is not None else None
    rates = unlearned.get("asr_per_class") or [unlearned]
    return next((r.get(when) for r in rates if r.get("class") == name), None)
