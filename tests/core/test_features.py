"""Front ends: real torchaudio transforms, shapes, settings, errors."""

from __future__ import annotations

import math

import pytest
import torch

from core.errors import ConfigError
from core.features import FrontEndConfig, build_front_end


@pytest.mark.parametrize(
    "config, shape",
    [
        (FrontEndConfig(), (1, 101, 40)),  # the authors' BadNets/JingleBack settings
        (FrontEndConfig(sample_rate=44100, n_fft=1103, hop_length=441), (1, 100, 40)),  # Ultrasonic
        (FrontEndConfig(n_coeffs=13, n_fft=2048, hop_length=512), (1, 32, 13)),  # FlowMur
        (FrontEndConfig(kind="logmel", n_mels=64), (1, 101, 64)),
    ],
)
def test_shapes_match_the_declared_output(config, shape):
    fe = build_front_end(config)
    out = fe(torch.randn(3, config.num_samples))
    assert tuple(out.shape) == (3, *shape) and fe.output_shape() == shape
    assert torch.isfinite(out).all()


def test_single_clip_and_dict_round_trip():
    config = FrontEndConfig(kind="logmel")
    fe = build_front_end(config.to_dict())
    assert fe.config == config
    assert fe(torch.randn(16000)).shape == (1, 1, 101, 80)


def test_mfcc_separates_a_low_and_a_high_tone():
    t = torch.arange(16000) / 16000
    low, high = torch.sin(2 * math.pi * 300 * t), torch.sin(2 * math.pi * 3000 * t)
    feats = build_front_end()(torch.stack([low, high]))
    assert (feats[0] - feats[1]).abs().mean() > 1.0


def test_bad_settings():
    with pytest.raises(ConfigError, match="kind"):
        FrontEndConfig(kind="wavelet")
    with pytest.raises(ConfigError, match="n_coeffs"):
        FrontEndConfig(n_coeffs=100, n_mels=40)
    with pytest.raises(ConfigError, match="hop_length must be positive"):
        FrontEndConfig(hop_length=0)
    with pytest.raises(ConfigError, match="unknown front end settings: colour"):
        FrontEndConfig.from_dict({"colour": 1})
    # sizes the transform cannot take are refused here, not as torch's padding error at the first clip
    with pytest.raises(ConfigError, match="n_fft must be at most 65536"):
        FrontEndConfig(n_fft=2_000_000)
    with pytest.raises(ConfigError, match=r"n_fft must be less than twice the clip length \(2000 samples\)"):
        FrontEndConfig(num_samples=1000, n_fft=2000)
    with pytest.raises(ConfigError, match="hop_length must be at most the clip length"):
        FrontEndConfig(num_samples=1000, hop_length=1001)
    with pytest.raises(ConfigError, match="n_mels must be at most 512"):
        FrontEndConfig(n_mels=513)
    FrontEndConfig(num_samples=1000, n_fft=1998, hop_length=1000)  # the largest that fit
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        build_front_end()(torch.zeros(2, 1, 16000))
