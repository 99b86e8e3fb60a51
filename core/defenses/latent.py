"""Latent unlearning: fine-tune against the worst small push of a hidden layer toward the suspected target.

A trigger the scan cannot reconstruct in the input (a blended noise, a guitar effect, a tone above the
band the waveform search explores) still reaches the target through a few hidden features. Here a share
of each batch gets, at one hidden layer, the perturbation ``delta`` (per clip, ``||delta|| <= radius *
||h||``) that best sends the clip to the suspected target class (a few normalised gradient steps: targeted
latent adversarial training, after Sheshadri et al. 2024), and the model is trained to keep the clip's
true label under it. Without a suspected class the push is away from the true label (untargeted).

The radius can be set per model (:meth:`LatentAdversary.calibrate`): the one at which the push reaches
its goal on a given share of the clean clips. A fixed radius means different things in different
networks: at 0.5 the push sends about half of an ASC-10 SmallCNN's clips (fc1) to any class, and every
clip of an ASC-10 ResNet (head_conv, read linearly by the output layer), whose clean accuracy it then
wrecks (``docs/experiments/latent_radius_probe.md``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from core.errors import ConfigError
from core.models import analysable_layers

__all__ = ["LatentAdversary", "goal_loss", "latent_layer"]

EPS = 1e-12


def latent_layer(body: nn.Module, depth: float) -> tuple[str, nn.Module]:
    """The analysable layer (conv, linear, LSTM; not the output layer) at ``depth`` (0: the first, 1: the
    last before the output layer) of the classifier ``body``."""
    layers = [(n, m) for n, m in analysable_layers(body) if not isinstance(m, nn.LSTM)][:-1]
    if not layers:
        raise ConfigError("latent unlearning needs a hidden conv or linear layer; this model has none")
    return layers[min(len(layers) - 1, round(depth * (len(layers) - 1)))]


def _per_clip(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (like.ndim - 1))


def goal_loss(logits: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Cross-entropy toward ``goal`` ([m] classes), or toward the set of candidate classes of each row
    (``goal`` [m, k], -1 for none): minus the log of their summed probability."""
    if goal.ndim == 1:
        return F.cross_entropy(logits, goal)
    logp = logits.log_softmax(-1).gather(1, goal.clamp(min=0)).masked_fill(goal < 0, float("-inf"))
    return -logp.logsumexp(1).mean()


class LatentAdversary:
    """Adds a per-clip perturbation to one hidden layer's output while :meth:`perturb` prepared one.

    ``share`` of each batch's clips (those not of ``target`` when one is given) are perturbed; with several
    targets (a list: the suspected classes of a scan that flagged none), each picked clip is pushed toward one
    drawn at random, and a clip of the drawn class is left alone (``nearest``: toward whichever of them, its
    own class aside, the push reaches most easily, i.e. the largest summed probability);
    ``steps`` normalised gradient steps of ``radius / 2`` each, projected on the ball of
    ``radius * ||h||`` per clip. The search runs the model in eval mode (no dropout, running BatchNorm
    statistics untouched); the caller restores its training mode."""

    def __init__(
        self,
        body: nn.Module,
        depth: float,
        share: float,
        radius: float,
        steps: int,
        target: int | list[int] | None,
        generator: torch.Generator,
        nearest: bool = False,
    ) -> None:
        self.name, self.module = latent_layer(body, depth)
        self.share, self.radius, self.steps, self.target = share, radius, steps, target
        self._targets = None if target is None else torch.tensor([target] if isinstance(target, int) else target)
        self.nearest = nearest and self._targets is not None and self._targets.numel() > 1
        self.landed: dict[int, int] = {}  # pushed clips that reached a target, by the class they reached
        self.generator = generator
        self._delta: torch.Tensor | None = None
        self._rows = torch.zeros(0, dtype=torch.long)  # the rows of the last perturbed batch that carry a push
        self._start = False
        self._norm: torch.Tensor | None = None
        self.calibrated: dict[str, float] | None = None  # what calibrate() chose before fine-tuning
        self.recalibrated: list[dict[str, float]] = []  # and after epochs of it (latent_recalibrate)
        self.recalibration_skipped: str | None = None  # why latent_recalibrate_on kept the first radius
        self.pushed = 0  # clips perturbed so far
        self.reached = 0  # of which the push reached the target (or left the true label)
        self.handle = self.module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor | None:
        if self._start:  # the search's first pass: start from zero at this layer's shape
            self._norm = output.detach().flatten(1).norm(dim=1)
            self._delta = torch.zeros_like(output, requires_grad=True)
            self._start = False
        if self._delta is None:
            return None
        return output + self._delta

    def _push(
        self, model: nn.Module, xp: torch.Tensor, yp: torch.Tensor, goal: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The push of each clip of ``xp`` (labels ``yp``) toward its class in ``goal`` ([m]; or [m, k]
        candidate classes, -1 for none, toward whichever is nearest; away from its label when None) and whether
        it reaches it, and the class each pushed clip then reads as; the push is held."""
        targeted = goal is not None
        goal = goal if goal is not None else yp
        sign = 1.0 if targeted else -1.0  # descend toward the target, ascend away from y
        model.eval()
        self._start = True
        for _ in range(self.steps):
            loss = sign * goal_loss(model(xp), goal)
            (grad,) = torch.autograd.grad(loss, self._delta)
            with torch.no_grad():
                bound = _per_clip(self.radius * self._norm, grad)
                step = grad / (_per_clip(grad.flatten(1).norm(dim=1), grad) + EPS)
                delta = self._delta - 0.5 * bound * step
                scale = (bound / (_per_clip(delta.flatten(1).norm(dim=1), delta) + EPS)).clamp(max=1.0)
                self._delta = (delta * scale).requires_grad_()
        with torch.no_grad():
            found = self._delta.detach()
            self._delta = found
            logits = model(xp)
            top = logits.argmax(-1)
            if not targeted:
                hit = top != yp
            else:
                hit = top == goal if goal.ndim == 1 else (top.unsqueeze(1) == goal).any(1)
        return found, hit, top

    def _goals(self, y: torch.Tensor, picked: torch.Tensor, drawn: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The rows of ``picked`` clips to push and their goal classes (None: untargeted). With several
        targets a clip's is drawn from the generator (``drawn``) or taken in turn; a clip already of its
        goal class is not pushed."""
        if self._targets is None:
            return picked.nonzero().flatten(), None
        targets = self._targets.to(y.device)
        if self.nearest:  # every target but the clip's own class
            goal = torch.where(targets.unsqueeze(0) == y.unsqueeze(1), -1, targets.unsqueeze(0))
            rows = (picked & (goal >= 0).any(1)).nonzero().flatten()
            return rows, goal.index_select(0, rows)
        if targets.numel() == 1:
            goal = targets.expand_as(y)
        elif drawn:
            goal = targets[torch.randint(targets.numel(), y.shape, generator=self.generator).to(y.device)]
        else:
            goal = targets[torch.arange(y.numel(), device=y.device) % targets.numel()]
        rows = (picked & (y != goal)).nonzero().flatten()
        return rows, goal.index_select(0, rows)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        """Find the push for this batch's picked clips and hold it (zero for the others) for the next
        forward passes of a batch like ``x``, until :meth:`clear`."""
        self.clear()
        picked = (torch.rand(y.shape[0], generator=self.generator) < self.share).to(y.device)
        rows, goal = self._goals(y, picked, drawn=True)
        self._rows = rows.cpu()
        if rows.numel() == 0:
            return
        found, hit, top = self._push(model, x.index_select(0, rows), y.index_select(0, rows), goal)
        with torch.no_grad():
            self.pushed += int(rows.numel())
            self.reached += int(hit.sum())
            if goal is not None:
                for c in top[hit].tolist():
                    self.landed[c] = self.landed.get(c, 0) + 1
            full = torch.zeros((y.shape[0], *found.shape[1:]), device=found.device, dtype=found.dtype)
            full[rows] = found
        self._delta = full

    def reach(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, radius: float, batch: int = 256) -> float:
        """The share of the clips of ``x`` (those not of the target) whose push of ``radius`` reaches its goal."""
        kept, self.radius = self.radius, radius
        rows, goal = self._goals(y, torch.ones_like(y, dtype=torch.bool), drawn=False)
        hits = 0
        try:
            for start in range(0, rows.numel(), batch):
                part = rows[start : start + batch]
                to = None if goal is None else goal[start : start + batch]
                _, hit, _ = self._push(model, x.index_select(0, part), y.index_select(0, part), to)
                hits += int(hit.sum())
        finally:
            self.radius = kept
            self.clear()
        return hits / max(1, rows.numel())

    def calibrate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        share: float,
        low: float = 0.01,
        high: float = 2.0,
        epoch: int = 0,
    ) -> float:
        """Set the radius to the one (between ``low`` and ``high``, 8 bisections on a log scale) at which the
        push reaches its goal on ``share`` of the clips of ``x``; the model's mode is left as it was. ``epoch``
        > 0: a calibration during fine-tuning (after that epoch), kept in ``recalibrated`` beside the first."""
        training = model.training
        try:
            for _ in range(8):
                mid = (low * high) ** 0.5
                if self.reach(model, x, y, mid) >= share:
                    high = mid
                else:
                    low = mid
        finally:
            model.train(training)
        self.radius = high
        if epoch > 0:
            self.recalibrated.append({"epoch": epoch, "radius": round(high, 4)})
        else:
            self.calibrated = {"share": share, "radius": round(high, 4)}
        return high

    def recalibrates(self, on: str) -> bool:
        """Whether the radius is set again during fine-tuning with ``latent_recalibrate_on`` = ``on`` ("any",
        or "linear": only where the pushed layer is fully connected); a refusal is kept for the report."""
        if on == "any" or isinstance(self.module, nn.Linear):
            return True
        self.recalibration_skipped = f"the pushed layer {self.name} is a {type(self.module).__name__}, not linear"
        return False

    def pushed_rows(self, n: int) -> torch.Tensor:
        """Which of the last perturbed batch's ``n`` rows carry a push (a CPU bool mask ``[n]``)."""
        mask = torch.zeros(n, dtype=torch.bool)
        mask[self._rows] = True
        return mask

    def clear(self) -> None:
        """No push on the next passes."""
        self._delta = None
        self._start = False

    def remove(self) -> None:
        """Take the hook off the layer."""
        self.clear()
        self.handle.remove()

    def details(self) -> dict[str, object]:
        """What the report keeps: the layer, the settings and how often the push reached its goal."""
        return {
            "layer": self.name,
            "share": self.share,
            "radius": self.radius,
            "calibrated": self.calibrated,
            **({"recalibrated": self.recalibrated} if self.recalibrated else {}),
            **({"recalibration_skipped": self.recalibration_skipped} if self.recalibration_skipped else {}),
            "steps": self.steps,
            "target": self.target,
            "clips_pushed": self.pushed,
            "push_reached_goal": round(self.reached / self.pushed, 4) if self.pushed else None,
            "reached_by_class": {str(c): n for c, n in sorted(self.landed.items())},
            **({"several": "nearest"} if self.nearest else {}),
        }
