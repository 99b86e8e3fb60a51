"""Features computed once per run where the input is fixed: the same bits as computing them per batch."""

from __future__ import annotations

import pytest
import torch

from core.attacks import get_attack
from core.data.audioset import AudioSet
from core.evaluation import evaluate
from core.features import FrontEndConfig, clip_features
from core.models import build


@pytest.mark.parametrize("kind", ["mfcc", "logmel"])
def test_features_of_a_batch_are_the_rows_of_the_features_of_all(kind):
    torch.manual_seed(0)
    front = build("smallcnn", 4, FrontEndConfig(kind=kind, n_coeffs=20, n_mels=40, hop_length=320))[0]
    waves = 0.1 * torch.randn(70, 16000)
    every = clip_features(front, waves, 32)
    rows = torch.tensor([5, 69, 0, 33, 31, 32])
    with torch.no_grad():
        assert torch.equal(every[rows], front(waves[rows]))
        assert front(waves[:3]).is_contiguous()


def test_evaluation_with_cached_features_gives_the_same_figures():
    torch.manual_seed(0)
    n = 60
    data = AudioSet(
        waves=0.1 * torch.randn(n, 16000),
        labels=torch.arange(n) % 4,
        speakers=[f"s{i % 5}" for i in range(n)],
        classes=["a", "b", "c", "d"],
        sample_rate=16000,
        splits={"train": torch.arange(0), "validation": torch.arange(0), "test": torch.arange(n)},
    )
    model = build("smallcnn", 4, FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).eval()
    attack = get_attack("badnets", kind="noise", target=1, seed=0)
    plain = evaluate(model, data, "test", attack, batch_size=16)
    cache: dict[str, torch.Tensor] = {}
    first = evaluate(model, data, "test", attack, batch_size=16, cache=cache)
    assert sum("|features|" in k for k in cache) == 2  # the clean and the triggered clips' features
    again = evaluate(model, data, "test", attack, batch_size=16, cache=cache)
    assert plain == first == again and set(plain) >= {"clean_accuracy", "attack_success_rate", "clean_loss"}
    assert evaluate(model, data, "test", None, batch_size=16, cache=cache) == evaluate(
        model, data, "test", None, batch_size=16
    )


def quiet_and_loud() -> tuple[torch.Tensor, torch.Tensor]:
    """A quiet tone with digital silence in its second half, and a loud noise clip 60 dB above it."""
    t = torch.arange(16000) / 16000
    quiet = 0.001 * torch.sin(2 * torch.pi * 440 * t)
    quiet[8000:] = 0.0
    return quiet, 0.9 * torch.randn(16000, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)


@pytest.mark.parametrize("kind", ["mfcc", "logmel"])
def test_a_clips_features_do_not_depend_on_the_other_clips_of_its_batch(kind):
    quiet, loud = quiet_and_loud()
    config = FrontEndConfig(kind=kind, n_coeffs=20, n_mels=40, hop_length=320)
    assert config.db_floor == "clip"
    front = build("smallcnn", 4, config)[0].eval()
    with torch.no_grad():
        alone = front(quiet[None])
        beside = front(torch.stack([loud, quiet]))[1:]
        assert torch.allclose(alone, beside, atol=1e-4)
        # the floor over the batch (models made before db_floor): the loud clip raises the quiet one's floor
        old = build("smallcnn", 4, FrontEndConfig(kind=kind, n_coeffs=20, n_mels=40, hop_length=320, db_floor="batch"))
        old_front = old[0].eval()
        assert torch.allclose(old_front(quiet[None]), alone, atol=1e-4)  # alone, both floors are the clip's
        assert (old_front(torch.stack([loud, quiet]))[1:] - alone).abs().max() > 1.0


def test_the_floor_setting_is_checked():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="db_floor must be 'clip' or 'batch'"):
        FrontEndConfig(db_floor="frame")
