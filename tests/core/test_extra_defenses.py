"""The two defenses beyond the paper: FT-SAM (adaptive sharpness-aware fine-tuning) and CLP (data-free pruning)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from core.data.speech_commands import load_speech_commands
from core.defenses import CLP, DEFENSES, FTSAM, CLPConfig, FTSAMConfig, GNFTStep
from core.defenses.clp import channel_lipschitz
from core.errors import ConfigError
from core.features import FrontEndConfig
from core.models import build
from tests.conftest import TINY_WORDS, write_speech_commands
from tests.core.test_gnft import Tiny, batch, tiny_set

SMALL_FE = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)


def test_registered_with_their_papers_defaults():
    assert DEFENSES["ftsam"] is FTSAM and DEFENSES["clp"] is CLP
    f, c = FTSAMConfig(), CLPConfig()
    assert (f.rho, f.adaptive, f.lr, f.momentum, f.clean_ratio) == (2.0, True, 0.01, 0.9, 0.05)
    assert (c.u, c.epochs) == (3.0, 0)
    with pytest.raises(ConfigError, match="rho"):
        FTSAM(FTSAMConfig(rho=-1))
    with pytest.raises(ConfigError, match="u must be positive"):
        CLP(CLPConfig(u=0))


def test_adaptive_sam_gradient_matches_a_copy_based_reference():
    torch.manual_seed(0)
    model = Tiny().train()
    x, y = batch()
    ref = copy.deepcopy(model)
    torch.manual_seed(5)
    F.cross_entropy(ref(x), y).backward()
    g = {n: p.grad.clone() for n, p in ref.named_parameters()}
    t = {n: p.detach().abs() + 0.01 for n, p in ref.named_parameters()}
    total = torch.sqrt(sum((t[n] * g[n]).pow(2).sum() for n in g))
    twin = copy.deepcopy(ref)
    with torch.no_grad():
        for n, p in twin.named_parameters():
            p.add_(2.0 * t[n] ** 2 * g[n] / total)
    twin.zero_grad()
    torch.manual_seed(5)
    F.cross_entropy(twin(x), y).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(5)
    GNFTStep(model, alpha=1.0, r=2.0, norm="global", adaptive=True)(model, x, y)
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
        assert torch.equal(p, before[n])  # restored exactly after the large perturbation


def test_ftsam_run_repairs_a_copy():
    torch.manual_seed(0)
    model = Tiny().eval()
    original = copy.deepcopy(model.state_dict())
    result = FTSAM(FTSAMConfig(clean_ratio=0.5, epochs=2, batch_size=8, device="cpu")).run(model, tiny_set())
    assert not result.cancelled and result.config["rho"] == 2.0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert any(not torch.equal(v, result.model.state_dict()[k]) for k, v in original.items())


def test_channel_lipschitz_is_the_filter_spectral_norm_times_the_bn_gain():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.weight.uniform_(-2, 2)
        bn.running_var.uniform_(0.5, 2)
    lips = channel_lipschitz(conv, bn)
    k = 3
    expected = (
        torch.linalg.svdvals(conv.weight[k].reshape(3, 9))[0]
        * bn.weight[k].abs()
        / torch.sqrt(bn.running_var[k] + bn.eps)
    )
    torch.testing.assert_close(lips[k], expected)
    torch.testing.assert_close(channel_lipschitz(conv, None)[k], torch.linalg.svdvals(conv.weight[k].reshape(3, 9))[0])


def planted_smallcnn(channel: int = 7) -> nn.Module:
    torch.manual_seed(0)
    model = build("smallcnn", 4, SMALL_FE).eval()
    with torch.no_grad():
        model.classifier.conv2.weight[channel] *= 40.0  # one channel with an outsized Lipschitz bound
    return model


def test_clp_prunes_the_planted_channel_without_data_and_zeroes_its_output():
    model = planted_smallcnn()
    original = copy.deepcopy(model.state_dict())
    seen = []
    result = CLP(CLPConfig(device="cpu")).run(
        model, tiny_set(), evaluate=lambda m: seen.append(1) or {"clean_accuracy": 0.5}
    )
    assert result.clean_clips == 0 and [h["epoch"] for h in result.history] == [0] and seen == [1]
    assert 7 in result.details["pruned_channels"]["classifier.conv2"]
    assert result.details["conv_channels"] == 64 + 64 + 32
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())  # input untouched
    repaired = result.model
    out = {}
    repaired.classifier.bn2.register_forward_hook(lambda m, i, o: out.setdefault("bn2", o))
    with torch.no_grad():
        repaired(torch.randn(3, 16000))
    assert float(out["bn2"][:, 7].abs().max()) == 0.0 and float(out["bn2"][:, 0].abs().max()) > 0


def test_clp_with_fine_tuning_keeps_pruned_channels_at_zero(tmp_path):
    model = planted_smallcnn()
    data = load_speech_commands(write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1), TINY_WORDS)
    result = CLP(CLPConfig(device="cpu", epochs=2, clean_ratio=1.0, batch_size=8)).run(model, data)
    assert result.clean_clips > 0
    w = result.model.classifier.conv2.weight
    assert float(w[7].detach().abs().max()) == 0.0 and float(result.model.classifier.bn2.weight[7].detach()) == 0.0
    assert not torch.equal(result.model.classifier.fc.weight, model.classifier.fc.weight)  # it did fine-tune


def test_clp_refuses_a_model_without_convolutions():
    model = build("rnn", 4, SMALL_FE)
    with pytest.raises(ConfigError, match="no Conv2d layer"):
        CLP(CLPConfig(device="cpu")).run(model, tiny_set())
