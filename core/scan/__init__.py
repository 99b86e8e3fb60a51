"""Scan a model for a backdoor without knowing the trigger (issue 33).

Given a model and clean clips only (never the checkpoint's attack record), :func:`scan` searches, for
every class, the smallest trigger that sends clean clips of the other classes to that class
(:mod:`core.scan.invert`: a mask and pattern on the model's features, an additive waveform pattern
through its own front end, a constant spectral offset, a whole-clip sound mixed in at any alignment). A
backdoor's target needs a much smaller trigger than the other classes: the anomaly index of each class's
size (the distance of its logarithm below the median in median absolute deviations: Neural Cleanse's
statistic on a log scale), pooled over the domains searched (:func:`pooled_index`), above ``threshold``
flags the model, names the suspected target and gives the confidence. A second, cheap statistic comes from
the paper's own signal: how concentrated the per-neuron clean-gradient norms of each analysable layer are
(their Gini coefficient).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from core.analysis.grad_norms import neuron_grad_norms
from core.data.audioset import AudioSet
from core.defenses.base import add_trigger, clean_subset
from core.events import SEARCH_AGAIN_PHASE, NullObserver, Observer
from core.features import clip_features
from core.models import front_end_settings, split_front_end
from core.models.batchnorm import fold_batchnorm
from core.options import SEED_RANGE, SEED_TEXT, check_ranges, comma_items, option
from core.runtime import autocast, memory_format, resolve_device
from core.scan.invert import (
    Inversion,
    Search,
    invert_features,
    invert_latent,
    invert_mix,
    invert_spectrum,
    invert_waveform,
)
from core.scan.reference import Reference, read_reference, relative_sizes

__all__ = [
    "AUDIO_DOMAINS",
    "DOMAINS",
    "Rescan",
    "ScanConfig",
    "ScanResult",
    "anomaly_index",
    "gini",
    "lead",
    "pointed_class",
    "pooled_index",
    "rescan",
    "scan",
    "search_class",
    "trigger_success",
    "trigger_success_on",
    "verdict",
]

#: The search domains a scan knows (``ScanConfig.domains``).
DOMAINS = ("features", "waveform", "latent", "spectrum", "mix")

#: The domains whose top class an unflagged scan points at, the first one searched (:func:`pointed_class`).
POINTING_DOMAINS = ("mix", "spectrum")

#: The domains whose triggers are audio (``ScanResult.triggers``: per class, that of the one where its index
#: is largest).
AUDIO_DOMAINS = ("waveform", "mix")

#: Median absolute deviation to standard deviation for normal data (Neural Cleanse's constant).
MAD_SCALE = 1.4826

#: The smallest spread of the log sizes an anomaly index divides by: what a second search seed moves a class's
#: log size by (median |difference| 0.04-0.25, about 0.1, over six ASC-10 models scanned with seeds 0 and 1).
#: Below it the classes' sizes tie within the search's chance (the mix domain's classes out of reach at a
#: short search: four of ten at one size gave indices of 60); no scan kept in the benchmark had a smaller one.
LOG_MAD_FLOOR = 0.1


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
        3.0,
        label="Anomaly index threshold",
        range="(0, inf)",
        help="flag a class whose anomaly index pooled over the domains exceeds this (3: between the clean and "
        "the backdoored ASC-10 models, docs/experiments/scan_asc10_calibration.md, scan_seeds_asc10.md)",
    )
    standout: float = option(
        1.25,
        label="Stand-out margin",
        range="[0, inf)",
        help="flag only a class whose pooled index also stands at least this far above the next class's: a "
        "cluster of classes equally easy to reach is not a planted trigger (it flagged a clean ASC-10 ResNet at "
        "two of four seeds, `stop` 3.1-3.8 with `right` 0.9 below). A margin of 1, chosen on 33 scans, still "
        "flagged two clean SmallCNNs of a later hold-out (1.09 and 1.12 clear); 1.25 flags no clean scan of "
        "all 21 and the right class on 21 of 34 backdoored ones, against 22 at 1; 1.5 did the same there but "
        "lost the demo's own scan in the application (1.50 clear), docs/experiments/scan_rule_probe.md; 0: "
        "the threshold alone)",
    )
    domains: str = option(
        "features,waveform,spectrum,mix",
        label="Domains",
        among=DOMAINS,
        help="comma list of features (mask and pattern on the model's features), waveform (an additive, "
        "audible pattern), latent (one push per class on a middle hidden layer; experimental: on 19 ASC-10 "
        "models it found one JingleBack target the others miss but flagged three of seven clean models, "
        "docs/experiments/scan_seeds_asc10.md) and spectrum (a constant offset of each feature coefficient: an "
        "equaliser or a stationary sound; unflagged, the scan points at its top class: the target of 11 of 13 "
        "backdoored ASC-10 models, of 3 of 8 unflagged validation models since, docs/experiments/"
        "pointing_rule_asc10.md) and mix (a whole-clip sound mixed in at a weight, at any alignment: a blended "
        "tune or an effect; unflagged, the scan points at its top class when it was searched, before spectrum's: "
        "the target of 13 of 15 backdoored ASC-10 SmallCNNs, docs/experiments/whole_clip_probe.md; a default "
        "since 2026-12-05: with it the Recommended's mean ASR on the seven ASC-10 test SmallCNNs fell from "
        "39.3 to 21.7 %, benchmarks/results/grid_asc10_round9_test.json, scan_mix.json)",
    )
    reference: str = option(
        "",
        label="Clean reference scans",
        metavar="REPORT[,REPORT...]",
        help="comma list of scan reports (python -m core.scan --out), or folders of them (each *.json in it), of "
        "clean models of the same architecture, front end and classes, scanned with the same settings: each "
        "class's trigger size is read against its size in them (the ratio to their geometric mean), so a class "
        "easy to reach in any such model is not taken for a target, and one a backdoor made easy stands out; the "
        "verdict and the class an unflagged repair unlearns toward are read on the ratios. On 56 ASC-10 scans read "
        "against other clean models of the same architecture (4-6 models): the target the top class of 31 of 31 "
        "backdoored scans (27 without), 29 flagged right (18 without), 1 of 25 clean flagged (as without), AUROC "
        "0.97 (0.79); fewer reference models flagged more clean ones, docs/experiments/scan_reference_probe.md; "
        "empty: none",
    )
    peak: float = option(0.5, label="Waveform pattern peak", range="(0, 1]", help="largest sample of a pattern")
    seed: int = option(0, label="Seed", hidden=True, help="seed of the clean share and batches", range=SEED_RANGE,
                       range_text=SEED_TEXT)  # fmt: skip
    device: str = option("auto", label="Device", hidden=True, help="auto, cpu or cuda")
    memory_format: Literal["auto", "channels_last", "contiguous"] = option(
        "auto",
        label="Memory layout",
        help="layout of the conv weights while searching: auto (channels_last on a CPU, the faster there; "
        "contiguous on a GPU), channels_last or contiguous; the model scanned is not changed (a ResNet scan on "
        "this 2-core CPU: 303 s contiguous with its BatchNorms, 204 s in channels_last folded, "
        "benchmarks/results/scan_speed.json)",
    )
    fold_batchnorm: bool = option(
        True,
        label="Fold BatchNorm",
        hidden=True,
        help="search through a copy of the model with its BatchNorms folded into the convolutions before them "
        "(core.models.batchnorm.fold_batchnorm: the same outputs to float rounding, a pass with no BatchNorm)",
    )
    amp: Literal["none", "bf16"] = option(
        "none",
        label="Mixed precision",
        help="bf16 autocast for the searches' passes (none = full float32): a ResNet scan 2x faster on a CPU with "
        "AVX-512 BF16, but at seed 0 it flagged the clean one of the two ResNets tried (index 3.02 against "
        "2.30-2.62 in float32, which flags it at seeds 1 and 2; benchmarks/results/scan_speed.json, "
        "docs/experiments/scan_layout_chance.md): opt-in until measured on more models",
    )

    #: settings that change how fast a scan runs, not what it looks for (kept scans are reused across them);
    #: ``amp`` rounds to bf16, so a scan made with it is not taken for one made without
    RUN_FIELDS: ClassVar[frozenset[str]] = frozenset({"device", "memory_format", "fold_batchnorm"})

    def validate(self) -> None:
        """Declared ranges and choices (domains, layout, precision: :func:`core.options.check_ranges`)."""
        check_ranges(self)

    @classmethod
    def searched(cls, config: dict[str, Any]) -> dict[str, Any]:
        """What a scan's recorded ``config`` searched with: its settings, today's defaults for those it predates
        (a scan recorded before ``amp`` existed ran in float32), and how it ran (``RUN_FIELDS``) left out; two
        scans with equal results searched alike."""
        full = {**asdict(cls()), **config}
        return {k: v for k, v in full.items() if k not in cls.RUN_FIELDS}

    def domain_list(self) -> list[str]:
        return comma_items(self.domains)

    def total_steps(self) -> int:
        """Optimisation steps of one scan (the steps of every domain), for a progress bar."""
        return self.steps * len(self.domain_list())


@dataclass
class ScanResult:
    """The verdict and what it rests on. ``triggers`` (``[K, samples]``): per class, the audible trigger of
    the audio domain (waveform, mix) where that class's anomaly index is largest, named in
    ``trigger_domains``; None when no audio domain was searched. ``front_end``: the scanned model's front-end
    settings (None for a model without one of ours, and in reports made before it was recorded), which a clean
    reference's models must share."""

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
    trigger_domains: list[str] = field(default_factory=list)
    reference: dict[str, Any] | None = None
    front_end: dict[str, Any] | None = None

    @property
    def pooled(self) -> list[float]:
        """Per class, the anomaly index pooled over the domains (:func:`pooled_index`): the verdict's statistic."""
        return [round(a, 3) for a in pooled_index(self.domains)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (without the trigger audio), with the pooled index per class."""
        out = asdict(self)
        out.pop("triggers")
        return {**out, "pooled": self.pooled}

    @classmethod
    def from_report(cls, report: dict[str, Any], triggers: torch.Tensor | None = None) -> ScanResult:
        """A scan read back from its JSON report, its verdict made again from its domains by today's rule
        (:func:`verdict`), so a scan kept from before a change of rule reads as a new one would."""
        known = {f for f in cls.__dataclass_fields__ if f != "triggers"}
        result = cls(**{k: v for k, v in report.items() if k in known}, triggers=triggers)
        target, confidence = verdict(result.domains, result.threshold(), result.standout())
        result.backdoored = target is not None
        result.suspected_target = result.classes[target] if target is not None else None
        result.confidence = round(confidence, 3)
        return result

    def read_against(self, reference: Reference | None, text: str = "") -> ScanResult:
        """This scan's searches read again against a clean ``reference`` (None: plainly), named ``text`` in the
        config: each domain's index made from its sizes as :func:`scan` makes it, the verdict made again; the
        trigger audio stays (chosen on the plain index either way, :func:`_audio_triggers`). Cheap: no search."""
        domains = {}
        for name, record in self.domains.items():
            sizes = [math.inf if s is None else s for s in record["sizes"]]
            inv = Inversion(sizes=sizes, success=record["success"], triggers=None)  # type: ignore[arg-type]
            domains[name] = _domain_record(inv, None if reference is None else reference.sizes[name])
        config = {**self.config, "reference": text if reference is not None else ""}
        report = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "triggers"}
        report.update(domains=domains, config=config, reference=None if reference is None else reference.to_dict())
        return ScanResult.from_report(copy.deepcopy(report), self.triggers)

    def threshold(self) -> float:
        """The anomaly index above which the scan flagged a class (its config's, else the default)."""
        return float(self.config.get("threshold", ScanConfig().threshold))

    def standout(self) -> float:
        """How far above the next class's pooled index a flagged class must stand (its config's, else today's
        default: a scan kept from before the margin existed is read by today's rule)."""
        return float(self.config.get("standout", ScanConfig().standout))

    def lead(self) -> tuple[int | None, float]:
        """(the class with the next largest pooled index, how far the largest stands above it): (None, 0) with
        fewer than two classes."""
        return lead(self.pooled)

    def suspicious(self) -> list[int]:
        """When the model is flagged, the class indices whose pooled anomaly index exceeds the threshold, most
        anomalous first (the suspected target first); [] when it is not."""
        if not self.backdoored:
            return []
        pooled = self.pooled
        flagged = [i for i, a in enumerate(pooled) if a > self.threshold()]
        return sorted(flagged, key=lambda i: -pooled[i])

    def most_anomalous(self) -> int | None:
        """The class the scan points at (:func:`pointed_class`): the class above the threshold
        (:meth:`above_threshold`: the suspected target when the model is flagged), else, read against a clean
        reference, the class of the largest pooled index, else the top class of the first of POINTING_DOMAINS
        searched (mix, spectrum), else the class with the largest anomaly index in any domain; None without
        domains. A repair unlearns toward it."""
        return pointed_class(self.domains, self.above_threshold(), pooled=self.reference is not None)[0]

    def above_threshold(self) -> int | None:
        """The suspected target when the model is flagged, else the class with the largest pooled index when
        that index exceeds the threshold without standing out; None below it. The class a repair unlearns toward:
        the standout margin decides the verdict, not the repair, whose class was chosen before the margin existed
        (benchmarks/results/grid_asc10_round9_test.json)."""
        if self.backdoored and self.suspected_target in self.classes:
            return self.classes.index(self.suspected_target)
        pooled = self.pooled
        if not pooled or max(pooled) <= self.threshold():
            return None
        return pooled.index(max(pooled))

    def pointed_classes(self, top: int = 1) -> list[int]:
        """The classes a repair unlearns toward: the class above the threshold alone (the suspected target
        when the model is flagged, :meth:`above_threshold`); else,
        with ``top`` 1, :meth:`most_anomalous`; else the ``top`` classes of the largest pooled index (the
        target was among the first two on the 14 unflagged ASC-10 models targeting `up`, not on one targeting
        `left`; unlearning both diluted the repair, docs/experiments/unlearn_top_asc10.md). [] without domains."""
        first = self.most_anomalous()
        if first is None:
            return []
        if self.above_threshold() is not None or top <= 1:
            return [first]
        pooled = self.pooled
        return sorted(range(len(pooled)), key=lambda i: (-pooled[i], i))[:top]

    def anomaly(self, index: int) -> float:
        """Class ``index``'s pooled anomaly index (0 without domains)."""
        pooled = self.pooled
        return pooled[index] if pooled else 0.0


def anomaly_index(sizes: list[float], log: bool = True, signed: bool = False) -> list[float]:
    """Per class: how far its size lies below the median, in median absolute deviations (x 1.4826), of
    the sizes' logarithms (``log``, the scan's statistic: sizes are scales, and a planted trigger is many
    times smaller than the rest, not a fixed amount) or of the sizes themselves (Neural Cleanse's); 0 for
    classes at or above the median. Classes where no trigger was found (``inf``) count as the largest size
    found (or 1 when none was). On the log scale the deviation is at least :data:`LOG_MAD_FLOOR` (a search's
    own seed-to-seed chance). ``signed`` keeps the classes above the median, as negative values."""
    finite = [s for s in sizes if math.isfinite(s)]
    cap = max(finite) if finite else 1.0
    values = [s if math.isfinite(s) else cap for s in sizes]
    if log:
        values = [math.log(max(v, 1e-12)) for v in values]
    median = statistics.median(values)
    mad = MAD_SCALE * statistics.median(abs(v - median) for v in values)
    mad = max(mad, LOG_MAD_FLOOR if log else 1e-12 + 1e-6 * abs(median))
    deviations = [(median - v) / mad for v in values]
    return deviations if signed else [max(0.0, d) for d in deviations]


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative ``values`` (0: all equal; near 1: one neuron holds it all)."""
    v = values.detach().double().flatten().abs().sort().values.cpu()  # the ranks below are on the CPU
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


def _domain_record(inv: Inversion, reference: list[float] | None = None) -> dict[str, Any]:
    """A domain's sizes, success and anomaly index: of the sizes, or, against a clean ``reference`` (its sizes
    of the domain), of their ratios to it (:func:`core.scan.reference.relative_sizes`), the plain one kept."""
    sizes = [s if math.isfinite(s) else None for s in inv.sizes]
    plain = [round(a, 3) for a in anomaly_index(inv.sizes)]
    if reference is None:
        return {"sizes": sizes, "success": [round(s, 4) for s in inv.success], "anomaly_index": plain}
    ratios = relative_sizes(sizes, reference)
    return {
        "sizes": sizes,
        "success": [round(s, 4) for s in inv.success],
        "anomaly_index": [round(a, 3) for a in anomaly_index(ratios)],
        "plain_anomaly_index": plain,
        "relative_sizes": [float(f"{r:.6g}") for r in ratios],
    }


def pointed_class(
    domains: dict[str, dict[str, Any]], suspected: int | None, pooled: bool = False
) -> tuple[int | None, str | None]:
    """(class index, domain) a scan's records point at: ``suspected`` (the verdict's flagged class) with the
    domain where its index is largest; else, when nothing is flagged, the top class of the first of
    :data:`POINTING_DOMAINS` searched: the mix domain (a whole-clip sound at any alignment: the target came
    first on 13 of 15 backdoored ASC-10 SmallCNNs, all 12 Blend and JingleBack ones among them, two of them
    targeting `left`, docs/experiments/whole_clip_probe.md), else the spectrum domain (a trigger that changes
    the whole clip, a blended tune or an effect, stays under the
    threshold, but the constant spectral shift toward its target is the smallest: the target came first
    there on 11 of 13 backdoored ASC-10 models, the other domains' largest index on 6 of 12,
    docs/experiments/scan_seeds_asc10.md; chosen again on 8 unflagged validation models, where it and the
    pooled index each named the target on 3, the waveform domain on 2, and the pooled index's first two
    classes held it on all 8, all targeting `up`, but not on a model targeting `left`,
    docs/experiments/pointing_rule_asc10.md, unlearn_top_asc10.md); else the class with the largest
    pooled index (the first on a tie) and its largest domain; with ``pooled`` (a scan read against a clean
    reference, whose pooled top class was the target of all 31 backdoored ASC-10 scans,
    docs/experiments/scan_reference_probe.md) that class always. (None, None) without domains."""
    if not domains:
        return None, None
    pointing = None if pooled else next((name for name in POINTING_DOMAINS if name in domains), None)
    if suspected is None and pointing is not None:
        index = domains[pointing]["anomaly_index"]
        return index.index(max(index)), pointing
    if suspected is None:
        index = pooled_index(domains)
        suspected = index.index(max(index))
    where = max(domains, key=lambda name: domains[name]["anomaly_index"][suspected])
    return suspected, where


def pooled_index(domains: dict[str, dict[str, Any]]) -> list[float]:
    """Per class: its anomaly indices over the domains (``{domain: {"anomaly_index": [K]}}``) summed and
    divided by the square root of their number (Stouffer's rule on the non-negative indices): a class that
    several domains find small stands out more than one a single domain finds small, and one domain's
    chance outlier counts less (it flagged a clean ResNet at 3.39 alone; pooled 2.46). With one domain, its
    index. Chosen over the largest single index on 13 backdoored / 7 clean ASC-10 models: AUROC 0.87 against
    0.74, no false positive against one (docs/experiments/scan_seeds_asc10.md). [] without domains."""
    if not domains:
        return []
    columns = zip(*(d["anomaly_index"] for d in domains.values()))
    return [sum(col) / math.sqrt(len(domains)) for col in columns]


def lead(pooled: list[float]) -> tuple[int | None, float]:
    """(index of the class with the second largest value, how far the largest stands above it) of per-class
    ``pooled`` indices; (None, 0.0) with fewer than two classes."""
    if len(pooled) < 2:
        return None, 0.0
    first, second = sorted(range(len(pooled)), key=lambda i: (-pooled[i], i))[:2]
    return second, pooled[first] - pooled[second]


def verdict(domains: dict[str, dict[str, Any]], threshold: float, standout: float = 0.0) -> tuple[int | None, float]:
    """(suspected target's index or None, confidence) from per-domain records (``{domain: {"anomaly_index":
    [K]}}``): the class with the largest pooled index (:func:`pooled_index`); the model is flagged when it
    exceeds ``threshold`` and stands at least ``standout`` above the next class's (:func:`lead`): a planted
    trigger makes one class small, not several. Any subset of a scan's domains can be read this way
    (``benchmarks/scan.py`` compares them)."""
    pooled = pooled_index(domains)
    if not pooled:
        return None, 0.0
    confidence = max(pooled)
    flagged = confidence > threshold and lead(pooled)[1] >= standout
    return (pooled.index(confidence) if flagged else None), confidence


def scan(
    model: nn.Module,
    data: AudioSet,
    config: ScanConfig | None = None,
    observer: Observer | None = None,
    reference: Reference | None = None,
) -> ScanResult:
    """Scan ``model`` (waveform -> logits, with its front end) on clean clips of ``data``'s training split.

    Reads nothing but the model's weights and the clean clips (and ``config.reference``'s reports, unless the
    caller read them already: ``reference``, :func:`core.scan.reference.read_reference`); the model is left as
    it was. Raises :class:`core.errors.ConfigError` for a reference that does not fit, before any work, and
    :class:`core.events.Cancelled` when the observer asks to stop (nothing is written here)."""
    config = config or ScanConfig()
    config.validate()
    front_end = front_end_settings(model)
    if reference is None:
        classes, settings = list(data.classes), asdict(config)
        reference = read_reference(config.reference, classes, settings, front_end=front_end, option="reference")
    observer = observer or NullObserver()
    started = time.perf_counter()
    device = resolve_device(config.device)
    work, rows, waves, labels = _frozen_with_clean(model, data, config, device)
    k = len(data.classes)
    gen = torch.Generator().manual_seed(config.seed)
    search = Search(labels, k, config.steps, config.batch_size, config.success, gen, observer)
    domains: dict[str, dict[str, Any]] = {}
    audio: dict[str, torch.Tensor] = {}
    front, body = split_front_end(work)
    feats = waves if front is None else clip_features(front, waves, 256)  # once, for features and latent
    fast_body = _search_copy(body, config, device)
    fast = fast_body if front is None else nn.Sequential(front, fast_body)
    for domain in config.domain_list():
        with autocast(device, config.amp):
            inv = _invert(domain, front, body, fast_body, fast, feats, waves, search, config)
        if inv is None:
            continue
        domains[domain] = _domain_record(inv, None if reference is None else reference.sizes[domain])
        if domain in AUDIO_DOMAINS:
            audio[domain] = inv.triggers
    triggers, trigger_domains = _audio_triggers(domains, audio)
    target, confidence = verdict(domains, config.threshold, config.standout)
    grad_gini = _gradient_gini(work, waves, labels)  # the clean share, one batch
    return ScanResult(
        backdoored=target is not None,
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
        trigger_domains=trigger_domains,
        reference=None if reference is None else reference.to_dict(),
        front_end=front_end,
    )


def _frozen_with_clean(
    model: nn.Module, data: AudioSet, config: ScanConfig, device: torch.device
) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A frozen copy of ``model`` in eval mode on ``device`` (the one searched; the model is left as it was), and
    the scan's clean share of ``data``'s training split: its rows, waveforms and labels, on ``device``."""
    work = copy.deepcopy(model).to(device).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    rows = clean_subset(data, config.clean_ratio, config.seed)
    waves = data.waves.index_select(0, rows.to(data.waves.device)).to(device)
    labels = data.labels.index_select(0, rows.to(data.labels.device)).to(device)
    return work, rows, waves, labels


class _Toward(nn.Module):
    """``model`` with its output columns reordered so that class ``index`` comes first: a one-class search (the
    searches' class 0) looks for a trigger toward ``index`` (:func:`search_class`)."""

    def __init__(self, model: nn.Module, index: int, n_classes: int) -> None:
        super().__init__()
        self.model = model
        order = [index, *[i for i in range(n_classes) if i != index]]
        self.register_buffer("order", torch.tensor(order), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).index_select(-1, self.order.to(x.device))


def search_class(
    model: nn.Module,
    data: AudioSet,
    index: int,
    config: ScanConfig | None = None,
    *,
    domain: str = "waveform",
    seed: int | None = None,
    observer: Observer | None = None,
) -> Inversion:
    """The smallest audible trigger (``domain``: waveform or mix) toward class ``index`` alone, searched on
    ``model`` as it is now with the scan's clean share of ``data`` (``config``'s clean share, seed, steps and
    batch; ``seed``, when given, draws the batches and the start): what a repair that unlearns a scanned
    trigger searches again mid-run (``unlearn_refresh``), where one class's search costs a tenth of a scan.
    ``model`` is not changed (a frozen copy is searched, in eval mode). Its steps' phase is
    ``SEARCH_AGAIN_PHASE`` + domain. Raises :class:`core.events.Cancelled` when the observer asks to stop."""
    config = config or ScanConfig()
    if domain not in AUDIO_DOMAINS:
        raise ValueError(f"search_class searches an audio domain ({', '.join(AUDIO_DOMAINS)}), not {domain!r}")
    device = resolve_device(config.device)
    work, _, waves, labels = _frozen_with_clean(model, data, config, device)
    front, body = split_front_end(work)
    fast_body = _search_copy(body, config, device)
    fast = _Toward(fast_body if front is None else nn.Sequential(front, fast_body), index, len(data.classes))
    gen = torch.Generator().manual_seed(config.seed if seed is None else seed)
    search = Search((labels != index).long(), 1, config.steps, config.batch_size, config.success, gen,
                    observer or NullObserver(), SEARCH_AGAIN_PHASE)  # fmt: skip
    with autocast(device, config.amp):
        if domain == "mix":
            return invert_mix(fast, waves, search)
        return invert_waveform(fast, waves, search, peak=config.peak)


def _invert(
    domain: str,
    front: nn.Module | None,
    body: nn.Module,
    fast_body: nn.Module,
    fast: nn.Module,
    feats: torch.Tensor,
    waves: torch.Tensor,
    search: Search,
    config: ScanConfig,
) -> Inversion | None:
    """One domain's search, through the search copy (``fast_body`` on features, ``fast`` on waveforms); None
    for a feature domain of a model without a separate front end."""
    if domain == "features" and front is not None:
        return invert_features(fast_body, feats, search)
    if domain == "latent":  # hooks a layer of the model's own (the folded copy may have merged it)
        return invert_latent(body, feats, search)
    if domain == "spectrum" and front is not None:
        return invert_spectrum(fast_body, feats, search)
    if domain == "waveform":
        return invert_waveform(fast, waves, search, peak=config.peak)
    if domain == "mix":
        return invert_mix(fast, waves, search)
    return None


def _search_copy(body: nn.Module, config: ScanConfig, device: torch.device) -> nn.Module:
    """The frozen classifier the searches run through: ``body`` with its BatchNorms folded into the
    convolutions before them (``config.fold_batchnorm``; a copy) in ``config.memory_format``'s layout (a copy
    when it changes it): the same outputs to float rounding, a ResNet's scan 1.5x faster on a CPU (its 200 steps
    then end elsewhere by the search's chance: the pooled index moved by up to 1.2, the verdicts held on two
    ResNets, ``benchmarks/results/scan_speed.json``)."""
    fast = fold_batchnorm(body) if config.fold_batchnorm else body
    layout = memory_format(config.memory_format, device)
    if layout != torch.contiguous_format:
        fast = (copy.deepcopy(fast) if fast is body else fast).to(memory_format=layout)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast


def _audio_triggers(
    domains: dict[str, dict[str, Any]], audio: dict[str, torch.Tensor]
) -> tuple[torch.Tensor | None, list[str]]:
    """Per class, the trigger of the audio domain where its anomaly index is largest (the first searched on a
    tie; the plain index, not one read against a clean reference, so that reading a scan again against another
    keeps its audio): ``[K, samples]`` and the domains' names; (None, []) without an audio domain."""
    if not audio:
        return None, []
    names = list(audio)
    plain = {name: domains[name].get("plain_anomaly_index", domains[name]["anomaly_index"]) for name in names}
    k = len(plain[names[0]])
    chosen = [max(names, key=lambda name: (plain[name][i], -names.index(name))) for i in range(k)]
    return torch.stack([audio[name][i] for i, name in enumerate(chosen)]), chosen


@torch.no_grad()
def trigger_success(
    model: nn.Module,
    waves: torch.Tensor,
    labels: torch.Tensor,
    trigger: torch.Tensor,
    target: int,
    batch_size: int = 256,
) -> float | None:
    """The share of ``waves`` whose label is not ``target`` that ``model`` classifies as ``target`` once
    ``trigger`` (a waveform, added from the clip's start, cropped or zero-padded to it) is added and the
    sum clamped to [-1, 1], as the waveform inversion applied it. None when every clip is of ``target``.
    The model is run in eval mode and left in the mode it was in."""
    keep = (labels != target).nonzero().flatten()
    if keep.numel() == 0:
        return None
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    hits = 0
    try:
        for start in range(0, keep.numel(), batch_size):
            rows = keep[start : start + batch_size].to(waves.device)
            x = add_trigger(waves.index_select(0, rows).to(device, torch.float32), trigger)
            hits += int((model(x).argmax(-1) == target).sum())
    finally:
        model.train(training)
    return hits / keep.numel()


def trigger_success_on(
    model: nn.Module, data: AudioSet, split: str, trigger: torch.Tensor, target: int
) -> float | None:
    """:func:`trigger_success` on the clips of ``data``'s ``split`` (None when the split has none)."""
    rows = data.splits.get(split)
    if rows is None or rows.numel() == 0:
        return None
    waves = data.waves.index_select(0, rows.to(data.waves.device))
    labels = data.labels.index_select(0, rows.to(data.labels.device))
    return trigger_success(model, waves, labels, trigger, target)


@dataclass
class Rescan:
    """A model scanned before and after a repair with one config, and the before-scan's waveform trigger
    of its most anomalous class replayed on clean clips of ``split`` (those not of that class) through
    both models: its attack success rate before and after (None without an audio domain)."""

    before: ScanResult
    after: ScanResult
    split: str
    target: int | None
    clips: int
    asr_before: float | None
    asr_after: float | None

    def to_dict(self) -> dict[str, Any]:
        """What a repair report keeps: the verdicts side by side, the trigger's ASR, both scans in full."""
        b, a = self.before, self.after
        target = b.classes[self.target] if self.target is not None else None
        return {
            "flagged_before": b.backdoored,
            "flagged_after": a.backdoored,
            "flag_gone": (not a.backdoored) if b.backdoored else None,
            "suspected_target_before": b.suspected_target,
            "suspected_target_after": a.suspected_target,
            "confidence_before": b.confidence,
            "confidence_after": a.confidence,
            "trigger": {
                "class": target,
                "index": self.target,
                "flagged": self.target is not None and self.target in b.suspicious(),
                "anomaly_index": b.anomaly(self.target) if self.target is not None else None,
                "split": self.split,
                "clips": self.clips,
                "asr_before": self.asr_before,
                "asr_after": self.asr_after,
            },
            "config": b.config,
            "before": b.to_dict(),
            "after": a.to_dict(),
        }


def rescan(
    original: nn.Module,
    repaired: nn.Module,
    data: AudioSet,
    config: ScanConfig | None = None,
    *,
    split: str = "test",
    observer: Observer | None = None,
    before: ScanResult | None = None,
    after: ScanResult | None = None,
) -> Rescan:
    """Scan ``original`` and ``repaired`` with the same ``config`` (neither model is changed), then replay
    the first scan's reconstructed waveform trigger of its most anomalous class
    (:meth:`ScanResult.most_anomalous`) on ``data``'s ``split`` through both models
    (:func:`trigger_success`). ``before``, a scan of ``original`` already made with this config (the
    repair's own, when it unlearned a scanned trigger), is used instead of scanning it again, and so is
    ``after``, a scan of ``repaired`` with this config (the repair's, with ``rescan_passes``). Raises
    :class:`core.events.Cancelled` when the observer asks to stop."""
    config = config or ScanConfig()
    if before is None or before.config != asdict(config):
        before = scan(original, data, config, observer)
    if after is None or after.config != asdict(config):
        after = scan(repaired, data, config, observer)
    target = before.most_anomalous()
    labels = data.labels.index_select(0, data.splits[split].to(data.labels.device))
    clips = int((labels != target).sum()) if target is not None else 0
    asr_before = asr_after = None
    if target is not None and before.triggers is not None:
        trigger = before.triggers[target]
        asr_before = trigger_success_on(original, data, split, trigger, target)
        asr_after = trigger_success_on(repaired, data, split, trigger, target)
    return Rescan(before, after, split, target, clips, asr_before, asr_after)
