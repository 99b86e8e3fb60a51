"""The trigger-inversion scan's mechanics (issue 33; detection rates are measured in benchmarks, not here)."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from core.data.speech_commands import load_speech_commands
from core.events import Cancelled, NullObserver
from core.features import FrontEndConfig, clip_features
from core.models import build, split_front_end
from core.scan import (
    ScanConfig,
    ScanResult,
    _audio_triggers,
    anomaly_index,
    gini,
    lead,
    pooled_index,
    scan,
    verdict,
)
from tests.conftest import TINY_WORDS


def test_anomaly_index_measures_distance_below_the_median_in_deviations():
    sizes = [1.0, 1.1, 0.9, 1.0, 0.2]
    index = anomaly_index(sizes, log=False)
    mad = 1.4826 * 0.1  # median 1.0; absolute deviations 0, .1, .1, 0, .8 -> median 0.1
    assert index[4] == pytest.approx(0.8 / mad) and index[2] == pytest.approx(0.1 / mad)
    assert index[0] == index[1] == index[3] == 0.0  # at or above the median: not anomalous
    assert anomaly_index([0.5, math.inf, 0.6, 0.55])[1] == 0.0  # no trigger found: the largest size
    # the scan's statistic works on a log scale: sizes e^0, e^0.1, e^-0.1, e^0, e^-2 -> MAD 0.1 of the logs
    logs = anomaly_index([math.exp(v) for v in (0.0, 0.1, -0.1, 0.0, -2.0)])
    assert logs[4] == pytest.approx(2.0 / mad) and logs[2] == pytest.approx(0.1 / mad) and logs[0] == 0.0
    # ten times smaller than its peers is as anomalous whatever the peers' scale
    assert anomaly_index([0.01, 0.012, 0.011, 0.001]) == pytest.approx(anomaly_index([1.0, 1.2, 1.1, 0.1]))


def test_sizes_that_tie_within_a_search_s_chance_do_not_inflate_the_index():
    from core.scan import LOG_MAD_FLOOR

    # six of ten classes out of reach at one size (a short mix search): their MAD of the logs is 0
    sizes = [1.9] * 6 + [1.85, 1.8, 0.05, 0.04]
    index = anomaly_index(sizes)
    median = math.log(1.9)
    assert index[9] == pytest.approx((median - math.log(0.04)) / LOG_MAD_FLOOR)  # not millions
    assert index[9] < 50 and index[6] < 1  # a size 3 % below its peers is chance, not an outlier
    # a spread larger than the floor is read as before
    spread = anomaly_index([math.exp(v) for v in (0.0, 0.5, -0.5, 0.0, -3.0)])
    assert spread[4] == pytest.approx(3.0 / (1.4826 * 0.5))


def test_gini_of_neuron_norms():
    assert gini(torch.ones(8)) == pytest.approx(0.0)
    assert gini(torch.tensor([0.0, 0.0, 0.0, 5.0])) == pytest.approx(0.75)
    assert gini(torch.zeros(3)) == 0.0


def test_the_verdict_pools_the_domains_so_one_domain_s_chance_outlier_counts_less():
    def domains(*indices):
        return {f"d{n}": {"anomaly_index": list(index)} for n, index in enumerate(indices)}

    # the clean ResNet's case: 3.39 in one domain, nothing in the two others -> 1.96, not flagged at 3
    alone = domains([0.2, 3.39, 0.0], [0.0, 0.0, 0.0], [0.1, 0.0, 0.3])
    assert pooled_index(alone) == pytest.approx([0.3 / math.sqrt(3), 3.39 / math.sqrt(3), 0.3 / math.sqrt(3)])
    assert verdict(alone, 3.0) == (None, pytest.approx(3.39 / math.sqrt(3)))
    # two domains agreeing at 2.5 each: 4.33, flagged, though neither alone is above 3
    agree = domains([0.0, 2.5, 0.1], [0.0, 2.5, 0.0], [0.2, 2.5, 0.0])
    assert verdict(agree, 3.0) == (1, pytest.approx(7.5 / math.sqrt(3)))
    # one domain's large index still flags alone (a BadNets tone in the waveform domain)
    assert verdict(domains([0.0, 0.0, 7.0], [0.0, 0.3, 0.0]), 3.0)[0] == 2
    assert pooled_index(domains([1.0, 4.0])) == [1.0, 4.0]  # one domain: its own index
    assert pooled_index({}) == [] and verdict({}, 3.0) == (None, 0.0)
    # a report kept from before the rule changed reads with today's verdict
    old = {
        "backdoored": True,
        "suspected_target": "b",
        "confidence": 3.39,
        "classes": ["a", "b", "c"],
        "domains": {k: {**v, "sizes": [0.1] * 3, "success": [1.0] * 3} for k, v in alone.items()},
        "gradient_norm_gini": {},
        "clean_clips": 3,
        "seconds": 1.0,
        "config": {"threshold": 3.0},
        "model_sha256": "kept beside the report by core.grid",
    }
    result = ScanResult.from_report(old)
    assert not result.backdoored and result.suspected_target is None and result.suspicious() == []
    assert result.confidence == pytest.approx(1.957, abs=1e-3) and result.anomaly(1) == result.confidence
    assert result.most_anomalous() == 1  # no spectrum domain: the largest pooled index


def test_a_class_must_stand_out_from_the_next_to_be_flagged():
    """A cluster of classes equally easy to reach (a clean ResNet's `up`, `right`, `stop` in the spectrum domain)
    is not a planted trigger: above the threshold but within the standout margin of the next class, no flag;
    the class a repair unlearns toward is the same as without the margin."""
    close = {"spectrum": {"anomaly_index": [2.8, 0.0, 3.3, 3.0]}, "mix": {"anomaly_index": [1.2, 0.0, 1.6, 2.9]}}
    pooled = pooled_index(close)  # [2.83, 0, 3.46, 4.17]
    assert lead(pooled) == (2, pytest.approx(pooled[3] - pooled[2]))
    assert verdict(close, 3.0) == (3, pytest.approx(pooled[3]))  # the threshold alone flags class 3
    assert verdict(close, 3.0, 1.0) == (None, pytest.approx(pooled[3]))  # 0.71 above the next: not flagged
    assert verdict(close, 3.0, 0.5)[0] == 3
    apart = {"spectrum": {"anomaly_index": [2.8, 0.0, 0.3, 5.0]}, "mix": {"anomaly_index": [0.0, 0.0, 0.0, 2.9]}}
    assert verdict(apart, 3.0, 1.0)[0] == 3  # well clear of the next: flagged
    # 1.2 clear (two clean SmallCNNs of the hold-out stood 1.09 and 1.12 clear): a margin of 1 flags it, today's not
    between = {"spectrum": {"anomaly_index": [0.0, 0.0, 3.0, 4.2]}}
    assert verdict(between, 3.0, 1.0)[0] == 3 and verdict(between, 3.0, ScanConfig().standout)[0] is None
    assert lead([4.0]) == (None, 0.0) and lead([]) == (None, 0.0)
    report = {
        "backdoored": True,
        "suspected_target": "d",
        "confidence": 4.0,
        "classes": ["a", "b", "c", "d"],
        "domains": close,
        "gradient_norm_gini": {},
        "clean_clips": 4,
        "seconds": 1.0,
        "config": {"threshold": 3.0},  # a report from before the margin: read by today's default (1.25)
    }
    result = ScanResult.from_report(report)
    assert not result.backdoored and result.suspected_target is None and result.suspicious() == []
    assert result.standout() == ScanConfig().standout == 1.25
    assert result.above_threshold() == 3 and result.most_anomalous() == 3 and result.pointed_classes(2) == [3]
    flagged = ScanResult.from_report({**report, "config": {"threshold": 3.0, "standout": 0.5}})
    assert flagged.backdoored and flagged.suspected_target == "d" and flagged.suspicious() == [3, 2]
    below = ScanResult.from_report({**report, "config": {"threshold": 5.0}})
    assert below.above_threshold() is None and below.pointed_classes(2) == [3, 2]  # unflagged: the top two


class StopAt(NullObserver):
    def __init__(self, n: int) -> None:
        self.steps, self.n = 0, n

    def on_step(self, info) -> None:
        self.steps += 1

    def should_stop(self) -> bool:
        return self.steps >= self.n


def test_scan_is_seeded_leaves_the_model_alone_and_cancels(tiny_sc):
    data = load_speech_commands(tiny_sc, TINY_WORDS)
    torch.manual_seed(0)
    model = build("smallcnn", len(TINY_WORDS), FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = ScanConfig(steps=4, batch_size=2, clean_ratio=0.5, device="cpu")
    a, b = scan(model, data, config), scan(model, data, config)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert a.to_dict() | {"seconds": 0} == b.to_dict() | {"seconds": 0}  # same seed, same numbers
    assert list(a.domains) == ["features", "waveform", "spectrum", "mix"]  # the default domains
    for domain in ("features", "waveform", "spectrum", "mix"):
        record = a.domains[domain]
        assert len(record["sizes"]) == len(record["anomaly_index"]) == len(TINY_WORDS)
        assert all(0.0 <= s <= 1.0 for s in record["success"])
    assert a.triggers is not None and a.triggers.shape == (len(TINY_WORDS), 16000)
    for trigger, domain in zip(a.triggers, a.trigger_domains):  # a waveform pattern's peak; a mixed sound's 1
        assert float(trigger.abs().max()) <= (config.peak if domain == "waveform" else 1.0) + 1e-6
    assert set(a.gradient_norm_gini) >= {"classifier.conv1", "classifier.fc"}
    stop = StopAt(3)
    with pytest.raises(Cancelled):
        scan(model, data, config, stop)
    assert stop.steps == 3


def test_the_searches_run_through_a_folded_channels_last_copy_that_finds_what_the_model_does(tiny_sc):
    """The default search copy (BatchNorms folded, channels_last on a CPU) against the model as it is: the same
    outputs to rounding, the model untouched, and a scan through either finds the same sizes."""
    from core.scan import _search_copy

    data = load_speech_commands(tiny_sc, TINY_WORDS)
    torch.manual_seed(0)
    model = build("resnet", len(TINY_WORDS), FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).eval()
    for m in model.modules():  # statistics of a trained model, not a fresh one's identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.5, 0.5)
    front, body = split_front_end(model)
    fast = _search_copy(body, ScanConfig(device="cpu"), torch.device("cpu"))
    assert fast is not body and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    conv = next(m for m in fast.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert all(p.is_contiguous() and p.requires_grad for p in model.parameters())  # the model itself untouched
    feats = clip_features(front, data.waves[:8], 8)
    assert torch.allclose(fast(feats), body(feats), rtol=1e-4, atol=1e-4)
    plain = ScanConfig(steps=4, batch_size=2, clean_ratio=0.5, device="cpu", domains="features,waveform")
    slow = ScanConfig(**{**plain.__dict__, "memory_format": "contiguous", "fold_batchnorm": False})
    a, b = scan(model, data, plain), scan(model, data, slow)
    for domain in a.domains:
        sa, sb = a.domains[domain]["sizes"], b.domains[domain]["sizes"]
        assert [s is None for s in sa] == [s is None for s in sb]
        assert [x for x in sa if x is not None] == pytest.approx([x for x in sb if x is not None], rel=1e-3)


def test_a_bf16_scan_keeps_float32_results_and_is_not_taken_for_a_float32_one(tiny_sc):
    data = load_speech_commands(tiny_sc, TINY_WORDS)
    torch.manual_seed(0)
    model = build("smallcnn", len(TINY_WORDS), FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).eval()
    config = ScanConfig(steps=3, batch_size=2, clean_ratio=0.5, device="cpu", amp="bf16", domains="features,mix")
    result = scan(model, data, config)
    assert result.triggers is not None and result.triggers.dtype == torch.float32
    assert all(isinstance(s, float) and s > 0 for d in result.domains.values() for s in d["sizes"] if s is not None)
    assert not torch.is_autocast_enabled("cpu")  # left as it was
    kept = ScanConfig.searched(result.config)
    assert kept != ScanConfig.searched(asdict(ScanConfig(**{**result.config, "amp": "none"})))
    assert kept == ScanConfig.searched({**result.config, "memory_format": "contiguous", "device": "cuda"})


def test_scan_config_refuses_unknown_domains():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="domains"):
        ScanConfig(domains="cepstrum").validate()
    with pytest.raises(ConfigError, match="steps"):
        ScanConfig(steps=0).validate()
    with pytest.raises(ConfigError, match="memory_format"):
        ScanConfig(memory_format="nhwc").validate()
    with pytest.raises(ConfigError, match="amp must be none or bf16"):
        ScanConfig(amp="fp16").validate()


def test_the_latent_domain_scores_every_class_and_leaves_the_waveform_triggers_to_the_waveform_domain(tiny_sc):
    data = load_speech_commands(tiny_sc, TINY_WORDS)
    torch.manual_seed(0)
    model = build("smallcnn", len(TINY_WORDS), FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = ScanConfig(steps=6, batch_size=2, clean_ratio=0.5, device="cpu", domains="latent")
    a, b = scan(model, data, config), scan(model, data, config)
    assert a.to_dict() | {"seconds": 0} == b.to_dict() | {"seconds": 0}
    assert list(a.domains) == ["latent"] and a.triggers is None  # nothing to play from a hidden layer
    record = a.domains["latent"]
    assert len(record["sizes"]) == len(record["anomaly_index"]) == len(TINY_WORDS)
    assert all(s is None or s >= 0 for s in record["sizes"])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(h for m in model.modules() for h in m._forward_hooks.values())  # hooks taken off


def test_the_spectrum_domain_finds_the_class_a_constant_spectral_shift_reaches(tiny_sc):
    """A model whose classifier answers "no" (a class the untrained model never gives) for a raised level of
    one feature coefficient in every frame (a stationary sound's signature): the spectrum domain's smallest
    offset is no's, by far."""
    data = load_speech_commands(tiny_sc, TINY_WORDS)
    torch.manual_seed(0)
    model = build("smallcnn", len(TINY_WORDS), FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).eval()
    front, body = split_front_end(model)
    feats = clip_features(front, data.waves, 64)
    level, spread = feats[:, :, :, 3].mean(), feats[:, :, :, 3].std()
    target = TINY_WORDS.index("no")
    assert int((model(data.waves).argmax(1) == target).sum()) == 0

    class Planted(nn.Module):
        """The body, plus a large push to the target where coefficient 3's clip mean is a std above its level."""

        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.body(x)
            shift = (x[:, 0, :, 3].mean(dim=1) - level) / spread
            push = 20.0 * torch.sigmoid(4.0 * (shift - 1.0))  # smooth: the search gets a gradient from 0
            return out + push.unsqueeze(1) * F.one_hot(torch.tensor(target), out.shape[1])

    planted = nn.Sequential(front, Planted()).eval()
    config = ScanConfig(steps=150, batch_size=4, clean_ratio=1.0, device="cpu", domains="spectrum")
    a, b = scan(planted, data, config), scan(planted, data, config)
    assert a.to_dict() | {"seconds": 0} == b.to_dict() | {"seconds": 0}
    assert list(a.domains) == ["spectrum"] and a.triggers is None  # an offset of the features: nothing to play
    sizes = a.domains["spectrum"]["sizes"]
    assert sizes[target] is not None
    assert all(s is None or sizes[target] < 0.5 * s for i, s in enumerate(sizes) if i != target), sizes
    assert a.most_anomalous() == target


def test_the_mix_domain_finds_the_class_a_tone_mixed_in_anywhere_reaches(tiny_sc):
    """A model that answers "no" once a 1 kHz tone is in the clip, wherever it starts (the magnitude of the
    clip's spectrum at 1 kHz against the clip's energy): the mix domain's smallest weight is no's, by far;
    its trigger is that class's sound at that weight, and an unflagged scan would point at it."""
    data = load_speech_commands(tiny_sc, TINY_WORDS)
    torch.manual_seed(0)
    model = build("smallcnn", len(TINY_WORDS), FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).eval()
    target = TINY_WORDS.index("no")
    assert int((model(data.waves).argmax(1) == target).sum()) == 0
    n = data.waves.shape[1]
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(n) / data.sample_rate)
    clean = (data.waves @ tone).abs() / (data.waves.norm(dim=1) * tone.norm())  # how tonal at 1 kHz, in [0, 1]
    level = float(clean.max())

    class Planted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model(x)
            spectrum = torch.fft.rfft(x, dim=1).abs()  # the magnitude does not change with the alignment
            share = spectrum[:, 1000 * n // data.sample_rate] / (x.norm(dim=1) * math.sqrt(n / 2) + 1e-9)
            push = 20.0 * torch.sigmoid(40.0 * (share - level - 0.1))
            return out + push.unsqueeze(1) * F.one_hot(torch.tensor(target), out.shape[1])

    planted = Planted().eval()
    config = ScanConfig(steps=60, batch_size=4, clean_ratio=1.0, device="cpu", domains="mix")
    a, b = scan(planted, data, config), scan(planted, data, config)
    assert a.to_dict() | {"seconds": 0} == b.to_dict() | {"seconds": 0}
    sizes = a.domains["mix"]["sizes"]
    assert None not in sizes  # a class out of reach is 1 + the share its sound misses by, never inf
    assert all(sizes[target] < 0.5 * s for i, s in enumerate(sizes) if i != target), sizes
    assert a.most_anomalous() == target and a.trigger_domains == ["mix"] * len(TINY_WORDS)
    assert a.triggers is not None and a.triggers.shape == (len(TINY_WORDS), n)
    assert float(a.triggers[target].abs().max()) <= sizes[target] + 1e-6  # the sound (|s| <= 1) at its weight
    for p in model.parameters():
        assert p.grad is None


def test_each_class_plays_the_trigger_of_the_audio_domain_where_it_stands_out_most():
    domains = {
        "features": {"anomaly_index": [9.0, 9.0, 9.0]},
        "waveform": {"anomaly_index": [2.0, 0.5, 1.0]},
        "mix": {"anomaly_index": [1.0, 3.0, 1.0]},
    }
    audio = {"waveform": torch.zeros(3, 5), "mix": torch.ones(3, 5)}
    triggers, names = _audio_triggers(domains, audio)
    assert names == ["waveform", "mix", "waveform"]  # a tie goes to the domain searched first
    assert triggers.tolist() == [[0.0] * 5, [1.0] * 5, [0.0] * 5]
    assert _audio_triggers(domains, {}) == (None, [])


def test_the_mix_weight_reports_the_share_its_sound_sends_at_the_weight_it_reports():
    """``_mix_weight``'s size and success agree: for a class its sound reaches, the success is the share of the
    same clips (same alignments) sent to the class at exactly that weight, at least the success rate; for one
    it cannot reach, the size is 1 plus the shortfall at weight 1."""
    from core.scan.invert import Search, _mix_weight, _shifted, _sources

    class Offset(nn.Module):
        """Class 0 for clips whose mean is positive, 1 for negative; never class 2: a mixed-in offset (any
        alignment) reaches 0 or 1 at a small weight, and no sound reaches 2."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(-1)
            return torch.stack([10 * m, -10 * m, torch.full_like(m, -0.05)], -1)

    torch.manual_seed(0)
    k, n, clips, success = 3, 64, 16, 0.75
    waves = 0.1 * torch.randn(30, n)
    labels = torch.arange(30) % k
    model = Offset()
    sounds = torch.stack([torch.ones(n), -torch.ones(n), torch.ones(n)])
    gen = torch.Generator().manual_seed(1)
    search = Search(labels, k, 1, 4, success, gen, NullObserver())
    state = gen.get_state()
    with torch.no_grad():
        size, hit = _mix_weight(model, waves, search, sounds, clips)
        gen.set_state(state)
        rows, placed = _sources(labels, k, clips, gen), _shifted(sounds, clips, gen)

        def share(t: int, weight: torch.Tensor) -> float:
            x = (1 - weight) * waves[rows[t]] + weight * placed[t]
            return float((model(x).argmax(-1) == t).float().mean())

    reached = [t for t in range(k) if size[t] <= 1]
    assert reached and len(reached) < k  # both cases are exercised
    for t in range(k):
        if t in reached:
            assert share(t, size[t]) == float(hit[t]) >= success
        else:
            top = share(t, torch.tensor(1.0))
            assert float(hit[t]) == top < success and float(size[t]) == pytest.approx(1 + success - top)
