"""FT-SAM (Zhu et al., ICCV 2023): fine-tuning with sharpness-aware minimisation.

Each step takes the gradient at the worst nearby point θ + ε with ε = ρ·T²g/‖Tg‖,
T = |θ| + η (adaptive SAM, one global norm), and descends with it. It is GN-FT's two-pass
machinery with α = 1 (GNP's note: SAM is the case α = 1) and a much larger, weight-relative
radius: FT-SAM's finding is that a large ρ shrinks the norms of backdoor neurons. So it
shares :class:`~core.defenses.gnft.GNFTStep` (in-place perturbation, exact restore, BN
statistics from the clean pass only). Defaults: ρ = 2 with the adaptive radius, SGD lr 0.01,
momentum 0.9, the same 5 % clean share as the other defenses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.defenses.base import DefenseConfig
from core.defenses.gnft import GNFT
from core.errors import ConfigError

__all__ = ["FTSAMConfig", "FTSAM"]


@dataclass
class FTSAMConfig(DefenseConfig):
    """``rho`` radius of the sharpness perturbation; ``adaptive`` scales it by each weight's size."""

    lr: float = 0.01
    rho: float = 2.0
    adaptive: bool = True

    def validate(self) -> None:
        super().validate()
        if not (math.isfinite(self.rho) and self.rho >= 0):
            raise ConfigError(f"rho must be a number >= 0, got {self.rho}")


class FTSAM(GNFT):
    name = "ftsam"
    Config = FTSAMConfig

    def details(self) -> dict:
        """None: FT-SAM steps with g2 alone from a large radius on purpose, so a gradient many times the
        clean one is its design, and GN-FT's first-step figures (and their finding) do not apply."""
        return {}

    def step_settings(self) -> dict:
        c: FTSAMConfig = self.config  # type: ignore[assignment]
        return {"alpha": 1.0, "r": c.rho, "norm": "global", "mix": "raw", "adaptive": c.adaptive}
