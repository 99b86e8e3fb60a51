"""Trigger inversion for every class at once: the smallest change that sends clean clips to that class.

Two input domains, both batched over the classes (one forward pass holds every class's candidate):

- :func:`invert_features`: Neural Cleanse's mask and pattern on the model's features ``[C, T, F]``:
  ``x' = (1 - m) * x + m * p``, with the mask shared by the channels and the pattern kept inside the
  clean features' per-coefficient range. The size of a class's trigger is its mask's mean (the share
  of the feature map it replaces).
- :func:`invert_latent`: one push per class added to a hidden layer's output for every clip (a
  universal latent perturbation). Its size is the push's mean absolute value (L1: a push on a few
  units is small) relative to the clean clips' activations there: a backdoor leaves hidden units that
  send any clip to the target, so the target may need a smaller push whatever the trigger looks like
  in the input (opt-in; measured in docs/experiments/scan_latent_probe.md).
- :func:`invert_spectrum`: one offset per feature coefficient per class, added to every frame of the
  clean clips' features (a fixed equaliser, or a stationary added sound, as the front end sees it), in
  units of each coefficient's clean standard deviation. Its size is the offset's mean absolute value: a
  trigger that changes the whole clip the same way (a blended tune, an effect) is no short added sound,
  but the target may still need the smallest constant shift of the spectrum.
- :func:`invert_waveform`: an additive waveform pattern, bounded in amplitude and gated by a
  temporal mask, added to clean waveforms before the model's own front end. Its size is the share of
  the clip's duration the mask opens (a planted trigger is short, wherever it sits); the pattern is
  audio that can be played and used as a trigger.
- :func:`invert_mix`: a whole-clip sound per class mixed into clean waveforms at a weight, at a random
  alignment for every clip and step (Blend's form). Its size is the weight: a planted sound or effect
  works wherever it starts, so its class needs a small weight, while a universal adversarial pattern is
  tied to its alignment and needs a larger one; it finds the target of whole-clip triggers (a blended
  tune, an effect) that the short-pattern domains miss (docs/experiments/whole_clip_probe.py).

Each class's trade-off weight ``lambda`` is steered as Neural Cleanse does: raised while the candidate
sends at least ``success`` of the batch to the class, lowered while it does not; the smallest
candidate that reached ``success`` is kept. Only the candidates train; the model is left as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from core.events import SCAN_PHASE, Cancelled, Observer, StepInfo

__all__ = [
    "Inversion",
    "Search",
    "invert_features",
    "invert_latent",
    "invert_mix",
    "invert_spectrum",
    "invert_waveform",
]


@dataclass
class Inversion:
    """Per class: the size of the smallest trigger found (``inf`` when none reached ``success``), its
    attack success on the batch it was found on, and the trigger itself (``[K, ...]``)."""

    sizes: list[float]
    success: list[float]
    triggers: torch.Tensor
    masks: torch.Tensor | None = None


@dataclass
class Search:
    """What every domain's search shares: the clean clips' labels ``[N]``, the number of classes, and the
    loop's settings (steps, clips a class a step, the success to reach, the random stream, the observer, the
    prefix of its steps' phase)."""

    labels: torch.Tensor
    n_classes: int
    steps: int
    batch: int
    success: float
    gen: torch.Generator
    observer: Observer
    prefix: str = SCAN_PHASE

    def run(
        self,
        domain: str,
        params: list[torch.Tensor],
        candidate_logits: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        lam0: float,
        lr: float,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """:func:`_optimise` for ``domain``'s candidates (progress phase ``<prefix><domain>``)."""
        return _optimise(
            f"{self.prefix}{domain}", self.n_classes, self.steps, params, candidate_logits, self.labels, self.batch,
            self.success, lam0, lr, self.gen, self.observer,
        )  # fmt: skip


def _sources(labels: torch.Tensor, k: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """``[k, batch]`` row indices: for class ``t``, clips whose label is not ``t`` (drawn with replacement)."""
    rows = []
    for t in range(k):
        pool = (labels != t).nonzero().flatten().cpu()
        rows.append(pool[torch.randint(pool.numel(), (batch,), generator=gen)])
    return torch.stack(rows).to(labels.device)


def _optimise(
    name: str,
    k: int,
    steps: int,
    params: list[torch.Tensor],
    candidate_logits: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    labels: torch.Tensor,
    batch: int,
    success: float,
    lam0: float,
    lr: float,
    gen: torch.Generator,
    observer: Observer,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The shared loop: ``candidate_logits(rows [k, batch]) -> (logits [k, batch, classes], size [k])``.
    Returns the best size and success per class and the parameters' values at each class's best."""
    device = labels.device
    lam = torch.full((k,), lam0, device=device)
    best_size = torch.full((k,), math.inf, device=device)
    best_success = torch.zeros(k, device=device)
    best = [p.detach().clone() for p in params]
    optimiser = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.9))
    target = torch.arange(k, device=device).view(k, 1).expand(k, batch)
    reached = torch.zeros(k, device=device)
    patience = 5
    for step in range(1, steps + 1):
        if observer.should_stop():
            raise Cancelled()
        rows = _sources(labels, k, batch, gen)
        logits, size = candidate_logits(rows)
        ce = F.cross_entropy(logits.reshape(k * batch, -1), target.reshape(-1), reduction="none").view(k, batch)
        loss = (ce.mean(1) + lam * size).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            hit = (logits.argmax(-1) == target).float().mean(1)
            better = (hit >= success) & (size < best_size)
            best_size = torch.where(better, size, best_size)
            best_success = torch.where(better, hit, best_success)
            for kept, p in zip(best, params):
                kept[better] = p.detach()[better]
            reached += (hit >= success).float()
            if step % patience == 0:  # Neural Cleanse's schedule: up while it mostly succeeds, down while not
                lam = torch.where(reached >= patience / 2, lam * 1.5, lam / 1.5).clamp(1e-4, 1e4)
                reached.zero_()
        observer.on_step(StepInfo(name, 1, step, steps, float(loss.detach()) / k))
    return best_size, best_success, best


def invert_features(
    classifier: nn.Module,
    features: torch.Tensor,
    search: Search,
    *,
    lam0: float = 0.01,
    lr: float = 0.1,
) -> Inversion:
    """Mask-and-pattern inversion on ``features`` ``[N, C, T, F]`` (clean clips) for every class of
    ``classifier`` (features -> logits). Sizes: the mask's mean, a share of the ``T x F`` map."""
    _, c, t, f = features.shape
    device = features.device
    lo = features.amin(dim=(0, 2), keepdim=True)[0]  # [C, 1, F]: per coefficient, as the clean clips span
    hi = features.amax(dim=(0, 2), keepdim=True)[0]
    mask_logit = torch.full((search.n_classes, 1, t, f), -2.0, device=device, requires_grad=True)
    pattern_logit = torch.zeros((search.n_classes, c, t, f), device=device, requires_grad=True)

    def candidate(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.sigmoid(mask_logit)  # [K, 1, T, F]
        pattern = lo + (hi - lo) * torch.sigmoid(pattern_logit)  # [K, C, T, F]
        x = features[rows]  # [K, B, C, T, F]
        mixed = (1 - mask.unsqueeze(1)) * x + (mask * pattern).unsqueeze(1)
        logits = classifier(mixed.reshape(-1, c, t, f)).view(search.n_classes, rows.shape[1], -1)
        return logits, mask.mean(dim=(1, 2, 3))

    params = [mask_logit, pattern_logit]
    size, hit, (mask_best, pattern_best) = search.run("features", params, candidate, lam0, lr)
    with torch.no_grad():
        masks = torch.sigmoid(mask_best)
        patterns = lo + (hi - lo) * torch.sigmoid(pattern_best)
    return Inversion(size.tolist(), hit.tolist(), patterns.cpu(), masks.cpu())


def invert_spectrum(
    classifier: nn.Module,
    features: torch.Tensor,
    search: Search,
    *,
    lam0: float = 0.01,
    lr: float = 0.05,
) -> Inversion:
    """A constant offset per class and feature coefficient, ``[K, C, 1, F]``, added to every frame of the
    clean ``features`` ``[N, C, T, F]`` before ``classifier``. Sizes: the offset's mean absolute value in
    units of each coefficient's clean standard deviation. ``triggers`` holds the offsets in feature units."""
    _, c, t, f = features.shape
    std = features.std(dim=(0, 2), keepdim=True)[0].clamp_min(1e-6)  # [C, 1, F]
    raw = torch.zeros((search.n_classes, c, 1, f), device=features.device, requires_grad=True)

    def candidate(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features[rows] + (std * raw).unsqueeze(1)  # [K, B, C, T, F]
        logits = classifier(x.reshape(-1, c, t, f)).view(search.n_classes, rows.shape[1], -1)
        return logits, raw.flatten(1).abs().mean(dim=1)

    size, hit, (raw_best,) = search.run("spectrum", [raw], candidate, lam0, lr)
    return Inversion(size.tolist(), hit.tolist(), (std * raw_best).detach().cpu())


def invert_waveform(
    model: nn.Module,
    waves: torch.Tensor,
    search: Search,
    *,
    peak: float = 0.5,
    frame: int = 160,
    lam0: float = 0.01,
    lr: float = 0.05,
) -> Inversion:
    """An additive waveform pattern per class, ``|delta| <= peak``, gated by a temporal mask of ``frame``
    -sample steps, through ``model``'s own front end. Sizes: the mask's mean (the share of the clip's
    duration the pattern covers): a planted trigger is short, an adversarial perturbation spreads."""
    n = waves.shape[1]
    device = waves.device
    frames = max(1, n // frame)
    raw = (1e-3 * torch.randn(search.n_classes, n, generator=search.gen)).to(device).requires_grad_()
    mask_logit = torch.full((search.n_classes, 1, frames), -2.0, device=device, requires_grad=True)

    def pattern(raw_: torch.Tensor, mask_logit_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.sigmoid(mask_logit_)  # [K, 1, frames]
        envelope = F.interpolate(mask, size=n, mode="linear", align_corners=False)[:, 0]  # [K, N]
        return envelope * peak * torch.tanh(raw_), mask.mean(dim=(1, 2))

    def candidate(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta, size = pattern(raw, mask_logit)
        x = (waves[rows] + delta.unsqueeze(1)).clamp(-1.0, 1.0)  # [K, B, N]
        logits = model(x.reshape(-1, n)).view(search.n_classes, rows.shape[1], -1)
        return logits, size

    size, hit, (raw_best, mask_best) = search.run("waveform", [raw, mask_logit], candidate, lam0, lr)
    with torch.no_grad():
        delta, _ = pattern(raw_best, mask_best)
    return Inversion(size.tolist(), hit.tolist(), delta.cpu(), torch.sigmoid(mask_best).cpu())


def invert_mix(
    model: nn.Module,
    waves: torch.Tensor,
    search: Search,
    *,
    start: float = 0.05,
    clips: int = 64,
    lam0: float = 0.01,
    lr: float = 0.05,
) -> Inversion:
    """A whole-clip sound ``s`` per class (``|s| <= 1``) mixed into clean ``waves`` ``[N, S]`` as
    ``(1 - a) x + a s``, circularly shifted by a random offset for every clip and step, through ``model``'s
    own front end (the weight from ``start``, steered as every domain's size). Sizes: the smallest weight at
    which the sound found sends ``search.success`` of ``clips`` other clean clips to its class, above 1 where
    it cannot (:func:`_mix_weight`). ``triggers``: ``a s`` at offset 0, an additive waveform that can be played and used
    as a trigger (it drops the ``-a x`` term, small for small ``a``)."""
    k, n = search.n_classes, waves.shape[1]
    device = waves.device
    raw = (1e-2 * torch.randn(k, n, generator=search.gen)).to(device).requires_grad_()
    weight_logit = torch.full((k,), math.log(start / (1 - start)), device=device, requires_grad=True)

    def candidate(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = rows.shape[1]
        weight = torch.sigmoid(weight_logit)
        sound = _shifted(torch.tanh(raw), b, search.gen)  # [K, B, N]
        x = (1 - weight.view(k, 1, 1)) * waves[rows] + weight.view(k, 1, 1) * sound
        return model(x.reshape(-1, n)).view(k, b, -1), weight

    _, _, (raw_best, _) = search.run("mix", [raw, weight_logit], candidate, lam0, lr)
    sounds = torch.tanh(raw_best.detach())
    size, hit = _mix_weight(model, waves, search, sounds, clips)
    return Inversion(size.tolist(), hit.tolist(), (size.clamp(max=1.0).view(k, 1) * sounds).cpu())  # at most s


def _shifted(sounds: torch.Tensor, copies: int, gen: torch.Generator) -> torch.Tensor:
    """``copies`` of each sound ``[K, N]``, each circularly shifted by its own random offset: ``[K, copies, N]``."""
    k, n = sounds.shape
    shift = torch.randint(n, (k, copies, 1), generator=gen).to(sounds.device)
    ramp = torch.arange(n, device=sounds.device).view(1, 1, n)
    return sounds.unsqueeze(1).expand(k, copies, n).gather(2, (ramp + shift) % n)


@torch.no_grad()
def _mix_weight(
    model: nn.Module, waves: torch.Tensor, search: Search, sounds: torch.Tensor, clips: int, halvings: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the smallest weight (bisected on a log scale in [1e-4, 1]) at which its sound ``[K, S]``
    mixed into ``clips`` clean clips of the other classes, each at a random alignment drawn once, sends at
    least ``search.success`` of them to the class, and the share it sends there. This measures each class's
    search on the same footing (the smallest weight of a lucky batch during the search is noisier). Where the
    sound alone (weight 1) falls short, the size is 1 plus the share it misses by, so that every class has a
    finite, ordered size: on backdoored models half the classes can stay out of reach, and counting them all
    as one largest size left the median absolute deviation at 0 (an index of millions)."""
    k, n = sounds.shape
    rows = _sources(search.labels, k, clips, search.gen)  # [K, M]
    placed = _shifted(sounds, clips, search.gen)  # [K, M, N]

    def hits(weight: torch.Tensor) -> torch.Tensor:
        out = []
        for t in range(k):  # a class at a time: K x M clips at once can be large at 44.1 kHz
            x = (1 - weight[t]) * waves[rows[t]] + weight[t] * placed[t]
            out.append((model(x).argmax(-1) == t).float().mean())
        return torch.stack(out)

    lo = torch.full((k,), math.log(1e-4), device=waves.device)
    hi = torch.zeros(k, device=waves.device)
    top = hits(torch.ones(k, device=waves.device))
    at_hi = top  # the share sent at weight exp(hi): each class's hits depend on its own weight only
    for _ in range(halvings):
        mid = (lo + hi) / 2
        share = hits(mid.exp())
        ok = share >= search.success
        hi, lo, at_hi = torch.where(ok, mid, hi), torch.where(ok, lo, mid), torch.where(ok, share, at_hi)
    reached = top >= search.success
    return torch.where(reached, hi.exp(), 1 + search.success - top), torch.where(reached, at_hi, top)


def invert_latent(
    classifier: nn.Module,
    features: torch.Tensor,
    search: Search,
    *,
    depth: float = 0.5,
    lam0: float = 0.01,
    lr: float = 0.1,
) -> Inversion:
    """A universal push per class on the output of ``classifier``'s hidden layer at ``depth``
    (:func:`core.defenses.latent.latent_layer`; 0.5: smallcnn's conv3), for clean ``features``
    ``[N, C, T, F]``. Sizes: the push's mean absolute value in units of the clean clips' RMS activation
    at that layer. ``triggers`` holds the pushes ``[K, *layer shape]``."""
    from core.defenses.latent import latent_layer

    _, module = latent_layer(classifier, depth)
    seen: list[torch.Tensor] = []
    probe = module.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    try:
        with torch.no_grad():
            classifier(features[: min(256, features.shape[0])])
    finally:
        probe.remove()
    shape = seen[0].shape[1:]
    dim = seen[0][0].numel()
    scale = float(seen[0].flatten(1).norm(dim=1).mean()) / math.sqrt(dim)  # a raw entry of 1: an average clip's
    raw = torch.zeros((search.n_classes, *shape), device=features.device, requires_grad=True)
    rows_now = [0]

    def add(m: nn.Module, i: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        per = rows_now[0]
        return (out.view(search.n_classes, per, *shape) + scale * raw.unsqueeze(1)).view_as(out)

    def candidate(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows_now[0] = rows.shape[1]
        x = features[rows.reshape(-1)]
        logits = classifier(x).view(search.n_classes, rows.shape[1], -1)
        return logits, raw.flatten(1).abs().mean(dim=1)

    hook = module.register_forward_hook(add)
    try:
        size, hit, (raw_best,) = search.run("latent", [raw], candidate, lam0, lr)
    finally:
        hook.remove()
    return Inversion(size.tolist(), hit.tolist(), (scale * raw_best).detach().cpu())
