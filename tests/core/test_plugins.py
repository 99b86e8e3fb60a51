"""Your own classifier as a plugin architecture: registered, trained, saved, loaded and defended by the commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from core import models
from core.checkpoint import load_checkpoint, save_checkpoint
from core.data.speech_commands import load_speech_commands
from core.errors import ConfigError
from core.features import FrontEndConfig
from core.training import TrainConfig, train_model
from tests.conftest import TINY_WORDS, write_speech_commands

REPO = Path(__file__).resolve().parents[2]
PLUGIN = textwrap.dedent('''
    """A third-party keyword classifier, registered with the workbench."""
    from torch import nn

    from core.models import register_architecture


    class TinyKWS(nn.Module):
        def __init__(self, input_shape, n_classes, width=8):
            super().__init__()
            self.conv = nn.Conv2d(input_shape[0], width, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d((4, 4))
            self.fc = nn.Linear(width * 16, n_classes)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x).relu()).flatten(1))


    register_architecture("tinykws", TinyKWS, "a third-party test classifier", width=8)
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "my_kws_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(models.PLUGINS_ENV, "my_kws_plugin")
    yield tmp_path
    models._REGISTRY.pop("tinykws", None)
    models._plugins_loaded.discard("my_kws_plugin")
    sys.modules.pop("my_kws_plugin", None)


def test_plugin_architecture_trains_saves_loads_and_is_defended_by_the_cli(plugin, tmp_path):
    assert "tinykws" in models.list_models() and "a third-party" in models.describe("tinykws")
    data_dir = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    data = load_speech_commands(data_dir, TINY_WORDS)
    fe = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
    result = train_model(
        data,
        TrainConfig(model="tinykws", epochs=1, batch_size=16, device="cpu", arch_args={"width": 4}),
        front_end=fe,
        show_progress=False,
    )
    path = save_checkpoint(tmp_path / "tinykws.safetensors", result.model, result.metadata)
    loaded, meta = load_checkpoint(path)
    assert meta["architecture"] == "tinykws" and meta["arch_args"] == {"width": 4}
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in result.model.state_dict().items())
    assert [n for n, _ in models.analysable_layers(loaded)] == ["classifier.conv", "classifier.fc"]
    # the command line finds the plugin through $GNFT_PLUGINS, like the application does
    env = {**__import__("os").environ, models.PLUGINS_ENV: "my_kws_plugin", "PYTHONPATH": f"{plugin}:{REPO}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.defend",
            "--model",
            str(path),
            "--data",
            str(data_dir),
            "--vocab",
            ",".join(TINY_WORDS),
            "--defense",
            "gnft",
            "--epochs",
            "1",
            "--clean-ratio",
            "0.5",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(tmp_path / "repaired.safetensors"),
            "--report",
            str(tmp_path / "report.json"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["defense"]["name"] == "gnft" and 0 <= report["after"]["clean_accuracy"] <= 1
    _, repaired = load_checkpoint(tmp_path / "repaired.safetensors")
    assert repaired["architecture"] == "tinykws"


def test_a_broken_plugin_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken_kws_plugin.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(models.PLUGINS_ENV, "broken_kws_plugin")
    with pytest.raises(ConfigError, match="GNFT_PLUGINS: cannot import 'broken_kws_plugin': no GPU here"):
        models.build("not_registered_anywhere", 4)


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(ConfigError, match="already registered"):
        models.register_architecture("resnet", lambda shape, n: None, "an impostor")
