"""Training augmentation: each transform does what it says, reproducibly, and training records it."""

from __future__ import annotations

import math

import pytest
import torch

from core.augment import AugmentConfig, Augmenter, coloured_noise_like, parse_augment
from core.errors import ConfigError

SR = 16000


def sine(freq: float, n: int = 4, t: int = SR) -> torch.Tensor:
    time = torch.arange(t, dtype=torch.float32) / SR
    return torch.sin(2 * math.pi * freq * time).repeat(n, 1)


def peak_hz(x: torch.Tensor) -> torch.Tensor:
    spec = torch.fft.rfft(x, dim=-1).abs()
    return spec.argmax(dim=-1).float() * SR / x.shape[-1]


def test_parse_presets_pairs_and_errors():
    assert not parse_augment("none").active and not parse_augment(None).active
    default = parse_augment("default")
    assert default.active and default.speed == (0.9, 1.1) and default.shift_ms == 100
    cfg = parse_augment("shift=50,speed=0.95:1.05,noise=0.5,snr=5:20")
    assert cfg == AugmentConfig(shift_ms=50, speed=(0.95, 1.05), noise_prob=0.5, snr_db=(5, 20))
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown augmentation 'reverb'"):
        parse_augment("reverb=1")
    with pytest.raises(ConfigError, match="cannot read augmentation 'shift=abc'"):
        parse_augment("shift=abc")
    with pytest.raises(ConfigError, match="noise probability"):
        parse_augment("noise=1.5")
    with pytest.raises(ConfigError, match="speed range"):
        parse_augment("speed=1.2:0.8")


def test_shift_moves_an_impulse_within_the_limit_and_zero_fills():
    x = torch.zeros(64, SR)
    x[:, SR // 2] = 1.0
    out = Augmenter(AugmentConfig(shift_ms=100), SR, "cpu", seed=0)(x)
    where = out.argmax(dim=-1) - SR // 2
    assert torch.all(out.sum(dim=-1) == 1.0)  # the impulse is moved, never duplicated or lost
    assert int(where.abs().max()) <= SR // 10 and len(set(where.tolist())) > 20
    edge = torch.zeros(8, SR)
    edge[:, 0] = 1.0
    shifted = Augmenter(AugmentConfig(shift_ms=100), SR, "cpu", seed=1)(edge)
    assert torch.all(shifted[:, -SR // 10 :] == 0)  # nothing wraps round from the start to the end


def test_speed_factor_scales_pitch_and_keeps_length():
    x = sine(1000.0)
    fast = Augmenter(AugmentConfig(speed=(1.1, 1.1)), SR, "cpu", seed=0)(x)
    slow = Augmenter(AugmentConfig(speed=(0.9, 0.9)), SR, "cpu", seed=0)(x)
    assert fast.shape == x.shape == slow.shape
    assert torch.allclose(peak_hz(fast), torch.full((4,), 1100.0), atol=3)
    assert torch.allclose(peak_hz(slow), torch.full((4,), 900.0), atol=3)
    # a faster clip is shorter: its zero padding shows at both ends
    assert float(fast[:, :400].abs().max()) == 0.0 and float(fast[:, -400:].abs().max()) == 0.0


def test_noise_hits_the_requested_share_at_the_requested_snr():
    x = sine(440.0, n=400)
    out = Augmenter(AugmentConfig(noise_prob=0.5, snr_db=(20.0, 20.0)), SR, "cpu", seed=3)(x)
    noise = out - x
    hit = noise.abs().amax(dim=-1) > 0
    assert 150 < int(hit.sum()) < 250
    snr = 10 * torch.log10(x[hit].pow(2).mean(-1) / noise[hit].pow(2).mean(-1))
    assert torch.allclose(snr, torch.full_like(snr, 20.0), atol=0.05)


def test_coloured_noise_has_the_asked_slope():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(3, SR)
    noise = coloured_noise_like(x, torch.tensor([0.0, 1.0, 2.0]), g)
    assert torch.allclose(noise.pow(2).mean(-1), torch.ones(3), atol=1e-4)
    spec = torch.fft.rfft(noise, dim=-1).abs().pow(2)
    low, high = spec[:, 10:200].mean(-1), spec[:, 4000:8000].mean(-1)
    ratio = (low / high).log10()
    assert ratio[0] < 0.3 < ratio[1] < ratio[2]  # white flat, pink tilted, brown steepest


def test_same_seed_same_batch_other_seed_other_batch():
    x = sine(300.0, n=16)
    cfg = parse_augment("default")
    a = Augmenter(cfg, SR, "cpu", seed=4)(x)
    b = Augmenter(cfg, SR, "cpu", seed=4)(x)
    c = Augmenter(cfg, SR, "cpu", seed=5)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(Augmenter(AugmentConfig(), SR, "cpu", seed=0)(x), x)
