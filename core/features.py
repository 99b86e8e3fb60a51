"""Front ends as ``nn.Module``s: waveform ``[B, T]`` -> features ``[B, 1, frames, coeffs]``.

The front end lives inside the model (``nn.Sequential(front_end, classifier)``) so that a
checkpoint carries its own feature settings and triggers act on waveforms. Defaults follow
the authors' BadNets/JingleBack runs: 16 kHz, 40 MFCC coefficients, n_fft 400, hop 160.
The layout ``[B, 1, time, coeff]`` is the authors' (features transposed to time-major).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torchaudio.transforms as T
from torch import nn

from core.errors import ConfigError
from core.options import option

__all__ = ["FrontEndConfig", "FrontEnd", "build_front_end", "clip_features"]


@dataclass(frozen=True)
class FrontEndConfig:
    """Feature settings; stored verbatim in every checkpoint.

    ``n_mels`` defaults to 80: torchaudio's 128 leaves empty mel filters at n_fft 400.
    ``num_samples`` is the fixed clip length the model expects (1 s at ``sample_rate``
    unless set), so classifiers can size their layers from it.
    ``db_floor``: the log scale is floored 80 dB under the loudest bin of each ``clip`` (so a clip's
    features never depend on the other clips of its batch), or of the whole ``batch``, as torchaudio does
    for a ``[B, F, T]`` spectrogram: how every model before 2026-12-06 was made; a checkpoint of format 1
    is such a model, and keeps it (:func:`core.checkpoint.read_metadata`).
    """

    kind: Literal["mfcc", "logmel"] = "mfcc"
    sample_rate: int = 16000
    n_coeffs: int = 40
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    num_samples: int | None = None
    db_floor: Literal["clip", "batch"] = option(
        "clip",
        label="Log-scale floor",
        help="80 dB under the loudest bin of each clip, or of the whole batch (torchaudio's own for [B, T] "
        "input: a clip's features then depend on its batch; for a model trained so)",
    )

    def __post_init__(self) -> None:
        if self.kind not in ("mfcc", "logmel"):
            raise ConfigError(f"front end kind must be 'mfcc' or 'logmel', got {self.kind!r}")
        if self.db_floor not in ("clip", "batch"):
            raise ConfigError(f"front end db_floor must be 'clip' or 'batch', got {self.db_floor!r}")
        for name in ("sample_rate", "n_coeffs", "n_fft", "hop_length", "n_mels"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"front end {name} must be positive, got {getattr(self, name)}")
        for name, most in (("n_fft", 65536), ("hop_length", 65536), ("n_mels", 512), ("n_coeffs", 512)):
            if int(getattr(self, name)) > most:
                raise ConfigError(f"front end {name} must be at most {most}, got {getattr(self, name)}")
        if self.kind == "mfcc" and self.n_coeffs > self.n_mels:
            raise ConfigError(f"n_coeffs ({self.n_coeffs}) cannot exceed n_mels ({self.n_mels}) for MFCC")
        if self.num_samples is None:
            object.__setattr__(self, "num_samples", int(self.sample_rate))
        if int(self.num_samples) <= 0:
            raise ConfigError(f"front end num_samples must be positive, got {self.num_samples}")
        if self.n_fft // 2 >= self.num_samples:  # the centred STFT's reflection padding needs it
            raise ConfigError(
                f"front end n_fft must be less than twice the clip length ({2 * self.num_samples} samples), "
                f"got {self.n_fft}"
            )
        if self.hop_length > self.num_samples:
            raise ConfigError(
                f"front end hop_length must be at most the clip length ({self.num_samples} samples), "
                f"got {self.hop_length}"
            )

    @property
    def n_features(self) -> int:
        """Number of coefficients per frame (MFCC coefficients or mel bands)."""
        return self.n_coeffs if self.kind == "mfcc" else self.n_mels

    @property
    def n_frames(self) -> int:
        """Frames per clip (centred STFT)."""
        assert self.num_samples is not None
        padded = self.num_samples + 2 * (self.n_fft // 2) - self.n_fft
        return padded // self.hop_length + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrontEndConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown front end settings: {', '.join(unknown)}")
        return cls(**data)


class FrontEnd(nn.Module):
    """MFCC or log-Mel features, time-major, with a channel axis for 2-D convolutions."""

    def __init__(self, config: FrontEndConfig | None = None) -> None:
        super().__init__()
        self.config = config or FrontEndConfig()
        c = self.config
        melkwargs = {"n_fft": c.n_fft, "hop_length": c.hop_length, "n_mels": c.n_mels}
        if c.kind == "mfcc":
            self.transform: nn.Module = T.MFCC(sample_rate=c.sample_rate, n_mfcc=c.n_coeffs, melkwargs=melkwargs)
        else:
            self.transform = nn.Sequential(
                T.MelSpectrogram(sample_rate=c.sample_rate, **melkwargs),
                T.AmplitudeToDB(stype="power", top_db=80.0),
            )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"front end expects waveforms [B, T], got shape {tuple(wave.shape)}")
        if self.config.db_floor == "clip":  # [B, 1, T]: torchaudio floors each [1, F, T] block alone
            feats = self.transform(wave.unsqueeze(1)).squeeze(1)  # [B, coeffs, frames]
        else:  # [B, T]: one floor over the batch (models made before db_floor)
            feats = self.transform(wave)
        # contiguous, so a classifier sees the same strides whether features come from here or from a
        # cache (clip_features): the same kernels, the same bits
        return feats.transpose(1, 2).unsqueeze(1).contiguous()  # [B, 1, frames, coeffs]

    def output_shape(self) -> tuple[int, int, int]:
        """``(1, frames, coeffs)`` for one clip of ``config.num_samples`` samples."""
        return (1, self.config.n_frames, self.config.n_features)


@torch.no_grad()
def clip_features(front: nn.Module, waves: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The front end's output for every clip (in eval mode), computed once for the whole run.

    The module's train/eval mode is left as it was found: analysis calls this on a loaded model."""
    if waves.shape[0] == 0:  # a data-free run: nothing to train on
        return waves
    was_training = front.training
    front.eval()
    try:
        return torch.cat([front(waves[i : i + batch_size]) for i in range(0, waves.shape[0], batch_size)])
    finally:
        front.train(was_training)


def build_front_end(config: FrontEndConfig | dict[str, Any] | None = None) -> FrontEnd:
    """Build a front end from a config or its dict form (as stored in checkpoints)."""
    if isinstance(config, dict):
        config = FrontEndConfig.from_dict(config)
    return FrontEnd(config)
