"""Fuzzing the WAV and checkpoint readers: any bytes give a usable result or the project's own error.

Seeds are real files (soundfile WAVs of several sample formats, a saved checkpoint, ``torch.save``
state dicts); hypothesis mutates them (bit flips, truncation, inserted and overwritten bytes,
header fields set to edge values, the safetensors JSON header and the metadata document rewritten)
and the readers must return a usable result or raise :class:`DataError` / :class:`CheckpointError`
naming the file, never ``KeyError``, ``struct.error``, ``RuntimeError`` and the like, and never
change the file they read.

Runs are derandomized so the suite is reproducible; ``GNFT_FUZZ_RANDOM=1`` explores new inputs and
``GNFT_FUZZ_SCALE=10`` runs ten times as many examples.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core import models
from core.audio import load_clip, read_wav
from core.checkpoint import import_pt, load_checkpoint, make_metadata, read_metadata, save_checkpoint
from core.errors import CheckpointError, DataError
from core.features import FrontEndConfig

CLASSES = ["yes", "no", "up", "down"]
FRONT_END = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
SCALE = int(os.environ.get("GNFT_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Bounded, reproducible runs (see the module docstring for exploring)."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        database=None,
        derandomize=os.environ.get("GNFT_FUZZ_RANDOM") != "1",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------ mutations
def outcome(path: Path, exc: Exception | None) -> None:
    """Record what happened (``--hypothesis-show-statistics``): loaded, or the kind of error."""
    if exc is None:
        event("loaded")
    else:
        event(str(exc).removeprefix(f"{path}: ").split("(")[0].split(";")[0][:48].strip())


class Seed(bytes):
    """A seed file's bytes with a short repr, so hypothesis reports stay readable."""

    def __repr__(self) -> str:
        return f"Seed({len(self)} bytes)"


EDGE_VALUES = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


@st.composite
def mutations(draw: st.DrawFn, blob: bytes, fields: list[tuple[int, int]], hot: int) -> bytes:
    """1-4 edits of ``blob``: flips, truncation, insertions, overwrites, header ``fields`` set to edge values.

    Positions fall in the first ``hot`` bytes (the header) half of the time.
    """
    data = bytearray(blob)

    def position(extra: int = 0) -> int:
        limit = len(data) - 1 + extra
        if limit < 0:
            return 0
        if draw(st.booleans()):
            return draw(st.integers(0, min(limit, hot)))
        return draw(st.integers(0, limit))

    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "field"]))
        if op == "flip" and data:
            data[position()] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[position(extra=1) :]
        elif op == "insert":
            at = position(extra=1)
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "overwrite" and data:
            at = position()
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif op == "field" and fields:
            at, size = draw(st.sampled_from(fields))
            value = draw(st.sampled_from(EDGE_VALUES) | st.integers(0, 2 ** (8 * size) - 1)) % (2 ** (8 * size))
            data[at : at + size] = value.to_bytes(size, "little")
    return bytes(data)


# ----------------------------------------------------------------------- WAVs
def wav_bytes(subtype: str, channels: int, rate: int, frames: int = 240, fmt: str = "WAV") -> Seed:
    rng = np.random.default_rng(channels * rate)
    wave = (
        0.5 * np.sin(np.arange(frames)[:, None] * (0.05 + 0.03 * np.arange(channels)))
        + 0.01 * rng.standard_normal((frames, channels))
    ).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, rate, subtype=subtype, format=fmt)
    return Seed(buf.getvalue())


def wav_fields(blob: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the RIFF size, every fmt field and the data chunk's size."""
    fields = [(4, 4)]
    fmt = blob.find(b"fmt ")
    if fmt >= 0:
        fields += [(fmt + 4, 4)] + [
            (fmt + 8 + off, size)
            for off, size in ((0, 2), (2, 2), (4, 4), (8, 4), (12, 2), (14, 2), (16, 2), (18, 2), (22, 4))
        ]
    data = blob.find(b"data")
    if data >= 0:
        fields.append((data + 4, 4))
    return [(o, s) for o, s in fields if o + s <= len(blob)]


WAV_SEEDS = [
    wav_bytes("PCM_16", 1, 16000),
    wav_bytes("PCM_24", 2, 8000),
    wav_bytes("FLOAT", 1, 44100),
    wav_bytes("PCM_U8", 1, 11025),
    wav_bytes("PCM_32", 3, 22050, fmt="WAV"),
    wav_bytes("DOUBLE", 2, 48000),
    wav_bytes("PCM_16", 2, 16000, fmt="WAVEX"),
]
WAV_MUTANTS = st.one_of(*[mutations(seed, wav_fields(seed), 80) for seed in WAV_SEEDS])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_wav_reader(path: Path, blob: bytes) -> None:
    """``load_clip`` gives a finite float32 1 s clip or a DataError naming ``path``; the file is untouched."""
    path.write_bytes(blob)
    try:
        clip = load_clip(path, 16000, 16000)
    except DataError as exc:
        assert str(path) in str(exc)
        outcome(path, exc)
    else:
        outcome(path, None)
        assert clip.dtype == np.float32 and clip.shape == (16000,)
        assert np.isfinite(clip).all()
    assert path.read_bytes() == blob


def test_the_wav_seeds_are_readable(fuzz_dir):
    # the mutations start from files the reader accepts, so failures come from the edits
    for i, seed in enumerate(WAV_SEEDS):
        path = fuzz_dir / f"seed{i}.wav"
        path.write_bytes(seed)
        data, rate = read_wav(path)
        assert data.shape[1] == 240 and rate in (8000, 11025, 16000, 22050, 44100, 48000)


@fuzz_settings(200)
@given(blob=WAV_MUTANTS)
def test_mutated_wavs_load_or_raise_data_error(fuzz_dir, blob):
    check_wav_reader(fuzz_dir / "mutant.wav", blob)


@fuzz_settings(100)
@given(
    blob=st.binary(max_size=256)
    | st.builds(lambda tail: b"RIFF" + tail, st.binary(max_size=128))
    | st.builds(
        lambda size, tail: b"RIFF" + struct.pack("<I", size) + b"WAVEfmt " + tail,
        st.integers(0, 2**32 - 1),
        st.binary(max_size=96),
    )
)
def test_random_bytes_as_wav(fuzz_dir, blob):
    if not blob:  # the empty file has its own message
        blob = b"\0"
    check_wav_reader(fuzz_dir / "random.wav", blob)


# ---------------------------------------------------------------- checkpoints
def tiny_model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return models.build("smallcnn", len(CLASSES), FRONT_END).eval()


@pytest.fixture(scope="module")
def checkpoint_seed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("seed") / "seed.safetensors"
    save_checkpoint(path, tiny_model(), make_metadata("smallcnn", CLASSES, FRONT_END.to_dict(), seed=1))
    return Seed(path.read_bytes())


def split_safetensors(blob: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join_safetensors(header: dict, body: bytes, length_delta: int = 0) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", max(0, len(raw) + length_delta)) + raw + body


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(-5, 70000)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["smallcnn", "resnet", "mfcc", "logmel", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=6,
)
#: Values a metadata field plausibly takes, near and far from the valid ones, so loading gets past the
#: document checks into building the model (front-end sizes, arch args, other architectures).
NUMBERS = (
    st.integers(-3, 3)
    | st.integers(1, 100_000)
    | st.sampled_from([2**31, 2**63, 10**9, 2**70])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
)
FIELD_VALUES = {
    "architecture": st.sampled_from(models.list_models()) | st.text(max_size=10),
    "arch_args": st.fixed_dictionaries(
        {},
        optional={
            "hidden": NUMBERS,
            "num_layers": NUMBERS,
            "input_norm": NUMBERS | st.none(),
            "readout": st.sampled_from(["mean", "last", "max", ""]),
        },
    ),
    "classes": st.lists(st.sampled_from(CLASSES + ["go", "", "yes"]), max_size=6) | st.lists(JSON_VALUES, max_size=4),
    "sample_rate": NUMBERS,
    "format_version": NUMBERS | st.text(max_size=3),
    "kind": st.sampled_from(["mfcc", "logmel", "MFCC", ""]) | NUMBERS,
    "num_samples": NUMBERS | st.none(),
}
META_PATHS = [
    ("format",),
    ("format_version",),
    ("architecture",),
    ("arch_args",),
    ("classes",),
    ("sample_rate",),
    ("front_end",),
    ("provenance",),
    *[("front_end", k) for k in FRONT_END.to_dict()],
]
DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "C64", "X", ""]


@st.composite
def mangled_metadata(draw: st.DrawFn, blob: bytes) -> bytes:
    """The seed with fields of its metadata document set, deleted or replaced; the container stays valid."""
    header, body = split_safetensors(blob)
    meta = json.loads(header["__metadata__"]["gnft"])
    for _ in range(draw(st.integers(1, 3))):
        keys = draw(st.sampled_from(META_PATHS))
        parent = meta if isinstance(meta, dict) else {}
        for k in keys[:-1]:
            parent = parent.get(k) if isinstance(parent.get(k), dict) else {}
        op = draw(st.sampled_from(["set", "set", "set", "delete", "whole"]))
        if op == "set":
            strategy = FIELD_VALUES.get(keys[-1], NUMBERS if keys[0] == "front_end" else JSON_VALUES)
            parent[keys[-1]] = draw(strategy | JSON_VALUES) if draw(st.integers(0, 9)) == 0 else draw(strategy)
        elif op == "delete":
            parent.pop(keys[-1], None)
        elif draw(st.integers(0, 4)) == 0:
            meta = draw(JSON_VALUES)
    text = json.dumps(meta) if draw(st.integers(0, 19)) else json.dumps(meta)[: draw(st.integers(0, 40))]
    header["__metadata__"]["gnft"] = text
    return join_safetensors(header, body)


@st.composite
def mangled_headers(draw: st.DrawFn, blob: bytes) -> bytes:
    """The seed with its safetensors JSON header rewritten: dtypes, shapes, offsets, entries, its length."""
    header, body = split_safetensors(blob)
    for _ in range(draw(st.integers(1, 3))):
        tensors = sorted(k for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)) or ["added"]
        op = draw(st.sampled_from(["dtype", "shape", "offsets", "drop_tensor", "add_tensor", "metadata_block", "swap"]))
        if op == "dtype":
            header.setdefault(draw(st.sampled_from(tensors)), {})["dtype"] = draw(st.sampled_from(DTYPES))
        elif op == "shape":
            header.setdefault(draw(st.sampled_from(tensors)), {})["shape"] = draw(
                st.lists(st.integers(0, 2**20) | st.sampled_from([-1, 2**63]), max_size=4)
            )
        elif op == "offsets":
            header.setdefault(draw(st.sampled_from(tensors)), {})["data_offsets"] = draw(
                st.lists(st.integers(0, len(body) + 64) | st.sampled_from([-1, 2**64 - 1]), max_size=3)
            )
        elif op == "drop_tensor":
            header.pop(draw(st.sampled_from(tensors)), None)
        elif op == "add_tensor":
            header[draw(st.text(max_size=20))] = draw(JSON_VALUES)
        elif op == "metadata_block":
            header["__metadata__"] = draw(JSON_VALUES | st.dictionaries(st.text(max_size=5), st.text(max_size=5)))
        elif op == "swap":  # two tensors trade places: names now point at data of another shape
            a, b = draw(st.sampled_from(tensors)), draw(st.sampled_from(tensors))
            header[a], header[b] = header[b], header[a]
    delta = draw(st.sampled_from([0] * 9 + [8, -8, 1]))
    return join_safetensors(header, body, delta)


def check_checkpoint_reader(path: Path, blob: bytes) -> None:
    """``load_checkpoint`` gives a working model or a CheckpointError naming ``path``; the file is untouched."""
    path.write_bytes(blob)
    try:
        model, meta = load_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        outcome(path, exc)
    else:
        outcome(path, None)
        assert meta["classes"] and isinstance(meta["architecture"], str)
        with torch.no_grad():
            logits = model(torch.zeros(1, FrontEndConfig.from_dict(meta["front_end"]).num_samples))
        assert logits.shape == (1, len(meta["classes"]))
    assert path.read_bytes() == blob


def test_the_checkpoint_seed_loads(fuzz_dir, checkpoint_seed):
    path = fuzz_dir / "seed.safetensors"
    path.write_bytes(checkpoint_seed)
    model, meta = load_checkpoint(path)
    assert meta["classes"] == CLASSES and split_safetensors(checkpoint_seed)[0]["__metadata__"]["gnft"]


@fuzz_settings(150)
@given(data=st.data())
def test_mutated_checkpoints_load_or_raise_checkpoint_error(fuzz_dir, checkpoint_seed, data):
    n = struct.unpack("<Q", checkpoint_seed[:8])[0]
    blob = data.draw(mutations(checkpoint_seed, [(0, 8)], 8 + n))
    check_checkpoint_reader(fuzz_dir / "mutant.safetensors", blob)


@fuzz_settings(100)
@given(data=st.data())
def test_mangled_checkpoint_headers_load_or_raise_checkpoint_error(fuzz_dir, checkpoint_seed, data):
    blob = data.draw(mangled_headers(checkpoint_seed))
    check_checkpoint_reader(fuzz_dir / "mangled.safetensors", blob)


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
@fuzz_settings(120)
@given(data=st.data())
def test_mangled_metadata_loads_or_raises_checkpoint_error(fuzz_dir, checkpoint_seed, data):
    blob = data.draw(mangled_metadata(checkpoint_seed))
    check_checkpoint_reader(fuzz_dir / "metadata.safetensors", blob)


@fuzz_settings(100)
@given(
    blob=st.binary(max_size=200)
    | st.builds(
        lambda n, tail: struct.pack("<Q", n) + tail,
        st.integers(0, 2**64 - 1) | st.integers(0, 300),
        st.binary(max_size=200),
    )
)
def test_random_bytes_as_checkpoint(fuzz_dir, blob):
    path = fuzz_dir / "random.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError) as info:
        read_metadata(path)
    assert str(path) in str(info.value)
    check_checkpoint_reader(path, blob)


# ------------------------------------------------------------------ .pt files
def pt_bytes(obj: object, zip_format: bool = True) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=zip_format)
    return Seed(buf.getvalue())


@pytest.fixture(scope="module")
def pt_seeds() -> list[bytes]:
    state = tiny_model().state_dict()
    classifier = {k.removeprefix("classifier."): v for k, v in state.items() if k.startswith("classifier.")}
    small = {"fc.weight": torch.ones(2, 3), "fc.bias": torch.zeros(2)}
    return [pt_bytes({"state_dict": classifier, "epoch": 3}), pt_bytes(small, zip_format=False), pt_bytes(small)]


def check_pt_importer(path: Path, blob: bytes) -> None:
    """``import_pt`` gives a working model or a CheckpointError naming ``path``; the file is untouched."""
    path.write_bytes(blob)
    try:
        model, meta = import_pt(path, "smallcnn", CLASSES, FRONT_END.to_dict())
    except CheckpointError as exc:
        assert str(path) in str(exc)
        outcome(path, exc)
    else:
        outcome(path, None)
        with torch.no_grad():
            assert model(torch.zeros(1, 16000)).shape == (1, len(CLASSES))
        assert meta["architecture"] == "smallcnn"
    assert path.read_bytes() == blob


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@fuzz_settings(120)
@given(data=st.data())
def test_mutated_pt_files_import_or_raise_checkpoint_error(fuzz_dir, pt_seeds, data):
    seed = data.draw(st.sampled_from(pt_seeds))
    blob = data.draw(mutations(seed, [], len(seed) if len(seed) < 2000 else 600))
    check_pt_importer(fuzz_dir / "mutant.pt", blob)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@fuzz_settings(60)
@given(blob=st.binary(min_size=1, max_size=200) | st.builds(lambda tail: b"PK\x03\x04" + tail, st.binary(max_size=120)))
def test_random_bytes_as_pt(fuzz_dir, blob):
    check_pt_importer(fuzz_dir / "random.pt", blob)
