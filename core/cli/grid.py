"""``python -m core.grid``: the reproduction grid, models × attacks × defenses on one dataset.

Every cell is a file in the work folder, written when it finishes, so an interrupted grid
resumes where it stopped: ``train_<model>_<attack>.safetensors`` (+ ``.json`` report) for each
trained model (``clean`` included unless ``--no-clean``) and ``defend_<model>_<attack>_<defense>.json``
(+ the repaired ``.safetensors``) for each defense column. A checkpoint put in the work folder
under that name (with its report) is used as it is; a ``reused_from`` note in that report is
carried into the results. ``--reuse PATTERN`` takes models trained elsewhere (e.g. by
``benchmarks/attacks.py``): a checkpoint at ``PATTERN.format(model=..., attack=...)`` is checked
against the grid's cell (architecture, classes, sample rate, length, attack), re-evaluated on
this data's test split (and on ``--eval-split``, below) and copied in as the cell. The attack
is always rebuilt from the checkpoint's own record, so the ASR of a defended model is measured
with the trigger the model was poisoned with. Results go to
``<out>.json`` (``command``, ``machine``, ``rows``: one flat object per cell) and ``<out>.md``
(the paper's table form: one line per model and attack, CA / ASR per defense, then the means).

A defense column is a defense run with its own defaults (``gnft``; ``--defense-arg gnft.KEY=VALUE``
changes that plain column), a preset of :mod:`core.presets` (``gnft@paper``, ``gnft@recommended``:
``core.defend --preset``'s values), or a variant declared with
``--variant NAME=DEFENSE[@PRESET][:KEY=VALUE,KEY=VALUE...]`` and named in ``--defenses``
(``--variant gnft_r02=gnft:r=0.2,clean_ratio=0.1 --defenses none,gnft@paper,gnft_r02``). A variant
is fully described by its declaration: the defense's defaults, then the preset's values, then its
own settings; ``--defense-arg`` applies to plain columns only (one for a defense that has no plain
column in ``--defenses`` is refused). So one table can hold GN-FT several times. Each column has
its own cells (``defend_<model>_<attack>_<column>.json``), its own column and mean in ``<out>.md``
(variants listed under the title) and its own rows in ``<out>.json``: ``defense`` is the column,
``defense_name`` the defense that ran, ``preset`` the preset the config matches (or ``custom`` with the
preset it started from and what changed); the top level keeps each column's full config
(``defense_settings``) and each variant's declaration (``variants``).

Resuming is checked: a finished defense cell is reused only when the settings it records equal
the ones its column declares now (a setting the cell lacks did not exist then and had its
default; where and how fast it ran do not count: device, amp, compile, memory format, grad-norm
logging, ``core.presets.RUN_FIELDS``; the seed does). Otherwise the grid stops before
any work with one line naming the file and the settings that differ: delete that cell to run it
again with the new settings, or give the new settings another variant name or ``--work``. So is a
model the grid trained in its work folder: reused only when its checkpoint records the recipe this run
asks for (the attack and every parameter, ``--attack-arg`` and the seed; the training settings, where
and how fast aside; the sample rate and front end); a model put in with a ``reused_from`` note, or
adopted by ``--reuse``, is taken as the user's choice.

``--defense-seeds 0,1,2`` runs every defense cell once per seed (the seed draws the clean subset,
the batch order and dropout; on a clean set of a hundred clips one draw can decide the cell):
seed ``--seed``'s cell keeps its plain name, the others are ``defend_<model>_<attack>_<column>_seed<S>``.
A row then holds the mean over the seeds, each seed's figures (``per_seed``) and the standard
deviations, and the table shows mean ± standard deviation.

An attack whose trigger cannot exist at the grid's sample rate but whose recipe names a rate of
its own (Ultrasonic: a 21 kHz tone, 44.1 kHz) has its cells run at that rate, with the front
end's windows kept in time (n_fft 400 / hop 160 at 16 kHz become 1103 / 441 at 44.1 kHz, the
recipe's), and a clean model of each architecture is trained at that rate too
(``train_<model>_clean_44k``) as its clean-accuracy reference. Every row records its ``sample_rate``.

``--eval-split validation`` measures every figure of the grid on the validation split instead of
the test split (the default): the ``none`` column (each trained model's own figures) and every
defense cell, before, after and during the run. Use it to choose settings (the Recommended repair,
GN-FT's best setting) without looking at the test split, then report the chosen ones with a test
grid. Training is the same either way (early stopping always reads the validation split) and a
training cell's report keeps the test figures measured when it was made; the model's figures on
the validation split are a small cell of their own, ``eval_<model>_<attack>_validation.json``
(measured once, again only when the checkpoint it names has changed). Every defense cell records its
``eval_split`` (one without it was measured on the test split) and resuming one measured on the
other split is refused, like a cell made with other settings; ``<out>.json`` records ``eval_split``
at the top and ``<out>.md``'s caption names it. A validation grid takes its own ``--work`` and
``--out`` and adopts the test grid's trained models with ``--reuse '<test work>/train_{model}_{attack}.safetensors'``:
each is checked, copied and measured on the validation split, so only the defenses run. A dataset
without the chosen split is refused in one line before any work (on ``--backend ray`` by the first
task, the driver need not see the data).

A column that unlearns (``unlearn`` > 0, e.g. ``--variant unl=gnft@recommended:unlearn=0.3``) unlearns the
trigger a scan of the cell's model reconstructs (:func:`core.repair.unlearn_choice`; the attack record is not
read): one scan per model, defense seed and clean share, with the ``--scan-*`` settings at the column's clean
share (the scan reads only the clips the repair has; an explicit ``--scan-clean-ratio`` larger than an unlearning
column's share is refused before any work), kept in ``--work`` as ``scan_<model>_<attack>_seed<S>.json``
(``..._clean<share>_seed<S>`` at another share than 0.1; the ``python -m core.scan`` report and the
checkpoint's SHA-256) and ``.safetensors`` (its waveform triggers) and shared by every such column while the
checkpoint and the settings are the same.

A cell that fails (a GPU error, a bug one model meets; not wrong settings or data, which stop the grid
before or at its first cell) is logged and left out, and the other cells go on: the table shows it as
``failed`` (its row holds the error; a row whose other seeds ran keeps them and lists the failed ones
in ``failed_seeds``), and the command exits 1 naming every failed cell. Running the same command again
runs them again (the ``ray`` backend still stops at the first failure).

``--no-defend`` runs no defense at all: the table holds the defense cells already in ``--work`` (a seed
without its cell is left out and the cell says which seed it shows), to publish a grid that resumes later.

``--keep-earlier`` extends a committed table without its work folder (which holds checkpoints and
is not kept): the rows of the earlier ``<out>.json`` whose model/attack pair this run does not
produce (not in ``--attacks``, or no model under ``--no-train``) stay, each row naming the
command that made it. It is refused when the earlier file used other settings for a column of this
run, other data or another ``--eval-split``, so a table never mixes hyperparameters or splits.

Every row records where its cells ran (``ran_on``: for a defense row one entry per seed, the GPU's name
for a CUDA cell, else the CPU's; for a trained model, where it was trained, when its report says so), and
the table's caption counts the defense cells per machine: a grid resumed on another machine (a GPU
machine for the heavy cells, this one for the rest) says so.

``--backend ray`` runs every cell as a task on a Ray cluster (``--address auto`` joins a running
one; without ``--address`` a local instance is started): the same cell functions and files, so a
grid resumes across backends and gives the same numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from core import models
from core.allocator import release_free_memory
from core.attacks import Attack, attack_from_dict, get_attack, list_attacks, parse_attack_args
from core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from core.cli.common import add_data_arguments, add_front_end_arguments, front_end_from_args, load_from_args
from core.cli.defend import EVAL_SPLITS, SCAN_PREFIX, check_eval_split
from core.cli.scan import add_scan_arguments, scan_config_from_args
from core.data import AudioSet
from core.defenses import DEFENSES, DefenseConfig
from core.errors import AttackError, ConfigError
from core.evaluation import evaluate
from core.events import ProgressObserver
from core.options import (
    SEED_RANGE,
    SEED_TEXT,
    add_arguments,
    comma_items,
    from_namespace,
    number,
    parse_key_values,
    split_key_values,
)
from core.presets import PRESETS, RUN_FIELDS, preset_record
from core.repair import check_scan_share, check_unlearn_scan, record_repair, repair, unlearn_choice
from core.runtime import (
    add_common_arguments,
    machine_info,
    parse_args,
    ran_on,
    resolve_device,
    set_threads,
    write_json,
)
from core.scan import ScanConfig, ScanResult, scan
from core.scan.reference import read_reference
from core.training import TrainConfig, train_model
from core.validate import output_path

__all__ = ["main", "build_parser", "markdown_table", "variant_legend", "Column"]

log = logging.getLogger("core.grid")
#: Errors a cell raises that stop the whole grid: the settings or the data are wrong, for every cell alike.
FATAL = (ConfigError, AttackError)


def _failure(error: BaseException) -> str:
    """A failed cell's error in one line (its type and the message's first line)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _guarded(failed: dict[tuple, str], key: tuple, fn: Any, *cell: Any) -> Any:
    """``fn(*cell)``, or None with the error kept in ``failed[key]`` when the cell raises anything but a
    :data:`FATAL` error or an interrupt: one broken cell (a GPU error, a bug met by one model) must not
    lose the other cells of a long grid."""
    try:
        return fn(*cell)
    except FATAL:
        raise
    except Exception as error:  # noqa: BLE001 - every other failure is the cell's, reported at the end
        failed[key] = _failure(error)
        log.error("%s failed: %s", _cell_label(key), failed[key])
        return None


def _cell_label(key: tuple) -> str:
    """``train smallcnn/badnets`` or ``defend resnet/blend/gnft@recommended seed 1``."""
    if key[0] == "train":
        return f"train {key[1]}/{key[2]}"
    return f"defend {key[1]}/{key[2]}/{key[3]} seed {key[4]}"


NO_DEFENSE = "none"
CLEAN = "clean"
METRICS = ("clean_accuracy", "attack_success_rate", "robust_accuracy")
#: The training options of the grid are TrainConfig's, named ``--train-<name>``.
TRAIN_PREFIX = "train-"


def _scoped_pairs(items: Sequence[str], option: str, known: Sequence[str]) -> dict[str, list[str]]:
    """``NAME.key=value`` items grouped by NAME: ``{"gnft": ["epochs=50"]}``."""
    out: dict[str, list[str]] = {}
    for item in items:
        scope, dot, rest = item.partition(".")
        if not dot or "=" not in rest:
            raise ConfigError(f"{option} takes NAME.key=value, got {item!r}")
        if scope not in known:
            raise ConfigError(f"{option} {item!r}: {scope!r} is not one of {', '.join(known)}")
        out.setdefault(scope, []).append(rest)
    return out


@dataclass(frozen=True)
class Column:
    """One defense column of the grid: the defense that runs, the preset it starts from (None: the
    defense's own defaults) and its ``KEY=VALUE`` settings on top (``--defense-arg`` for a plain
    column, the ``--variant`` declaration for a variant)."""

    name: str
    defense: str
    preset: str | None = None
    pairs: tuple[str, ...] = ()

    @property
    def plain(self) -> bool:
        """True for a column named after its defense (``gnft``), False for a variant (``gnft@paper``)."""
        return self.name == self.defense

    def config(self, seed: int, device: str) -> DefenseConfig:
        """The column's config (typed and checked); a bad setting of a variant is one line naming it."""
        cls = DEFENSES[self.defense]
        what = "--defense-arg" if self.plain else f"--variant {self.name}"
        values = parse_key_values(cls.Config, self.pairs, what, scope=self.defense)
        try:
            config = (PRESETS[self.preset].config if self.preset else cls.Config)(**values, seed=seed, device=device)
            config.validate()
        except ConfigError as exc:
            if self.plain:
                raise
            raise ConfigError(f"{what}: {exc}") from None
        return config

    def describe(self) -> dict[str, Any]:
        """What ``<out>.json`` keeps of a variant: its defense, preset and own settings (typed)."""
        return {
            "defense": self.defense,
            "preset": self.preset,
            "settings": parse_key_values(DEFENSES[self.defense].Config, self.pairs, f"--variant {self.name}"),
        }


VARIANT_SYNTAX = "NAME=DEFENSE[@PRESET][:KEY=VALUE,KEY=VALUE...]"
_VARIANT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _with_preset(spec: str, where: str) -> tuple[str, str | None]:
    """``DEFENSE`` or ``DEFENSE@PRESET`` as (defense, preset), checked: the defense exists, the preset
    exists and is one of that defense; ``where`` names the option in the error."""
    defense, at, preset = spec.partition("@")
    if defense not in DEFENSES:
        raise ConfigError(f"{where}: unknown defense {defense!r} (one of {', '.join(sorted(DEFENSES))})")
    if not at:
        return defense, None
    if preset not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {preset!r} (one of {', '.join(PRESETS)})")
    if PRESETS[preset].defense != defense:
        raise ConfigError(f"{where}: preset {preset!r} is a {PRESETS[preset].defense} preset; it cannot run {defense}")
    return defense, preset


def _parse_variant(item: str) -> Column:
    """One ``--variant NAME=DEFENSE[@PRESET][:KEY=VALUE,...]`` as a :class:`Column` (its settings
    are checked later, with the config)."""
    name, eq, spec = item.partition("=")
    name, spec = name.strip(), spec.strip()
    head, colon, settings = spec.partition(":")
    if not eq or not name or not head or (colon and not settings.strip()):
        raise ConfigError(f"--variant takes {VARIANT_SYNTAX}, got {item!r}")
    if not _VARIANT_NAME.fullmatch(name) or re.search(r"_seed\d+$", name):
        raise ConfigError(
            f"--variant {item!r}: a variant's name is a letter then letters, digits, _ or - "
            f"(not ending in _seed<N>, the seed cells' suffix), got {name!r}"
        )
    if name in DEFENSES or name == NO_DEFENSE:
        raise ConfigError(f"--variant {item!r}: {name!r} is a column of its own already; give the variant another name")
    defense, preset = _with_preset(head.strip(), f"--variant {name}")
    pairs = tuple(p.strip() for p in settings.split(",")) if colon else ()
    split_key_values(pairs, f"--variant {name}")  # 'KEY=VALUE' each: the syntax fails here
    return Column(name, defense, preset, pairs)


def _columns(names: Sequence[str], variant_items: Sequence[str], defense_arg: Sequence[str]) -> list[Column]:
    """The defense columns of ``--defenses`` (``none`` aside), in its order: a plain defense with its
    ``--defense-arg`` settings, ``DEFENSE@PRESET``, or a ``--variant`` name. Checked before any work."""
    variants: dict[str, Column] = {}
    for item in variant_items:
        column = _parse_variant(item)
        if column.name in variants:
            raise ConfigError(f"--variant {column.name} is declared twice")
        variants[column.name] = column
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--defenses names {', '.join(repeated)} more than once")
    unused = [v for v in variants if v not in names]
    if unused:
        raise ConfigError(f"--variant {', '.join(unused)} is declared but not in --defenses")
    unknown = [n for n in names if n != NO_DEFENSE and n not in DEFENSES and n not in variants and "@" not in n]
    if unknown:
        raise ConfigError(
            f"unknown attack or defense: {', '.join(unknown)} (--defenses takes none, "
            f"{', '.join(sorted(DEFENSES))}, DEFENSE@PRESET or a --variant name)"
        )
    plain = [n for n in names if n in DEFENSES]
    for item in defense_arg:
        scope = item.partition(".")[0]
        if scope not in plain and (scope in variants or "@" in scope or scope in DEFENSES):
            raise ConfigError(
                f"--defense-arg {item!r}: it sets the plain {scope.partition('@')[0]} column only, and "
                f"--defenses has no such column (a variant takes its settings from its preset and --variant)"
            )
    pairs = _scoped_pairs(defense_arg, "--defense-arg", plain)
    columns = []
    for n in names:
        if n == NO_DEFENSE:
            continue
        if n in variants:
            columns.append(variants[n])
        elif n in DEFENSES:
            columns.append(Column(n, n, None, tuple(pairs.get(n, []))))
        else:
            columns.append(Column(n, *_with_preset(n, f"--defenses {n}")))
    return columns


def _cell_path(work: Path, model_name: str, attack_name: str, column: str, seed: int, grid_seed: int) -> Path:
    """A defense cell's report: ``defend_<model>_<attack>_<column>[_seed<S>].json``."""
    suffix = "" if seed == grid_seed else f"_seed{seed}"
    return work / f"defend_{model_name}_{attack_name}_{column}{suffix}.json"


#: The scan domains of a grid file that records none (written before 2026-12-05): the default of then.
SCAN_DOMAINS_BEFORE_RECORD = "features,waveform,spectrum"


def scan_domains_of(results: dict[str, Any]) -> str:
    """The domains the scans of a grid results file searched for its unlearning columns: its record, else
    its command's ``--scan-domains``, else the default of the time (:data:`SCAN_DOMAINS_BEFORE_RECORD`)."""
    if results.get("scan_domains"):
        return results["scan_domains"]
    found = re.search(r"--scan-domains[= ](\S+)", results.get("command", ""))
    return found.group(1).strip("'\"") if found else SCAN_DOMAINS_BEFORE_RECORD


def _check_cell(
    path: Path,
    row: dict[str, Any],
    column: Column,
    config: DefenseConfig,
    eval_split: str = "test",
    scan_domains: str | None = None,
    scan_reference: str = "",
    scan_clean_ratio: float | None = None,
) -> None:
    """Refuse a finished cell measured on another split than ``eval_split`` (a cell without
    ``eval_split`` was measured on the test split) or made with other settings than ``column``
    declares now (a setting the cell lacks did not exist then: it had the default; where and how it
    ran do not count, nor settings idle on both sides: :meth:`DefenseConfig.idle_fields`), or one that
    unlearned a scanned trigger found by a scan of other domains than ``scan_domains`` (the run's
    ``--scan-domains``; cells from before the record, 2026-12-05, name none and are not checked) or read
    against another clean reference than ``scan_reference`` (``--scan-reference``; a cell that names none
    had none) or on another clean share than ``scan_clean_ratio`` (cells from before the record, 2026-12-07,
    name none and are not checked)."""
    then = row.get("eval_split", "test")
    if then != eval_split:
        raise ConfigError(
            f"{path} was measured on the {then} split and this run measures on the {eval_split} split "
            "(--eval-split); delete it to run the cell again, or use another --work"
        )
    recorded = row.get("defense") or {}
    if recorded.get("name", column.defense) != column.defense:
        raise ConfigError(
            f"{path} was made by {recorded.get('name')}, not {column.defense} ({column.name}); "
            "delete it to run the cell again, or use another --work"
        )
    defaults = dataclasses.asdict(DEFENSES[column.defense].Config())
    now = dataclasses.asdict(config)
    then_config = DEFENSES[column.defense].Config(**{k: recorded.get(k, v) for k, v in defaults.items()})
    ignored = (RUN_FIELDS - {"seed"}) | (config.idle_fields() & then_config.idle_fields())  # idle in both
    differ = [k for k in now if k not in ignored and recorded.get(k, defaults[k]) != now[k]]
    if differ:
        raise ConfigError(
            f"{path} was made with other {column.name} settings than this run's "
            f"({', '.join(f'{k} {recorded.get(k, defaults[k])!r} there, {now[k]!r} now' for k in differ)}); "
            "delete it to run the cell again, or use another --work"
        )
    unlearned = (row.get("defense_details") or {}).get("unlearn") or {}
    then_domains = unlearned.get("scan_domains") if unlearned.get("source") == "scan" else None
    if scan_domains is not None and then_domains is not None and then_domains != scan_domains:
        raise ConfigError(
            f"{path} unlearned the trigger of a scan of other domains than this run's ({then_domains!r} there, "
            f"{scan_domains!r} now: --scan-domains); delete it to run the cell again, or use another --work"
        )
    then_reference = unlearned.get("scan_reference", []) if unlearned.get("source") == "scan" else None
    if then_reference is not None and then_reference != comma_items(scan_reference):
        raise ConfigError(
            f"{path} unlearned the trigger of a scan read against another clean reference than this run's "
            f"({','.join(then_reference) or 'none'} there, {scan_reference or 'none'} now: {_REFERENCE}); delete "
            "it to run the cell again, or use another --work"
        )
    then_share = unlearned.get("scan_clean_ratio") if unlearned.get("source") == "scan" else None
    if scan_clean_ratio is not None and then_share is not None and then_share != scan_clean_ratio:
        raise ConfigError(
            f"{path} unlearned the trigger of a scan of another clean share than this run's ({then_share:g} there, "
            f"{scan_clean_ratio:g} now: --{SCAN_PREFIX}clean-ratio, by default the column's clean_ratio); delete it "
            "to run the cell again, or use another --work"
        )


def _attack_rate(attack_name: str, params: dict[str, str], rate: int) -> int:
    """The sample rate an attack's cells run at: the grid's, or the attack's recipe rate where its
    trigger cannot exist at the grid's (Ultrasonic's 21 kHz tone at 16 kHz)."""
    try:
        get_attack(attack_name, sample_rate=rate, **params)
        return rate
    except AttackError:
        recipe = list_attacks()[attack_name].recipe_rate
        if recipe is None or recipe == rate:
            raise
    get_attack(attack_name, sample_rate=recipe, **params)  # parameters wrong at that rate too fail here
    log.info("%s runs at %d Hz (its recipe's rate; the grid's is %d Hz)", attack_name, recipe, rate)
    return recipe


def _args_at(args: argparse.Namespace, rate: int) -> argparse.Namespace:
    """The grid's options for cells at ``rate``: FFT size and hop scaled so the windows last as long."""
    if rate == args.sample_rate:
        return args
    scale = rate / args.sample_rate
    return argparse.Namespace(
        **{
            **vars(args),
            "sample_rate": rate,
            "n_fft": int(args.n_fft * scale + 0.5),
            "hop_length": int(args.hop_length * scale + 0.5),
        }
    )


def _cell_name(attack_name: str, rate: int, grid_rate: int) -> str:
    """``clean_44k`` for a clean model at another rate than the grid's, else the attack's name."""
    return f"{CLEAN}_{rate // 1000}k" if attack_name == CLEAN and rate != grid_rate else attack_name


def _train_cell(
    args: argparse.Namespace,
    data: AudioSet,
    work: Path,
    model_name: str,
    attack_name: str,
    name: str,
    attack_args: dict[str, list[str]],
) -> tuple[Path, dict[str, Any] | None]:
    """Train (or adopt) the model of cell ``name``; ``args`` and ``data`` are at the cell's rate.
    With ``--no-train`` a cell that has no model to adopt gets no report (None): not run."""
    path, report_path = work / f"train_{model_name}_{name}.safetensors", work / f"train_{model_name}_{name}.json"
    if path.is_file() and report_path.is_file():
        _check_trained(path, args, model_name, attack_name, attack_args)
        log.info("reusing %s", path)
        return path, json.loads(report_path.read_text())
    if args.reuse:
        candidate = Path(args.reuse.format(model=model_name, attack=name))
        if candidate.is_file():
            return path, _reuse_cell(data, candidate, path, report_path, model_name, attack_name, args.device)
    if args.no_train:
        log.info("not run: no model for %s/%s (--no-train)", model_name, name)
        return path, None
    attack = _cell_attack(args, attack_name, attack_args)
    config = train_config(args, model_name)
    log.info("training %s (%s)", model_name, attack_name)
    result = train_model(
        data, config, attack, front_end=front_end_from_args(args), show_progress=False if args.quiet else None
    )
    save_checkpoint(path, result.model, result.metadata)
    report = {k: result.report[k] for k in (*METRICS, "seconds", "epochs_run", "best_epoch") if k in result.report}
    report["ran_on"] = ran_on(machine_info(resolve_device(args.device)))
    write_json(report_path, report)
    return path, report


def _cell_attack(args: argparse.Namespace, attack_name: str, attack_args: dict[str, list[str]]) -> Attack | None:
    """The attack a cell's model is trained with (``--attack-arg``, its seed the grid's), None for a clean one."""
    if attack_name == CLEAN:
        return None
    params = parse_attack_args(attack_args.get(attack_name, []))
    params.setdefault("seed", str(args.seed))
    return get_attack(attack_name, sample_rate=args.sample_rate, **params)


#: Training settings that say where and how fast a model was trained, not which model: not compared on resuming.
_TRAIN_RUN_FIELDS = frozenset({"device", "amp", "compile", "memory_format"})


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples as lists): a recorded setting and a live one compare equal."""
    return json.loads(json.dumps(value, default=str))


def _check_trained(
    path: Path, args: argparse.Namespace, model_name: str, attack_name: str, attack_args: dict[str, list[str]]
) -> None:
    """Refuse a model the grid trained in its work folder with another recipe than this run asks for: the
    attack or any of its parameters (target, poison rate, trigger, seed), a training setting (where and how
    fast aside: :data:`_TRAIN_RUN_FIELDS`), the sample rate or the front end. Without this a changed
    ``--attack-arg`` or ``--seed`` would silently reuse the old model, and the grid's command would not say
    how its model was made. A model adopted by ``--reuse`` or put in with a ``reused_from`` note is the
    user's choice and is not checked; a setting the checkpoint does not record is not checked."""
    report = json.loads(path.with_suffix(".json").read_text())
    if isinstance(report, dict) and "reused_from" in report:
        return
    meta = read_metadata(path)
    provenance = meta.get("provenance") or {}
    differ: list[str] = []
    recorded, wanted = provenance.get("attack"), _cell_attack(args, attack_name, attack_args)
    then_name, now_name = (recorded or {}).get("name", CLEAN), wanted.name if wanted else CLEAN
    if then_name != now_name:
        differ.append(f"attack {then_name!r} there, {now_name!r} now")
    elif wanted is not None and recorded is not None:
        then, now = _plain(recorded.get("params") or {}), _plain(wanted.to_dict()["params"])
        differ += [
            f"{attack_name}.{k} {then[k]!r} there, {v!r} now" for k, v in now.items() if k in then and then[k] != v
        ]
    training = _plain(provenance.get("training") or {})
    now_training = _plain(dataclasses.asdict(train_config(args, model_name)))
    differ += [
        f"{k} {training[k]!r} there, {v!r} now"
        for k, v in now_training.items()
        if k not in _TRAIN_RUN_FIELDS and k in training and training[k] != v
    ]
    if meta.get("sample_rate") != args.sample_rate:
        differ.append(f"sample rate {meta.get('sample_rate')!r} there, {args.sample_rate!r} now")
    front_then, front_now = meta.get("front_end") or {}, _plain(dataclasses.asdict(front_end_from_args(args)))
    differ += [
        f"front end {k} {front_then[k]!r} there, {v!r} now"
        for k, v in front_now.items()
        if v is not None and k in front_then and front_then[k] != v
    ]
    if differ:
        raise ConfigError(
            f"{path} was trained with other settings than this run's ({'; '.join(differ)}); delete it and its "
            ".json to train the cell again, or use another --work"
        )


def train_config(args: argparse.Namespace, model_name: str, config: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """The training settings of a cell: every ``--train-*`` option (and ``--augment``) of ``config``."""
    return config(
        model=model_name, seed=args.seed, device=args.device, **from_namespace(args, config, prefix=TRAIN_PREFIX)
    )


def _file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: which checkpoint an evaluation cell measured."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _eval_cell(
    args: argparse.Namespace, data: AudioSet, work: Path, model_name: str, name: str, path: Path
) -> dict[str, Any]:
    """The figures of cell ``name``'s trained model on ``--eval-split`` (not test): read from
    ``eval_<model>_<name>_<split>.json``, or measured and written there when that file is missing or
    measured another checkpoint. The attack is rebuilt from the checkpoint's record, as the defense
    cells rebuild it, so this is their "before"."""
    split = args.eval_split
    cell = work / f"eval_{model_name}_{name}_{split}.json"
    digest = _file_digest(path)
    if cell.is_file():
        saved = json.loads(cell.read_text())
        if saved.get("eval_split") == split and saved.get("model_sha256") == digest:
            return saved
        log.info("%s measured another checkpoint than %s: measuring again", cell, path)
    model, meta = load_checkpoint(path)
    metrics = _measure(model, meta, data, split, args.device)
    saved = {
        "model": str(path),
        "model_sha256": digest,
        "eval_split": split,
        **{k: metrics[k] for k in METRICS if k in metrics},
    }
    write_json(cell, saved)
    log.info("measured %s on the %s split", path, split)
    return saved


def _recorded_attack(meta: dict[str, Any]) -> Attack | None:
    """The attack a checkpoint records (rebuilt at its sample rate), or None for a clean model."""
    recorded = meta["provenance"].get("attack")
    return attack_from_dict(recorded, sample_rate=meta["sample_rate"]) if recorded else None


def _measure(
    model: torch.nn.Module, meta: dict[str, Any], data: AudioSet, split: str, device_name: str
) -> dict[str, Any]:
    """CA / ASR / RA of a checkpoint's model on ``split`` of ``data`` (on the grid's device), with its own attack."""
    return evaluate(model.to(resolve_device(device_name)), data, split, _recorded_attack(meta))


def _releasing(cell: Any) -> Any:
    """A cell function that gives its free memory back when it ends (:func:`release_free_memory`): each
    cell's buffers differ (a 44.1 kHz scan, then 16 kHz repairs), in this process or a worker."""

    @functools.wraps(cell)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return cell(*args, **kwargs)
        finally:
            release_free_memory()

    return run


@_releasing
def _model_cell(
    args: argparse.Namespace,
    data: AudioSet,
    work: Path,
    model_name: str,
    attack_name: str,
    name: str,
    attack_args: dict[str, list[str]],
) -> tuple[Path, dict[str, Any] | None]:
    """Train (or adopt) cell ``name``'s model and report its figures on ``--eval-split``: the training
    report as it is for the test split, else that report with the figures of its evaluation cell
    (:func:`_eval_cell`); None when not run (``--no-train``)."""
    path, report = _train_cell(args, data, work, model_name, attack_name, name, attack_args)
    if report is None or args.eval_split == "test":
        return path, report
    figures = _eval_cell(args, data, work, model_name, name, path)
    return path, {**report, **{k: figures.get(k) for k in METRICS}}


def _reuse_cell(
    data: AudioSet, source: Path, path: Path, report_path: Path, model_name: str, attack_name: str, device_name: str
) -> dict[str, Any]:
    """Adopt ``source`` as this cell's trained model after checking it is that cell; measure it here."""
    model, meta = load_checkpoint(source)
    recorded = meta["provenance"].get("attack")
    found = {
        "architecture": meta["architecture"],
        "classes": list(meta["classes"]),
        "sample rate": meta["sample_rate"],
        "clip length": meta["front_end"]["num_samples"],
        "attack": recorded["name"] if recorded else CLEAN,
    }
    wanted = {
        "architecture": model_name,
        "classes": list(data.classes),
        "sample rate": data.sample_rate,
        "clip length": data.num_samples,
        "attack": attack_name,
    }
    wrong = [f"{k} {found[k]!r} (the cell needs {wanted[k]!r})" for k in wanted if found[k] != wanted[k]]
    if wrong:
        raise ConfigError(f"--reuse {source} does not fit cell {model_name}/{attack_name}: " + "; ".join(wrong))
    metrics = _measure(model, meta, data, "test", device_name)
    training = meta["provenance"].get("training") or {}
    report = {
        **{k: metrics[k] for k in METRICS if k in metrics},
        "seconds": training.get("seconds"),
        "epochs_run": training.get("epochs_run"),
        "best_epoch": training.get("best_epoch"),
        "reused_from": str(source),
    }
    shutil.copyfile(source, path)
    write_json(report_path, report)
    log.info("reused %s as %s", source, path)
    return report


@_releasing
def _defend_cell(
    args: argparse.Namespace,
    data: AudioSet,
    work: Path,
    model_path: Path,
    model_name: str,
    attack_name: str,
    column: Column,
    seed: int | None = None,
) -> dict[str, Any] | None:
    """Run (or read back) one defense cell; ``seed`` (default ``--seed``) seeds the defense. A cell
    file made with other settings than ``column`` declares now is refused, not reused; with
    ``--no-defend`` a cell not yet in ``work`` is not run (None)."""
    seed = args.seed if seed is None else seed
    cell = _cell_path(work, model_name, attack_name, column.name, seed, args.seed)
    config = column.config(seed, args.device)
    if cell.is_file():
        row = _read_cell(cell, column.defense)
        _check_cell(cell, row, column, config, args.eval_split, *_scan_of(_column_scan(args, config, seed)))
        return row
    if getattr(args, "no_defend", False):
        log.info("not run: %s on %s (%s), seed %d (--no-defend)", column.name, model_name, attack_name, seed)
        return None
    model, meta = load_checkpoint(model_path)
    device = resolve_device(args.device)
    model = model.to(device)
    attack = _recorded_attack(meta)
    trigger, record, settings = None, None, None
    if config.unlearns():  # one scan per model and seed, shared by every column that unlearns
        settings = _column_scan(args, config, seed)
        found = _scan_cell(work, model, _file_digest(model_path), data, model_name, attack_name, settings)
        trigger, record = unlearn_choice(found, top=config.unlearn_top)
    log.info("%s on %s (%s), seed %d", column.name, model_name, attack_name, seed)
    result = repair(
        model,
        data,
        DEFENSES[column.defense](config),
        attack=attack,
        attack_source="checkpoint metadata" if attack is not None else "none",
        base_preset=column.preset,
        observer=ProgressObserver(log, label=f"{column.name} {model_name}"),
        split=args.eval_split,
        trigger=trigger,
        trigger_record=record,
        scan_config=settings,  # a trigger searched again mid-run (unlearn_refresh) is searched as the scan was
    )
    save_checkpoint(cell.with_suffix(".safetensors"), result.model, record_repair(meta, result))  # for core.analyze
    row = result.report(model=str(model_path), checkpoint=str(cell.with_suffix(".safetensors")))
    write_json(cell, row)
    return row


def _scan_cell(
    work: Path,
    model: nn.Module,
    digest: str,
    data: AudioSet,
    model_name: str,
    attack_name: str,
    config: ScanConfig,
) -> ScanResult:
    """The scan (``config``: the ``--scan-*`` settings and the defense seed) of a cell's model that its
    unlearning columns share: read from ``scan_<model>_<attack>_seed<S>.json`` (``..._clean<share>_seed<S>``
    at another clean share than the scan's default, so that columns of two shares keep a scan each; +
    ``.safetensors``, the waveform triggers) in ``work`` when made of this checkpoint (``digest``, its SHA-256)
    with these settings (:meth:`ScanConfig.searched`: how it ran aside), else made and written there. It reads
    the model and the clean clips only, as ``python -m core.scan`` does."""
    share = "" if config.clean_ratio == ScanConfig().clean_ratio else f"_clean{config.clean_ratio:g}"
    path = work / f"scan_{model_name}_{attack_name}{share}_seed{config.seed}.json"
    wanted = _searched_alike(dataclasses.asdict(config))
    reference = read_reference(
        config.reference,
        list(data.classes),
        dataclasses.asdict(config),
        front_end=models.front_end_settings(model),
        option=_REFERENCE,
    )
    if path.is_file() and path.with_suffix(".safetensors").is_file():
        kept = json.loads(path.read_text())
        same = kept.pop("model_sha256", None) == digest
        if same and _searched_alike(kept["config"]) == wanted:  # its searches, read by this run's rule
            kept["config"] = {**kept["config"], "threshold": config.threshold, "standout": config.standout}
            triggers = load_file(path.with_suffix(".safetensors"))["triggers"]
            return ScanResult.from_report(kept, triggers).read_against(reference, config.reference)
    log.info("scan of %s (%s), seed %d, for the trigger to unlearn", model_name, attack_name, config.seed)
    found = scan(model, data, config, reference=reference)
    if found.triggers is None:
        raise ConfigError("the scan searched no audio domain (waveform, mix): no trigger to unlearn")
    save_file({"triggers": found.triggers.detach().cpu().contiguous()}, str(path.with_suffix(".safetensors")))
    write_json(path, {**found.to_dict(), "model_sha256": digest})
    return found


#: The grid's name for the scan's clean reference (``ScanConfig.reference``).
_REFERENCE = f"--{SCAN_PREFIX}reference"


def _column_scan(args: argparse.Namespace, config: DefenseConfig, seed: int) -> ScanConfig:
    """The scan a column's cells unlearn from: the ``--scan-*`` settings with the defense seed, at the column's
    clean share unless ``--scan-clean-ratio`` gives one (no larger than any unlearning column's: refused before
    any work), so that at 5 % clean the scan too reads only the column's clips."""
    return dataclasses.replace(scan_config_from_args(args, prefix=SCAN_PREFIX, share=config.clean_ratio), seed=seed)


def _scan_of(config: ScanConfig) -> tuple[str, str, float]:
    """(domains, clean reference, clean share) of the scan a cell's unlearning rests on, as :func:`_check_cell`
    checks them."""
    return config.domains, config.reference, config.clean_ratio


def _searched_alike(config: dict[str, Any]) -> dict[str, Any]:
    """What a kept scan must share with the one wanted to be reused: its searches (:meth:`ScanConfig.searched`);
    the clean reference it was read against and the verdict's rule aside (reading it again is cheap)."""
    return {k: v for k, v in ScanConfig.searched(config).items() if k not in ("reference", "threshold", "standout")}


def _read_cell(path: Path, defense_name: str) -> dict[str, Any]:
    """A defense cell written earlier; one from before the repair pipeline (``defense_config``,
    ``details``) is read as the pipeline's report."""
    row = json.loads(path.read_text())
    if "defense_config" in row:
        row["defense"] = {"name": defense_name, **row.pop("defense_config")}
        row["defense_details"] = row.pop("details", {})
    return row


def _row(
    model_name: str, attack_name: str, defense: str, rate: int, metrics: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "model": model_name,
        "attack": attack_name,
        "defense": defense,
        "sample_rate": rate,
        **{k: metrics.get(k) for k in METRICS},
        **extra,
    }


def _with_earlier_rows(
    rows: list[dict[str, Any]],
    path: Path,
    defense_settings: dict[str, Any],
    data_summary: dict[str, Any],
    defense_of: dict[str, str] | None = None,
    eval_split: str = "test",
    scan_domains: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``rows`` plus the rows of the earlier results file ``path`` for the (model, attack, rate) cells that
    ``rows`` has no model for, each with the ``command`` that made it (a row without one was made by
    the file's own command), and the defense settings of both; refused when that file's settings
    for a defense of this run, or its data, differ from this run's (a setting added to a defense
    since that file was written counts as its default there: the default of the column's defense,
    ``defense_of[column]``, a plain column being its own defense), or when it was measured on another
    split than ``eval_split`` (a file without ``eval_split`` was measured on the test split), or, given the
    run's ``scan_domains`` (it has unlearning columns), when that file's scans searched other domains
    (:func:`scan_domains_of`)."""
    if not path.is_file():
        return rows, defense_settings
    earlier = json.loads(path.read_text())
    then = earlier.get("eval_split", "test")
    if then != eval_split:
        raise ConfigError(
            f"--keep-earlier: {path} was measured on the {then} split and this run on the {eval_split} "
            "split (--eval-split); write to another --out"
        )
    if scan_domains is not None and scan_domains_of(earlier) != scan_domains:
        raise ConfigError(
            f"--keep-earlier: {path} unlearned the triggers of scans of {scan_domains_of(earlier)} and this run "
            f"scans {scan_domains} (--scan-domains); write to another --out"
        )
    settings = earlier.get("defense_settings", {})

    def same(name: str) -> bool:  # a setting the earlier file lacks did not exist then: it had the default
        defense = (defense_of or {}).get(name, name)
        defaults = dataclasses.asdict(DEFENSES[defense].Config()) if defense in DEFENSES else {}
        then, now = settings[name], defense_settings[name]
        return all(then.get(k, defaults.get(k)) == now.get(k, defaults.get(k)) for k in {*then, *now})

    differ = [d for d in defense_settings if d in settings and not same(d)]
    if differ:
        raise ConfigError(
            f"--keep-earlier: {path} was made with other {', '.join(differ)} settings "
            f"({'; '.join(f'{d}: {settings[d]}' for d in differ)}); write to another --out"
        )

    def placeless(summary: dict[str, Any]) -> dict[str, Any]:  # the same data may sit in another folder
        return {**summary, "source": {k: v for k, v in summary.get("source", {}).items() if k != "root"}}

    if placeless(earlier.get("data", {})) != placeless(data_summary):
        raise ConfigError(
            f"--keep-earlier: {path} was made on other data ({earlier.get('data')}); write to another --out"
        )

    def cell(r: dict[str, Any]) -> tuple:  # a clean model exists once per rate
        return r["model"], r["attack"], r.get("sample_rate")

    produced = {cell(r) for r in rows if not r.get("not_run")}
    kept = [
        {**r, "command": r.get("command", earlier["command"])}
        for r in earlier["rows"]
        if cell(r) not in produced and not r.get("not_run")
    ]
    kept_cells = {cell(r) for r in kept}
    return kept + [r for r in rows if cell(r) not in kept_cells], {**settings, **defense_settings}


def _seed_summary(cells: dict[int, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(mean metrics, extra row fields) of one defense cell run under several seeds."""
    seeds = sorted(cells)
    means: dict[str, Any] = {}
    extra: dict[str, Any] = {"seeds": seeds, "per_seed": [{"seed": s, **cells[s]["after"]} for s in seeds]}
    for k in METRICS:
        vals = [cells[s]["after"][k] for s in seeds if cells[s]["after"].get(k) is not None]
        means[k] = sum(vals) / len(vals) if vals else None
        if len(vals) > 1:
            extra[f"{k}_std"] = float(torch.tensor(vals, dtype=torch.float64).std())
    ders = [cells[s].get("defense_effectiveness_rating") for s in seeds]
    extra["defense_effectiveness_rating"] = None if None in ders else sum(ders) / len(ders)
    extra["seconds"] = sum(cells[s]["seconds"] for s in seeds)
    return means, extra


def variant_legend(name: str, variant: dict[str, Any]) -> str:
    """One variant column in words: ``gnft_r02``: gnft with r=0.2; ``gnft@paper``: gnft, preset paper."""
    text = f"`{name}`: {variant['defense']}"
    if variant.get("preset"):
        text += f", preset {variant['preset']}"
    settings = variant.get("settings") or {}
    if settings:
        text += ("," if variant.get("preset") else "") + " with " + ", ".join(f"{k}={v}" for k, v in settings.items())
    return text


def machines_note(rows: list[dict[str, Any]]) -> str:
    """The caption's sentence naming the machines the defense cells ran on, with each one's count of cells
    (empty when the rows do not record it); a grid resumed on another machine has figures from both."""
    counts: dict[str, int] = {}
    for r in rows:
        if r["defense"] != NO_DEFENSE:
            for where in r.get("ran_on", ()):
                counts[where] = counts.get(where, 0) + 1
    if not counts:
        return ""
    return " Defense cells ran on: " + ", ".join(f"{w} ({n})" for w, n in sorted(counts.items())) + "."


def markdown_table(
    rows: list[dict[str, Any]],
    defenses: Sequence[str],
    title: str,
    variants: dict[str, dict[str, Any]] | None = None,
    split: str = "test",
) -> str:
    """CA / ASR per defense column for each model and attack (percent) on ``split``, then mean ASR and
    mean CA per column; ``variants`` (column: defense, preset, settings) are named under the title."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    def metric(r: dict[str, Any], key: str) -> str:
        sd = r.get(f"{key}_std")
        return pct(r[key]) if sd is None else f"{pct(r[key])} ± {pct(sd)}"

    cells = {(r["model"], r["attack"], r["defense"]): r for r in rows if r["attack"] != CLEAN}
    clean_models = {(r["model"], r.get("sample_rate")): r for r in rows if r["attack"] == CLEAN}
    several_rates = len({r.get("sample_rate") for r in rows}) > 1
    seed_lists = sorted({tuple(r["seeds"]) for r in rows if len(r.get("seeds", ())) > 1})
    seeds_note = (
        (
            " Defense cells: mean ± standard deviation over defense seeds "
            + "; ".join(", ".join(map(str, s)) for s in seed_lists)
            + "."
        )
        if seed_lists
        else ""
    )
    lines = [
        f"# {title}",
        "",
        f"CA / ASR in % on the {split} split (ASR over triggered clips whose true class is not "
        "the target). `none` is the backdoored model before any defense." + seeds_note + machines_note(rows),
        "",
    ]
    legend = [variant_legend(d, (variants or {})[d]) for d in defenses if d in (variants or {})]
    if legend:
        lines += [
            "Variants (a defense's defaults, then its preset, then its own settings): " + "; ".join(legend) + ".",
            "",
        ]
    lines += [
        "| model | attack | clean model CA | " + " | ".join(defenses) + " |",
        "|---|---|---|" + "---|" * len(defenses),
    ]
    pairs = sorted({(r["model"], r["attack"]) for r in rows if r["attack"] != CLEAN})
    for model_name, attack_name in pairs:
        rate = (
            cells[(model_name, attack_name, NO_DEFENSE)].get("sample_rate")
            if (model_name, attack_name, NO_DEFENSE) in cells
            else None
        )
        clean = clean_models.get((model_name, rate))
        label = f"{attack_name} ({rate / 1000:g} kHz)" if several_rates and rate else attack_name
        out = [model_name, label, pct(clean["clean_accuracy"]) if clean else "-"]
        for d in defenses:
            r = cells.get((model_name, attack_name, d))
            only = r.get("seeds", ()) if r is not None else ()
            out.append(
                "-"
                if r is None
                else "failed"
                if r.get("failed")
                else "not run"
                if r.get("not_run")
                else f"{metric(r, 'clean_accuracy')} / {metric(r, 'attack_success_rate')}"
                + (f" (seed {only[0]} only)" if len(only) == 1 else "")
            )
        lines.append("| " + " | ".join(out) + " |")
    lines += ["", "| mean over model × attack | " + " | ".join(defenses) + " |", "|---|" + "---|" * len(defenses)]
    for key, label in (("attack_success_rate", "ASR"), ("clean_accuracy", "CA")):
        means = []
        for d in defenses:
            vals = [cells[(m, a, d)][key] for m, a in pairs if (m, a, d) in cells and cells[(m, a, d)][key] is not None]
            means.append(pct(sum(vals) / len(vals)) if vals else "-")
        lines.append(f"| {label} | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"


_DATA: dict[tuple, AudioSet] = {}


def _load_data(args: argparse.Namespace, keep_others: bool = True) -> AudioSet:
    """The grid's dataset at ``args.sample_rate``, loaded once per process (a Ray worker keeps it for its next cells).

    With ``keep_others=False`` a copy at another rate is dropped first, so that a local run that
    moves from its 16 kHz cells to its 44.1 kHz ones holds one copy of the data, not both."""
    key = tuple(sorted((k, str(v)) for k, v in vars(args).items()))
    if key not in _DATA:
        if not keep_others:
            _DATA.clear()
        _DATA[key] = load_from_args(args, args.sample_rate).to(resolve_device(args.device))
    return _DATA[key]


def _cell_task(args: argparse.Namespace, work: str, kind: str, *cell: Any) -> Any:
    """One cell in a worker (a Ray task or a ``--jobs`` process): the same functions as the in-process
    loop, on this worker's copy of the data, with ``--threads`` torch threads."""
    set_threads(args.threads)
    data = _load_data(args)
    check_eval_split(data, args.eval_split)  # on Ray the driver has not seen the data
    if kind == "summary":
        return data.summary()
    if kind == "train":
        model_name, attack_name, name, attack_args = cell
        path, report = _model_cell(args, data, Path(work), model_name, attack_name, name, attack_args)
        return str(path), report
    trained, model_name, attack_name, column, seed = cell
    if trained[1] is None:  # --no-train and no model: nothing to defend
        return None
    return _defend_cell(args, data, Path(work), Path(trained[0]), model_name, attack_name, column, seed)


def _run_on_ray(
    args: argparse.Namespace,
    work: Path,
    trains: list[tuple[str, str, int]],
    runs: list[Column],
    attack_args: dict[str, list[str]],
    seeds: list[int],
):
    """Every cell a Ray task; a defense task takes its training task's result, so Ray runs it after."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'gnft-workbench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=args.address,
            include_dashboard=False,
            log_to_driver=not args.quiet,
            runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}},
        )
    try:
        task = ray.remote(num_cpus=args.threads)(_cell_task)
        work_dir = str(work.resolve())
        train_refs = {
            (m, a, r): task.remote(
                _args_at(args, r), work_dir, "train", m, a, _cell_name(a, r, args.sample_rate), attack_args
            )
            for m, a, r in trains
        }
        defend_refs = {
            (m, a, d.name, s): task.remote(_args_at(args, r), work_dir, "defend", train_refs[(m, a, r)], m, a, d, s)
            for m, a, r in trains
            if a != CLEAN
            for d in runs
            for s in seeds
        }
        summary_ref = task.remote(args, work_dir, "summary")  # the driver need not see the data folder
        trained = {
            key: (Path(path), report) for key, (path, report) in zip(train_refs, ray.get(list(train_refs.values())))
        }
        defended = dict(zip(defend_refs, ray.get(list(defend_refs.values()))))
        summary = ray.get(summary_ref)
    finally:
        if started_here:
            ray.shutdown()
    return trained, defended, summary


def _worker_start(quiet: bool) -> None:
    """A ``--jobs`` worker logs its cells' progress lines to stderr, as the in-process loop does, and leaves
    Ctrl-C to the grid's own process (which a terminal sends it too): that one stops the workers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")


def _run_in_processes(
    args: argparse.Namespace,
    work: Path,
    trains: list[tuple[str, str, int]],
    runs: list[Column],
    attack_args: dict[str, list[str]],
    seeds: list[int],
    failed: dict[tuple, str],
):
    """Every cell in one of ``--jobs`` worker processes: a model's defense cells start as soon as it is
    trained. The same cell functions and files as the other backends, so the numbers are the same.
    A cell that fails is kept in ``failed`` (see :func:`_guarded`) and the others go on."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    work_dir = str(work.resolve())
    trained: dict[tuple[str, str, int], tuple[Path, dict[str, Any] | None]] = {}
    defended: dict[tuple[str, str, str, int], Any] = {}
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    pool = ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_worker_start, initargs=(args.quiet,))
    try:
        pending = {
            pool.submit(
                _cell_task, _args_at(args, r), work_dir, "train", m, a, _cell_name(a, r, args.sample_rate), attack_args
            ): ("train", (m, a, r))
            for m, a, r in trains
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                kind, key = pending.pop(future)
                if kind == "defend":
                    defended[key] = _guarded(failed, ("defend", *key), future.result)
                    continue
                result = _guarded(failed, ("train", *key), future.result)
                if result is None:
                    trained[key] = (None, None)
                    continue
                path, report = result
                trained[key] = (Path(path), report)
                m, a, r = key
                for d in runs if a != CLEAN and report is not None else []:
                    for s in seeds:
                        cell = (_args_at(args, r), work_dir, "defend", (path, report), m, a, d, s)
                        pending[pool.submit(_cell_task, *cell)] = ("defend", (m, a, d.name, s))
    except BaseException:  # Ctrl-C, a fatal error: the cells in flight are dropped, not waited for
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in multiprocessing.active_children():
            worker.terminate()
        pool.shutdown()  # quick now: the pool's own thread sees its workers gone and releases their queues
        raise
    pool.shutdown()
    return trained, defended


def build_parser(train_config: type[TrainConfig] = TrainConfig) -> argparse.ArgumentParser:
    """``python -m core.grid``'s options; the training ones are ``train_config``'s fields as ``--train-*``."""
    p = argparse.ArgumentParser(
        prog="python -m core.grid",
        description="Train models × attacks, run every defense on each backdoored model, tabulate CA / ASR. "
        "Resumable: finished cells are files in --work.",
        epilog="Example: python -m core.grid --data runs/synth_scd10 --vocab scd10 --models resnet,smallcnn "
        "--attacks badnets,blend --variant gnft_best=gnft@recommended:r=0.2 "
        "--defenses none,ft,fp,gnft@paper,gnft_best,gnft@recommended,ftsam,clp --out benchmarks/results/grid_synth",
    )
    add_data_arguments(p)
    add_front_end_arguments(p)
    p.add_argument(
        "--models", default="resnet", help=f"comma list (default resnet) of: {', '.join(models.list_models())}"
    )
    p.add_argument("--attacks", default="badnets", help=f"comma list (default badnets) of: {', '.join(list_attacks())}")
    p.add_argument(
        "--defenses",
        default=",".join([NO_DEFENSE, *sorted(DEFENSES)]),
        help=f"comma list of columns (default {NO_DEFENSE} and every defense): {NO_DEFENSE}, a defense "
        f"({', '.join(sorted(DEFENSES))}), DEFENSE@PRESET (a core.defend --preset: "
        + ", ".join(f"{n} ({p.defense})" for n, p in PRESETS.items())
        + "; e.g. gnft@paper), or a --variant NAME; each column is its own cells and column of the table",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar=VARIANT_SYNTAX,
        help="declare a defense column NAME for --defenses, e.g. gnft_r02=gnft:r=0.2,clean_ratio=0.1 or "
        "best=gnft@recommended:r=0.2: the defense's defaults, then the preset's values, then KEY=VALUE "
        "(repeatable). --defense-arg does not apply to variants",
    )
    add_scan_arguments(
        p.add_argument_group(
            "scan settings (the scan of each model whose trigger unlearning columns unlearn; seed: the defense's)"
        ),
        prefix=SCAN_PREFIX,
        share_default="each column's clean_ratio; no larger than any unlearning column's",
    )
    p.add_argument(
        "--attack-arg",
        action="append",
        default=[],
        metavar="ATTACK.KEY=VALUE",
        help="attack parameter, e.g. badnets.poison_rate=0.1 (repeatable)",
    )
    p.add_argument(
        "--defense-arg",
        action="append",
        default=[],
        metavar="DEFENSE.KEY=VALUE",
        help="defense hyperparameter of a plain defense column, e.g. gnft.epochs=100 (repeatable; defaults are "
        "the paper's); not applied to DEFENSE@PRESET or --variant columns",
    )
    p.add_argument(
        "--eval-split",
        choices=EVAL_SPLITS,
        default="test",
        help="split every figure of the grid is measured on: the trained models' own (the none column) "
        "and every defense cell's (default test). Choose settings with a validation grid (its own --work "
        "and --out, the test grid's models adopted with --reuse), report them with a test grid",
    )
    p.add_argument("--no-clean", action="store_true", help="do not train the clean model of each architecture")
    p.add_argument(
        "--reuse",
        metavar="PATTERN",
        help="use already trained models where they exist, e.g. 'runs/attacks/fsdd_{model}_{attack}"
        ".safetensors' ({attack} is 'clean' for the clean model, 'clean_44k' for one at 44.1 kHz); "
        "each is checked against its cell "
        "and re-evaluated here on the test split and on --eval-split",
    )
    p.add_argument(
        "--no-defend",
        action="store_true",
        help="never run a defense: tabulate the defense cells already in --work (a missing cell, or seed, is "
        "left out of the table), e.g. to publish a grid that is still running or resumes next session",
    )
    p.add_argument(
        "--no-train",
        action="store_true",
        help="never train: a cell whose model is neither in --work nor found by --reuse is reported as "
        "not run (to tabulate models trained elsewhere, e.g. on a GPU machine)",
    )
    add_arguments(
        p.add_argument_group("training (every model of the grid; see python -m core.train --help)"),
        train_config,
        prefix=TRAIN_PREFIX,
        aliases={"augment": ("--augment",)},
    )
    output_path(p, "--work", kind="folder", help="folder of the grid's cells (default: <out>_work)")
    output_path(
        p,
        "--out",
        required=True,
        kind="prefix",
        also=lambda out: {"--out's JSON (<out>.json)": out + ".json", "--out's table (<out>.md)": out + ".md"},
        help="results prefix: writes <out>.json and <out>.md",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local (default): the cells in this process, or in --jobs worker processes; ray: each cell a task "
        "on a Ray cluster (pip install 'gnft-workbench[ray]'), defenses after their model's "
        "training; the data folder and --work must be reachable at the same paths on every node",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. auto, or ray://host:10001); default: start a local Ray instance",
    )
    p.add_argument(
        "--defense-seeds",
        metavar="S,S,...",
        help="run each defense cell once per seed and report mean ± standard deviation (default: --seed alone)",
    )
    p.add_argument(
        "--jobs",
        type=number(int, "[1, 1024]"),
        default=1,
        help="local backend: cells run side by side in this many worker processes, each with --threads "
        "torch threads (default 1: one cell at a time in this process). On a 2-core machine --jobs 2 "
        "--threads 1 does more cells per hour than one two-thread cell (benchmarks/threads.py)",
    )
    p.add_argument(
        "--keep-earlier",
        action="store_true",
        help="keep the rows of an earlier <out>.json for the model/attack pairs this run has no model "
        "for (its work folder is gone, or they are not in --attacks), each with the command that "
        "made it; refused when that file used other defense settings, data or --eval-split",
    )
    add_common_arguments(p)
    return p


def _parse_seeds(text: str | None, default: int) -> list[int]:
    """``--defense-seeds`` as a list of distinct integers (``[default]`` when not given)."""
    if text is None:
        return [default]
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--defense-seeds takes a comma list of integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--defense-seeds needs at least one seed and no repeats, got {text!r}")
    if any(s not in SEED_RANGE for s in seeds):
        raise ConfigError(f"--defense-seeds must each be {SEED_TEXT}, got {text!r}")
    return seeds


def _check_reuse(pattern: str | None) -> None:
    """``--reuse`` must name its fields ``{model}`` and ``{attack}`` only (checked before any work)."""
    if pattern is None:
        return
    try:
        pattern.format(model="m", attack="a")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"--reuse takes a pattern with {{model}} and {{attack}} (other braces doubled), got {pattern!r} ({exc})"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(build_parser(), argv)
    model_names = [m for m in args.models.split(",") if m]
    attacks = [a for a in args.attacks.split(",") if a]
    defenses = [d for d in args.defenses.split(",") if d]
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    seeds = _parse_seeds(args.defense_seeds, args.seed)
    _check_reuse(args.reuse)
    for m in model_names:  # unknown names and bad training settings fail here, before any work
        models.resolve_arch_args(m, train_config(args, m).arch_args)
    unknown = [a for a in attacks if a not in list_attacks()]
    if unknown:
        raise ConfigError(f"unknown attack or defense: {', '.join(unknown)}")
    runs = _columns(defenses, args.variant, args.defense_arg)
    configs = {c.name: c.config(args.seed, args.device) for c in runs}  # bad settings fail before hours of training
    scan_settings = scan_config_from_args(args, prefix=SCAN_PREFIX)  # and bad --scan-* settings
    if any(config.unlearns() for config in configs.values()):
        check_unlearn_scan(scan_settings, "--scan-domains")
    for name, config in configs.items():  # a given --scan-clean-ratio no larger than any unlearning column's
        if config.unlearns():
            share = _column_scan(args, config, args.seed).clean_ratio
            check_scan_share(share, config.clean_ratio, f"--{SCAN_PREFIX}clean-ratio", f"{name}'s clean_ratio")
    if comma_items(scan_settings.reference) and len(model_names) > 1:
        raise ConfigError(
            f"{_REFERENCE}: a clean reference is of one architecture; this grid has {len(model_names)} "
            f"({', '.join(model_names)}): run one --models at a time with a reference of its architecture"
        )
    attack_args = _scoped_pairs(args.attack_arg, "--attack-arg", attacks)
    # the rate of each attack's cells; wrong attack parameters fail here, before any work
    rates = {a: _attack_rate(a, parse_attack_args(attack_args.get(a, [])), args.sample_rate) for a in attacks}
    out = Path(args.out)
    work = Path(args.work) if args.work else out.with_name(out.name + "_work")
    for m in model_names:  # a finished cell made with other settings is refused before any work
        for a in attacks:
            for c in runs:
                for s in seeds:
                    cell = _cell_path(work, m, a, c.name, s, args.seed)
                    if cell.is_file():
                        row = _read_cell(cell, c.defense)
                        config = c.config(s, args.device)
                        _check_cell(cell, row, c, config, args.eval_split, *_scan_of(_column_scan(args, config, s)))
    clean_rates = [] if args.no_clean else sorted({args.sample_rate, *rates.values()})
    trains = [
        (m, a, r) for m in model_names for a, r in [(CLEAN, r) for r in clean_rates] + [(a, rates[a]) for a in attacks]
    ]
    for m, a, r in trains:  # and a trained model made with another recipe
        path = work / f"train_{m}_{_cell_name(a, r, args.sample_rate)}.safetensors"
        if path.is_file() and path.with_suffix(".json").is_file():
            _check_trained(path, _args_at(args, r), m, a, attack_args)
    if args.backend == "local":  # a dataset without the split is refused before any work (Ray: in its tasks)
        checked = _load_data(args, keep_others=False)
        check_eval_split(checked, args.eval_split)
        classes, settings = list(checked.classes), dataclasses.asdict(scan_settings)
        read_reference(scan_settings.reference, classes, settings, architecture=model_names[0], option=_REFERENCE)
        if args.jobs > 1:
            _DATA.clear()  # the workers load their own copies
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    failed: dict[tuple, str] = {}  # cells that raised (the local backends go on without them)
    if args.backend == "ray":
        trained, defended, data_summary = _run_on_ray(args, work, trains, runs, attack_args, seeds)
    elif args.jobs > 1:
        trained, defended = _run_in_processes(args, work, trains, runs, attack_args, seeds, failed)
        data_summary = _load_data(args, keep_others=False).summary()
    else:
        trained, defended = {}, {}
        # cells grouped by rate, the grid's own rate last: one copy of the data in memory at a time,
        # and the last one is the one the summary below describes
        for m, a, r in sorted(trains, key=lambda t: t[2] == args.sample_rate):
            cell_args = _args_at(args, r)
            data = _load_data(cell_args, keep_others=False)
            trained[(m, a, r)] = _guarded(
                failed, ("train", m, a, r), _model_cell, cell_args, data, work, m, a,
                _cell_name(a, r, args.sample_rate), attack_args,
            ) or (None, None)  # fmt: skip
            for d in runs if a != CLEAN and trained[(m, a, r)][1] is not None else []:
                for seed in seeds:
                    defended[(m, a, d.name, seed)] = _guarded(
                        failed, ("defend", m, a, d.name, seed), _defend_cell,
                        cell_args, data, work, trained[(m, a, r)][0], m, a, d, seed,
                    )  # fmt: skip
        data_summary = _load_data(args, keep_others=False).summary()
    rows: list[dict[str, Any]] = []
    for model_name, attack_name, rate in trains:
        train_report = trained[(model_name, attack_name, rate)][1]
        error = failed.get(("train", model_name, attack_name, rate))
        if error is not None:
            extra: dict[str, Any] = {"failed": error}
        elif train_report is None:
            extra = {"not_run": True}
        else:
            keep = ("reused_from", "ran_on")
            extra = {"seconds": train_report.get("seconds"), **{k: train_report[k] for k in keep if k in train_report}}
        rows.append(_row(model_name, attack_name, NO_DEFENSE, rate, train_report or {}, **extra))
        if error is not None or train_report is None:
            continue
        for column in runs if attack_name != CLEAN else []:
            found = {s: defended[(model_name, attack_name, column.name, s)] for s in seeds}
            cells = {s: cell for s, cell in found.items() if cell is not None}  # --no-defend leaves some out
            errors = {
                s: failed[("defend", model_name, attack_name, column.name, s)]
                for s in seeds
                if ("defend", model_name, attack_name, column.name, s) in failed
            }
            if not cells:
                if errors:
                    rows.append(
                        _row(model_name, attack_name, column.name, rate, {}, failed=errors[min(errors)], seeds=seeds)
                    )
                continue
            first = cells[min(cells)]
            if len(cells) == 1:
                metrics, extra = (
                    first["after"],
                    {
                        "seconds": first["seconds"],
                        "defense_effectiveness_rating": first.get("defense_effectiveness_rating"),
                        **({"seeds": sorted(cells)} if len(seeds) > 1 else {}),
                    },
                )
            else:
                metrics, extra = _seed_summary(cells)
            rows.append(
                _row(
                    model_name,
                    attack_name,
                    column.name,
                    rate,
                    metrics,
                    **extra,
                    clean_clips=first["clean_clips"],
                    epochs=first["defense"]["epochs"],
                    defense_name=column.defense,
                    preset=preset_record(column.defense, configs[column.name], base=column.preset),
                    ran_on=[ran_on(cells[s].get("machine")) or "not recorded" for s in sorted(cells)],  # per seed
                    **({"failed_seeds": {str(s): e for s, e in errors.items()}} if errors else {}),
                )
            )
    command = " ".join(["python -m core.grid", *argv])
    defense_settings = {c.name: dataclasses.asdict(configs[c.name]) for c in runs}
    # the searches the unlearning columns' scans made (None: no column unlearns a scanned trigger)
    unlearns = any(configs[c.name].unlearns() for c in runs)
    scan_domains = scan_settings.domains if unlearns else None
    variants = {c.name: c.describe() for c in runs if not c.plain}
    if args.keep_earlier:
        earlier = out.with_name(out.name + ".json")
        rows, defense_settings = _with_earlier_rows(
            rows,
            earlier,
            defense_settings,
            data_summary,
            {c.name: c.defense for c in runs},
            args.eval_split,
            scan_domains,
        )
        if earlier.is_file():
            variants = {**json.loads(earlier.read_text()).get("variants", {}), **variants}
        defenses = list(dict.fromkeys([*defenses, *(r["defense"] for r in rows)]))
    write_json(
        out.with_name(out.name + ".json"),
        {
            "command": command,
            "machine": machine_info(resolve_device(args.device)),
            "data": data_summary,
            "seconds": round(time.perf_counter() - started, 2),
            "backend": args.backend,
            "jobs": args.jobs if args.backend == "local" else None,
            "threads_per_cell": args.threads,
            "eval_split": args.eval_split,
            "defense_seeds": seeds,
            "defense_settings": defense_settings,
            "scan_domains": scan_domains,
            # the clean reference the unlearning columns' scans were read against (their reports), if any
            "scan_reference": comma_items(scan_settings.reference) if scan_domains is not None else [],
            # the clean share each unlearning column's scans read (the column's own unless --scan-clean-ratio)
            "scan_clean_ratios": {
                c.name: _column_scan(args, configs[c.name], args.seed).clean_ratio
                for c in runs
                if configs[c.name].unlearns()
            },
            "variants": variants,
            "rows": rows,
        },
    )
    out.with_name(out.name + ".md").write_text(
        markdown_table(rows, defenses, f"Grid on {args.data}", variants, split=args.eval_split)
    )
    for r in rows:
        if r.get("failed"):
            print(f"{r['model']:>14} {r['attack']:>14} {r['defense']:>6}: failed ({r['failed']})")
        elif r.get("not_run"):
            print(f"{r['model']:>14} {r['attack']:>14}: not run (no model; --no-train)")
        elif r["attack"] != CLEAN:
            asr = r["attack_success_rate"]
            print(
                f"{r['model']:>14} {r['attack']:>14} {r['defense']:>6}: CA {r['clean_accuracy']:.4f}"
                + ("" if asr is None else f", ASR {asr:.4f}")
            )
    print(
        f"wrote {out.with_name(out.name + '.json')} and {out.with_name(out.name + '.md')} "
        f"(CA / ASR on the {args.eval_split} split)"
    )
    if failed:
        print(
            f"error: {len(failed)} cell(s) failed and are left out (the same command runs them again): "
            + "; ".join(f"{_cell_label(k)}: {e}" for k, e in failed.items()),
            file=sys.stderr,
        )
        return 1
    return 0
