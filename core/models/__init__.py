"""The authors' six keyword-spotting architectures and a registry that builds them by name.

A model is ``nn.Sequential(front_end=FrontEnd, classifier=...)``: ``model[0]`` is the
``FrontEnd`` (waveform ``[B, T]`` -> features ``[B, 1, frames, coeffs]``), ``model[1]`` the
classifier (features -> raw logits ``[B, n_classes]``; train with ``CrossEntropyLoss``).
Every layer that depends on the input size is sized from the front end's output shape.

Module names are stable and readable (``classifier.conv1``, ``classifier.layer3.1.conv2``,
``classifier.lstm``, ``classifier.fc``); the output layer is always ``classifier.fc``.
Every classifier starts with ``classifier.input_norm``, a per-coefficient BatchNorm that is
not in the authors' code (``input_norm=False`` turns it into an identity); see
``core.models.layers.CoefficientNorm``. Also not the authors': every LSTM's forget-gate
bias starts at 1, and ``smalllstm``/``rnn`` read out the time-averaged LSTM outputs by
default (``readout="last"`` for the authors' last step); see ``core.models.recurrent``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from core.errors import ConfigError
from core.features import FrontEnd, FrontEndConfig, build_front_end
from core.models.cnn import LargeCNN, SmallCNN
from core.models.layers import CoefficientNorm
from core.models.recurrent import RNN, LSTMAttention, SmallLSTM
from core.models.resnet import ResNet

__all__ = [
    "ArchSpec",
    "ARCHITECTURES",
    "register_architecture",
    "load_plugins",
    "build",
    "build_classifier",
    "resolve_arch_args",
    "list_models",
    "describe",
    "analysable_layers",
    "split_front_end",
    "front_end_settings",
    "CoefficientNorm",
]


@dataclass(frozen=True)
class ArchSpec:
    """One registered architecture: its builder, a one-line description and its default arch args."""

    name: str
    builder: Callable[..., nn.Module]
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)


def _spec(name: str, builder: Callable[..., nn.Module], description: str, **defaults: Any) -> ArchSpec:
    return ArchSpec(name, builder, description, MappingProxyType(dict(defaults)))


_REGISTRY: dict[str, ArchSpec] = {
    s.name: s
    for s in (
        _spec("smallcnn", SmallCNN, "three small conv blocks (64, 64, 32 channels) and two FC layers", input_norm=True),
        _spec(
            "largecnn",
            LargeCNN,
            "AlexNet-like: five 3x3 convs (96-384 channels), three FC layers, no BatchNorm",
            input_norm=True,
        ),
        _spec(
            "smalllstm",
            SmallLSTM,
            "smallcnn's conv blocks, then a 2-layer LSTM over time, FC on the time-averaged outputs",
            input_norm=True,
            hidden=128,
            num_layers=2,
            readout="mean",
        ),
        _spec(
            "lstm_attention",
            LSTMAttention,
            "conv front, two BiLSTMs, dot-product attention over time, three dense layers (de Andrade 2018)",
            input_norm=True,
            hidden=64,
        ),
        _spec(
            "rnn",
            RNN,
            "3-layer LSTM over the frames, FC on the time-averaged outputs (authors: hidden 768, "
            "last step; here 256, mean)",
            input_norm=True,
            hidden=256,
            num_layers=3,
            readout="mean",
        ),
        _spec(
            "resnet",
            ResNet,
            "small ResNet: 16/32/64 channels, two residual blocks per stage, AvgPool, FC",
            input_norm=True,
        ),
    )
}

#: Every architecture by name (read-only view; :func:`register_architecture` adds to it).
ARCHITECTURES: Mapping[str, ArchSpec] = MappingProxyType(_REGISTRY)
PLUGINS_ENV = "GNFT_PLUGINS"
_plugins_loaded: set[str] = set()


def register_architecture(name: str, builder: Callable[..., nn.Module], description: str, **defaults: Any) -> ArchSpec:
    """Add your own classifier: ``builder(input_shape, n_classes, **arch_args)`` with ``input_shape`` =
    ``(channels, frames, coeffs)`` of the front end's features, returning raw logits whose last layer is
    an ``nn.Linear`` named ``fc`` (Fine-Pruning prunes its inputs). ``defaults`` are its arch args
    (their types are checked). A checkpoint records only the name: the module that registers it must be
    imported before loading, e.g. through ``$GNFT_PLUGINS`` (comma list of modules) for the commands
    and the application."""
    if not name or not isinstance(name, str):
        raise ConfigError(f"an architecture needs a name, got {name!r}")
    if name in _REGISTRY and _REGISTRY[name].builder is not builder:
        raise ConfigError(f"architecture {name!r} is already registered (by {_REGISTRY[name].builder!r})")
    _REGISTRY[name] = _spec(name, builder, description, **defaults)
    return _REGISTRY[name]


def load_plugins() -> list[str]:
    """Import the modules named in ``$GNFT_PLUGINS`` (once each); they register architectures."""
    import importlib
    import os

    loaded = []
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        if module in _plugins_loaded:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken plugin is named, not a traceback deep in model loading
            raise ConfigError(f"{PLUGINS_ENV}: cannot import {module!r}: {exc}") from exc
        _plugins_loaded.add(module)
        loaded.append(module)
    return loaded


def list_models() -> list[str]:
    """Names of the registered architectures, in registry order (plugins from ``$GNFT_PLUGINS`` included)."""
    load_plugins()
    return list(ARCHITECTURES)


def _spec_for(name: str) -> ArchSpec:
    if isinstance(name, str) and name not in ARCHITECTURES:
        load_plugins()
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown architecture {name!r}; choose one of: {', '.join(list_models())}") from None


def describe(name: str) -> str:
    """One line: the architecture's name, description and default arch args."""
    spec = _spec_for(name)
    args = ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items()) or "none"
    return f"{spec.name}: {spec.description} (arch args: {args})"


def _coerce(arch: str, key: str, value: Any, default: Any) -> Any:
    """Check an arch arg against the type of its default (accepting 0/1 for booleans)."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(value, type(default)):
        return value
    raise ConfigError(
        f"{arch}: arch arg {key!r} must be {type(default).__name__} like its default {default!r}, got {value!r}"
    )


def resolve_arch_args(name: str, arch_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full arch args for ``name``: defaults overridden by ``arch_args``, validated."""
    spec = _spec_for(name)
    arch_args = dict(arch_args or {})
    unknown = sorted(set(arch_args) - set(spec.defaults))
    if unknown:
        valid = ", ".join(spec.defaults) or "none"
        raise ConfigError(f"{name}: unknown arch arg(s) {', '.join(map(repr, unknown))}; valid: {valid}")
    return {k: _coerce(name, k, arch_args.get(k, d), d) for k, d in spec.defaults.items()}


def build_classifier(name: str, input_shape: tuple[int, int, int], n_classes: int, **arch_args: Any) -> nn.Module:
    """The classifier alone, for features of ``input_shape`` = ``(channels, frames, coeffs)``."""
    args = resolve_arch_args(name, arch_args)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ConfigError(f"{name}: n_classes must be an integer >= 2, got {n_classes!r}")
    return ARCHITECTURES[name].builder(tuple(input_shape), n_classes, **args)


def build(
    name: str, n_classes: int, front_end: FrontEndConfig | dict[str, Any] | FrontEnd | None = None, **arch_args: Any
) -> nn.Sequential:
    """``nn.Sequential(front_end, classifier)`` for architecture ``name``; raw logits ``[B, n_classes]``.

    ``front_end`` is a ``FrontEndConfig``, its dict form (as stored in checkpoints), an
    existing ``FrontEnd`` or ``None`` (defaults: 16 kHz, 40 MFCC, 101 frames). The returned
    model also carries ``architecture`` (the name) and ``arch_args`` (all args, defaults
    filled in) as plain attributes. Building with the same torch seed gives the same weights.
    """
    spec = _spec_for(name)
    fe = front_end if isinstance(front_end, FrontEnd) else build_front_end(front_end)
    args = resolve_arch_args(spec.name, arch_args)
    classifier = build_classifier(spec.name, fe.output_shape(), n_classes, **args)
    model = nn.Sequential(OrderedDict([("front_end", fe), ("classifier", classifier)]))
    model.architecture = spec.name
    model.arch_args = args
    return model


_ANALYSABLE = (nn.Conv2d, nn.Linear, nn.LSTM)


def split_front_end(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """``(front_end, classifier)`` when ``model`` is a ``build`` result whose front end has nothing
    to train, else ``(None, model)``. Fine-tuning then computes each clip's features once
    instead of in every pass of every epoch (the front end's output does not change)."""
    if isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[0], FrontEnd):
        if not any(p.requires_grad for p in model[0].parameters()):
            return model[0], model[1]
    return None, model


def front_end_settings(model: nn.Module) -> dict[str, Any] | None:
    """The settings of the front end ``model`` computes its features with (a ``build`` result: the checkpoint's
    ``front_end`` record), or None for a model without one of ours."""
    if isinstance(model, nn.Sequential) and len(model) >= 1 and isinstance(model[0], FrontEnd):
        return asdict(model[0].config)
    return None


def analysable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The classifier's Conv2d, Linear and LSTM layers in forward order, with qualified names.

    Names are as in ``model.named_modules()`` (``classifier.conv1``, ...). ``model`` may be
    a full ``build`` result or a bare classifier (then names carry no ``classifier.`` prefix).
    Neurons are a conv layer's output channels, a linear layer's output units and an LSTM's
    hidden units (per direction and layer). Registration order equals forward order in every
    architecture here (a residual block's ``downsample`` runs after its ``conv2``).
    """
    skip = ()
    if isinstance(model, nn.Sequential) and len(model) == 2 and isinstance(model[0], FrontEnd):
        skip = (next(iter(model._modules)) + ".",)  # the front end's own modules
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, _ANALYSABLE) and not name.startswith(skip)
    ]
