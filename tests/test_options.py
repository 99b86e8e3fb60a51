"""One way to declare options (core.options): a field declared once is a command-line option, a
KEY=VALUE setting, a form row with its label and tooltip, and a checked range."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.attacks import AttackParams, list_attacks, parse_attack_args
from core.augment import AugmentConfig
from core.cli import defend, grid, train
from core.defenses import DEFENSES, GNFT, OPTION_HELP, OPTION_LABELS, PERCENT_OPTIONS, PRIMARY_OPTIONS, GNFTConfig
from core.defenses.base import DefenseConfig
from core.errors import AttackError, ConfigError
from core.options import (
    OptionError,
    Range,
    add_arguments,
    check_ranges,
    fields_of,
    format_value,
    from_namespace,
    option,
    parse_key_values,
)
from core.scan import ScanConfig
from core.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]

#: Every options dataclass of the engine.
OPTION_CLASSES = [
    TrainConfig,
    AugmentConfig,
    *(d.Config for d in DEFENSES.values()),
    *(a.Params for a in list_attacks().values()),
    ScanConfig,
]


@dataclass
class LongerTraining(TrainConfig):
    """A training config with one more setting, declared only here."""

    warmup: int = option(
        3,
        label="Warm-up, epochs",
        range="[0, inf)",
        help="epochs of warm-up before the schedule (a field declared by this test)",
    )


@dataclass
class WeightedGNFTConfig(GNFTConfig):
    """A GN-FT config with one more setting, declared only here."""

    beta: float = option(
        0.5, label="\u03b2, test weight", primary=True, range="[0, 1]", help="a weight declared by this test"
    )


class WeightedGNFT(GNFT):
    Config = WeightedGNFTConfig


def _help(parser: argparse.ArgumentParser) -> str:
    """The parser's help on one line (argparse wraps lines, also at hyphens)."""
    return re.sub(r"-\s+", "-", re.sub(r"\s+", " ", parser.format_help()))


def _spec(cls: type, name: str):
    return next(s for s in fields_of(cls) if s.name == name)


# ------------------------------------------------------------------ a new field reaches every surface
def test_a_new_training_field_is_an_option_of_core_train_and_core_grid():
    args = train.build_parser(LongerTraining).parse_args(
        ["--data", "d", "--out", "m.safetensors", "--warmup", "5", "--epochs", "7", "--compile"]
    )
    config = train.config_from_args(args, LongerTraining)
    assert (config.warmup, config.epochs, config.compile) == (5, 7, True)
    assert "(a field declared by this test) (default: 3)" in _help(train.build_parser(LongerTraining))

    args = grid.build_parser(LongerTraining).parse_args(["--data", "d", "--out", "g", "--train-warmup", "2"])
    assert grid.train_config(args, "smallcnn", LongerTraining).warmup == 2
    assert (
        grid.train_config(
            grid.build_parser(LongerTraining).parse_args(["--data", "d", "--out", "g"]), "smallcnn", LongerTraining
        ).warmup
        == 3
    )
    assert parse_key_values(LongerTraining, ["warmup=9"], "--x") == {"warmup": 9}
    assert _spec(LongerTraining, "warmup").label == "Warm-up, epochs"
    with pytest.raises(ConfigError, match=r"warmup must be >= 0, got -1"):
        LongerTraining(warmup=-1)


def test_a_new_defense_field_is_an_option_a_key_and_a_form_row():
    parser = defend.build_parser({"gnft": WeightedGNFT})
    args = parser.parse_args(["--model", "m.safetensors", "--data", "d", "--out", "o.safetensors", "--beta", "0.25"])
    assert args.beta == 0.25 and args.alpha is None  # unset options stay None: the preset's value is kept
    assert "a weight declared by this test (default: gnft 0.5)" in _help(parser)
    assert parse_key_values(WeightedGNFTConfig, ["beta=0.3"], "--defense-arg", scope="gnft") == {"beta": 0.3}
    spec = _spec(WeightedGNFTConfig, "beta")
    assert (spec.label, spec.primary, spec.percent, spec.hidden, spec.default) == (
        "\u03b2, test weight",
        True,
        False,
        False,
        0.5,
    )
    with pytest.raises(ConfigError, match=r"beta must be in \[0, 1\], got 2"):
        WeightedGNFTConfig(beta=2).validate()


def test_a_new_defense_field_is_a_row_of_the_application_form(qtbot):
    pytest.importorskip("PySide6")
    from gnft_gui.views.forms import DataclassForm

    form = DataclassForm("defense_")
    qtbot.addWidget(form)
    form.build(WeightedGNFTConfig)
    assert "beta" in form.fields and form.fields["beta"].objectName() == "defense_beta"
    assert form.fields["beta"].toolTip() == "a weight declared by this test"
    assert form.findChild(type(form.fields["beta"]), "defense_beta") is form.fields["beta"]
    assert {"seed", "device", "grad_norm_every"}.isdisjoint(form.fields)  # hidden by their metadata
    assert form.layout_.labelForField(form.fields["beta"]) is not None  # primary: not under "Advanced"
    assert form.advanced_layout.labelForField(form.fields["momentum"]) is not None
    assert form.fields["clean_ratio"].text() == "5"  # a share of 1, shown in percent
    form.fields["beta"].setText("0.125")
    typed = form.typed()
    assert typed["beta"] == 0.125 and typed["clean_ratio"] == 0.05
    assert WeightedGNFTConfig(**typed).beta == 0.125


@dataclass
class Searched:
    """A comma list of known words, as a test declares it."""

    where: str = option("north,west", help="where to look", among=("north", "south", "east", "west"))


def test_a_comma_list_of_known_words_is_checked_and_is_a_check_box_per_word(qtbot):
    check_ranges(Searched())
    for bad in ("north,up", "", " , "):
        with pytest.raises(ConfigError, match=r"where must be a comma list of north, south, east and west, got "):
            check_ranges(Searched(where=bad))
    pytest.importorskip("PySide6")
    from gnft_gui.views.forms import DataclassForm

    form = DataclassForm("t_")
    qtbot.addWidget(form)
    form.build(Searched)
    boxes = form.fields["where"].boxes
    assert [w for w, b in boxes.items() if b.isChecked()] == ["north", "west"]
    with qtbot.waitSignal(form.edited):
        boxes["south"].setChecked(True)
    assert form.typed() == {"where": "north,south,west"}  # the words' own order
    form.fields["where"].setText("east")
    assert [w for w, b in boxes.items() if b.isChecked()] == ["east"]
    for box in boxes.values():
        box.setChecked(False)
    with pytest.raises(ConfigError, match="where must be a comma list"):
        check_ranges(Searched(**form.typed()))


# ------------------------------------------------------------------ the old tables are read from the fields
def test_the_defense_tables_are_the_fields_metadata():
    for cls in (d.Config for d in DEFENSES.values()):
        for spec in fields_of(cls):
            assert spec.help and OPTION_HELP[spec.name] == spec.help, spec.name
            assert OPTION_LABELS[spec.name] == spec.label
            assert (spec.name in PERCENT_OPTIONS) == spec.percent
            assert (spec.name in PRIMARY_OPTIONS) == spec.primary
    assert {s.name for s in fields_of(DefenseConfig) if s.hidden} == {"seed", "device", "grad_norm_every"}


@pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda c: c.__name__)
def test_every_field_of_every_options_class_says_what_it_is(cls):
    for spec in fields_of(cls):
        assert spec.help, f"{cls.__name__}.{spec.name} has no help text"


def test_a_subclass_that_changes_a_default_keeps_the_description():
    from core.attacks.flowmur import FlowMurParams
    from core.attacks.ultrasonic import NearNyquistParams, UltrasonicParams
    from core.defenses import CLPConfig, FineTuneConfig, FTSAMConfig

    for sub, base, name, default in (
        (FineTuneConfig, DefenseConfig, "lr", 0.01),
        (FTSAMConfig, DefenseConfig, "lr", 0.01),
        (CLPConfig, DefenseConfig, "epochs", 0),
        (FlowMurParams, AttackParams, "poison_rate", 0.7),
        (NearNyquistParams, UltrasonicParams, "frequency", 7800.0),
    ):
        spec, parent = _spec(sub, name), _spec(base, name)
        assert spec.default == default and spec.meta == parent.meta, (sub.__name__, name)


# ------------------------------------------------------------------ parse errors name the key
def test_an_unknown_key_names_the_option_the_key_and_the_keys_there_are():
    with pytest.raises(ConfigError) as err:
        parse_key_values(GNFTConfig, ["foo=1"], "--defense-arg", scope="gnft")
    message = str(err.value)
    assert message.startswith("--defense-arg gnft.foo: gnft has no such setting (") and "alpha" in message
    assert "\n" not in message and "seed" not in message  # hidden fields are not settings here
    assert isinstance(err.value, OptionError) and err.value.key == "foo" and err.value.reason == "unknown"


@pytest.mark.parametrize(
    "item, message",
    [
        ("alpha=high", "--defense-arg gnft.alpha: cannot read 'high' as float"),
        ("epochs=1.5", "--defense-arg gnft.epochs: cannot read '1.5' as int"),
        ("compile=maybe", "--defense-arg gnft.compile: cannot read 'maybe' as true or false"),
        ("norm=sideways", "--defense-arg gnft.norm: cannot read 'sideways' as one of per-tensor, global"),
        ("alpha", "--defense-arg takes key=value, got 'alpha'"),
    ],
)
def test_a_bad_value_names_the_key_and_the_type(item, message):
    with pytest.raises(ConfigError) as err:
        parse_key_values(GNFTConfig, [item], "--defense-arg", scope="gnft")
    assert str(err.value) == message


def test_key_values_are_typed_by_the_fields():
    values = parse_key_values(
        GNFTConfig,
        ["alpha=0.5", "epochs=20", "compile=true", "norm=global", "clean-ratio=0.1"],
        "--defense-arg",
        scope="gnft",
    )
    assert values == {"alpha": 0.5, "epochs": 20, "compile": True, "norm": "global", "clean_ratio": 0.1}
    assert parse_key_values(AugmentConfig, ["shift=50", "speed=0.9:1.1", "snr=10"], "--augment") == {
        "shift_ms": 50.0,
        "speed": (0.9, 1.1),
        "snr_db": (10.0, 10.0),
    }


def test_attack_arguments_and_architecture_arguments_share_the_splitter():
    assert parse_attack_args([" poison-rate = 0.2", "kind=noise"]) == {"poison_rate": "0.2", "kind": "noise"}
    with pytest.raises(AttackError, match="--attack-arg takes key=value, got 'oops'"):
        parse_attack_args(["oops"])
    args = train.build_parser().parse_args(
        [
            "--data",
            "d",
            "--out",
            "m.safetensors",
            "--arch-arg",
            "width=32",
            "--arch-arg",
            "dropout=0.1",
            "--arch-arg",
            "input_norm=false",
            "--arch-arg",
            "readout=mean",
        ]
    )
    assert train.config_from_args(args).arch_args == {
        "width": 32,
        "dropout": 0.1,
        "input_norm": False,
        "readout": "mean",
    }
    args = train.build_parser().parse_args(["--data", "d", "--out", "m.safetensors", "--arch-arg", "oops"])
    with pytest.raises(ConfigError, match="--arch-arg takes key=value, got 'oops'"):
        train.config_from_args(args)


def test_range_wording():
    assert Range.parse("(0, 1]").describe() == "in (0, 1]"
    assert Range.parse("(0, inf)").describe() == "a positive number"
    assert Range.parse("[0, inf)").describe() == "a number >= 0"
    assert Range.parse("[1, inf)").describe(integer=True) == "at least 1"
    assert math.inf not in Range.parse("[0, inf)") and math.nan not in Range.parse("[0, inf)")
    assert 0 not in Range.parse("(0, 1]") and 1 in Range.parse("(0, 1]")


# ------------------------------------------------------------------ the grid trains with every training option
def test_core_grid_forwards_every_training_option():
    args = grid.build_parser().parse_args(
        [
            "--data",
            "d",
            "--out",
            "g",
            "--train-epochs",
            "4",
            "--train-weight-decay",
            "0.01",
            "--train-amp",
            "bf16",
            "--train-compile",
            "true",
            "--train-memory-format",
            "contiguous",
            "--train-arch-arg",
            "width=8",
            "--train-init-from",
            "start.safetensors",
            "--augment",
            "default",
            "--train-stop-on",
            "clean",
            "--train-batch-size",
            "32",
            "--train-lr",
            "0.003",
            "--train-patience",
            "2",
            "--seed",
            "4",
        ]
    )
    config = grid.train_config(args, "smallcnn")
    assert (
        config.model,
        config.epochs,
        config.weight_decay,
        config.amp,
        config.compile,
        config.memory_format,
        config.arch_args,
        config.init_from,
        config.stop_on,
        config.batch_size,
        config.lr,
        config.patience,
        config.seed,
    ) == ("smallcnn", 4, 0.01, "bf16", True, "contiguous", {"width": 8}, "start.safetensors", "clean", 32, 0.003, 2, 4)
    assert config.augment.active and config.augment.speed == (0.9, 1.1)
    assert grid.train_config(grid.build_parser().parse_args(["--data", "d", "--out", "g"]), "resnet") == TrainConfig(
        model="resnet"
    )


def test_core_grid_help_lists_every_training_option():
    proc = subprocess.run(
        [sys.executable, "-m", "core.grid", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for name in (
        "--train-weight-decay",
        "--train-amp",
        "--train-compile",
        "--train-memory-format",
        "--train-arch-arg",
        "--train-init-from",
        "--train-epochs",
        "--train-patience",
        "--train-stop-on",
        "--train-batch-size",
        "--train-lr",
        "--augment",
    ):
        assert name in proc.stdout, name


# ------------------------------------------------------------------ any declared value round-trips through text
def _strategy(kind, spec_range):
    """Values of type ``kind`` inside ``spec_range``, or None when the type is not written as text."""
    import types
    import typing

    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        parts = [_strategy(a, spec_range) for a in inner]
        if None in parts:
            return None
        if str in inner:  # text that reads as None is None
            parts = [p.filter(lambda v: not isinstance(v, str) or v.lower() not in ("", "none", "null")) for p in parts]
        return st.one_of(st.none(), *parts)
    if kind is bool:
        return st.booleans()
    if kind is int:
        r = spec_range or Range()
        low = None if r.low is None else math.floor(r.low) + 1 if r.low_open else math.ceil(r.low)
        high = None if r.high is None else math.ceil(r.high) - 1 if r.high_open else math.floor(r.high)
        return st.integers(min_value=low, max_value=high)
    if kind is float:
        r = spec_range or Range()
        return st.floats(
            min_value=r.low,
            max_value=r.high,
            exclude_min=r.low_open and r.low is not None,
            exclude_max=r.high_open and r.high is not None,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind is str:
        return st.text(min_size=1).map(str.strip).filter(bool)  # KEY=VALUE texts are stripped
    if origin is tuple and args and all(a is float for a in args):  # each number inside the declared range
        return st.tuples(*(_strategy(float, spec_range) for _ in args))
    return None


def _round_trips(cls: type, data) -> None:
    parser = argparse.ArgumentParser()
    added = {s.name for s in add_arguments(parser, cls)}
    for spec in fields_of(cls):
        strategy = None if spec.hidden else _strategy(spec.type, spec.range)
        if strategy is None:
            continue
        value = data.draw(strategy, label=spec.name)
        text = format_value(value)
        assert parse_key_values(cls, [f"{spec.key}={text}"], "--x") == {spec.name: value}
        if spec.name in added:
            args = parser.parse_args([f"--{spec.flag}={text}"])
            assert from_namespace(args, cls).get(spec.name, spec.default) == value  # None: the default


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a dev dependency; without it the property is not checked
    st = None
else:

    @pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda c: c.__name__)
    @settings(max_examples=50, deadline=None)
    @given(data=st.data())
    def test_any_declared_value_round_trips_through_command_line_text(cls, data):
        """For each options class, any value of a field's declared type and range, written as text, reads back
        the same as a KEY=VALUE setting and as a command-line option."""
        _round_trips(cls, data)
