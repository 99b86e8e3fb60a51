"""One way to declare options: a dataclass field carries its help, label, unit and range.

Command-line options (:func:`add_arguments`, :func:`from_namespace`), ``KEY=VALUE`` settings
(:func:`parse_key_values`), range checks (:func:`check_ranges`) and the application's forms
(:func:`fields_of`) are all made from that metadata, so a new field is declared once.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, Literal

from core.errors import ConfigError
from core.runtime import parse_bool

__all__ = [
    "option",
    "override",
    "Range",
    "OptionMeta",
    "OptionSpec",
    "OptionError",
    "fields_of",
    "add_arguments",
    "from_namespace",
    "split_key_values",
    "parse_key_values",
    "check_ranges",
    "convert",
    "format_value",
    "type_name",
    "guess_value",
    "PathRole",
    "SEED_RANGE",
    "SEED_TEXT",
    "read_number",
    "number",
]

#: The key of a field's :class:`OptionMeta` in ``dataclasses.field(metadata=...)``.
META_KEY = "gnft_option"
#: What an argparse action carries when its value is a path (:class:`PathRole`; read by :mod:`core.validate`).
PATH_KEY = "gnft_path"


@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers, ``low``/``high`` None for unbounded; ``*_open`` excludes the end."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Range:
        """Interval notation: ``"(0, 1]"``, ``"[0, inf)"``, ``"[1, inf)"``."""
        text = text.strip()
        if len(text) < 5 or text[0] not in "[(" or text[-1] not in "])" or "," not in text:
            raise ValueError(f"a range is written like '(0, 1]' or '[0, inf)', got {text!r}")
        lo, hi = (part.strip() for part in text[1:-1].split(",", 1))
        low = None if lo in ("-inf", "") else float(lo)
        high = None if hi in ("inf", "+inf", "") else float(hi)
        return cls(low, high, text[0] == "(", text[-1] == ")")

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is None:
            low_ok = not (self.low_open and value == -math.inf)
        else:
            low_ok = value > self.low if self.low_open else value >= self.low
        if self.high is None:
            high_ok = not (self.high_open and value == math.inf)
        else:
            high_ok = value < self.high if self.high_open else value <= self.high
        return low_ok and high_ok

    def describe(self, integer: bool = False) -> str:
        """What an error says after "must be": "a positive number", "in (0, 1]", "at least 1"."""

        def num(v: float) -> str:
            return f"{v:g}"

        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{num(self.low)}, {num(self.high)}{right}"
        if self.low is not None:
            if self.low_open:
                return "a positive number" if self.low == 0 else f"a number > {num(self.low)}"
            if integer:
                return f">= {num(self.low)}" if self.low == 0 else f"at least {num(self.low)}"
            return f"a number >= {num(self.low)}"
        if self.high is not None:
            return f"a number {'<' if self.high_open else '<='} {num(self.high)}"
        return "a finite number" if self.low_open or self.high_open else "a number"


#: Seeds: torch takes at most 64 bits; a larger one would fail deep inside a run.
SEED_RANGE = Range(0, 2**64 - 1)
SEED_TEXT = "a whole number from 0 to 2**64-1"


@dataclass(frozen=True)
class PathRole:
    """What a path option is: ``role`` "input" (read) or "output" (written); ``kind`` "file", "folder"
    or "prefix" (an output whose files are ``also``'s); ``suffixes`` the endings an output may have
    (``suffix_text`` their wording); ``also`` the files written beside it, by name."""

    role: Literal["input", "output"]
    kind: Literal["file", "folder", "any", "prefix"] = "file"
    suffixes: tuple[str, ...] = ()
    suffix_text: str | None = None
    also: Callable[[str], dict[str, str]] | None = None


@dataclass(frozen=True)
class OptionMeta:
    """What a field says about itself: one-line ``help``, the form's ``label`` (unit after a comma),
    ``percent`` (a share of 1 shown in percent), ``primary`` (shown before "Advanced"), ``hidden``
    (not an option: set another way), ``range`` (checked by :func:`check_ranges`, ``range_text``
    its wording and ``note`` a remark after it), ``flag`` (the name people type when it is not the
    field's), ``metavar``, ``parse`` (reads the option's text when the field is not a plain value),
    ``path`` (the field is a file the command reads or writes: :class:`PathRole`) and ``among`` (a str
    field holding a comma list of some of these words: checked by :func:`check_ranges`, a check box per
    word in the application's forms)."""

    help: str = ""
    label: str | None = None
    percent: bool = False
    primary: bool = False
    hidden: bool = False
    range: Range | None = None
    range_text: str | None = None
    note: str | None = None
    flag: str | None = None
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    path: PathRole | None = None
    among: tuple[str, ...] | None = None


def among_text(words: Sequence[str]) -> str:
    """How a comma-list option's words read in an error: "a comma list of a, b and c"."""
    return f"a comma list of {', '.join(words[:-1])} and {words[-1]}" if len(words) > 1 else f"{words[0]}"


def comma_items(text: str) -> list[str]:
    """The non-empty, stripped items of a comma list."""
    return [item.strip() for item in text.split(",") if item.strip()]


def option(
    default: Any = MISSING,
    *,
    help: str,
    label: str | None = None,
    percent: bool = False,
    primary: bool = False,
    hidden: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    range: str | Range | None = None,
    range_text: str | None = None,
    note: str | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    path: PathRole | None = None,
    among: Sequence[str] | None = None,
    default_factory: Callable[[], Any] | Any = MISSING,
) -> Any:
    """A ``dataclasses.field`` carrying an :class:`OptionMeta`; ``minimum``/``maximum`` are inclusive
    bounds, ``range`` an interval such as ``"(0, 1]"`` (either, not both); ``among`` the words a comma
    list may hold."""
    if range is not None and (minimum is not None or maximum is not None):
        raise ValueError("give range or minimum/maximum, not both")
    if isinstance(range, str):
        range = Range.parse(range)
    elif minimum is not None or maximum is not None:
        range = Range(minimum, maximum)
    words = None if among is None else tuple(among)
    meta = OptionMeta(help, label, percent, primary, hidden, range, range_text, note, flag, metavar, parse, path, words)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={META_KEY: meta})


def override(
    base: type, name: str, default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING, **changes: Any
) -> Any:
    """``base``'s field ``name`` re-declared in a subclass with another default, keeping its metadata
    (``changes`` replace some of it, e.g. ``help=``)."""
    found = {f.name: f for f in dataclasses.fields(base)}
    if name not in found:
        raise ValueError(f"{base.__name__} has no field {name!r}")
    meta = found[name].metadata.get(META_KEY) or OptionMeta()
    if "range" in changes and isinstance(changes["range"], str):
        changes["range"] = Range.parse(changes["range"])
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        metadata={**found[name].metadata, META_KEY: dataclasses.replace(meta, **changes)},
    )


@dataclass(frozen=True)
class OptionSpec:
    """One field as the command line and the application see it (see :func:`fields_of`)."""

    name: str
    type: Any
    choices: tuple[str, ...] | None
    default: Any
    help: str
    label: str
    percent: bool
    primary: bool
    hidden: bool
    range: Range | None
    meta: OptionMeta

    @property
    def flag(self) -> str:
        """The option's name on a command line, without dashes or prefix (``batch-size``)."""
        return self.meta.flag or self.name.replace("_", "-")

    @property
    def key(self) -> str:
        """The key people write in ``KEY=VALUE`` (the flag with underscores)."""
        return self.flag.replace("-", "_")

    @property
    def is_mapping(self) -> bool:
        return _origin(self.type) is dict


class OptionError(ConfigError):
    """A ``KEY=VALUE`` item that cannot be used: ``reason`` is "syntax", "unknown" or "value"."""

    def __init__(self, message: str, *, item: str, key: str = "", reason: str = "syntax") -> None:
        super().__init__(message)
        self.item, self.key, self.reason = item, key, reason


# ------------------------------------------------------------------ types
def _origin(annotation: Any) -> Any:
    return typing.get_origin(annotation)


def _is_union(annotation: Any) -> bool:
    return _origin(annotation) in (typing.Union, types.UnionType)


def _literal_values(annotation: Any) -> tuple[Any, ...] | None:
    return typing.get_args(annotation) if _origin(annotation) is Literal else None


def type_name(annotation: Any) -> str:
    """How an error names the expected type: "float", "true or false", "one of a, b", "lo:hi"."""
    values = _literal_values(annotation)
    if values is not None:
        return "one of " + ", ".join(map(str, values))
    if _is_union(annotation):
        return " or ".join("none" if a is type(None) else type_name(a) for a in typing.get_args(annotation))
    if annotation is bool:
        return "true or false"
    if _origin(annotation) is tuple:
        return ":".join(type_name(a) for a in typing.get_args(annotation) if a is not Ellipsis)
    if annotation is Any:
        return "a value"
    return getattr(annotation, "__name__", str(annotation))


def guess_value(text: str) -> Any:
    """An untyped setting (architecture arguments): an int, a float, true/false, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return {"true": True, "false": False}.get(text.lower(), text)


def convert(text: str, annotation: Any) -> Any:
    """``text`` as a value of ``annotation`` (bool, int, float, str, Literal, ``X | None``, tuples
    written ``lo:hi``, Any); raises ValueError when it cannot be read."""
    values = _literal_values(annotation)
    if values is not None:
        for v in values:
            if str(v) == text:
                return v
        raise ValueError(text)
    if _is_union(annotation):
        args = typing.get_args(annotation)
        if type(None) in args and text.strip().lower() in ("", "none", "null"):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(text, a)
            except ValueError:
                continue
        raise ValueError(text)
    if annotation is bool:
        try:
            return parse_bool(text)
        except argparse.ArgumentTypeError:
            raise ValueError(text) from None
    if annotation is int:
        return int(text)
    if annotation is float:
        return float(text)
    if annotation is str:
        return text
    if _origin(annotation) is tuple:
        kinds = typing.get_args(annotation)
        parts = text.split(":")
        if len(kinds) == 2 and len(parts) == 1:  # "1.0" is the range 1.0:1.0
            parts *= 2
        if Ellipsis in kinds or len(parts) != len(kinds):
            raise ValueError(text)
        return tuple(convert(p.strip(), k) for p, k in zip(parts, kinds))
    if annotation is Any or annotation is object:
        return guess_value(text)
    raise ValueError(f"{type_name(annotation)} cannot be written as text")


def read_number(
    text: str, kind: type, range: Range | None = None, *, range_text: str | None = None, note: str | None = None
) -> int | float:
    """``text`` as an int or a finite float inside ``range``; a ValueError says what is wrong in words that
    follow an option's name ("must be at least 1, got 0")."""
    integer = kind is int
    try:
        value: int | float = int(text) if integer else float(text)
    except (TypeError, ValueError):
        raise ValueError(f"must be {'a whole number' if integer else 'a number'}, got {text!r}") from None
    if not integer and not math.isfinite(value) and range is None:
        raise ValueError(f"must be a finite number, got {text!r}")
    if range is not None and (value not in range or not math.isfinite(value)):
        extra = f" ({note})" if note else ""
        raise ValueError(f"must be {range_text or range.describe(integer)}{extra}, got {text}")
    return value


def number(
    kind: type = float, range: str | Range | None = None, *, range_text: str | None = None, note: str | None = None
) -> Callable[[str], int | float]:
    """An argparse ``type=`` reading an int or finite float inside ``range`` ("[1, inf)"): a bad value is
    refused while the command line is read, naming the option (see :func:`core.validate.one_line_errors`)."""
    bounds = Range.parse(range) if isinstance(range, str) else range

    def read(text: str) -> int | float:
        try:
            return read_number(text, kind, bounds, range_text=range_text, note=note)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    read.__name__ = kind.__name__
    return read


def format_value(value: Any) -> str:
    """The text that :func:`convert` reads back as ``value`` (floats exactly, None as "none")."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return ":".join(format_value(v) for v in value)
    return str(value)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return MISSING


@functools.lru_cache(maxsize=256)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def fields_of(cls: type) -> list[OptionSpec]:
    """Every field of the dataclass ``cls`` with its resolved type, choices, default and metadata
    (a field declared without :func:`option` gets its name as label and no help)."""
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(META_KEY) or OptionMeta()
        kind = hints.get(f.name, f.type)
        values = _literal_values(kind)
        out.append(
            OptionSpec(
                f.name,
                kind,
                None if values is None else tuple(str(v) for v in values),
                _default_of(f),
                meta.help,
                meta.label or f.name,
                meta.percent,
                meta.primary,
                meta.hidden,
                meta.range,
                meta,
            )
        )
    return out


# ------------------------------------------------------------------ command lines
def _dest(prefix: str, spec: OptionSpec) -> str:
    return f"{prefix}{spec.flag}".replace("-", "_")


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    prefix: str = "",
    exclude: Collection[str] = (),
    default_none: bool = False,
    aliases: Mapping[str, Sequence[str]] | None = None,
    describe_default: Callable[[OptionSpec], str] | None = None,
) -> list[OptionSpec]:
    """One option per visible field of ``cls``: ``--{prefix}{flag}`` (``--train-batch-size``), typed by
    the field (bool: ``{true,false}``, a bare flag meaning true; Literal: choices; a dict: repeatable
    ``KEY=VALUE``), help with the default. ``default_none`` leaves unset options None (to tell them
    from defaults); ``aliases`` adds option strings per field; ``describe_default`` words the default.
    Returns the fields added."""
    added = []
    for spec in fields_of(cls):
        if spec.hidden or spec.name in exclude:
            continue
        meta = spec.meta
        names = [f"--{prefix}{spec.flag}", *(aliases or {}).get(spec.name, ())]
        kwargs: dict[str, Any] = {"dest": _dest(prefix, spec)}
        plain = True
        if spec.is_mapping:
            kwargs.update(action="append", metavar=meta.metavar or "KEY=VALUE", default=None if default_none else [])
            plain = False
        elif meta.parse is not None:
            kwargs.update(metavar=meta.metavar or "SPEC", default=None, type=_parsed(meta.parse))
            plain = False
        elif spec.type is bool:
            kwargs.update(type=parse_bool, nargs="?", const=True, metavar="{true,false}")
        elif spec.choices is not None:
            values = _literal_values(spec.type) or ()
            kwargs.update(
                choices=list(values), type=str if all(isinstance(v, str) for v in values) else _argparse_type(spec.type)
            )
        elif spec.type in (int, float):
            kwargs.update(type=number(spec.type, spec.range, range_text=meta.range_text, note=meta.note))
        elif spec.type is str:
            kwargs.update(type=str)
        else:
            kwargs.update(type=_argparse_type(spec.type, spec))
        if meta.metavar and "metavar" not in kwargs:
            kwargs["metavar"] = meta.metavar
        if "default" not in kwargs:
            kwargs["default"] = None if default_none or spec.default is MISSING else spec.default
        text = describe_default(spec) if describe_default is not None else (format_value(spec.default) if plain else "")
        help_text = f"{spec.help} (default: {text})" if text else spec.help
        action = parser.add_argument(*names, help=help_text.replace("%", "%%"), **kwargs)
        if meta.path is not None:
            setattr(action, PATH_KEY, meta.path)
        added.append(spec)
    return added


def _argparse_type(annotation: Any, spec: OptionSpec | None = None) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        try:
            value = convert(text, annotation)
        except ValueError:
            raise argparse.ArgumentTypeError(f"cannot read {text!r} as {type_name(annotation)}") from None
        if spec is not None:
            problem = _out_of_range(spec, value)
            if problem:
                raise argparse.ArgumentTypeError(f"must be {problem}, got {text}")
        return value

    read.__name__ = type_name(annotation)
    return read


def _parsed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` running a field's own reader, so its errors name the option."""

    def read(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    read.__name__ = getattr(parse, "__name__", "value")
    return read


def from_namespace(
    args: argparse.Namespace, cls: type, *, prefix: str = "", exclude: Collection[str] = ()
) -> dict[str, Any]:
    """The field values that the options of :func:`add_arguments` hold in ``args`` (None: not given),
    ``KEY=VALUE`` lists and ``SPEC`` texts read into the field's value: ``cls(**from_namespace(...))``."""
    out: dict[str, Any] = {}
    for spec in fields_of(cls):
        dest = _dest(prefix, spec)
        if spec.hidden or spec.name in exclude or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if value is None:
            continue
        if spec.is_mapping:
            kinds = typing.get_args(spec.type)
            value_type = kinds[1] if len(kinds) == 2 else Any
            what = f"--{prefix}{spec.flag}"
            value = {k: _read(v, value_type, what, k, f"{k}={v}") for k, v in split_key_values(value, what).items()}
        elif spec.meta.parse is not None and isinstance(value, str):
            value = spec.meta.parse(value)
        out[spec.name] = value
    return out


# ------------------------------------------------------------------ KEY=VALUE
def split_key_values(items: Iterable[str] | None, what: str) -> dict[str, str]:
    """``["key=value", ...]`` as a dict of texts (keys stripped, ``-`` read as ``_``); an item without
    ``=`` is an :class:`OptionError` naming ``what`` (the option, e.g. ``--attack-arg``)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{what} takes key=value, got {item!r}", item=item)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _read(text: str, annotation: Any, what: str, key: str, item: str) -> Any:
    try:
        return convert(text, annotation)
    except ValueError:
        raise OptionError(
            f"{what} {key}: cannot read {text!r} as {type_name(annotation)}", item=item, key=key, reason="value"
        ) from None


def parse_key_values(
    cls: type, items: Iterable[str] | None, what: str, *, scope: str | None = None, include_hidden: bool = False
) -> dict[str, Any]:
    """``["key=value", ...]`` as typed values for the dataclass ``cls`` (keyed by field name). An
    unknown key or unreadable value is one :class:`OptionError` line naming ``what`` (and ``scope``,
    e.g. ``--defense-arg gnft.foo``), the key and the keys there are."""
    specs = [s for s in fields_of(cls) if include_hidden or not s.hidden]
    by_key = {**{s.name: s for s in specs}, **{s.key: s for s in specs}}
    where = f"{scope}." if scope else ""
    out: dict[str, Any] = {}
    for raw in items or []:
        pairs = split_key_values([raw], what)
        for key, text in pairs.items():
            spec = by_key.get(key)
            if spec is None:
                owner = scope or cls.__name__
                raise OptionError(
                    f"{what} {where}{key}: {owner} has no such setting ({', '.join(s.key for s in specs)})",
                    item=raw,
                    key=key,
                    reason="unknown",
                )
            out[spec.name] = _read(text, spec.type, what, f"{where}{key}", raw)
    return out


# ------------------------------------------------------------------ checks
def _out_of_range(spec: OptionSpec, value: Any) -> str | None:
    """What ``value`` must be instead ("a positive number (note)"), or None when it fits ``spec``: floats
    finite, numbers (each of a tuple's) inside the declared range."""
    if value is None or isinstance(value, bool):
        return None
    integer = spec.type is int or (_is_union(spec.type) and int in typing.get_args(spec.type))
    note = f" ({spec.meta.note})" if spec.meta.note else ""
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if isinstance(item, float) and not math.isfinite(item) and spec.range is None:
            return "a finite number" + note
        if spec.range is not None and (item not in spec.range or not math.isfinite(item)):
            return (spec.meta.range_text or spec.range.describe(integer)) + note
    return None


def check_ranges(instance: Any, error: type[Exception] = ConfigError) -> None:
    """Raise ``error`` naming the first field whose value is not one of its Literal choices, is not a
    finite number where a number goes, lies outside its declared range (each number of a tuple), or is
    not a non-empty comma list of its ``among`` words."""
    for spec in fields_of(type(instance)):
        value = getattr(instance, spec.name)
        words = spec.meta.among
        if words is not None and (
            not isinstance(value, str) or not comma_items(value) or set(comma_items(value)) - set(words)
        ):
            raise error(f"{spec.name} must be {among_text(words)}, got {value!r}")
        values = _literal_values(spec.type)
        if values is not None and value not in values:
            wanted = f"{values[0]} or {values[1]}" if len(values) == 2 else "one of " + ", ".join(map(str, values))
            raise error(f"{spec.name} must be {wanted}, got {value!r}")
        if spec.range is not None and not isinstance(value, (int, float, tuple, type(None))):
            raise error(f"{spec.name} must be {spec.meta.range_text or spec.range.describe()}, got {value!r}")
        if isinstance(value, bool) and spec.range is not None:
            raise error(f"{spec.name} must be {spec.meta.range_text or spec.range.describe()}, got {value!r}")
        problem = _out_of_range(spec, value)
        if problem:
            raise error(f"{spec.name} must be {problem}, got {value!r}")
