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
