"""``python -m core.scan``: look for a backdoor in a checkpoint without knowing its trigger (issue 33).

Loads the checkpoint's model and class list (never its attack record: the scan must find what it
finds from the weights and clean clips alone), takes a clean share of the dataset's training split
and runs :func:`core.scan.scan` with the options of :class:`core.scan.ScanConfig` (one command-line
option per field). Writes ``--out`` (JSON: the scan's result, the command, the model, the machine and
the trigger files) and, in ``--triggers`` (default ``<out stem>_triggers`` beside ``--out``), the
reconstructed waveform trigger of each flagged class as a 32-bit float WAV at the data's sample rate,
and always that of the most anomalous class, named ``not_flagged_most_anomalous_...`` when the model
was not flagged. Nothing is written until the scan has finished: Ctrl-C or a cancelled run leaves no
file behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.checkpoint import load_checkpoint
from core.cli.common import add_data_arguments, load_from_args
from core.data import AudioSet
from core.errors import CheckpointError, ConfigError
from core.events import SCAN_PHASE, Cancelled, EvalInfo, NullObserver, Observer, StepInfo
from core.options import OptionSpec, add_arguments, fields_of, format_value, from_namespace
from core.runtime import add_common_arguments, machine_info, parse_args, progress_bar, resolve_device, write_json
from core.scan import ScanConfig, ScanResult, lead, pointed_class, scan
from core.scan.reference import read_reference
from core.validate import check_paths, declared_paths, input_path, output_path

__all__ = [
    "ScanProgress",
    "add_scan_arguments",
    "build_parser",
    "check_scan_data",
    "default_triggers",
    "main",
    "run_scan",
    "scan_config_from_args",
    "trigger_files",
]

log = logging.getLogger("core.scan")


class ScanProgress(NullObserver):
    """Advances ``bar`` one step per inversion step (the phase in its caption) and passes every event
    on to ``inner`` (an embedding caller's observer), whose ``should_stop`` cancels the scan. A scan more
    than the bar was made for (a repair's scan of the repaired model, ``rescan_passes``) grows its total."""

    def __init__(self, bar: Any, inner: Observer | None = None) -> None:
        self.bar, self.inner = bar, inner or NullObserver()
        self.per_scan = getattr(bar, "total", None)

    def on_step(self, info: StepInfo) -> None:
        if info.phase.startswith(SCAN_PHASE):  # a repair's own steps pass on to ``inner`` alone
            if self.per_scan and self.bar.n >= self.bar.total:
                self.bar.total += self.per_scan
            self.bar.update(1)
            self.bar.set_description(info.phase, refresh=False)
        self.inner.on_step(info)

    def on_eval(self, info: EvalInfo) -> None:
        self.inner.on_eval(info)

    def should_stop(self) -> bool:
        return self.inner.should_stop()


def add_scan_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, prefix: str = "", share_default: str | None = None
) -> None:
    """One option per :class:`ScanConfig` field (``--{prefix}steps``, ...); seed and device come from the
    common options. ``prefix`` keeps them apart from another command's (``core.defend --scan-steps``);
    ``share_default`` words the clean share's default where it follows the repair's."""

    def describe(spec: OptionSpec) -> str:
        return share_default if share_default and spec.name == "clean_ratio" else format_value(spec.default)

    wording = describe if share_default else None
    add_arguments(parser, ScanConfig, prefix=prefix, default_none=bool(prefix), describe_default=wording)


def scan_config_from_args(args: argparse.Namespace, prefix: str = "", share: float | None = None) -> ScanConfig:
    """The :class:`ScanConfig` the options of :func:`add_scan_arguments` describe, with the common
    ``--seed`` and ``--device``, checked: what is wrong is one line naming the option. With ``share`` (a
    repair's clean share) the clean share is that unless ``--{prefix}clean-ratio`` is given."""
    given = from_namespace(args, ScanConfig, prefix=prefix)
    if share is not None:
        given.setdefault("clean_ratio", share)
    config = ScanConfig(**given, seed=args.seed, device=args.device)
    try:
        config.validate()
    except ConfigError as err:
        text = str(err)
        for spec in fields_of(ScanConfig):
            if not spec.hidden and text.startswith(spec.name + " "):
                text = f"--{prefix}{spec.flag}{text[len(spec.name) :]}"
                break
        raise ConfigError(text) from None
    return config


#: The most clips one inversion step may hold (classes x clips a class a step), about 4 GB of one-second
#: 16 kHz waveforms: a larger step cannot be held in memory here and is refused before any work.
MAX_STEP_CLIPS = 65536


def check_scan_data(data: AudioSet, config: ScanConfig, option: str = "--data", prefix: str = "") -> None:
    """Refuse, naming ``option``, a training split without clips of two classes (no class's candidate
    trigger would have clips of another class to turn), and a ``--{prefix}batch-size`` whose step would
    hold more than :data:`MAX_STEP_CLIPS` clips over the data's classes."""
    step = config.batch_size * len(data.classes)
    if step > MAX_STEP_CLIPS:
        raise ConfigError(
            f"--{prefix}batch-size {config.batch_size}: a step would hold {step} clips over {len(data.classes)} "
            f"classes; at most {MAX_STEP_CLIPS} are held (a batch of at most {MAX_STEP_CLIPS // len(data.classes)})"
        )
    idx = data.splits.get("train")
    present = 0 if idx is None or idx.numel() == 0 else int(data.labels.cpu()[idx.cpu()].unique().numel())
    if present < 2:
        raise ConfigError(
            f"{option}: the training split holds clips of {present} class(es); the scan needs clean clips of "
            "at least two classes"
        )


def default_triggers(out: str | os.PathLike) -> Path:
    """Where the trigger WAVs go when ``--triggers`` is not given: ``<out stem>_triggers`` beside ``--out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_triggers")


def _safe(name: str) -> str:
    """A class name as part of a file name (letters of any script, digits, ``-`` and ``_``)."""
    return re.sub(r"[^\w-]+", "_", name).strip("_")[:60] or "class"


def trigger_files(result: ScanResult) -> list[dict[str, Any]]:
    """The WAVs a scan writes: each flagged class (most anomalous first), and the most anomalous class
    when nothing was flagged; none without an audio domain (waveform, mix). Each: class, index, flagged, file name."""
    if result.triggers is None:
        return []
    flagged = result.suspicious()
    chosen = [(i, True) for i in flagged]
    top = result.most_anomalous()
    if top is not None and top not in flagged:
        chosen.append((top, False))
    files = []
    for i, is_flagged in chosen:
        stem = "flagged" if is_flagged else "not_flagged_most_anomalous"
        files.append(
            {
                "class": result.classes[i],
                "index": i,
                "flagged": is_flagged,
                "anomaly_index": result.anomaly(i),
                "file": f"{stem}_{i:02d}_{_safe(result.classes[i])}.wav",
            }
        )
    return files


def _write_triggers(result: ScanResult, folder: Path, files: list[dict[str, Any]]) -> None:
    """Write the WAVs: into a new folder made aside and renamed into place, or file by file (each
    atomically) into a folder that is already there."""
    from core.audio import write_wav

    if not files:
        return
    staging = folder if folder.is_dir() else folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    assert result.triggers is not None
    try:
        for entry in files:
            write_wav(staging / entry["file"], result.triggers[entry["index"]], result.sample_rate, subtype="FLOAT")
        if staging != folder:
            os.replace(staging, folder)
    except BaseException:
        if staging != folder:
            shutil.rmtree(staging, ignore_errors=True)
        raise


def build_parser() -> argparse.ArgumentParser:
    """``python -m core.scan``'s options; the scan's own are the fields of :class:`ScanConfig`."""
    p = argparse.ArgumentParser(
        prog="python -m core.scan",
        description="Scan a checkpoint for a backdoor by trigger inversion, without its attack record: the "
        "verdict, the suspected target class, and the reconstructed waveform triggers.",
        epilog="Example: python -m core.scan --model suspect.safetensors --data runs/synth_scd10 "
        "--out runs/suspect_scan.json   # + runs/suspect_scan_triggers/*.wav",
    )
    input_path(
        p,
        "--model",
        required=True,
        help="checkpoint to scan (.safetensors); only its weights and classes are read, never its attack record",
    )
    add_data_arguments(p)
    add_scan_arguments(p.add_argument_group("scan settings"))
    output_path(p, "--out", required=True, suffixes=(".json",), help="report to write (JSON)")
    output_path(
        p,
        "--triggers",
        kind="folder",
        help="folder for the reconstructed triggers (WAV, 32-bit float, the data's sample rate) (default: "
        "<out stem>_triggers beside --out)",
    )
    add_common_arguments(p)
    return p


def run_scan(
    args: argparse.Namespace, argv: Sequence[str], config: ScanConfig, observer: Observer | None = None
) -> dict[str, Any]:
    """Scan the checkpoint ``args`` names and write its report and triggers (only once the scan has
    finished); returns the report. Raises :class:`Cancelled` when ``observer`` stops it."""
    model_path, out, folder = Path(args.model), Path(args.out), Path(args.triggers)
    try:
        model, meta = load_checkpoint(model_path)
    except CheckpointError as err:  # "no such model file", "not a valid .safetensors file", ...
        raise CheckpointError(f"--model: {err}") from None
    classes = list(meta["classes"])  # the model and its classes only: the attack record is never read
    reference = read_reference(
        config.reference,
        classes,
        asdict(config),
        architecture=meta["architecture"],
        front_end=meta["front_end"],
        model=str(model_path),
    )  # before the data is read: a reference that does not fit is refused before any work
    data = load_from_args(args, meta["sample_rate"], meta["front_end"]["num_samples"], vocab=args.vocab or classes)
    if list(data.classes) != classes:
        raise ConfigError(f"the data's classes {data.classes} differ from the model's {classes}")
    check_scan_data(data, config)
    device = resolve_device(config.device)
    bar = progress_bar(config.total_steps(), "scan", False if args.quiet else None)
    try:
        result = scan(model.to(device), data, config, ScanProgress(bar, observer), reference)
    finally:
        bar.close()
    files = trigger_files(result)
    top = result.most_anomalous()
    suspected = result.classes.index(result.suspected_target) if result.suspected_target is not None else None
    report: dict[str, Any] = {
        "command": " ".join(["python -m core.scan", *argv]),
        "model": str(model_path),
        "architecture": meta["architecture"],
        **result.to_dict(),
        "most_anomalous": None
        if top is None
        else {
            "class": result.classes[top],
            "index": top,
            "flagged": top in result.suspicious(),
            "anomaly_index": result.anomaly(top),
            "domain": pointed_class(result.domains, suspected, pooled=result.reference is not None)[1],
        },
        "trigger_audio": {
            "folder": str(folder) if files else None,
            "sample_rate": result.sample_rate,
            "files": [{**{k: v for k, v in f.items() if k != "file"}, "path": str(folder / f["file"])} for f in files],
        },
        "machine": machine_info(device),
    }
    if not files:
        report["trigger_audio"]["note"] = "no audio domain (waveform, mix) was scanned: no trigger audio"
    _write_triggers(result, folder, files)
    write_json(out, report)
    return report


def _not_standing_out(report: dict[str, Any]) -> str:
    """For an unflagged scan whose largest pooled index is above the threshold: why it is not flagged (the class
    does not stand far enough above the next one); else ''."""
    pooled, threshold = report["pooled"], report["config"]["threshold"]
    if not pooled or report["confidence"] <= threshold:
        return ""
    second, gap = lead(pooled)
    first = pooled.index(max(pooled))
    standout = report["config"].get("standout", ScanConfig().standout)
    return (
        f"; {report['classes'][first]!r} is above it but only {gap:.2f} above the next class, "
        f"{report['classes'][second]!r}: a flag needs {standout:g}"
    )


def _summary(report: dict[str, Any]) -> str:
    classes = report["classes"]
    threshold = report["config"]["threshold"]
    domains = report["domains"]
    pooled = "pooled " if len(domains) > 1 else ""  # the verdict's index: the domains pooled (one: its own)
    if report["backdoored"]:
        others = sorted(
            (a, c) for c, a in zip(classes, report["pooled"]) if a > threshold and c != report["suspected_target"]
        )[::-1]
        also = f"; also above it: {', '.join(f'{c} {a:.2f}' for a, c in others)}" if others else ""
        lines = [
            f"verdict: backdoor suspected, target {report['suspected_target']!r} "
            f"(confidence: {pooled}anomaly index {report['confidence']:.2f}, threshold {threshold:g}, "
            f"{lead(report['pooled'])[1]:.2f} above the next class{also})"
        ]
    else:
        top = report["most_anomalous"]
        lines = [
            f"verdict: no backdoor found (largest {pooled}anomaly index {report['confidence']:.2f}, threshold "
            f"{threshold:g}{_not_standing_out(report)}"
            + (f"; most anomalous class {top['class']!r} ({top.get('domain')}))" if top else ")")
        ]
    rows = {**({"pooled": report["pooled"]} if pooled else {}), **{d: r["anomaly_index"] for d, r in domains.items()}}
    width = max(map(len, rows), default=0)
    marked = report["backdoored"]  # '*': the classes above the threshold of a flagged model
    for name, index in rows.items():
        cells = ", ".join(
            f"{c} {a:.2f}{'*' if marked and name == next(iter(rows)) and a > threshold else ''}"
            for c, a in zip(classes, index)
        )
        lines.append(f"  {name:<{width}}  anomaly index per class: {cells}")
    audio = report["trigger_audio"]
    if audio["files"]:
        lines.append(f"  reconstructed triggers: {', '.join(f['path'] for f in audio['files'])}")
    reference = report.get("reference")
    if reference:
        lines.append(
            f"  read against a clean reference: {reference['scans']} scan(s) of {reference['models']} model(s) "
            "(each class's size over its geometric mean there)"
        )
    lines.append(f"{report['clean_clips']} clean clips, {report['seconds']:.1f} s; wrote {report['out']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, observer: Observer | None = None) -> int:
    """The command; ``observer`` (for a caller embedding it) hears the scan's steps and may cancel it:
    then nothing is written and the exit code is 130, as after Ctrl-C."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.triggers is None:
        args.triggers = str(default_triggers(args.out))
        check_paths(declared_paths(parser, args))  # the default folder, checked as a given one would be
    config = scan_config_from_args(args)
    try:
        report = run_scan(args, argv, config, observer)
    except Cancelled:
        print("cancelled: nothing written", file=sys.stderr)
        return 130
    print(_summary({**report, "out": args.out}))
    return 0
