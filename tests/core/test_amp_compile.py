"""The GPU-path options on the CPU: bf16 autocast (``amp``) for defenses and training.

``compile`` is checked by ``benchmarks/gpu_path.py`` (compiled vs eager weights with dropout off, and the
speed-ups): compiling takes minutes on this CPU, too long for the unit suite.
"""

from __future__ import annotations

import pytest
import torch

from core.data.speech_commands import load_speech_commands
from core.defenses import GNFT, FineTune, GNFTConfig
from core.errors import ConfigError
from core.features import FrontEndConfig
from core.models import build
from core.training import TrainConfig, train_model
from tests.conftest import TINY_WORDS, write_speech_commands

FE = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    data = load_speech_commands(
        write_speech_commands(tmp_path_factory.mktemp("amp") / "sc", speakers=4, per_speaker=1), TINY_WORDS
    )
    torch.manual_seed(0)
    return data, build("smallcnn", 4, FE).eval()


def _dtypes_seen(model):
    seen = []
    hook = model.classifier.fc.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen, hook


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_bf16_autocast_runs_the_steps_in_bf16_and_keeps_float32_weights(small, defense):
    data, model = small
    config = defense.Config(clean_ratio=1.0, epochs=1, batch_size=8, device="cpu", lr=0.01, amp="bf16")
    seen, hook = _dtypes_seen(model)
    try:
        result = defense(config).run(model, data)
    finally:
        hook.remove()
    assert seen and set(seen) == {torch.bfloat16}  # every training forward (both GN-FT passes) in bf16
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in result.model.parameters())
    plain = defense(dataclass_replace(config, amp="none")).run(model, data).model
    assert any(not torch.equal(p, q) for p, q in zip(plain.parameters(), result.model.parameters()))


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_amp_is_validated():
    with pytest.raises(ConfigError, match="amp must be none or bf16"):
        GNFTConfig(amp="fp8").validate()


def test_training_with_bf16_autocast_records_it(small):
    data, _ = small
    config = TrainConfig(model="smallcnn", epochs=1, batch_size=16, patience=1, device="cpu", amp="bf16")
    result = train_model(data, config, front_end=FE, show_progress=False)
    assert result.metadata["provenance"]["training"]["amp"] == "bf16"
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert 0.0 <= result.report["clean_accuracy"] <= 1.0
