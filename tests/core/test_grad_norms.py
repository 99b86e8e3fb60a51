"""Per-neuron gradient norms: hand-computed per layer kind, and what a defense's observer receives."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from core.analysis import layer_grad_norms, neuron_grad_norms
from core.data.audioset import AudioSet
from core.defenses import GNFT, FineTune
from core.events import NullObserver
from core.features import FrontEndConfig
from core.models import build


def test_linear_and_conv_norms_are_weight_row_plus_bias():
    torch.manual_seed(0)
    lin, conv = nn.Linear(5, 3), nn.Conv2d(2, 4, 3)
    lin(torch.randn(7, 5)).pow(2).sum().backward()
    conv(torch.randn(2, 2, 6, 6)).sum().backward()
    for layer in (lin, conv):
        n = layer.weight.shape[0]
        expected = torch.sqrt(layer.weight.grad.reshape(n, -1).pow(2).sum(1) + layer.bias.grad.pow(2))
        torch.testing.assert_close(layer_grad_norms(layer), expected)
    assert layer_grad_norms(nn.Linear(2, 2)) is None  # no backward yet: nothing to report


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_unit_norm_gathers_its_four_gate_rows(bidirectional):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=bidirectional)
    out, _ = lstm(torch.randn(2, 5, 3))
    out.pow(2).sum().backward()
    norms = layer_grad_norms(lstm)
    dirs = 2 if bidirectional else 1
    assert norms.shape == (2 * dirs * 4,)
    # layer 1, last direction, unit 2, by hand
    sfx = "_reverse" if bidirectional else ""
    rows = [2 + 4 * g for g in range(4)]
    total = sum(
        getattr(lstm, f"{k}_l1{sfx}").grad[rows].pow(2).sum() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )
    torch.testing.assert_close(norms[(1 * dirs + dirs - 1) * 4 + 2], total.sqrt())


def test_model_norms_name_every_classifier_layer_and_count_its_neurons():
    fe = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
    model = build("smallcnn", 4, fe)
    F.cross_entropy(model(torch.randn(3, 16000)), torch.tensor([0, 1, 2])).backward()
    norms = neuron_grad_norms(model)
    assert list(norms) == [
        "classifier.conv1",
        "classifier.conv2",
        "classifier.conv3",
        "classifier.fc1",
        "classifier.fc",
    ]
    assert [v.numel() for v in norms.values()] == [64, 64, 32, 128, 4]
    assert all(bool((v >= 0).all()) and bool(v.sum() > 0) for v in norms.values())
    # another gradient source: the caller's g1 instead of .grad
    halves = neuron_grad_norms(model, lambda p: None if p.grad is None else p.grad / 2)
    torch.testing.assert_close(halves["classifier.fc"], norms["classifier.fc"] / 2)


class Net(nn.Module):
    """No dropout, so the first step's gradient does not depend on the order of the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(32, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


class Watch(NullObserver):
    wants_grad_norms = True

    def __init__(self) -> None:
        self.steps = []

    def on_step(self, info) -> None:
        self.steps.append(info)


def data(n: int = 30) -> AudioSet:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 3
    waves = torch.randn(n, 32, generator=g) + labels.view(-1, 1).float()
    return AudioSet(waves, labels, [f"s{i}" for i in range(n)], ["a", "b", "c"], 16000, {"train": torch.arange(n)})


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_observer_gets_the_clean_gradient_norms_of_each_step(defense):
    torch.manual_seed(0)
    model, ds = Net(), data()
    config = defense.Config(clean_ratio=1.0, epochs=2, batch_size=64, device="cpu", grad_norm_every=1)
    expected_model = copy.deepcopy(model).train()
    F.cross_entropy(expected_model(ds.waves), ds.labels).backward()
    expected = neuron_grad_norms(expected_model)
    watch = Watch()
    defense(config).run(model, ds, watch)
    first = watch.steps[0].grad_norms
    assert set(first) == {"classifier.0", "classifier.3"} and len(first["classifier.0"]) == 8
    for name, values in expected.items():
        # g1, not GN-FT's mixed gradient: equal to the plain gradient on the untouched model
        torch.testing.assert_close(torch.tensor(first[name]), values, rtol=1e-4, atol=1e-6)
    assert watch.steps[1].grad_norms is not None and watch.steps[1].grad_norms != first
    quiet = Watch()
    quiet.wants_grad_norms = False
    defense(config).run(model, ds, quiet)
    assert all(s.grad_norms is None for s in quiet.steps)
    sparse = Watch()
    defense(defense.Config(clean_ratio=1.0, epochs=4, batch_size=64, device="cpu", grad_norm_every=2)).run(
        model, ds, sparse
    )
    assert [s.grad_norms is not None for s in sparse.steps] == [True, False, True, False]
