"""The thread policy: one resolution of ``--threads``/``$GNFT_THREADS``/auto for every entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.errors import ConfigError
from core.runtime import THREADS_ENV, default_threads, machine_info, resolve_threads, set_threads

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_default_is_torchs_own_count_within_the_cpus_this_process_may_use():
    probe = "import torch, core.runtime as r; print(torch.get_num_threads(), r.default_threads(), r.available_cpus())"
    for env in ({}, {"OMP_NUM_THREADS": "1"}):
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, **env},
        )
        torch_default, default, cpus = map(int, proc.stdout.split())
        assert default == min(torch_default, cpus) >= 1
        if env:
            assert default == 1


def test_auto_and_the_environment(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert resolve_threads(None) == resolve_threads("auto") == resolve_threads(" AUTO ") == default_threads()
    monkeypatch.setenv(THREADS_ENV, "3")
    assert resolve_threads(None) == 3 and resolve_threads(2) == 2 and resolve_threads("auto") == default_threads()


@pytest.mark.parametrize("bad", [0, -1, "0", "two", "1.5", True, 2.0])
def test_a_bad_count_names_the_option(bad):
    with pytest.raises(ConfigError, match=r"^--threads must be a whole number >= 1 or auto"):
        resolve_threads(bad)


def test_set_threads_is_in_force_and_recorded(keep_threads):
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    assert machine_info()["torch_threads"] == 1
    assert set_threads("2") == 2 and torch.get_num_threads() == 2
    assert machine_info()["torch_threads"] == 2


def test_a_command_runs_with_the_threads_it_was_given(tmp_path, tiny_sc):
    """``core.train --threads 2`` trains with two threads and says so in its report's machine block;
    without the option the machine's default is used."""
    common = [
        "--data",
        str(tiny_sc),
        "--vocab",
        "yes,no",
        "--model",
        "smallcnn",
        "--epochs",
        "1",
        "--n-coeffs",
        "20",
        "--n-mels",
        "40",
        "--hop-length",
        "320",
        "--device",
        "cpu",
        "--quiet",
    ]
    for given, expected in ((["--threads", "2"], 2), ([], default_threads())):
        report = tmp_path / f"r{len(given)}.json"
        env = {k: v for k, v in os.environ.items() if k != THREADS_ENV}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "core.train",
                *common,
                *given,
                "--out",
                str(tmp_path / f"m{len(given)}.safetensors"),
                "--report",
                str(report),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(report.read_text())["machine"]["torch_threads"] == expected


def test_a_bad_threads_option_is_one_error_before_any_work(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.defend",
            "--model",
            str(tmp_path / "none.safetensors"),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o.safetensors"),
            "--threads",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: --threads must be a whole number >= 1 or auto, got '0'\n"
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.safetensors").exists()
