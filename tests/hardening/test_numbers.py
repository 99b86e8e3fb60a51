"""Numbers that would train nothing, or poison a run, are refused with the option named, before any work."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from core.defenses import DEFENSES
from core.errors import ConfigError
from core.training import TrainConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "nothing would be trained"),
        ("epochs", -1, "nothing would be trained"),
        ("batch_size", -4, "nothing would be trained"),
        ("patience", 0, "nothing would be trained"),
        ("lr", 0.0, "lr must be a positive number"),
        ("lr", math.nan, "lr must be a positive number"),
        ("lr", math.inf, "lr must be a positive number"),
        ("weight_decay", -0.1, "weight_decay must be"),
        ("weight_decay", math.nan, "weight_decay must be"),
    ],
)
def test_training_settings_that_would_train_nothing(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    "defense, field, value",
    [
        ("gnft", "lr", math.nan),
        ("gnft", "lr", math.inf),
        ("gnft", "r", math.nan),
        ("gnft", "r", math.inf),
        ("gnft", "momentum", -0.5),
        ("ft", "weight_decay", -1.0),
        ("ft", "max_grad_norm", math.nan),
        ("ftsam", "rho", math.nan),
    ],
)
def test_defense_numbers_that_are_not_numbers(defense, field, value):
    with pytest.raises(ConfigError, match=field):
        DEFENSES[defense].Config(**{field: value}).validate()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "nothing would be trained"),
        (["--batch-size", "-4"], "nothing would be trained"),
        (["--lr", "0"], "lr must be a positive number"),
        (["--lr", "nan"], "lr must be a positive number"),
    ],
)
def test_core_train_refuses_before_reading_the_data(tmp_path, args, message):
    out = tmp_path / "m.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "core.train", "--data", str(tmp_path / "no-data"), "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("ratio", ["0", "-0.1", "1.5", "nan"])
def test_core_analyze_refuses_a_clean_share_outside_0_1(tmp_path, ratio):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.analyze",
            "--model",
            str(tmp_path / "m.safetensors"),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "z.json"),
            "--clean-ratio",
            ratio,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--clean-ratio must be a share in (0, 1]" in proc.stderr, proc.stderr
