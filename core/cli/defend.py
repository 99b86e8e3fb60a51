"""``python -m core.defend``: repair a model headless.

Loads a checkpoint and a dataset, measures the model before (CA, and ASR/RA when the attack
is known from the checkpoint or ``--attack``), runs the defense (the Recommended preset unless
``--preset``/``--defense`` say otherwise: :mod:`core.presets`) on a copy with a clean share
of the training split, measures after, and writes the repaired checkpoint (the defense
appended to its history) plus a report: JSON, and a Markdown table beside it. Evaluations
during the run are for the record only; nothing is chosen by them.

Every figure (before, after and during the run) is measured on ``--eval-split``: ``test`` (the
default) or ``validation``. Choose settings on the validation split and report the chosen ones
on the test split, never the other way round: a setting picked by its test figures is fitted to
the test split. The report records ``eval_split`` (as does the checkpoint's history entry), and
the summary line and the Markdown name it. A dataset without that split (a Speech Commands folder
with ``testing_list.txt`` alone has no validation clips) is refused in one line before any work.

``--rescan`` scans the input model and the repaired one by trigger inversion (:func:`core.scan.rescan`,
without the attack record; the scan's settings are ``--scan-steps``, ``--scan-clean-ratio``, ... the
fields of :class:`core.scan.ScanConfig`, with ``--seed`` and ``--device``; ``--scan-clean-ratio`` defaults to the
repair's ``--clean-ratio``, and a larger one is refused when the repair itself scans: its scan reads only the
clean clips the repair has) before anything is written,
and the report (JSON and Markdown) adds ``rescan``: whether the flag is gone, the suspected target
before and after, and the before-scan's reconstructed waveform trigger of its most anomalous class
replayed on the ``--eval-split`` clips of the other classes: its attack success rate on the input
model and on the repaired one.

``--unlearn S`` (the Recommended preset's 0.3) gives S of each fine-tuning batch the suspected trigger with
the clips' true labels: the audio file ``--unlearn-trigger`` (a recording, or a WAV a scan wrote) or, by
default, the trigger a scan of the input model reconstructs first (the same ``--scan-*`` settings; with
``--rescan`` that scan is also the "before" one, not run twice). The report's ``defense_details.unlearn``
says which trigger was unlearned. ``--unlearn-class WORD`` names the suspected target when the user knows
it: the scan's trigger of that class is unlearned (not the most anomalous class's), the latent push
(``--unlearn-latent``) points there, and a ``--unlearn-trigger`` recording is recorded as sending clips there.
``--trigger-prune X`` first zeroes the output layer's inputs that same trigger raises most, within X of clean
accuracy (``defense_details.trigger_pruned`` says how many), and undoes it when that won back less than
``--trigger-prune-gain`` (0.25) of the accuracy the trigger costs; ``--trigger-prune-when unflagged`` does it only when
the scan flagged no class (the Recommended: 0.05, unflagged; rounds 15 and 16 of the ASC-10 notes).
``--rescan-passes N`` scans the repaired model with the same settings and, when that scan flags a class the
repair did not unlearn, runs the repair again on it unlearning that class's trigger, at most N more times
(``defense_details.rescan_passes`` records each scan and pass; with ``--rescan`` the last scan is the "after"
one when it was of the model returned).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from core.audio import load_clip
from core.checkpoint import load_checkpoint, save_checkpoint
from core.cli.common import add_attack_override_arguments, add_data_arguments, attack_for, load_from_args
from core.cli.scan import ScanProgress, add_scan_arguments, check_scan_data, scan_config_from_args
from core.data import AudioSet
from core.defenses import DEFENSES, HIDDEN_OPTIONS, Defense
from core.errors import ConfigError
from core.events import ProgressObserver
from core.options import add_arguments, fields_of, from_namespace
from core.presets import DEFAULT_PRESET, PRESETS
from core.repair import check_scan_share, check_unlearn_scan, record_repair, repair
from core.reports import repair_markdown, scan_verdicts
from core.runtime import (
    add_common_arguments,
    parse_args,
    progress_bar,
    resolve_device,
    write_json,
    write_text_atomic,
)
from core.scan import ScanConfig, rescan
from core.scan.reference import read_reference
from core.validate import input_path, output_path

__all__ = ["EVAL_SPLITS", "SCAN_PREFIX", "build_parser", "check_eval_split", "choose_defense", "defend", "main"]

log = logging.getLogger("core.defend")
#: How errors name the Markdown report written beside ``--report``.
MARKDOWN = "the report's Markdown (--report with .md)"
#: The splits ``--eval-split`` measures on (the training split is what the defense learns from).
EVAL_SPLITS = ("test", "validation")
#: The scan's options on this command line: ``--scan-steps``, ``--scan-clean-ratio``, ... (with ``--rescan``).
SCAN_PREFIX = "scan-"


#: Config fields that are not defense options on this command line (declared ``hidden``: seed and
#: device have their own common options; gradient norms are only produced for a watching application).
_NOT_OPTIONS = HIDDEN_OPTIONS
_ALL_HYPERPARAMETERS = sorted({s.name for cls in DEFENSES.values() for s in fields_of(cls.Config) if not s.hidden})


def _hyperparameter_arguments(
    parser: argparse.ArgumentParser, defenses: Mapping[str, type[Defense]] = DEFENSES
) -> None:
    """One option per defense-config field (``--clean-ratio``, ``--alpha``, ...) from the fields'
    metadata (:func:`core.options.add_arguments`), unset None, with each defense's default in the help."""
    seen: set[str] = set()
    for cls in defenses.values():
        added = add_arguments(
            parser,
            cls.Config,
            exclude=seen,
            default_none=True,
            describe_default=lambda spec: _defaults(spec.name, defenses),
        )
        seen.update(spec.name for spec in added)


def _defaults(name: str, defenses: Mapping[str, type[Defense]]) -> str:
    """The option's default in each defense that has it: ``gnft 0.05, ft 0.05, ...``."""
    return ", ".join(f"{n} {getattr(c.Config(), name)}" for n, c in defenses.items() if hasattr(c.Config(), name))


def build_parser(defenses: Mapping[str, type[Defense]] | None = None) -> argparse.ArgumentParser:
    """``python -m core.defend``'s options; each defense option is a field of ``defenses``' configs."""
    defenses = DEFENSES if defenses is None else defenses
    p = argparse.ArgumentParser(
        prog="python -m core.defend",
        description="Remove a backdoor from a checkpoint with GN-FT (or another defense) and report before/after.",
        epilog="Example: python -m core.defend --model backdoored.safetensors --data ../shared/data/fsdd "
        "--defense gnft --out repaired.safetensors --report report.json",
    )
    input_path(p, "--model", required=True, help="checkpoint to repair (.safetensors); it is never modified")
    add_data_arguments(p)
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        help=(
            "a named defense with its settings: "
            + "; ".join(f"{p.name}: {p.summary}" for p in PRESETS.values())
            + f". Default {DEFAULT_PRESET} when --defense is not given; options given explicitly "
            "override the preset's values"
        ).replace("%", "%%"),
    )
    p.add_argument(
        "--defense",
        choices=sorted(defenses),
        help=f"defense with its own defaults (gnft's are the paper's); default: the {DEFAULT_PRESET} preset's defense",
    )
    _hyperparameter_arguments(p, defenses)
    p.add_argument(
        "--eval-split",
        choices=EVAL_SPLITS,
        default="test",
        help="split every figure is measured on, before, after and during the run (default test). Choose "
        "settings on validation, then report the chosen ones on test; the report records it",
    )
    add_attack_override_arguments(p)
    p.add_argument(
        "--rescan",
        action="store_true",
        help="after the repair, scan the input and the repaired model for a backdoor by trigger inversion "
        "(without the attack record) and report the verdicts and the reconstructed trigger's ASR before and "
        "after; its settings are the --scan-* options",
    )
    input_path(
        p,
        "--unlearn-trigger",
        help="audio file of the trigger to unlearn with --unlearn (a recording, or a WAV python -m core.scan "
        "wrote; added from each clip's start); default: scan the model first and unlearn the trigger it "
        "reconstructs",
    )
    p.add_argument(
        "--unlearn-class",
        metavar="WORD",
        help="the suspected target word, when you know it: unlearn the scan's reconstructed trigger of this class "
        "(default: the class the scan finds most anomalous), and point the latent push (--unlearn-latent) "
        "there; with --unlearn-trigger, the class the recording sends clips to",
    )
    add_scan_arguments(
        p.add_argument_group(
            "scan settings (with --rescan, and for the scan that finds the trigger to unlearn; seed and device as "
            "the defense's)"
        ),
        prefix=SCAN_PREFIX,
        share_default="the repair's --clean-ratio; no larger when the repair scans",
    )
    output_path(
        p, "--out", required=True, suffixes=(".safetensors",), help="repaired checkpoint to write (.safetensors)"
    )
    output_path(
        p,
        "--report",
        also=lambda report: {MARKDOWN: str(Path(report).with_suffix(".md"))},
        help="report to write (JSON; a Markdown table goes beside it as .md)",
    )
    add_common_arguments(p)
    return p


def choose_defense(args: argparse.Namespace) -> tuple[str, str | None]:
    """The defense to run and the preset it starts from (None: the defense's own defaults).

    Checked before anything is loaded: a preset of another defense, or an option the defense
    does not have, is one clear error."""
    preset = args.preset if args.preset or args.defense else DEFAULT_PRESET
    name = args.defense or PRESETS[preset].defense
    if preset and PRESETS[preset].defense != name:
        raise ConfigError(f"--preset {preset} is a {PRESETS[preset].defense} preset; it cannot run --defense {name}")
    fields = {f.name for f in dataclasses.fields(DEFENSES[name].Config)}
    foreign = sorted(k for k in _ALL_HYPERPARAMETERS if getattr(args, k, None) is not None and k not in fields)
    if foreign:
        raise ConfigError(
            f"{', '.join('--' + k.replace('_', '-') for k in foreign)} does not apply to --defense {name}"
        )
    return name, preset


def scan_config(
    args: argparse.Namespace, scans_to_unlearn: bool = False, clean_ratio: float | None = None
) -> ScanConfig | None:
    """The scan ``--rescan`` runs, and the repair when it scans for the trigger to unlearn
    (``scans_to_unlearn``); None when neither scans. A ``--scan-*`` option then is refused. Without
    ``--scan-clean-ratio`` the scan reads the repair's clean share (``clean_ratio``); a larger one given is
    refused when the repair scans (:func:`core.repair.check_scan_share`)."""
    given = sorted(
        f"--{SCAN_PREFIX}{k.replace('_', '-')}" for k in from_namespace(args, ScanConfig, prefix=SCAN_PREFIX)
    )
    if not (args.rescan or scans_to_unlearn):
        if given:
            raise ConfigError(
                f"{', '.join(given)} only applies with --rescan, with --unlearn and no --unlearn-trigger, "
                "or with --rescan-passes"
            )
        return None
    config = scan_config_from_args(args, prefix=SCAN_PREFIX, share=clean_ratio)
    if scans_to_unlearn and clean_ratio is not None:
        check_scan_share(config.clean_ratio, clean_ratio, f"--{SCAN_PREFIX}clean-ratio", "--clean-ratio")
    return config


def check_eval_split(data: AudioSet, split: str, option: str = "--eval-split") -> None:
    """Refuse, in one line naming ``option``, a dataset whose ``split`` has no clips."""
    idx = data.splits.get(split)
    if idx is None or idx.numel() == 0:
        sizes = ", ".join(f"{k} {int(v.numel())}" for k, v in data.splits.items())
        raise ConfigError(
            f"{option} {split}: the data has no {split} split (clips per split: {sizes}); "
            f"measure on another split or give a dataset that has one"
        )


def defend(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Run the command described by ``args``; returns the report."""
    model_path, out = Path(args.model), Path(args.out)  # the paths were checked by parse_args (core.validate)
    defense_name, preset = choose_defense(args)
    cls = DEFENSES[defense_name]
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    overrides = {k: getattr(args, k) for k in fields - _NOT_OPTIONS if getattr(args, k, None) is not None}
    config = (PRESETS[preset].config if preset else cls.Config)(**overrides, seed=args.seed, device=args.device)
    if args.unlearn_trigger and config.unlearn == 0:
        raise ConfigError("--unlearn-trigger only applies with --unlearn above 0 (a share of each batch)")
    if args.unlearn_trigger and config.unlearn_refresh > 0 and args.unlearn_class is None:
        raise ConfigError(
            "--unlearn-refresh searches the trigger's class again, and --unlearn-trigger names none: add "
            "--unlearn-class WORD (the class it sends clips to) or set --unlearn-refresh 0"
        )
    if args.unlearn_class is not None and not config.unlearns():
        raise ConfigError("--unlearn-class only applies with --unlearn or --unlearn-latent above 0")
    if getattr(args, "rescan_passes", None) and not config.unlearns():  # given, and nothing to unlearn again
        raise ConfigError(
            "--rescan-passes only applies with --unlearn, --unlearn-latent or --trigger-prune above 0 (a pass "
            "unlearns the class a scan flags)"
        )
    scans = config.unlearns() and (not args.unlearn_trigger or config.rescan_passes > 0)
    scan_settings = scan_config(args, scans_to_unlearn=scans, clean_ratio=config.clean_ratio)
    if scans:
        assert scan_settings is not None
        check_unlearn_scan(scan_settings, "--scan-domains")
    model, meta = load_checkpoint(model_path)
    if scan_settings is not None:  # a clean reference that does not fit is refused before the data is read
        read_reference(
            scan_settings.reference,
            list(meta["classes"]),
            dataclasses.asdict(scan_settings),
            architecture=meta["architecture"],
            front_end=meta["front_end"],
            model=str(model_path),
            option=f"--{SCAN_PREFIX}reference",
        )
    trigger = None
    if args.unlearn_trigger:
        trigger = torch.from_numpy(load_clip(args.unlearn_trigger, meta["sample_rate"], None))
    data = load_from_args(
        args, meta["sample_rate"], meta["front_end"]["num_samples"], vocab=args.vocab or meta["classes"]
    )
    if list(data.classes) != list(meta["classes"]):
        raise ConfigError(f"the data's classes {data.classes} differ from the model's {meta['classes']}")
    check_eval_split(data, args.eval_split)
    if args.unlearn_class is not None and args.unlearn_class not in data.classes:
        raise ConfigError(
            f"--unlearn-class {args.unlearn_class!r} is not one of the model's classes: {', '.join(data.classes)}"
        )
    if scan_settings is not None:
        check_scan_data(data, scan_settings, prefix=SCAN_PREFIX)
    attack, attack_source = attack_for(args, meta)
    device = resolve_device(args.device)
    model, data = model.to(device), data.to(device)
    scan_bar = None
    if scans:  # the repair scans first for the trigger to unlearn, or after a pass (rescan_passes)
        assert scan_settings is not None
        scan_bar = progress_bar(scan_settings.total_steps(), "scan", False if args.quiet else None)
    progress = ProgressObserver(log, progress_bar(config.epochs, defense_name, False if args.quiet else None))
    try:
        result = repair(
            model,
            data,
            cls(config),
            attack=attack,
            attack_source=attack_source,
            base_preset=preset,
            observer=ScanProgress(scan_bar, progress) if scan_bar is not None else progress,
            split=args.eval_split,
            trigger=trigger,
            trigger_record={"source": "file", "file": str(args.unlearn_trigger)} if trigger is not None else None,
            scan_config=scan_settings,
            unlearn_class=args.unlearn_class,
        )
    finally:
        progress.bar.close()
        if scan_bar is not None:
            scan_bar.close()
    report = result.report(
        command=" ".join(["python -m core.defend", *argv]),
        model=str(model_path),
        checkpoint=str(out),
    )
    if args.rescan:  # before anything is written: Ctrl-C here leaves no file
        assert scan_settings is not None
        made = [s for s in (result.scan, result.final_scan) if s and s.config == dataclasses.asdict(scan_settings)]
        bar = progress_bar((2 - len(made)) * scan_settings.total_steps(), "rescan", False if args.quiet else None)
        try:
            report["rescan"] = rescan(
                model,
                result.model,
                data,
                scan_settings,
                split=args.eval_split,
                observer=ScanProgress(bar),
                before=result.scan,
                after=result.final_scan,
            ).to_dict()
        finally:
            bar.close()
    save_checkpoint(out, result.model, record_repair(meta, result))
    if args.report:
        write_json(args.report, report)
        write_text_atomic(Path(args.report).with_suffix(".md"), repair_markdown(report))
    return report


def rescan_line(record: dict[str, Any]) -> str:
    """The terminal's line on ``--rescan``: the verdicts before and after and the trigger's ASR."""
    before, after = scan_verdicts(record)
    line = f"rescan: before {before}, after {after}"
    trigger = record["trigger"]
    if trigger["asr_before"] is not None:
        line += (
            f"; reconstructed trigger of {trigger['class']} on {trigger['clips']} {trigger['split']} clips: ASR "
            f"{100 * trigger['asr_before']:.1f} % -> {100 * trigger['asr_after']:.1f} %"
        )
    return line


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(build_parser(), argv)
    report = defend(args, argv)
    b, a = report["before"], report["after"]
    line = f"clean accuracy {100 * b['clean_accuracy']:.1f} % -> {100 * a['clean_accuracy']:.1f} %"
    if "attack_success_rate" in a:
        line += (
            f", attack success rate {100 * b['attack_success_rate']:.1f} % -> {100 * a['attack_success_rate']:.1f} %"
        )
    else:
        line += " (no attack known: ASR not measured)"
    held = (report.get("defense_details") or {}).get("holdout")
    if held:
        line += (
            f", held-out clean accuracy ({held['clips']} clips) {100 * held['accuracy_before']:.1f} % -> "
            f"{100 * held['accuracy_after']:.1f} %"
        )
    preset = report["preset"]
    used = PRESETS[preset["name"]].title if preset["name"] in PRESETS else "custom settings"
    print(
        f"{report['defense']['name']} ({used}), on the {report['eval_split']} split: {line}; "
        f"{report['seconds']:.1f} s on {report['device']}; wrote {report['checkpoint']}"
    )
    if "rescan" in report:
        print(rescan_line(report["rescan"]))
    for finding in report["findings"]:
        print(f"warning: {finding}", file=sys.stderr)
    return 0
