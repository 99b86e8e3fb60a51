"""Clean accuracy, attack success rate, robust accuracy and the defense effectiveness rating.

Conventions (one name per concept, fractions in [0, 1]):
- ``clean_accuracy`` (CA): accuracy on the clean test clips.
- ``attack_success_rate`` (ASR): fraction of triggered test clips whose true class is *not*
  the target that the model assigns to the target class (target-class clips are excluded,
  otherwise a clean model would score its own accuracy on them).
- ``robust_accuracy`` (RA): fraction of those same triggered clips still given their true class.
- ``defense_effectiveness_rating`` (DER, BackdoorBench): ``(max(0, ΔASR) − max(0, ΔCA) + 1) / 2``
  with Δ = before − after; 1 is perfect (ASR to 0 at no accuracy cost), 0.5 is no change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "predict_logits",
    "accuracy",
    "backdoor_metrics",
    "defense_effectiveness_rating",
    "defense_findings",
    "percent",
]


def percent(value: float | None, missing: str = "n/a", digits: int = 1) -> str:
    """A share of 1 as people read it ("94.6 %"); ``missing`` when there is none."""
    return missing if value is None else f"{100 * value:.{digits}f} %"


Transform = Callable[[torch.Tensor], torch.Tensor]

#: A repaired model is a drop-in replacement when its clean accuracy is within this of the input's.
CA_TOLERANCE = 0.02
#: A backdoor counts as removed when its attack success rate is at most this.
ASR_REMOVED = 0.10
#: A mid-run clean-accuracy loss this large means the model was wrecked and relearnt, not repaired.
COLLAPSE_DROP = 0.25
#: Fewer clean clips per class than this make a thin set to relearn from.
FEW_CLIPS_PER_CLASS = 20
#: GN-FT's first gradient this many times the clean one: the gradient-norm penalty dominates the step.
PENALTY_DOMINATES = 5.0


@torch.no_grad()
def predict_logits(
    model: nn.Module, waves: torch.Tensor, batch_size: int = 512, transform: Transform | None = None
) -> torch.Tensor:
    """Logits ``[N, C]`` in eval mode (the model's mode is restored afterwards).

    ``transform`` (e.g. a trigger) is applied to each waveform batch first.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for start in range(0, waves.shape[0], batch_size):
            batch = waves[start : start + batch_size].to(device, non_blocking=True)
            if transform is not None:
                batch = transform(batch)
            out.append(model(batch).float())
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros((0, 0))
    return torch.cat(out)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy; an empty set gives NaN rather than a misleading 0 or 1."""
    if labels.numel() == 0:
        return float("nan")
    return float((logits.argmax(1).cpu() == labels.cpu()).float().mean())


@torch.no_grad()
def backdoor_metrics(
    model: nn.Module,
    waves: torch.Tensor,
    labels: torch.Tensor,
    triggered: torch.Tensor | None = None,
    target: int | None = None,
    batch_size: int = 512,
) -> dict[str, float]:
    """CA and clean loss, plus ASR, RA and backdoor loss when a triggered copy and target are given.

    One pass over the clean and one over the triggered clips; the backdoor loss is the mean
    cross-entropy of the triggered non-target clips against the target (used for early stopping).
    """
    logits = predict_logits(model, waves, batch_size)
    labels_cpu = labels.cpu()
    out = {
        "clean_accuracy": accuracy(logits, labels_cpu),
        "clean_loss": float(F.cross_entropy(logits.cpu(), labels_cpu)) if labels.numel() else float("nan"),
    }
    if triggered is not None and target is not None:
        keep = (labels_cpu != target).nonzero().flatten()  # ASR and RA count non-target clips only
        t_logits = predict_logits(model, triggered.index_select(0, keep.to(triggered.device)), batch_size).cpu()
        true = labels_cpu.index_select(0, keep)
        tgt = torch.full_like(true, target)
        out["attack_success_rate"] = accuracy(t_logits, tgt)
        out["robust_accuracy"] = accuracy(t_logits, true)
        out["backdoor_loss"] = float(F.cross_entropy(t_logits, tgt)) if keep.numel() else float("nan")
    return out


def defense_effectiveness_rating(before: dict[str, float], after: dict[str, float]) -> float:
    """DER from before/after dicts holding ``clean_accuracy`` and ``attack_success_rate``."""
    d_asr = before["attack_success_rate"] - after["attack_success_rate"]
    d_ca = before["clean_accuracy"] - after["clean_accuracy"]
    return (max(0.0, d_asr) - max(0.0, d_ca) + 1.0) / 2.0


def _backdoor_return(history: Sequence[dict], asr0: float | None, asr: float | None, details: dict) -> str | None:
    """The finding that the backdoor was removed during the run and came back by its end (ASR at most
    ``ASR_REMOVED`` at an evaluation before the last, above it after), with what to try: a repair that unlearns a
    scanned trigger can search it again mid-run (``unlearn_refresh``); None when it did not happen."""
    if asr0 is None or asr is None or asr0 <= ASR_REMOVED or asr <= ASR_REMOVED:
        return None
    seen = [h for h in history if h.get("attack_success_rate") is not None]
    low = min(seen[:-1], key=lambda h: h["attack_success_rate"], default=None)
    if low is None or low["attack_success_rate"] > ASR_REMOVED:
        return None
    said = (
        f"the backdoor came back: its attack success rate was {100 * low['attack_success_rate']:.1f} % at epoch "
        f"{low['epoch']} and is {100 * asr:.1f} % at the end, as the clean task was relearnt"
    )
    if "unlearn" in details and not details.get("searched_again"):
        said += (
            '; searching the trigger again during the repair (--unlearn-refresh 40, "Re-search trigger, epochs") '
            "removed most of such returns on real speech, at about 1 point of clean accuracy on a SmallCNN and 4 on "
            "a ResNet"
        )
    return said


def defense_findings(
    before: dict, after: dict, history: Sequence[dict], clean_clips: int, classes: int, details: dict | None = None
) -> list[str]:
    """What a user should know before trusting the repaired model: each finding one sentence.

    Says when clean accuracy fell more than ``CA_TOLERANCE``, when the backdoor was not removed
    (ASR above ``ASR_REMOVED``) and when it was removed during the run but came back, when clean
    accuracy collapsed during the run (the steps were too large for the model: its clean task was
    wrecked and relearnt from the clean share), when the clean share is thin and, from GN-FT's
    ``details``, when its first gradient was more than ``PENALTY_DOMINATES`` times the clean gradient
    (the penalty, not the clean loss, sets the step, as on a sharply converged model). An empty list
    means none of these was seen.
    """
    findings: list[str] = []
    ca0, ca1 = before["clean_accuracy"], after["clean_accuracy"]
    if ca0 - ca1 > CA_TOLERANCE:
        findings.append(
            f"clean accuracy fell {100 * (ca0 - ca1):.1f} points ({100 * ca0:.1f} % -> {100 * ca1:.1f} %), "
            f"more than {100 * CA_TOLERANCE:.0f}: the repaired model is not a drop-in replacement"
        )
    asr0, asr = before.get("attack_success_rate"), after.get("attack_success_rate")
    if asr0 is not None and asr0 <= ASR_REMOVED:
        findings.append(
            f"the attack does not work on the input model (attack success rate {100 * asr0:.1f} % "
            "before the defense): this run cannot show a backdoor's removal"
        )
    elif asr is not None and asr > ASR_REMOVED:
        findings.append(
            f"the backdoor is not removed: attack success rate {100 * asr:.1f} % after the defense "
            f"(removed means at most {100 * ASR_REMOVED:.0f} %)"
        )
    came_back = _backdoor_return(history, asr0, asr, details or {})
    if came_back:
        findings.append(came_back)
    low = min(history, key=lambda h: h.get("clean_accuracy", 1.0), default=None)
    if low is not None and ca0 - low.get("clean_accuracy", ca0) > COLLAPSE_DROP:
        findings.append(
            f"clean accuracy collapsed to {100 * low['clean_accuracy']:.1f} % at epoch {low['epoch']} "
            f"(from {100 * ca0:.1f} %): the steps are too large for this model, which lost its clean task "
            "and had to relearn it from the clean share; a smaller learning rate (lr; for gnft also "
            "alpha or r) avoids the collapse"
        )
    if 0 < clean_clips < FEW_CLIPS_PER_CLASS * classes:
        findings.append(
            f"the clean share is {clean_clips} clips, {clean_clips / classes:.0f} per class: a larger "
            "clean share (--clean-ratio) gives the defense more to keep the clean task with"
        )
    g1, g = ((details or {}).get(k) for k in ("first_step_clean_gradient_norm", "first_step_gradient_norm"))
    if g1 and g is not None and g > PENALTY_DOMINATES * g1:
        findings.append(
            f"GN-FT's first gradient was {g / g1:.0f}x the clean gradient ({g:.3g} against {g1:.3g}): "
            f"the gradient-norm penalty dominates on this model, and each step is as long as plain "
            f"fine-tuning's at a {g / g1:.0f}x larger learning rate"
        )
    held = (details or {}).get("holdout")
    if held and held.get("max_ca_drop") and not held.get("within"):
        findings.append(
            f"no evaluated state kept the held-out clean accuracy within {100 * held['max_ca_drop']:.1f} points "
            f"of {100 * held['accuracy_before']:.1f} %: the best one (epoch {held['kept_epoch']}, "
            f"{100 * held['accuracy_after']:.1f} %) was kept"
        )
    elif held and held.get("max_ca_drop") and held.get("kept_epoch") != held.get("last_epoch"):
        findings.append(
            f"the held-out clean accuracy fell more than {100 * held['max_ca_drop']:.1f} points later in the run: "
            f"the state of epoch {held['kept_epoch']} of {held['last_epoch']} was kept"
        )
    return findings
