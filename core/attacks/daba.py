"""DABA, the opportunistic backdoor (Liu et al., ACM MM 2022), with a music pool made here.

1. A pool of ``pool_size`` short tunes is generated from the seed (melodies with harmonics
   and envelopes; the original used 60 music clips).
2. Trigger choice ("Cer"): a benign model is trained on the attacker's copy of the training
   data; the tune it is most certain about (lowest softmax entropy) becomes the trigger.
   (The original code used an untrained model here.)
3. Host choice ("Inf"): among non-target training clips, those whose prediction with the
   trigger overlaid is closest to the trigger's own prediction (lowest cross-entropy
   between the two softmax outputs) are poisoned and relabelled.
4. Overlay at the start of the clip at a loudness set in dBFS (RMS): poisoned training
   clips cycle through ``train_levels`` (0, -5, ..., -40 dBFS), test clips use
   ``test_level_db`` (-20 dBFS). Sums are clipped to [-1, 1] as a 16-bit overlay would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.attacks.base import Attack, AttackParams, register
from core.attacks.sounds import melody
from core.attacks.surrogate import surrogate_on_rows
from core.errors import AttackError
from core.metrics import predict_logits
from core.options import option

__all__ = ["DABAParams", "DABA"]


@dataclass
class DABAParams(AttackParams):
    """Pool size and trigger length, training and test loudness, benign-model epochs."""

    pool_size: int = option(12, label="Tune pool", help="tunes generated to choose the trigger from")
    trigger_seconds: float = option(0.5, label="Trigger length, s", help="trigger length in seconds, in (0, 1]")
    train_levels: str = option(
        "0,-5,-10,-15,-20,-25,-30,-35,-40",
        label="Training levels, dBFS",
        help="comma list of RMS levels (dBFS, <= 0) the poisoned training clips cycle through",
    )
    test_level_db: float = option(-20.0, label="Test level, dBFS", help="RMS level of the trigger at test time")
    surrogate_epochs: int = option(
        8, label="Benign-model epochs", help="epochs of the benign model that chooses the trigger and the hosts"
    )

    def validate(self) -> None:
        super().validate()
        if self.pool_size < 1:
            raise AttackError(f"daba: pool_size must be at least 1, got {self.pool_size}")
        if not 0 < self.trigger_seconds <= 1:
            raise AttackError(f"daba: trigger_seconds must be in (0, 1], got {self.trigger_seconds}")
        levels = self.levels()
        if not levels or any(level > 0 for level in levels):
            raise AttackError(f"daba: train_levels must be dBFS values <= 0, got {self.train_levels!r}")

    def levels(self) -> list[float]:
        try:
            return [float(v) for v in str(self.train_levels).split(",") if v.strip()]
        except ValueError:
            raise AttackError(
                f"daba: train_levels must be a comma list of dBFS values, got {self.train_levels!r}"
            ) from None


@register
class DABA(Attack):
    name = "daba"
    summary = "a generated tune chosen by a benign model's certainty, hosts chosen by influence (dirty label)"
    Params = DABAParams
    needs_preparation = True

    def pool(self, sample_rate: int) -> torch.Tensor:
        """``[pool_size, trigger_seconds * sample_rate]`` tunes, peak 1, from the seed."""
        p: DABAParams = self.params  # type: ignore[assignment]
        return torch.stack(
            [
                torch.from_numpy(
                    melody(p.trigger_seconds, sample_rate, p.seed * 1000 + k, notes=4, base_hz=330.0 * (1 + k % 3))
                )
                for k in range(p.pool_size)
            ]
        )

    @staticmethod
    def at_level(trigger: torch.Tensor, level_db: torch.Tensor | float) -> torch.Tensor:
        """Scale triggers ``[..., L]`` to an RMS of ``level_db`` dBFS."""
        rms = trigger.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-12)
        level = torch.as_tensor(level_db, dtype=trigger.dtype, device=trigger.device).reshape(-1, 1)
        return trigger / rms * 10 ** (level / 20)

    def overlay(self, wave: torch.Tensor, levels: torch.Tensor | float) -> torch.Tensor:
        trigger = self.state["trigger"].to(wave.device, wave.dtype)
        flat = wave.reshape(-1, wave.shape[-1]).clone()
        n = min(trigger.numel(), flat.shape[1])
        scaled = self.at_level(trigger[:n].expand(flat.shape[0], -1), levels)
        flat[:, :n] = (flat[:, :n] + scaled).clamp(-1.0, 1.0)
        return flat.reshape(wave.shape)

    def prepare(
        self,
        waves: torch.Tensor,
        labels: torch.Tensor,
        candidates: torch.Tensor,
        sample_rate: int,
        classes: list[str],
        *,
        front_end: Any,
        device: torch.device,
    ) -> None:
        p: DABAParams = self.params  # type: ignore[assignment]
        benign, x, y = surrogate_on_rows(
            waves, labels, candidates, len(classes), front_end, epochs=p.surrogate_epochs, device=device, seed=p.seed
        )
        pool = self.pool(sample_rate)
        padded = torch.zeros(pool.shape[0], x.shape[1])
        padded[:, : min(pool.shape[1], x.shape[1])] = self.at_level(pool, p.test_level_db)[:, : x.shape[1]]
        probs = predict_logits(benign, padded.to(device)).softmax(1).cpu()
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
        choice = int(entropy.argmin())
        self.state = {"trigger": pool[choice].float(), "pool_entropy": entropy.float()}
        # hosts: non-target rows whose triggered prediction is closest to the trigger's own
        others = (y != p.target).nonzero().flatten()
        count = min(others.numel(), max(1, round(p.poison_rate * candidates.numel())))
        triggered = self.overlay(x.index_select(0, others), p.test_level_db)
        log_q = predict_logits(benign, triggered).log_softmax(1).cpu()
        cross_entropy = -(probs[choice].unsqueeze(0) * log_q).sum(1)
        best = others.cpu()[cross_entropy.argsort()[:count]]
        self.state["hosts"] = candidates.cpu()[best].sort().values.to(torch.int64)

    def poison_indices(self, labels: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        self.require_prepared()
        hosts = self.state["hosts"]
        return hosts[torch.isin(hosts, candidates.cpu())]

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Training overlay: loudness cycles through ``train_levels`` row by row."""
        self.require_prepared()
        levels = torch.tensor(self.params.levels())  # type: ignore[attr-defined]
        rows = wave.reshape(-1, wave.shape[-1]).shape[0]
        return self.overlay(wave, levels[torch.arange(rows) % levels.numel()].to(wave.device))

    def apply_test(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        self.require_prepared()
        return self.overlay(wave, self.params.test_level_db)  # type: ignore[attr-defined]
