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

from dataclasses import dataclass

from core.defenses.base import DefenseConfig
from core.defenses.gnft import GNFT
from core.options import option, override

__all__ = ["FTSAMConfig", "FTSAM"]


@dataclass
class FTSAMConfig(DefenseConfig):
    """``rho`` radius of the sharpness perturbation; ``adaptive`` scales it by each weight's size."""

    lr: float = override(DefenseConfig, "lr", 0.01)
    rho: float = option(
        2.0,
        label="\u03c1, sharpness radius",
        primary=True,
        range="[0, inf)",
        help="FT-SAM radius of the sharpness perturbation",
    )
    adaptive: bool = option(
        True, label="Adaptive (ASAM)", help="FT-SAM scales the perturbation by each weight's size (ASAM)"
    )


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
