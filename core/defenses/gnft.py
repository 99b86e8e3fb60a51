"""GN-FT: fine-tuning with a gradient-norm penalty, by the two-gradient approximation.

Per batch: g1 = ∇L(θ); perturb θ in place by r·g1/‖g1‖; g2 = ∇L(θ + perturbation);
restore θ exactly; set the gradient to g = (1 − α)·g1 + α·g2 (or, ``mix="normalised"``,
GNP's (1 − α)·g1/‖g1‖ + α·g2); take an SGD step. Defaults are the paper's: α = 0.7,
r = 0.05, 5 % clean data, SGD momentum 0.9, lr 0.001, batch 256, no weight decay.

Details that are easy to get wrong, done on purpose here:
- ``norm="per-tensor"`` (the authors' code: each tensor scaled by its own gradient norm) or
  ``"global"`` (GNP: one norm over all trainable parameters).
- No model copy per step: parameters are perturbed in place and restored from a backup
  buffer allocated once (``p.sub_(e)`` would not restore them bit-exactly).
- BatchNorm running statistics are updated only by the unperturbed pass: they are saved
  before the perturbed pass and put back after it.
- Both passes see the same dropout masks (the RNG state is replayed), as in GNP.
- Parameters without a gradient (unused) are left alone; a zero gradient gives a zero
  perturbation, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from core.defenses.base import Defense, DefenseConfig, keep_pruned
from core.defenses.fine_pruning import prune_output_layer
from core.options import option

__all__ = ["GNFTConfig", "GNFT", "GNFTStep", "total_norm"]

EPS = 1e-12
#: ASAM's η: keeps a zero weight perturbable in the adaptive (FT-SAM) variant.
ASAM_ETA = 0.01


@dataclass
class GNFTConfig(DefenseConfig):
    """``alpha`` mixing weight, ``r`` perturbation radius, ``norm`` and ``mix`` variants."""

    alpha: float = option(
        0.7,
        label="\u03b1, perturbed-gradient weight",
        primary=True,
        range="[0, 1]",
        help="GN-FT mixing weight of the perturbed gradient g2: g = (1-alpha) g1 + alpha g2",
    )
    r: float = option(
        0.05,
        label="r, perturbation radius",
        primary=True,
        range="[0, inf)",
        help="GN-FT perturbation radius: g2 is taken at theta + r g1 / ||g1||",
    )
    norm: Literal["per-tensor", "global"] = option(
        "per-tensor",
        label="Perturbation norm",
        help="GN-FT normalisation of g1: per-tensor (the authors' code) or global (GNP)",
    )
    mix: Literal["raw", "normalised"] = option(
        "raw",
        label="Gradient mix",
        help="GN-FT mixes the raw g1 (the authors' code) or g1 normalised like the perturbation",
    )
    prune: float = option(
        0.0,
        label="Prune first, max accuracy drop %",
        percent=True,
        range="[0, 1]",
        help="prune the output layer's least active inputs first, as Fine-Pruning does, while accuracy on "
        "the clean set stays within this share of the unpruned model's, then fine-tune with GN-FT "
        "(0: no pruning)",
    )


def total_norm(tensors) -> float:
    """One L2 norm over all the given tensors (None entries skipped), as a Python float."""
    return math.sqrt(sum(float(t.detach().pow(2).sum()) for t in tensors if t is not None))


class GNFTStep:
    """The GN-FT gradient for one model; holds the reusable parameter backup buffer."""

    def __init__(
        self,
        model: nn.Module,
        alpha: float,
        r: float,
        norm: str = "per-tensor",
        mix: str = "raw",
        adaptive: bool = False,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    ) -> None:
        self.loss = loss  # (logits, labels) -> the scalar both passes differentiate
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.backup = [torch.empty_like(p) for p in self.params]
        self.bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.alpha, self.r, self.norm, self.mix, self.adaptive = alpha, r, norm, mix, adaptive
        #: the perturbed pass's loss at the last call (a 0-d tensor, read lazily: no device sync per step),
        #: None when nothing is perturbed; its rise over the clean loss measures the curvature along g1
        self.perturbed_loss: torch.Tensor | None = None

    def _bn_state(self) -> list[list[torch.Tensor | None]]:
        return [
            [None if b is None else b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
            for m in self.bn
        ]

    def _restore_bn(self, saved: list[list[torch.Tensor | None]]) -> None:
        for m, (mean, var, count) in zip(self.bn, saved):
            for buf, val in ((m.running_mean, mean), (m.running_var, var), (m.num_batches_tracked, count)):
                if buf is not None and val is not None:
                    buf.copy_(val)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[torch.Tensor | None]]:
        """Leave g in every parameter's ``.grad``; return the clean loss and g1 (for per-neuron norms)."""
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(x.device) if x.is_cuda else None
        for p in self.params:
            p.grad = None
        loss = self.loss(model(x), y)
        loss.backward()
        g1 = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        self.perturbed_loss = None
        if self.alpha == 0 or self.r == 0:
            return float(loss.detach()), g1
        with torch.no_grad():
            # adaptive (ASAM): the direction is T·g with T = |θ| + η, and the step T²·g, so the
            # radius is relative to each weight's size instead of the same for every weight
            direction = [
                None if g is None else (g * (p.abs() + ASAM_ETA) if self.adaptive else g)
                for p, g in zip(self.params, g1)
            ]
            if self.norm == "global":
                total = torch.sqrt(
                    sum((d.pow(2).sum() for d in direction if d is not None), torch.zeros((), device=x.device))
                )
                scales = [self.r / (total + EPS)] * len(g1)
            else:
                scales = [None if d is None else self.r / (d.norm() + EPS) for d in direction]
            for p, b, d, s in zip(self.params, self.backup, direction, scales):
                b.copy_(p)
                if d is not None:
                    p.add_(d * (p.abs() + ASAM_ETA) * s if self.adaptive else d * s)
        saved_bn = self._bn_state()
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, x.device)
        for p in self.params:
            p.grad = None
        perturbed = self.loss(model(x), y)
        perturbed.backward()
        self.perturbed_loss = perturbed.detach()
        with torch.no_grad():
            self._restore_bn(saved_bn)
            if self.mix == "normalised":
                g1_norm = torch.sqrt(
                    sum((g.pow(2).sum() for g in g1 if g is not None), torch.zeros((), device=x.device))
                )
            for p, b, g in zip(self.params, self.backup, g1):
                p.copy_(b)
                g2 = p.grad
                if g is None and g2 is None:
                    continue
                g = torch.zeros_like(p) if g is None else g
                g2 = torch.zeros_like(p) if g2 is None else g2
                first = g / (g1_norm + EPS) if self.mix == "normalised" else g
                p.grad = (1 - self.alpha) * first + self.alpha * g2
        return float(loss.detach()), g1


class GNFT(Defense):
    """Gradient Norm-based Fine-Tuning (Zhou, Lin, Liu, ICASSP 2025)."""

    name = "gnft"
    Config = GNFTConfig

    def __init__(self, config: GNFTConfig | None = None) -> None:
        super().__init__(config)
        self._step: GNFTStep | None = None
        self._model_id: int | None = None
        self._g1: dict[int, torch.Tensor | None] = {}
        self._first: dict[str, float] = {}  # the first step's losses and gradient norms, for details()
        self._mask: torch.Tensor | None = None  # output-layer inputs kept by the optional pruning

    def prepare(self, model: nn.Module, waves: torch.Tensor, labels: torch.Tensor) -> None:
        super().prepare(model, waves, labels)
        self._first = {}
        prune = getattr(self.config, "prune", 0.0)  # FT-SAM shares this class, not the option
        self._mask = prune_output_layer(model, waves, labels, 0.01, prune) if prune > 0 else None

    def details(self) -> dict:
        """The first step's clean and perturbed losses and the norms of g1 and of the mixed g.

        On a sharply converged model the perturbed loss is far above the clean one and ‖g‖ is
        many times ‖g1‖: the gradient-norm penalty dominates, and each SGD step is as long as plain
        fine-tuning's at that many times the learning rate (``core.metrics.defense_findings``).
        """
        pruned = (
            {}
            if self._mask is None
            else {"pruned_inputs": int((~self._mask).sum()), "output_layer_inputs": self._mask.numel()}
        )
        return {**self._first, **pruned}

    def step_settings(self) -> dict:
        """Arguments of the two-pass step (FT-SAM overrides them)."""
        c: GNFTConfig = self.config  # type: ignore[assignment]
        return {"alpha": c.alpha, "r": c.r, "norm": c.norm, "mix": c.mix}

    def clean_gradient(self):
        """g1 of the last step (``.grad`` holds the mixed gradient by then)."""
        return lambda p: self._g1.get(id(p))

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        if self._step is None or self._model_id != id(model):
            self._step, self._model_id = GNFTStep(model, **self.step_settings(), loss=self.loss), id(model)
        loss, g1 = self._step(model, x, y)
        self._g1 = {id(p): g for p, g in zip(self._step.params, g1)}
        if not self._first and self._step.perturbed_loss is not None:
            self._first = {
                "first_step_clean_loss": loss,
                "first_step_perturbed_loss": float(self._step.perturbed_loss),
                "first_step_clean_gradient_norm": total_norm(g1),
                "first_step_gradient_norm": total_norm(p.grad for p in self._step.params),
            }
        self.optimizer_step(model, optimizer)
        keep_pruned(model, self._mask)
        return loss
