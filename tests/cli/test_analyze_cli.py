"""``python -m core.analyze``: JSON that loads and agrees with the engine, a PNG of the stated size, clear errors."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.analysis.zones import ZONES, looped_loss_changes
from core.attacks import get_attack
from core.checkpoint import load_checkpoint, save_checkpoint
from core.cli.analyze import main
from core.data.speech_commands import load_speech_commands
from core.features import FrontEndConfig
from core.training import TrainConfig, train_model
from tests.conftest import TINY_WORDS, write_speech_commands

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    data_dir = write_speech_commands(root / "sc", speakers=8, per_speaker=2)
    data = load_speech_commands(data_dir, TINY_WORDS)
    fe = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
    attacked = train_model(
        data,
        TrainConfig(model="smallcnn", epochs=3, batch_size=32, lr=3e-3, device="cpu"),
        get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10),
        front_end=fe,
        show_progress=False,
    )
    other = train_model(
        data,
        TrainConfig(model="smallcnn", epochs=1, batch_size=32, lr=3e-3, device="cpu", seed=1),
        get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10),
        front_end=fe,
        show_progress=False,
    )
    lstm = train_model(
        data, TrainConfig(model="smalllstm", epochs=1, batch_size=32, device="cpu"), front_end=fe, show_progress=False
    )
    for name, result in (("attacked", attacked), ("other", other), ("lstm", lstm)):
        save_checkpoint(root / f"{name}.safetensors", result.model, result.metadata)
    return root, data_dir, data


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_analysis_with_comparison_json_and_png(workspace, tmp_path, capsys):
    root, data_dir, data = workspace
    out, plot = tmp_path / "a.json", tmp_path / "a.png"
    layers = "classifier.conv3,classifier.fc1"
    assert (
        main(
            [
                "--model",
                str(root / "attacked.safetensors"),
                "--compare",
                str(root / "other.safetensors"),
                "--data",
                str(data_dir),
                "--vocab",
                ",".join(TINY_WORDS),
                "--layers",
                layers,
                "--device",
                "cpu",
                "--out",
                str(out),
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    assert "zones clean" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["attack_source"] == "checkpoint metadata" and result["layers"] == layers.split(",")
    for side in ("model", "after"):
        entry = result[side]["layers"]["classifier.conv3"]
        assert len(entry["clc"]) == len(entry["blc"]) == len(entry["grad_norm"]) == len(entry["zones"]) == 32
        assert sum(result[side]["summary"]["zone_counts"].values()) == 32 + 128
        assert -1 <= entry["first_order_rank_correlation"]["clc"] <= 1
    assert set(result["zone_counts_before_after"]) == set(ZONES)
    # the CLC in the file is the definition's: zero one filter at a time on the test split
    model, _ = load_checkpoint(root / "attacked.safetensors")
    test = data.splits["test"]
    looped = looped_loss_changes(model, "classifier.conv3", data.waves[test], data.labels[test])
    torch.testing.assert_close(
        torch.tensor(result["model"]["layers"]["classifier.conv3"]["clc"], dtype=torch.float64),
        looped,
        rtol=0,
        atol=2e-6,
    )
    assert png_size(plot) == (1200, 900)  # 12 x 4.5 inches per model at 100 dpi, two models


def test_model_without_attack_gives_gradient_norms_only(workspace, tmp_path):
    root, data_dir, _ = workspace
    out, plot = tmp_path / "l.json", tmp_path / "l.png"
    assert (
        main(
            [
                "--model",
                str(root / "lstm.safetensors"),
                "--data",
                str(data_dir),
                "--vocab",
                ",".join(TINY_WORDS),
                "--layers",
                "classifier.lstm",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    entry = result["model"]["layers"]["classifier.lstm"]
    assert len(entry["grad_norm"]) == 2 * 128 and "clc" not in entry and "no attack information" in result["note"]
    assert png_size(plot) == (1200, 450)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--layers", "classifier.conv9"], "no layer(s) classifier.conv9"),
        (["--compare", "lstm.safetensors"], "is a smalllstm"),
        (["--split", "holdout"], "--split: invalid choice: 'holdout'"),
    ],
)
def test_bad_input_one_line(workspace, tmp_path, extra, message):
    root, data_dir, _ = workspace
    extra = [str(root / e) if e.endswith(".safetensors") else e for e in extra]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.analyze",
            "--model",
            str(root / "attacked.safetensors"),
            "--data",
            str(data_dir),
            "--vocab",
            ",".join(TINY_WORDS),
            *extra,
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "x.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.json").exists()
