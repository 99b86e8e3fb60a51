"""Checkpoints: one ``.safetensors`` file, tensors plus a JSON document in the header metadata.

The document (key ``gnft`` of the safetensors metadata) holds everything needed to rebuild
and trust the model: format version, architecture and its arguments, classes, sample rate,
front-end settings and provenance (data, attack, training, defense history with metrics,
seed, package version). Loading checks all of it and names every mismatch. Nothing is
unpickled: plain PyTorch ``.pt`` files are imported only through ``torch.load(weights_only=True)``,
or, for the pickle protocols (4 and 5) that torch's safe loader cannot parse, through an unpickler
that allows the same tensor-rebuilding globals and nothing else: no code from the file runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pickle
import tempfile
import types
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from core import __version__
from core.audio import publish
from core.errors import CheckpointError, ConfigError
from core.validate import remove_stale_temporaries

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "make_metadata",
    "save_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "import_pt",
    "build_from_metadata",
]

FORMAT_NAME = "gnft-workbench-checkpoint"
#: 2 (2026-12-06): the front end names its ``db_floor``; a format-1 file's model was made with the floor
#: over the batch, and is read so (``read_metadata``), so that its figures stay what they were
FORMAT_VERSION = 2
METADATA_KEY = "gnft"
REQUIRED = (
    "format",
    "format_version",
    "architecture",
    "arch_args",
    "classes",
    "sample_rate",
    "front_end",
    "provenance",
)


def make_metadata(
    architecture: str,
    classes: Sequence[str],
    front_end: Mapping[str, Any],
    *,
    arch_args: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    attack: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    defenses: Sequence[Mapping[str, Any]] = (),
    seed: int | None = None,
) -> dict[str, Any]:
    """The metadata document for a model; ``provenance`` records where it came from."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "arch_args": dict(arch_args or {}),
        "classes": list(classes),
        "sample_rate": int(front_end["sample_rate"]),
        "front_end": dict(front_end),
        "provenance": {
            "data": dict(data or {}),
            "attack": dict(attack) if attack else None,
            "training": dict(training or {}),
            "defenses": [dict(d) for d in defenses],
            "seed": seed,
            "package_version": __version__,
            "torch_version": torch.__version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        },
    }


#: Bounds on what a checkpoint's header may ask for, checked before anything is built from it: the
#: metadata's size and nesting, and the class count (the output layer is sized by it).
MAX_METADATA_CHARS = 16_000_000
MAX_NESTING = 64
MAX_CLASSES = 10_000


def save_checkpoint(path: str | os.PathLike, model: nn.Module, metadata: Mapping[str, Any]) -> Path:
    """Write ``model``'s tensors and ``metadata`` atomically; an existing file survives any failure."""
    path = Path(path)
    _check_metadata(dict(metadata), path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    try:
        header = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the metadata cannot be stored as JSON ({exc})") from exc
    tmp: str | None = None
    remove_stale_temporaries(path)  # what a writer killed mid-save left beside it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        save_file(tensors, tmp, metadata={METADATA_KEY: header})
        publish(tmp, path)
    except (OSError, SafetensorError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CheckpointError(
            f"{path}: could not write the checkpoint ({reason}); "
            "nothing was overwritten. Free space or choose another folder."
        ) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _open_header(path: Path) -> tuple[dict[str, str], list[str]]:
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    if path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt", ".pkl"):
        raise CheckpointError(
            f"{path}: a pickled PyTorch file is not loaded directly; import it with "
            "core.checkpoint.import_pt (weights only, architecture given) and save it as .safetensors"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a valid .safetensors file ({exc})") from exc
    return meta, keys


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The checked metadata document of a checkpoint, without loading tensors (a format-1 front end given
    its ``db_floor``, ``batch``)."""
    path = Path(path)
    header, _ = _open_header(path)
    if METADATA_KEY not in header:
        raise CheckpointError(
            f"{path}: a .safetensors file without GN-FT Workbench metadata; it holds tensors but not "
            "the architecture, classes and front end needed to use them"
        )
    text = header[METADATA_KEY]
    if len(text) > MAX_METADATA_CHARS:
        raise CheckpointError(
            f"{path}: the metadata is {len(text) / 1e6:.1f} MB; a checkpoint's is a few kB and at most "
            f"{MAX_METADATA_CHARS // 1_000_000} MB is read: the file is corrupt or not one of ours"
        )
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the metadata is not valid JSON ({exc})") from exc
    except RecursionError:
        raise CheckpointError(
            f"{path}: the metadata nests deeper than Python can read; at most {MAX_NESTING} levels are read"
        ) from None
    depth = _nesting(meta)
    if depth > MAX_NESTING:
        raise CheckpointError(f"{path}: the metadata nests {depth} levels deep; at most {MAX_NESTING} are read")
    _check_metadata(meta, path)
    if meta["format_version"] < 2:  # made before db_floor: the log scale was floored over the batch
        meta["front_end"].setdefault("db_floor", "batch")
    return meta


def _nesting(value: Any) -> int:
    """How deep lists and objects nest in a JSON value (iteratively: no recursion on a hostile document)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_NESTING:
                return depth
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _check_metadata(meta: dict[str, Any], path: Path) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the metadata must be a JSON object")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: the metadata lacks {', '.join(missing)}")
    if meta["format"] != FORMAT_NAME:
        raise CheckpointError(f"{path}: metadata format is {_short(meta['format'])}, not {FORMAT_NAME!r}")
    version = meta["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: format_version {_short(version)} is not a positive integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {version} was written by a newer GN-FT Workbench "
            f"(this one reads up to {FORMAT_VERSION}); upgrade to load it"
        )
    problems = []
    if not isinstance(meta["architecture"], str):
        problems.append("architecture must be a string")
    if not isinstance(meta["arch_args"], dict):
        problems.append("arch_args must be an object")
    classes = meta["classes"]
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        problems.append("classes must be a non-empty list of strings")
    elif len(classes) > MAX_CLASSES:
        problems.append(f"classes lists {len(classes)} names; at most {MAX_CLASSES} are read")
    elif len(set(classes)) != len(classes):
        problems.append("classes repeat a name")
    if isinstance(meta["sample_rate"], bool) or not isinstance(meta["sample_rate"], int) or meta["sample_rate"] <= 0:
        problems.append("sample_rate must be a positive integer")
    if not isinstance(meta["front_end"], dict):
        problems.append("front_end must be an object")
    elif meta["front_end"].get("sample_rate") != meta["sample_rate"]:
        problems.append(
            f"front_end sample_rate {_short(meta['front_end'].get('sample_rate'))} differs from "
            f"sample_rate {_short(meta['sample_rate'])}"
        )
    if not isinstance(meta["provenance"], dict):
        problems.append("provenance must be an object")
    if problems:
        raise CheckpointError(f"{path}: malformed metadata: " + "; ".join(problems))


#: What building a model from odd metadata values raises (torch says RuntimeError for a negative size).
_BUILD_ERRORS = (ConfigError, TypeError, ValueError, RuntimeError, ArithmeticError)


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a corrupt field must not flood the one-line error."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_from_metadata(
    meta: Mapping[str, Any], path: Path | str = "<metadata>", *, skeleton: bool = False
) -> nn.Sequential:
    """A freshly initialised model of the architecture the metadata describes.

    ``skeleton=True`` puts the classifier on the meta device: its tensor shapes without their
    memory, so the shapes can be checked against a file before a corrupt header allocates gigabytes.
    """
    from core import models
    from core.features import build_front_end

    try:
        if not skeleton:
            return models.build(meta["architecture"], len(meta["classes"]), meta["front_end"], **meta["arch_args"])
        front_end = build_front_end(meta["front_end"])  # small: _check_front_end_size bounds its filters
        with torch.device("meta"):
            return models.build(meta["architecture"], len(meta["classes"]), front_end, **meta["arch_args"])
    except _BUILD_ERRORS as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{path}: cannot build architecture {_short(meta['architecture'])} from the metadata ({reason})"
        ) from exc


#: Feature maps (frames x coefficients) and integer arch args up to these are built without a meta check.
_USUAL_FEATURES = 200_000
_USUAL_ARG_FACTOR = 8
#: More classes than this are checked on the meta device too (the output layer grows with them).
_USUAL_CLASSES = 1000


def _unusual_sizes(meta: Mapping[str, Any]) -> bool:
    """True when the metadata asks for more input features, or larger integer arch args, than a usual model
    (then the model's shapes are checked on the meta device before anything is allocated)."""
    from core import models

    fe = meta["front_end"]
    if len(meta["classes"]) > _USUAL_CLASSES:
        return True
    try:
        frames = int(fe.get("num_samples") or fe.get("sample_rate", 16000)) // int(fe.get("hop_length", 160)) + 1
        coeffs = int(fe.get("n_mels" if fe.get("kind") == "logmel" else "n_coeffs", 80))
        if frames * coeffs > _USUAL_FEATURES:
            return True
        defaults = (
            models.ARCHITECTURES[meta["architecture"]].defaults if meta["architecture"] in models.list_models() else {}
        )
    except (TypeError, ValueError, ZeroDivisionError, ConfigError):
        return True
    for key, value in dict(meta.get("arch_args") or {}).items():
        default = defaults.get(key)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (not isinstance(default, int) or value > _USUAL_ARG_FACTOR * max(1, default))
        ):
            return True
    return False


def _check_front_end_size(front_end: Mapping[str, Any], path: Path) -> None:
    """Refuse front-end sizes whose filter banks could not be in the file (they would be built before any check)."""
    from core.features import FrontEndConfig

    defaults = FrontEndConfig()
    sizes = {k: front_end.get(k, getattr(defaults, k)) for k in ("n_fft", "n_mels", "n_coeffs")}
    bad = [k for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v <= 0]
    if bad:
        raise CheckpointError(
            f"{path}: malformed metadata: front_end {', '.join(bad)} must be positive integers, "
            f"got {', '.join(repr(sizes[k]) for k in bad)}"
        )
    n_fft, n_mels, n_coeffs = sizes["n_fft"], sizes["n_mels"], sizes["n_coeffs"]
    needed = 4 * (n_fft + (n_fft // 2 + 1) * n_mels + n_mels * n_coeffs)
    size = path.stat().st_size
    if needed > size:
        raise CheckpointError(
            f"{path}: malformed metadata: front_end n_fft {n_fft}, n_mels {n_mels} and n_coeffs "
            f"{n_coeffs} need {needed} bytes of filters, more than the whole file ({size} bytes)"
        )


def _compare_state(expected: Mapping[str, torch.Tensor], found: Mapping[str, Any], path: Path, what: str) -> None:
    """Raise naming every missing, unexpected and wrongly shaped tensor."""
    problems = []
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        problems.append(
            f"missing tensors: {', '.join(missing[:8])}" + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        )
    if extra:
        problems.append(
            f"unexpected tensors: {', '.join(extra[:8])}" + (f" (+{len(extra) - 8} more)" if len(extra) > 8 else "")
        )
    for key in sorted(set(expected) & set(found)):
        shape = tuple(found[key].shape) if hasattr(found[key], "shape") else tuple(found[key])
        if tuple(expected[key].shape) != shape:
            problems.append(f"{key} has shape {list(shape)}, {what} needs {list(expected[key].shape)}")
    if problems:
        raise CheckpointError(f"{path}: the tensors do not fit {what}: " + "; ".join(problems[:12]))


def _check_expectations(
    meta: Mapping[str, Any],
    path: Path,
    architecture: str | None,
    classes: Sequence[str] | None,
    sample_rate: int | None,
) -> None:
    problems = []
    if architecture is not None and meta["architecture"] != architecture:
        problems.append(f"architecture is {meta['architecture']!r}, expected {architecture!r}")
    if classes is not None and list(meta["classes"]) != list(classes):
        problems.append(f"classes are {meta['classes']}, expected {list(classes)}")
    if sample_rate is not None and meta["sample_rate"] != sample_rate:
        problems.append(f"sample rate is {meta['sample_rate']} Hz, expected {sample_rate} Hz")
    if problems:
        raise CheckpointError(f"{path}: does not match: " + "; ".join(problems))


def load_checkpoint(
    path: str | os.PathLike,
    *,
    architecture: str | None = None,
    classes: Sequence[str] | None = None,
    sample_rate: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Load a checkpoint as ``(model in eval mode, metadata)``, checking it against expectations.

    Raises :class:`CheckpointError` naming every mismatch: architecture, classes, sample rate,
    missing, unexpected or wrongly shaped tensors.
    """
    path = Path(path)
    meta = read_metadata(path)
    _check_expectations(meta, path, architecture, classes, sample_rate)
    _check_front_end_size(meta["front_end"], path)
    what = f"architecture {meta['architecture']!r}"
    # sizes beyond the usual are checked on the meta device first (shapes, no memory); the usual ones are
    # built at once: the meta build's first use imports torch's decompositions, seconds at every start
    skeleton = build_from_metadata(meta, path, skeleton=True) if _unusual_sizes(meta) else None
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
            if skeleton is not None:
                _compare_state(skeleton.state_dict(), shapes, path, what)
            model = build_from_metadata(meta, path)
            expected = model.state_dict()
            _compare_state(expected, shapes, path, what)
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot read the tensors ({exc})") from exc
    for key, tensor in state.items():
        if tensor.dtype != expected[key].dtype:
            raise CheckpointError(f"{path}: {key} is {tensor.dtype}, the model needs {expected[key].dtype}")
    _check_finite(state, path)
    _load_state(model, state, path, what)
    return model.to(device).eval(), meta


def _check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN or infinite weights: a model holding them is corrupt, whatever it was trained on."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: {key} holds NaN or infinite values; the model is corrupt")


def _load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    """``load_state_dict(strict=True)`` with torch's refusals (sparse or odd tensors) as a CheckpointError."""
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the tensors do not fit {what} ({str(exc).strip().splitlines()[-1]})") from exc


def import_pt(
    path: str | os.PathLike,
    architecture: str,
    classes: Sequence[str],
    front_end: Mapping[str, Any] | None = None,
    *,
    arch_args: Mapping[str, Any] | None = None,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Import a plain PyTorch state dict (``.pt``) safely, with ``weights_only=True``.

    Accepts a mapping of tensors, or one under ``state_dict``/``model``; keys may be those of
    the whole model or of the classifier alone. A pickle holding anything but tensors and
    plain containers is refused with the reason. Documented conversion: floating tensors of
    another precision (float64, float16) are cast to the model's dtype; a tensor of another
    kind (integer for a float weight), NaN or infinite weights and non-text names are errors.
    """
    from core.features import FrontEndConfig

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        obj = _load_tensor_pickle(path)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if not _names_a_forbidden_object(reason):
            raise CheckpointError(f"{path}: not a readable PyTorch file (damaged pickle: {reason})") from exc
        raise CheckpointError(
            f"{path}: refused: the file contains code or objects other than tensors and plain containers "
            f"({reason}); nothing in it was run. Save only the state_dict (torch.save(model.state_dict(), ...)) "
            "and import that."
        ) from exc
    except Exception as exc:  # damaged bytes make torch.load raise nearly any type (IndexError, struct.error, ...)
        detail = _without_unsafe_advice(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
        if "TorchScript" in str(exc):
            raise CheckpointError(
                f"{path}: refused: a TorchScript archive is a program, not a state dict, and "
                "is not loaded (running it could execute its code). Save the model's "
                "state_dict with torch.save(model.state_dict(), ...) and import that."
            ) from exc
        raise CheckpointError(
            f"{path}: not a readable PyTorch file ({type(exc).__name__}: {detail or 'the file ends too early'})"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no state dict (a mapping of names to tensors)")
    odd_names = [repr(k) for k in obj if not isinstance(k, str)]
    if odd_names:
        raise CheckpointError(f"{path}: tensor names must be text, found {', '.join(odd_names[:5])}")
    fe = FrontEndConfig.from_dict(dict(front_end)) if front_end else FrontEndConfig()
    meta = make_metadata(
        architecture, classes, fe.to_dict(), arch_args=arch_args, training={"imported_from": str(path)}
    )
    model = build_from_metadata(meta, path)
    expected = model.state_dict()
    front_name, classifier_name = [name for name, _ in model.named_children()][:2]
    state = dict(obj)
    if not set(state) & set(expected):  # classifier-only keys: lift them under the classifier's name
        lifted = {f"{classifier_name}.{k}": v for k, v in state.items()}
        if set(lifted) & set(expected):
            state = lifted
    for key, value in expected.items():  # the front end's fixed buffers come from the config
        if key.startswith(f"{front_name}.") and key not in state:
            state[key] = value
    what = f"architecture {architecture!r}"
    _compare_state(expected, state, path, what)
    for key, tensor in state.items():
        if tensor.is_floating_point() != expected[key].is_floating_point():
            raise CheckpointError(f"{path}: {key} is {tensor.dtype}, the model needs {expected[key].dtype}")
    _check_finite(state, path)
    _load_state(model, state, path, what)
    return model.eval(), meta


# The only globals a pickled state dict needs (storage types are resolved by torch.load itself).
_STATE_DICT_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
    }
)


class _StateDictUnpickler(pickle.Unpickler):
    """Python's unpickler restricted to :data:`_STATE_DICT_GLOBALS`: reads every pickle protocol,
    imports nothing else (the "restricting globals" pattern of the pickle documentation)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _STATE_DICT_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {module}.{name} is not a tensor or a plain container")


def _state_dict_pickle_module() -> Any:
    """A stand-in for the ``pickle`` module that torch.load can use, built on :class:`_StateDictUnpickler`."""
    module = types.ModuleType("gnft_state_dict_pickle")
    module.Unpickler = _StateDictUnpickler
    module.load = lambda file, **kwargs: _StateDictUnpickler(file, **kwargs).load()
    return module


def _load_tensor_pickle(path: Path) -> Any:
    """torch.load with ``weights_only=True``; a file that torch's safe loader cannot parse (it knows
    only pickle protocol 2: ``torch.save(..., pickle_protocol=4)`` or plain ``pickle.dump`` write
    newer opcodes) is read again with :class:`_StateDictUnpickler`, which allows the same few
    globals and any protocol. Unsafe content raises ``UnpicklingError`` from either reader."""
    try:
        with warnings.catch_warnings():
            # torch warns on any protocol but 2 ("please file an issue"): such files are handled below
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            # a TorchScript archive is refused below with its own message; torch's hint to jit.load it is not ours
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive", category=UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _unpickler_reason(exc).startswith("Unsupported operand"):
            raise
    return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_state_dict_pickle_module())


def _unpickler_reason(exc: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own reason, without torch's advice to turn the safety off
    (older torch puts it after "WeightsUnpickler error:", newer on a line of its own)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith(("Weights only load failed", "Check the documentation")) and "weights_only" not in line
    ]
    return _without_unsafe_advice(useful[0] if useful else lines[0] if lines else "unknown")


def _names_a_forbidden_object(reason: str) -> bool:
    """Whether the unpickler stopped at a global it will not import (code, or an object that is not a
    tensor), as opposed to bytes it could not parse."""
    lowered = reason.lower()
    return "global" in lowered or (lowered.startswith("unsupported") and "operand" not in lowered)


def _without_unsafe_advice(text: str) -> str:
    """``text`` cut before torch's suggestion to load with ``weights_only=False`` (never passed on)."""
    for cue in (" In PyTorch 2.6", " Re-running `torch.load`", " Re-running torch.load"):
        if cue in text:
            text = text.split(cue, 1)[0]
    return text.strip() or "unreadable"
