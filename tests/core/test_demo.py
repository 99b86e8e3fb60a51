"""The demo workspace: built once (corpus + backdoored model), then reused; an unfinished or damaged
build is redone; the model shipped with the package is backdoored and accurate on a fresh corpus."""

from __future__ import annotations

import json

import pytest

from core.checkpoint import load_checkpoint, read_metadata
from core.cli.demo import main
from core.data.speech_commands import load_speech_commands
from core.data.synth import generate_corpus
from core.demo import (
    DEMO_VERSION,
    FRONT_END,
    MARKER,
    RECIPE,
    SHIPPED_INFO,
    SHIPPED_MODEL,
    _measure,
    cached_demo,
    ensure_demo,
)


def test_build_once_then_reuse_then_rebuild(tmp_path, capsys):
    folder = tmp_path / "demo"
    demo = ensure_demo(folder, clips_per_word=6, epochs=1)
    info = json.loads((folder / "demo.json").read_text())
    assert demo.model.is_file() and demo.data.is_dir() and info["model"] == demo.model.name
    assert info["model_source"] == "trained" and info["demo_version"] == DEMO_VERSION
    model, meta = load_checkpoint(demo.model)
    assert meta["provenance"]["attack"]["name"] == "badnets" and meta["architecture"] == "smallcnn"
    data = load_speech_commands(demo.data, meta["classes"])
    assert list(data.classes) == meta["classes"] and len(data) == 60
    stamp = demo.model.stat().st_mtime_ns
    assert ensure_demo(folder, clips_per_word=6, epochs=1).model.stat().st_mtime_ns == stamp  # cached
    (folder / "demo.json").unlink()  # as after a cancelled or interrupted build
    assert cached_demo(folder) is None
    assert main(["--out", str(folder), "--clips-per-word", "6", "--epochs", "1", "--device", "cpu"]) == 0
    assert cached_demo(folder) is not None and "demo in" in capsys.readouterr().out


def test_default_build_uses_the_shipped_model_and_checks_it(tmp_path):
    folder = tmp_path / "demo"
    demo = ensure_demo(folder, clips_per_word=8)
    assert demo.info["model_source"] == "shipped" and demo.model.read_bytes() == SHIPPED_MODEL.read_bytes()
    assert cached_demo(folder) == demo and not list(folder.glob(".*.tmp"))
    for key in ("clean_accuracy", "attack_success_rate"):  # measured on this corpus's test split
        assert 0.0 <= demo.info[key] <= 1.0
    assert len(load_speech_commands(demo.data, "scd10")) == 80


def test_shipped_model_and_its_record():
    meta = read_metadata(SHIPPED_MODEL)
    assert meta["architecture"] == RECIPE["model"] and meta["front_end"]["n_coeffs"] == FRONT_END.n_coeffs
    assert meta["provenance"]["attack"]["name"] == "badnets"
    record = json.loads(SHIPPED_INFO.read_text())
    assert record["model"] == SHIPPED_MODEL.name and record["recipe"] == RECIPE
    assert record["command"].startswith("python -m core.demo --rebuild") and record["machine"]["cpu"]
    assert record["corpus"]["seed"] == RECIPE["corpus_seed"] and record["corpus"]["content_sha256"]
    params = meta["provenance"]["attack"]["params"]  # the trigger the recipe names (a noise burst)
    assert (
        all(params[k] == v for k, v in RECIPE["attack_args"].items()) and params["poison_rate"] == RECIPE["poison_rate"]
    )
    # the targets, on the test split of the corpus it was trained on
    assert record["measured"]["clean_accuracy"] >= 0.85 and record["measured"]["attack_success_rate"] >= 0.95


def test_shipped_model_is_accurate_and_backdoored_on_a_freshly_generated_corpus(tmp_path):
    # another seed than the shipped model's corpus: other voices, as a corpus made on another CPU is
    # other bytes; small, but with enough held-out voices (14 test speakers) to measure
    generate_corpus(tmp_path / "c", "scd10", clips_per_word=80, seed=7, progress=False)
    data = load_speech_commands(tmp_path / "c", "scd10")
    measured = _measure(SHIPPED_MODEL, data)
    assert measured["clean_accuracy"] >= 0.85, measured
    assert measured["attack_success_rate"] >= 0.95, measured  # 1.0 measured (docs/experiments/demo_model.md)


def _write(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"data": "scd10", "model": "badnets',
        "\x00\xff garbage",
        "[1, 2, 3]",
        '"demo"',
        "null",
        "42",
        "[" * 100000 + "]" * 100000,
        json.dumps({"demo_version": DEMO_VERSION}),
        json.dumps({"demo_version": DEMO_VERSION, "data": 3, "model": ["x"]}),
        json.dumps({"demo_version": DEMO_VERSION, "data": "scd10", "model": "missing.safetensors"}),
        json.dumps({"demo_version": DEMO_VERSION, "data": "../..", "model": "/etc/passwd"}),
        json.dumps({"demo_version": 1, "data": "scd10", "model": "badnets_smallcnn.safetensors"}),  # an older demo
    ],
)
def test_a_damaged_marker_means_build_again_never_a_traceback(tmp_path, text):
    folder = tmp_path / "demo"
    (folder / "scd10").mkdir(parents=True)
    (folder / "scd10" / "synth_info.json").write_text("{}")
    (folder / "badnets_smallcnn.safetensors").write_bytes(b"x")
    _write(folder, text)
    assert cached_demo(folder) is None


def test_a_damaged_marker_is_rebuilt(tmp_path):
    folder = tmp_path / "demo"
    _write(folder, '{"data": "scd10", "model": "badnets_smallcnn.safetensors", "demo_ver')  # truncated
    (folder / MARKER).with_suffix(".bin").write_bytes(b"\xff\xfe")  # an unrelated file is cleared too
    demo = ensure_demo(folder, clips_per_word=6)
    assert cached_demo(folder) == demo and demo.info["model_source"] == "shipped"
    assert not (folder / MARKER).with_suffix(".bin").exists()


def test_marker_that_is_a_folder_or_missing_folder(tmp_path):
    assert cached_demo(tmp_path / "nowhere") is None
    (tmp_path / "demo" / MARKER).mkdir(parents=True)
    assert cached_demo(tmp_path / "demo") is None
