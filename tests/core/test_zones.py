"""CLC/BLC: batched exact values equal the one-neuron-at-a-time definition on every layer kind."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch.nn import functional as F

from core.analysis import mean_grad_norms
from core.analysis.zones import (
    analyse_layer,
    assign_zones,
    backdoor_set,
    exact_loss_changes,
    first_order_loss_changes,
    looped_loss_changes,
    neuron_count,
    rank_correlation,
)
from core.errors import ConfigError
from core.features import FrontEndConfig
from core.models import build

FE = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)


def clips(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16000, generator=g) * 0.1, torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize(
    "arch, args, layer",
    [
        ("smallcnn", {}, "classifier.conv2"),  # conv, ReLU then BN after it
        ("smallcnn", {}, "classifier.fc"),  # the output layer
        ("resnet", {}, "classifier.layer2.0.conv1"),  # inside a residual block
        ("resnet", {}, "classifier.layer2.0.downsample.0"),  # the shortcut's conv
        ("rnn", {"hidden": 8}, "classifier.lstm"),  # a 3-layer LSTM: 24 units
        ("lstm_attention", {"hidden": 8}, "classifier.lstm1"),  # bidirectional
        ("lstm_attention", {"hidden": 8}, "classifier.fc1"),  # linear after attention
    ],
)
def test_batched_equals_looped(arch, args, layer, caplog):
    caplog.set_level(logging.DEBUG, logger="core.analysis")
    torch.manual_seed(1)
    model = build(arch, 4, FE, **args).eval()
    before = copy.deepcopy(model.state_dict())
    waves, labels = clips()
    looped = looped_loss_changes(model, layer, waves, labels)
    batched = exact_loss_changes(model, layer, waves, labels, batch_size=4, neurons_per_pass=5)
    assert looped.shape == (neuron_count(dict(model.named_modules())[layer]),)
    assert float(looped.abs().max()) > 0  # pruning changes something
    torch.testing.assert_close(batched, looped, rtol=0, atol=2e-6)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # weights restored, hooks gone
    assert "lazy batching failed" not in caplog.text  # the cheap path ran, it did not fall back
    # every cached output repeated up front (the fallback), default grouping, one chunk of clips
    again = exact_loss_changes(model, layer, waves, labels, lazy=False)
    torch.testing.assert_close(again, looped, rtol=0, atol=2e-6)


def test_looped_is_zeroing_the_filter_by_hand():
    torch.manual_seed(2)
    model = build("smallcnn", 4, FE).eval()
    waves, labels = clips()
    got = looped_loss_changes(model, "classifier.conv3", waves, labels)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        base = F.cross_entropy(twin(waves), labels)
        twin.classifier.conv3.weight[5] = 0.0  # bias and BatchNorm left alone, as the authors did
        pruned = F.cross_entropy(twin(waves), labels)
    assert abs(float(got[5]) - float(pruned - base)) < 1e-6


def test_first_order_is_minus_weight_times_gradient_and_tracks_the_exact_values():
    torch.manual_seed(3)
    model = build("smallcnn", 4, FE).eval()
    waves, labels = clips(12)
    est = first_order_loss_changes(model, "classifier.fc1", waves, labels)
    model.zero_grad()
    F.cross_entropy(model(waves), labels).backward()
    w = model.classifier.fc1.weight
    assert abs(float(est[9]) + float((w[9] * w.grad[9]).sum().detach())) < 1e-6
    exact = exact_loss_changes(model, "classifier.fc1", waves, labels)
    assert rank_correlation(est, exact) > 0.5


def test_rank_correlation_and_ties():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rank_correlation(a, a * 10) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([5.0, 5.0, 9.0])) == pytest.approx(1.0)
    assert rank_correlation(a, torch.ones(4)) != rank_correlation(a, torch.ones(4))  # NaN for a constant side


def test_zones_on_constructed_values_and_thresholds():
    clc = torch.tensor([0.5, -0.1, 0.3, 0.0, 0.2])
    blc = torch.tensor([-0.2, 0.4, 0.6, 0.0, 0.05])
    assert assign_zones(clc, blc) == ["clean", "backdoor", "hybrid", "redundant", "hybrid"]
    assert assign_zones(clc, blc, t_clc=0.25, t_blc=0.1) == ["clean", "backdoor", "hybrid", "redundant", "redundant"]
    with pytest.raises(ConfigError, match="differ in shape"):
        assign_zones(clc, blc[:3])


def test_backdoor_set_is_triggered_non_target_plus_target_clips():
    waves = torch.arange(5.0).view(5, 1).repeat(1, 3)
    labels = torch.tensor([0, 2, 1, 2, 3])
    x, y = backdoor_set(waves, labels, waves + 100, target=2)
    assert x[:, 0].tolist() == [100.0, 102.0, 104.0, 1.0, 3.0] and y.tolist() == [2] * 5


def test_analyse_layer_counts_and_errors():
    torch.manual_seed(4)
    model = build("smallcnn", 4, FE).eval()
    waves, labels = clips()
    result = analyse_layer(model, "classifier.conv3", (waves, labels), (waves, torch.full_like(labels, 2)))
    assert sum(result.counts().values()) == 32 and len(result.to_dict()["clc"]) == 32
    with pytest.raises(ConfigError, match="no layer 'classifier.conv9'"):
        exact_loss_changes(model, "classifier.conv9", waves, labels)
    with pytest.raises(ConfigError, match="method"):
        analyse_layer(model, "classifier.fc", (waves, labels), (waves, labels), method="guess")


def test_mean_grad_norms_match_per_neuron_autograd():
    torch.manual_seed(5)
    model = build("smallcnn", 4, FE)
    model.train()
    waves, labels = clips(8)
    got = mean_grad_norms(model, waves, labels, batch_size=4, ord=1, include_bias=False)
    assert model.training and all(p.grad is None for p in model.parameters())  # left as it was
    # by hand: per batch, per neuron, the L1 norm of d loss / d (that neuron's filter), then the mean
    model.eval()
    w = model.classifier.conv2.weight
    expected = torch.zeros(w.shape[0])
    for start in (0, 4):
        loss = F.cross_entropy(model(waves[start : start + 4]), labels[start : start + 4])
        (g,) = torch.autograd.grad(loss, [w])
        expected += torch.stack([g[k].abs().sum() for k in range(w.shape[0])]) / 2
    torch.testing.assert_close(got["classifier.conv2"], expected, rtol=1e-5, atol=1e-7)
    l2 = mean_grad_norms(model, waves, labels, batch_size=8, layers=["classifier.fc"])
    assert list(l2) == ["classifier.fc"] and l2["classifier.fc"].shape == (4,)


def test_feature_domain_trigger_zones_equal_the_patch_applied_by_hand():
    """badnets-mfcc has nothing to play: its BLC is the backdoor loss change with the MFCC patch
    applied inside the full model, and CLC the clean one, neuron by neuron."""
    from core.analysis.model import zone_model, zone_sets
    from core.attacks import get_attack
    from core.data.audioset import AudioSet

    torch.manual_seed(3)
    model = build("smallcnn", 4, FE).eval()
    waves, labels = clips(8, seed=4)
    labels[:2] = 1  # target-class clips too: they join the backdoor set unpatched
    data = AudioSet(waves, labels, [f"s{i}" for i in range(8)], ["a", "b", "c", "d"], 16000, {"test": torch.arange(8)})
    attack = get_attack("badnets-mfcc", target=1)
    with pytest.raises(ConfigError, match="front end"):
        zone_sets(data, attack)  # features need the model's front end
    clean, bd = zone_sets(data, attack, model=model)
    got = analyse_layer(zone_model(model, attack), "classifier.conv3", clean, bd)
    assert not model.training and not model.classifier.training  # the wrapper left the model in eval mode

    def losses(m):
        with torch.no_grad():
            feats = m[0](waves)
            nt = labels != 1
            bd_logits = torch.cat([m[1](attack.apply_features(feats[nt])), m[1](feats[~nt])])
            return (
                F.cross_entropy(m[1](feats), labels),
                F.cross_entropy(bd_logits, torch.full((8,), 1, dtype=labels.dtype)),
            )

    twin = copy.deepcopy(model)
    base_clean, base_bd = losses(twin)
    with torch.no_grad():
        unpatched_bd = F.cross_entropy(twin(waves), torch.full((8,), 1))
    assert float(base_bd) != pytest.approx(float(unpatched_bd))  # the patch changes the backdoor loss
    for k in (0, 5):
        with torch.no_grad():
            twin.classifier.conv3.weight.copy_(model.classifier.conv3.weight)
            twin.classifier.conv3.weight[k] = 0.0
        pruned_clean, pruned_bd = losses(twin)
        assert abs(float(got.clc[k]) - float(pruned_clean - base_clean)) < 1e-5
        assert abs(float(got.blc[k]) - float(pruned_bd - base_bd)) < 1e-5
    assert {n for n, _ in zone_model(model, attack).named_modules()} >= {"classifier.conv3"}  # names kept


def test_zone_sets_leave_the_loaded_models_mode_alone():
    """Precomputing features for a feature-domain trigger runs the front end in eval mode, but the
    model the user loaded keeps the mode it had (here train), front end and classifier alike."""
    from core.analysis.model import zone_sets
    from core.attacks import get_attack
    from core.data.audioset import AudioSet

    torch.manual_seed(5)
    model = build("smallcnn", 4, FE).train()
    waves, labels = clips(6, seed=6)
    data = AudioSet(waves, labels, [f"s{i}" for i in range(6)], ["a", "b", "c", "d"], 16000, {"test": torch.arange(6)})
    (feats, _), _ = zone_sets(data, get_attack("badnets-mfcc", target=1), model=model)
    assert model.training and model[0].training and model[1].training
    with torch.no_grad():
        expected = model[0].eval()(waves)
    torch.testing.assert_close(feats, expected)  # the features are the eval-mode front end's
