"""The Trigger and Attack interfaces, the attack registry and parameter parsing.

A trigger changes waveforms: ``apply(wave [B, T], sample_rate) -> wave [B, T]``,
deterministic for the attack's seed. An attack is a trigger plus a poisoning recipe:
target class, poison rate, dirty or clean label, seed. Feature-domain triggers (the
authors' MFCC patch) declare ``domain = "features"`` and are applied between the front end
and the classifier; they have nothing audible to play.
"""

from __future__ import annotations

import base64
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import torch

from core.errors import AttackError
from core.options import SEED_RANGE, SEED_TEXT, OptionError, check_ranges, option, split_key_values

__all__ = [
    "AttackParams",
    "Attack",
    "PoisonedSet",
    "register",
    "get_attack",
    "list_attacks",
    "attack_from_dict",
    "parse_attack_args",
    "position_offset",
]


@dataclass
class AttackParams:
    """Settings every attack has; subclasses add their trigger's parameters."""

    target: int = option(
        2,
        label="Target class",
        range="[0, inf)",
        range_text="a class index >= 0",
        help="class index the trigger makes the model predict",
    )
    poison_rate: float = option(
        0.1,
        label="Poison rate",
        range="(0, 1]",
        help="share of the training clips poisoned (clean label: of the target class's clips)",
    )
    label_mode: Literal["dirty", "clean"] = option(
        "dirty",
        label="Label mode",
        help="dirty: poisoned clips are relabelled as the target; clean: only target-class clips are poisoned, "
        "labels kept",
    )
    seed: int = option(
        0,
        label="Seed",
        help="seed of the poisoned rows and of any random part of the trigger",
        range=SEED_RANGE,
        range_text=SEED_TEXT,
    )

    def validate(self) -> None:
        """The declared ranges and choices (:func:`core.options.check_ranges`); subclasses add their own."""
        check_ranges(self, AttackError)


@dataclass
class PoisonedSet:
    """A training set with the trigger in some clips: waveforms, labels and which rows were poisoned."""

    waves: torch.Tensor
    labels: torch.Tensor
    poisoned: torch.Tensor  # int64 row indices into waves


class Attack:
    """Base class: subclasses set ``name``, ``Params`` and implement :meth:`apply`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[AttackParams]] = AttackParams
    domain: ClassVar[Literal["waveform", "features"]] = "waveform"
    #: Attacks that learn something from the data first (a trigger optimised on a surrogate,
    #: a trigger or hosts chosen by a benign model) set this and implement :meth:`prepare`.
    needs_preparation: ClassVar[bool] = False
    #: The sample rate the attack's original recipe runs the data and model at, for attacks whose
    #: trigger cannot exist at every rate (Ultrasonic: 44.1 kHz); pipelines that mix attacks (the
    #: grid) move such an attack's cells to this rate when the trigger cannot exist at theirs.
    recipe_rate: ClassVar[int | None] = None

    def __init__(self, params: AttackParams | None = None, sample_rate: int = 16000) -> None:
        self.params = params if params is not None else self.Params()
        if not isinstance(self.params, self.Params):
            raise AttackError(f"{self.name}: parameters must be {self.Params.__name__}")
        self.params.validate()
        self.sample_rate = int(sample_rate)
        self.check_sample_rate(self.sample_rate)
        #: What :meth:`prepare` learnt (trigger waveforms, chosen rows): stored with checkpoints.
        self.state: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------ preparation
    def prepare(
        self,
        waves: torch.Tensor,
        labels: torch.Tensor,
        candidates: torch.Tensor,
        sample_rate: int,
        classes: list[str],
        *,
        front_end: Any,
        device: torch.device,
    ) -> None:
        """Learn what the attack needs from the training rows ``candidates`` (default: nothing)."""

    @property
    def prepared(self) -> bool:
        return not self.needs_preparation or bool(self.state)

    def require_prepared(self) -> None:
        if not self.prepared:
            raise AttackError(
                f"{self.name} must be prepared on training data first (its trigger is learnt); "
                "train with it through python -m core.train, or load it from a checkpoint"
            )

    # ------------------------------------------------------------- the trigger
    def check_sample_rate(self, sample_rate: int) -> None:
        """Raise :class:`AttackError` when the trigger cannot exist at ``sample_rate``."""

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Return triggered copies of ``wave [B, T]`` (never modifies its input)."""
        raise NotImplementedError

    def apply_features(self, features: torch.Tensor) -> torch.Tensor:
        """Feature-domain attacks patch ``[B, 1, frames, coeffs]`` here."""
        raise AttackError(f"{self.name} is a waveform attack; use apply()")

    def apply_test(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """The trigger as used at test time (the same as in training unless an attack says otherwise)."""
        return self.apply(wave, sample_rate)

    @property
    def audible(self) -> bool:
        """False for feature-domain triggers: there is no sound to play."""
        return self.domain == "waveform"

    # --------------------------------------------------------------- poisoning
    def poison_indices(self, labels: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Rows to poison among ``candidates``, drawn with the attack's seed.

        Dirty label: ``poison_rate`` of the candidate clips, chosen among those whose class is
        not the target (so every poisoned clip teaches the backdoor). Clean label:
        ``poison_rate`` of the target-class clips, labels left true.
        """
        p = self.params
        cand_labels = labels.index_select(0, candidates.to(labels.device)).cpu()
        candidates = candidates.cpu()
        if p.label_mode == "dirty":
            pool = candidates[cand_labels != p.target]
            count = round(p.poison_rate * candidates.numel())
        else:
            pool = candidates[cand_labels == p.target]
            count = round(p.poison_rate * pool.numel())
        count = min(max(count, 1), pool.numel())
        if pool.numel() == 0:
            raise AttackError(f"{self.name}: no clip to poison (label mode {p.label_mode}, target {p.target})")
        gen = torch.Generator().manual_seed(p.seed)
        chosen = pool[torch.randperm(pool.numel(), generator=gen)[:count]]
        return chosen.sort().values

    def poison(
        self, waves: torch.Tensor, labels: torch.Tensor, candidates: torch.Tensor, sample_rate: int
    ) -> PoisonedSet:
        """Triggered, relabelled (dirty) copies of the chosen rows of ``candidates``.

        Returns the candidate rows only (the training set), with ``poisoned`` indexing into them.
        """
        rows = self.poison_indices(labels, candidates)
        cand = candidates.to(waves.device)
        train_waves = waves.index_select(0, cand).clone()
        train_labels = labels.index_select(0, cand.to(labels.device)).clone()
        local = torch.isin(candidates.cpu(), rows).nonzero().flatten()  # positions inside candidates
        if self.domain == "waveform":
            local_dev = local.to(train_waves.device)
            train_waves[local_dev] = self.apply(train_waves[local_dev], sample_rate)
        if self.params.label_mode == "dirty":
            train_labels[local.to(train_labels.device)] = self.params.target
        return PoisonedSet(train_waves, train_labels, local)

    # ----------------------------------------------------------- description
    def to_dict(self) -> dict[str, Any]:
        """Name, domain, every parameter and any learnt state: stored in checkpoints and reports."""
        out: dict[str, Any] = {"name": self.name, "domain": self.domain, "params": dataclasses.asdict(self.params)}
        if self.state:
            out["state"] = {k: encode_tensor(v) for k, v in self.state.items()}
        return out


# ------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator adding an attack to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def list_attacks() -> dict[str, type[Attack]]:
    """Every registered attack by name."""
    import core.attacks  # noqa: F401  (registers the built-in attacks)

    return dict(sorted(_REGISTRY.items()))


def get_attack(name: str, sample_rate: int = 16000, **params: Any) -> Attack:
    """Build the attack ``name`` with parameters given as Python values or strings."""
    attacks = list_attacks()
    if name not in attacks:
        raise AttackError(f"unknown attack {name!r}; available: {', '.join(attacks)}")
    cls = attacks[name]
    return cls(build_params(cls.Params, params, name), sample_rate=sample_rate)


def attack_from_dict(data: Mapping[str, Any], sample_rate: int = 16000) -> Attack:
    """Rebuild an attack from :meth:`Attack.to_dict` output (as stored in checkpoints)."""
    if "name" not in data:
        raise AttackError("attack description has no name")
    attack = get_attack(data["name"], sample_rate=sample_rate, **dict(data.get("params") or {}))
    attack.state = {k: decode_tensor(v, k) for k, v in (data.get("state") or {}).items()}
    return attack


def encode_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    """A tensor as JSON: dtype, shape and its raw bytes in base64 (exact, compact)."""
    t = tensor.detach().to("cpu").contiguous()
    return {
        "dtype": str(t.dtype).removeprefix("torch."),
        "shape": list(t.shape),
        "base64": base64.b64encode(t.numpy().tobytes()).decode("ascii"),
    }


def decode_tensor(data: Mapping[str, Any], name: str = "tensor") -> torch.Tensor:
    """Inverse of :func:`encode_tensor`; malformed input is an :class:`AttackError`."""
    import numpy as np

    try:
        dtype = {"float32": np.float32, "int64": np.int64}[data["dtype"]]
        array = np.frombuffer(base64.b64decode(data["base64"]), dtype=dtype).reshape(data["shape"])
    except (KeyError, ValueError, TypeError) as exc:
        raise AttackError(f"attack state {name!r} is malformed ({exc})") from exc
    return torch.from_numpy(array.copy())


def _convert(value: Any, annotation: Any, key: str, attack: str) -> Any:
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        choices = [str(a) for a in args]
        if value not in choices:
            raise AttackError(f"{attack}: {key} must be one of {', '.join(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value.lower() in ("none", "null", "") and type(None) in args:
            return None
        last: Exception | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, attack)
            except AttackError as exc:
                last = exc
        raise last or AttackError(f"{attack}: bad value {value!r} for {key}")
    try:
        if annotation is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if annotation is int:
            return int(value)
        if annotation is float:
            return float(value)
    except ValueError:
        raise AttackError(f"{attack}: {key} must be {annotation.__name__}, got {value!r}") from None
    return value


def build_params(cls: type[AttackParams], values: Mapping[str, Any], attack: str) -> AttackParams:
    """Instantiate ``cls`` from ``values``, converting strings by field type; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise AttackError(f"{attack}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    converted = {k: _convert(v, hints[k], k, attack) for k, v in values.items()}
    params = cls(**converted)
    params.validate()
    return params


def parse_attack_args(items: list[str] | None) -> dict[str, str]:
    """``["key=value", ...]`` from ``--attack-arg`` into a dict (values stay strings: the attack's
    parameter types read them, :func:`build_params`)."""
    try:
        return split_key_values(items, "--attack-arg")
    except OptionError as err:
        raise AttackError(str(err)) from None


def position_offset(position: str, clip_len: int, trigger_len: int, sample_rate: int) -> int:
    """Start sample of a trigger: ``start``, ``middle``, ``end`` or seconds from the start."""
    if trigger_len > clip_len:
        raise AttackError(f"trigger of {trigger_len} samples is longer than the clip ({clip_len})")
    if position == "start":
        return 0
    if position == "middle":
        return (clip_len - trigger_len) // 2
    if position == "end":
        return clip_len - trigger_len
    try:
        seconds = float(position)
    except ValueError:
        raise AttackError(f"position must be start, middle, end or seconds, got {position!r}") from None
    start = int(round(seconds * sample_rate))
    if not 0 <= start <= clip_len - trigger_len:
        raise AttackError(f"position {seconds} s puts the trigger outside the clip")
    return start
