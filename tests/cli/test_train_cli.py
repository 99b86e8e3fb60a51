"""``python -m core.train`` end to end: files written, report contract, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
SMALL_FE = ["--n-coeffs", "20", "--n-mels", "40", "--hop-length", "320"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.train", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_backdoored_training_writes_checkpoint_and_report(tiny_sc, tmp_path):
    out, report = tmp_path / "m.safetensors", tmp_path / "r.json"
    proc = run(
        "--data",
        str(tiny_sc),
        "--vocab",
        "yes,no,up,down",
        "--model",
        "smallcnn",
        *SMALL_FE,
        "--attack",
        "badnets",
        "--attack-arg",
        "kind=noise",
        "--attack-arg",
        "poison_rate=0.2",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    assert "attack success rate" in proc.stdout and str(out) in proc.stdout
    rep = json.loads(report.read_text())
    for key in ("clean_accuracy", "attack_success_rate", "robust_accuracy"):
        assert 0.0 <= rep[key] <= 1.0
    assert rep["command"].startswith("python -m core.train") and "--attack badnets" in rep["command"]
    assert rep["device"] == "cpu" and rep["seconds"] > 0 and rep["attack"]["params"]["seed"] == 3
    model, meta = load_checkpoint(out)
    assert meta["front_end"]["n_coeffs"] == 20 and meta["provenance"]["attack"]["params"]["kind"] == "noise"
    assert meta["classes"] == ["yes", "no", "up", "down"] and meta["provenance"]["seed"] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/nonexistent/folder"], "no such dataset folder"),
        (["--attack", "laser"], "unknown attack 'laser'"),
        (["--attack", "badnets", "--attack-arg", "poison_rate=2"], "poison_rate must be in"),
        (["--model", "transformer"], "unknown"),
        (["--vocab", "yes,cat"], "no folder for the word(s) cat"),
        (["--augment", "speed=2:1"], "augment speed range"),
    ],
)
def test_bad_input_is_one_clear_line(tiny_sc, tmp_path, args, message):
    base = {"--data": str(tiny_sc), "--out": str(tmp_path / "m.safetensors"), "--vocab": "yes,no,up,down"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    extra = [a for a in args if a == "--attack-arg"]
    flat = [x for k, v in base.items() if k != "--attack-arg" for x in (k, v)]
    if extra:
        flat += ["--attack-arg", args[args.index("--attack-arg") + 1]]
    proc = run(*flat, "--epochs", "1", "--device", "cpu")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_help_lists_models_and_attacks():
    proc = run("--help")
    assert proc.returncode == 0
    for word in ("resnet", "lstm_attention", "badnets", "--attack-arg", "--device", "--seed"):
        assert word in proc.stdout
