"""Scan a model for a backdoor without knowing the trigger (issue 33).

Given a model and clean clips only (never the checkpoint's attack record), :func:`scan` searches, for
every class, the smallest trigger that sends clean clips of the other classes to that class
(:mod:`core.scan.invert`: a mask and pattern on the model's features, and an additive waveform
pattern through its own front end). A backdoor's target needs a much smaller trigger than the other
classes: the anomaly index of each class's size (its distance below the median in median absolute
deviations, as Neural Cleanse) above ``threshold`` flags the model, names the suspected target and
gives the confidence. A second, cheap statistic comes from the paper's own signal: how concentrated
the per-neuron clean-gradient norms of each analysable layer are (their Gini coefficient).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.analysis.grad_norms import neuron_grad_norms
from core.data.audioset import AudioSet
from core.defenses.base import clean_subset
from core.events import NullObserver, Observer
from core.features import clip_features
from core.models import split_front_end
from core.options import SEED_RANGE, SEED_TEXT, check_ranges, option
from core.runtime import resolve_device
from core.scan.invert import Inversion, invert_features, invert_waveform

__all__ = ["ScanConfig", "ScanResult", "anomaly_index", "gini", "scan"]

#: Median absolute deviation to standard deviation for normal data (Neural Cleanse's constant).
MAD_SCALE = 1.4826


@dataclass
class ScanConfig:
    """How hard the scan searches; the defaults scan a ResNet on this CPU in a few minutes."""

    clean_ratio: float = option(
        0.1,
        label="Clean share, %",
        percent=True,
        primary=True,
        range="(0, 1]",
        help="share of the training split the scan may use (clean clips; their labels are trusted)",
    )
    steps: int = option(200, label="Steps", primary=True, range="[1, inf)", help="optimisation steps per domain")
    batch_size: int = option(8, label="Clips a class a step", range="[1, inf)", help="clean clips per class per step")
    success: float = option(
        0.9,
        label="Attack success to reach, %",
        percent=True,
        range="(0, 1]",
        help="share of a batch a candidate trigger must send to its class to count",
    )
    threshold: float = option(
        2.0, label="Anomaly index threshold", range="(0, inf)", help="flag a class whose anomaly index exceeds this"
    )
    domains: str = option(
        "features,waveform",
        label="Domains",
        help="comma list of features (mask and pattern on the model's features) and waveform (an additive, "
        "audible pattern)",
    )
    peak: float = option(0.5, label="Waveform pattern peak", range="(0, 1]", help="largest sample of a pattern")
    seed: int = option(0, label="Seed", hidden=True, help="seed of the clean share and batches", range=SEED_RANGE,
                       range_text=SEED_TEXT)  # fmt: skip
    device: str = option("auto", label="Device", hidden=True, help="auto, cpu or cuda")

    def validate(self) -> None:
        """Declared ranges, and known domains."""
        check_ranges(self)
        unknown = set(self.domain_list()) - {"features", "waveform"}
        if unknown or not self.domain_list():
            from core.errors import ConfigError

            raise ConfigError(f"domains must be a comma list of features and waveform, got {self.domains!r}")

    def domain_list(self) -> list[str]:
        return [d.strip() for d in self.domains.split(",") if d.strip()]


@dataclass
class ScanResult:
    """The verdict and what it rests on; ``triggers`` are the waveform patterns (``[K, samples]``)."""

    backdoored: bool
    suspected_target: str | None
    confidence: float
    classes: list[str]
    domains: dict[str, dict[str, Any]]
    gradient_norm_gini: dict[str, float]
    clean_clips: int
    seconds: float
    config: dict[str, Any]
    triggers: torch.Tensor | None = field(default=None, repr=False)
    sample_rate: int = 16000

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (without the trigger audio)."""
        out = asdict(self)
        out.pop("triggers")
        return out

    def suspicious(self) -> list[int]:
        """Class indices flagged in any domain, most anomalous first."""
        scores: dict[int, float] = {}
        for d in self.domains.values():
            for i in d["flagged"]:
                scores[i] = max(scores.get(i, 0.0), d["anomaly_index"][i])
        return sorted(scores, key=lambda i: -scores[i])


def anomaly_index(sizes: list[float]) -> list[float]:
    """Per class: how far its size lies below the median, in median absolute deviations (x 1.4826);
    0 for classes at or above the median. Classes where no trigger was found (``inf``) count as the
    largest size found (or 1 when none was)."""
    finite = [s for s in sizes if math.isfinite(s)]
    cap = max(finite) if finite else 1.0
    values = [s if math.isfinite(s) else cap for s in sizes]
    median = statistics.median(values)
    mad = MAD_SCALE * statistics.median(abs(v - median) for v in values)
    mad = max(mad, 1e-12 + 1e-6 * abs(median))
    return [max(0.0, (median - v) / mad) for v in values]


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative ``values`` (0: all equal; near 1: one neuron holds it all)."""
    v = values.detach().double().flatten().abs().sort().values
    n = v.numel()
    if n == 0 or float(v.sum()) == 0.0:
        return 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.double)
    return float((2 * (ranks * v).sum() / (n * v.sum())) - (n + 1) / n)


def _gradient_gini(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The Gini coefficient of each analysable layer's per-neuron clean-gradient norms."""
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    out = {name: round(gini(norms), 4) for name, norms in neuron_grad_norms(model).items()}
    model.zero_grad(set_to_none=True)
    return out


def _domain_record(inv: Inversion, threshold: float, classes: list[str]) -> dict[str, Any]:
    index = anomaly_index(inv.sizes)
    flagged = sorted((i for i, a in enumerate(index) if a > threshold), key=lambda i: -index[i])
    return {
        "sizes": [s if math.isfinite(s) else None for s in inv.sizes],
        "success": [round(s, 4) for s in inv.success],
        "anomaly_index": [round(a, 3) for a in index],
        "flagged": flagged,
        "flagged_classes": [classes[i] for i in flagged],
    }


def scan(
    model: nn.Module, data: AudioSet, config: ScanConfig | None = None, observer: Observer | None = None
) -> ScanResult:
    """Scan ``model`` (waveform -> logits, with its front end) on clean clips of ``data``'s training split.

    Reads nothing but the model's weights and the clean clips; the model is left as it was. Raises
    :class:`core.events.Cancelled` when the observer asks to stop (nothing is written here)."""
    config = config or ScanConfig()
    config.validate()
    observer = observer or NullObserver()
    started = time.perf_counter()
    device = resolve_device(config.device)
    work = copy.deepcopy(model).to(device).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    rows = clean_subset(data, config.clean_ratio, config.seed)
    waves = data.waves.index_select(0, rows.to(data.waves.device)).to(device)
    labels = data.labels.index_select(0, rows.to(data.labels.device)).to(device)
    k = len(data.classes)
    gen = torch.Generator().manual_seed(config.seed)
    common = dict(steps=config.steps, batch=config.batch_size, success=config.success, gen=gen, observer=observer)
    domains: dict[str, dict[str, Any]] = {}
    triggers = None
    front, body = split_front_end(work)
    for domain in config.domain_list():
        if domain == "features" and front is not None:
            feats = clip_features(front, waves, 256)
            inv = invert_features(body, feats, labels, k, **common)
        elif domain == "waveform":
            inv = invert_waveform(work, waves, labels, k, peak=config.peak, **common)
            triggers = inv.triggers
        else:
            continue
        domains[domain] = _domain_record(inv, config.threshold, list(data.classes))
    best_domain = max(domains.values(), key=lambda d: max(d["anomaly_index"]), default=None)
    flagged = best_domain is not None and bool(best_domain["flagged"])
    target = best_domain["flagged"][0] if flagged else None
    confidence = max(best_domain["anomaly_index"]) if best_domain is not None else 0.0
    grad_gini = _gradient_gini(work, waves, labels)  # the clean share, one batch
    return ScanResult(
        backdoored=flagged,
        suspected_target=data.classes[target] if target is not None else None,
        confidence=round(confidence, 3),
        classes=list(data.classes),
        domains=domains,
        gradient_norm_gini=grad_gini,
        clean_clips=int(rows.numel()),
        seconds=round(time.perf_counter() - started, 2),
        config=asdict(config),
        triggers=triggers,
        sample_rate=data.sample_rate,
    )
