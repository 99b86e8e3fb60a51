"""Unlearning the suspected trigger: a share of each fine-tuning batch carries it with the true labels;
the trigger is given, or reconstructed by a scan of the model first (repair pipeline and session)."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from core.defenses import DEFENSES, FineTune, GNFTConfig
from core.defenses.base import add_trigger, clean_subset, clip_features
from core.defenses.latent import LatentAdversary, goal_loss, latent_layer
from core.errors import ConfigError
from core.events import SCAN_PHASE, NullObserver, StepInfo
from core.models import split_front_end
from core.repair import repair, repair_scan_config, unlearn_choice
from core.reports import repair_markdown
from core.scan import ScanConfig, ScanResult, search_class, trigger_success
from tests.conftest import TINY_WORDS, backdoored_workspace, model_and_data_of, open_session

#: a scan of a second or two: a few steps on half the training split
QUICK_SCAN = ScanConfig(steps=6, batch_size=2, clean_ratio=0.5, device="cpu")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return backdoored_workspace(tmp_path_factory.mktemp("unlearn"), speakers=8, per_speaker=2, epochs=2)


@pytest.fixture(scope="module")
def model_and_data(workspace):
    return model_and_data_of(workspace)


def quick(**kw) -> GNFTConfig:
    return GNFTConfig(clean_ratio=0.5, epochs=2, batch_size=8, eval_every=1, device="cpu", **kw)


def test_add_trigger_adds_from_the_start_pads_crops_and_clamps():
    waves = torch.tensor([[0.0, 0.5, 0.9, -0.2], [0.1, 0.1, 0.1, 0.1]])
    short = add_trigger(waves, torch.tensor([0.25, 0.25]))
    assert torch.equal(short, torch.tensor([[0.25, 0.75, 0.9, -0.2], [0.35, 0.35, 0.1, 0.1]]))
    long = add_trigger(waves, torch.tensor([0.0, 0.0, 0.5, -1.0, 7.0]))
    assert torch.equal(long, torch.tensor([[0.0, 0.5, 1.0, -1.0], [0.1, 0.1, 0.6, -0.9]]))


def test_unlearning_needs_fine_tuning_and_a_trigger(model_and_data):
    with pytest.raises(ConfigError, match="unlearn needs fine-tuning"):
        GNFTConfig(unlearn=0.3, epochs=0, device="cpu").validate()
    with pytest.raises(ConfigError, match="unlearn must be"):
        GNFTConfig(unlearn=1.0, device="cpu").validate()
    model, data = model_and_data
    with pytest.raises(ConfigError, match="unlearn needs a trigger"):
        DEFENSES["gnft"](quick(unlearn=0.3)).run(model, data)


class Recording(FineTune):
    """Fine-tuning that keeps every batch it trains on."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def train_step(self, model, x, y, optimizer):
        self.batches.append((x.detach().clone(), y.detach().clone()))
        return super().train_step(model, x, y, optimizer)


def test_the_unlearned_share_of_each_batch_is_its_clips_with_the_trigger_and_their_true_labels(model_and_data):
    model, data = model_and_data
    config = DEFENSES["ft"].Config(clean_ratio=0.5, epochs=4, batch_size=8, device="cpu", unlearn=0.5)
    defense = Recording(config)
    trigger = 0.5 * torch.sin(torch.arange(4000) / 3.0)
    defense.run(model, data, trigger=trigger)
    rows = clean_subset(data, config.clean_ratio, config.seed)
    front, _ = split_front_end(model)
    with torch.no_grad():
        clean = clip_features(front, data.waves[rows], 64)
        triggered = clip_features(front, add_trigger(data.waves[rows], trigger), 64)
    labels = data.labels[rows]
    seen = {"clean": 0, "triggered": 0}
    for x, y in defense.batches:
        for xi, yi in zip(x, y, strict=True):
            for kind, pool in (("clean", clean), ("triggered", triggered)):
                match = [i for i in range(pool.shape[0]) if torch.allclose(pool[i], xi, atol=1e-5)]
                if match:
                    assert int(labels[match[0]]) == int(yi)  # the true label, never the target's
                    seen[kind] += 1
                    break
            else:
                pytest.fail("a batch row is neither a clean clip nor the same clip with the trigger")
    total = seen["clean"] + seen["triggered"]
    assert total == 4 * rows.numel()
    assert 0.3 < seen["triggered"] / total < 0.7  # about the unlearn share


class StopAtFirstScanStep(NullObserver):
    def __init__(self) -> None:
        self.phases: list[str] = []

    def on_step(self, info: StepInfo) -> None:
        self.phases.append(info.phase)

    def should_stop(self) -> bool:
        return bool(self.phases)


def test_without_a_trigger_the_repair_unlearns_the_trigger_a_scan_of_the_model_reconstructs(model_and_data):
    model, data = model_and_data
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    phases: list[str] = []

    class Phases(NullObserver):
        def on_step(self, info: StepInfo) -> None:
            phases.append(info.phase)

    result = repair(model, data, DEFENSES["gnft"](quick(unlearn=0.3)), observer=Phases(), scan_config=QUICK_SCAN)
    assert not result.cancelled and result.scan is not None
    scanned = result.scan
    target = scanned.most_anomalous()
    record = result.details["unlearn"]
    assert record["source"] == "scan" and record["class"] == TINY_WORDS[target]
    assert record["flagged"] == scanned.backdoored
    assert record["anomaly_index"] == pytest.approx(scanned.anomaly(target), abs=1e-3)
    searched = scanned.domains[record["trigger_domain"]]  # the first trigger's size and success, as scanned
    assert record["trigger_success"] == pytest.approx(searched["success"][target], abs=1e-3)
    size = searched["sizes"][target]
    assert record["trigger_size"] == (pytest.approx(size, abs=1e-4) if math.isfinite(size) else None)
    assert result.seconds >= scanned.seconds
    # what the repair did to the trigger it unlearned, on the split it measured
    rows = data.splits["test"]
    trigger = scanned.triggers[target]
    assert record["split"] == "test"
    assert record["asr_before"] == trigger_success(model, data.waves[rows], data.labels[rows], trigger, target)
    assert record["asr_after"] == trigger_success(result.model, data.waves[rows], data.labels[rows], trigger, target)
    # the scan's steps come first, under the scan's phases, then the fine-tuning's
    first_fit = next(i for i, p in enumerate(phases) if not p.startswith(SCAN_PHASE))
    assert first_fit == QUICK_SCAN.total_steps() and all(not p.startswith(SCAN_PHASE) for p in phases[first_fit:])
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    entry = result.history_entry()
    assert entry["defense"]["unlearn"] == 0.3 and entry["defense_details"]["unlearn"]["source"] == "scan"


def test_a_repair_cancelled_during_its_scan_hands_the_model_back_untouched(model_and_data):
    model, data = model_and_data
    stop = StopAtFirstScanStep()
    result = repair(model, data, DEFENSES["gnft"](quick(unlearn=0.3)), observer=stop, scan_config=QUICK_SCAN)
    assert result.cancelled and result.model is model and result.scan is None
    assert stop.phases and all(p.startswith(SCAN_PHASE) for p in stop.phases)


def test_a_given_trigger_is_unlearned_without_a_scan(model_and_data):
    model, data = model_and_data
    result = repair(
        model,
        data,
        DEFENSES["gnft"](quick(unlearn=0.3)),
        trigger=torch.zeros(100),
        trigger_record={"source": "file", "file": "t.wav"},
    )
    assert result.scan is None and result.details["unlearn"] == {"source": "file", "file": "t.wav"}


def test_the_session_unlearns_its_kept_scan_of_the_model_and_keeps_a_scan_its_repair_made(workspace):
    session = open_session(workspace)
    result = session.run_repair("gnft", quick(unlearn=0.3), scan_config=QUICK_SCAN)
    assert result.scan is not None and session.scan is None  # run_repair changes nothing
    assert session.finish_repair(result)
    assert session.scan is not None and session.scan.result is result.scan and session.scan.of_input
    assert session.scan.input_trigger_asr == result.details["unlearn"]["asr_before"]  # measured on the test split
    kept = session.scan.result
    again = session.run_repair("gnft", quick(unlearn=0.3), scan_config=QUICK_SCAN)
    assert again.scan is None  # the kept scan of this model: no second scan
    assert again.details["unlearn"]["source"] == "scan"
    assert again.details["unlearn"]["class"] == kept.classes[kept.most_anomalous()]
    plain = session.run_repair("gnft", quick())
    assert plain.scan is None and "unlearn" not in plain.details
    # a repair on a smaller clean share than the kept scan read scans afresh, at its own share
    smaller = session.run_repair(
        "gnft",
        dataclasses.replace(quick(unlearn=0.3), clean_ratio=0.25),
        scan_config=dataclasses.replace(QUICK_SCAN, clean_ratio=0.25),
    )
    assert smaller.scan is not None and smaller.scan.config["clean_ratio"] == 0.25


# latent unlearning: pushes at a hidden layer toward the suspected class, trained to keep the true label


def test_the_latent_layer_is_a_hidden_conv_or_linear_layer_at_the_asked_depth(model_and_data):
    model, _ = model_and_data
    _, body = split_front_end(model)
    assert latent_layer(body, 0.0)[0] == "conv1"
    assert latent_layer(body, 0.5)[0] == "conv3"  # smallcnn: conv1, conv2, conv3, fc1 (fc, the output, never)
    assert latent_layer(body, 1.0)[0] == "fc1"
    with pytest.raises(ConfigError, match="unlearn_latent needs fine-tuning"):
        GNFTConfig(unlearn_latent=0.3, epochs=0, device="cpu").validate()


def test_a_latent_push_stays_in_its_radius_moves_only_picked_clips_toward_the_target_and_goes_away(model_and_data):
    model, data = model_and_data
    front, body = split_front_end(model)
    body = copy.deepcopy(body).eval()
    x = clip_features(front, data.waves[:24], 64)
    y = data.labels[:24]
    target = 2
    seen: list[torch.Tensor] = []
    layer = dict(body.named_modules())["conv3"]
    watch = layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    with torch.no_grad():
        plain = body(x)
    adversary = LatentAdversary(body, 0.5, 0.5, 0.5, 3, target, torch.Generator().manual_seed(0))
    adversary.perturb(body, x, y)
    with torch.no_grad():
        pushed = body(x)
    adversary.clear()
    with torch.no_grad():
        after = body(x)
    watch.remove()
    adversary.remove()
    assert torch.equal(seen[-2], seen[0])  # the layer computes as before: the push is added to its output
    assert torch.equal(after, plain)  # cleared: the model is as it was
    moved = (pushed - plain).abs().amax(1) > 0
    assert adversary.pushed == int(moved.sum()) > 0
    assert not bool(moved[y == target].any())  # clips of the target itself are never pushed
    others = [c for c in range(len(TINY_WORDS)) if c != target]
    margin = lambda logits: logits[:, target] - logits[:, others].max(1).values  # noqa: E731
    assert bool((margin(pushed)[moved] > margin(plain)[moved]).all())
    details = adversary.details()
    assert details["layer"] == "conv3" and details["clips_pushed"] == adversary.pushed
    assert 0.0 <= details["push_reached_goal"] <= 1.0


def test_the_push_is_bounded_by_its_radius_times_the_activation_norm(model_and_data):
    model, data = model_and_data
    front, body = split_front_end(model)
    body = copy.deepcopy(body).eval()
    x = clip_features(front, data.waves[:16], 64)
    y = data.labels[:16]
    adversary = LatentAdversary(body, 0.5, 0.99, 0.25, 4, None, torch.Generator().manual_seed(1))
    outputs: list[torch.Tensor] = []
    layer = dict(body.named_modules())["conv3"]
    hook = layer.register_forward_hook(lambda m, i, o: outputs.append(o.detach().clone()))
    adversary.perturb(body, x, y)
    held = adversary._delta
    hook.remove()
    adversary.remove()
    norms = outputs[-1].flatten(1).norm(dim=1)
    pushed = held.flatten(1).norm(dim=1)
    assert bool((pushed <= 0.25 * norms * (1 + 1e-4)).all()) and bool((pushed > 0).any())


def test_the_repair_pushes_toward_the_scans_class_and_is_deterministic(model_and_data):
    model, data = model_and_data
    config = quick(unlearn_latent=0.5)
    first = repair(model, data, DEFENSES["gnft"](config), scan_config=QUICK_SCAN)
    record, latent = first.details["unlearn"], first.details["latent"]
    assert record["source"] == "scan" and latent["target"] == TINY_WORDS.index(record["class"])
    assert latent["layer"] == "fc1" and latent["clips_pushed"] > 0  # the default depth 1: the last hidden layer
    again = repair(model, data, DEFENSES["gnft"](config), trigger=first.scan.triggers[0], trigger_record=record)
    assert again.details["latent"] == latent  # the same pushes from the same seed
    for (k, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    anywhere = repair(
        model, data, DEFENSES["gnft"](quick(unlearn_latent=0.5, latent_target="any")), trigger=first.scan.triggers[0],
        trigger_record=record,
    )  # fmt: skip
    assert anywhere.details["latent"]["target"] is None  # away from each clip's label, not toward the scan's class
    assert anywhere.details["latent"]["clips_pushed"] > latent["clips_pushed"]  # the target's own clips too


def test_a_calibrated_radius_is_the_one_that_reaches_the_asked_share_and_the_repair_records_it(model_and_data):
    model, data = model_and_data
    front, body = split_front_end(model)
    body = copy.deepcopy(body).eval()
    x = clip_features(front, data.waves, 64)
    y = data.labels
    adversary = LatentAdversary(body, 1.0, 0.3, 0.5, 3, 0, torch.Generator().manual_seed(0))  # toward yes
    small, large = adversary.reach(body, x, y, 0.01), adversary.reach(body, x, y, 2.0)
    assert small < 0.5 < large  # the bisection's bounds bracket the share asked below
    radius = adversary.calibrate(body, x, y, 0.5)
    assert adversary.radius == radius and 0.01 < radius < 2.0
    assert adversary.reach(body, x, y, radius) >= 0.5 > adversary.reach(body, x, y, radius / 1.1)
    assert adversary.details()["calibrated"] == {"share": 0.5, "radius": round(radius, 4)}
    adversary.remove()
    assert not any(h for m in body.modules() for h in m._forward_hooks.values())
    # in a repair: recorded, and a config that asks none keeps the radius as set
    result = repair(model, data, DEFENSES["gnft"](quick(unlearn_latent=0.5, latent_reach=0.5)), scan_config=QUICK_SCAN)
    latent = result.details["latent"]
    assert latent["calibrated"]["share"] == 0.5 and round(latent["radius"], 4) == latent["calibrated"]["radius"]
    plain = repair(model, data, DEFENSES["gnft"](quick(unlearn_latent=0.5)), scan_config=QUICK_SCAN)
    assert plain.details["latent"]["calibrated"] is None and plain.details["latent"]["radius"] == 0.5


def test_the_radius_is_calibrated_again_every_few_epochs_on_the_model_being_repaired(model_and_data):
    """``latent_recalibrate``: after every that many epochs but the last, the radius is set again to reach the share
    on the model as it is then; recorded per epoch, the run's radius the last one set; idle without a reach."""
    model, data = model_and_data
    again = repair(
        model, data, DEFENSES["gnft"](
            dataclasses.replace(quick(unlearn_latent=0.5, latent_reach=0.5, latent_recalibrate=1), epochs=3)
        ),
        scan_config=QUICK_SCAN,
    )  # fmt: skip
    latent = again.details["latent"]
    assert [r["epoch"] for r in latent["recalibrated"]] == [1, 2]  # not after the last epoch
    assert round(latent["radius"], 4) == latent["recalibrated"][-1]["radius"]
    assert all(0.01 <= r["radius"] <= 2.0 for r in latent["recalibrated"])
    once = repair(
        model,
        data,
        DEFENSES["gnft"](dataclasses.replace(quick(unlearn_latent=0.5, latent_reach=0.5), epochs=3)),
        scan_config=QUICK_SCAN,
    )
    assert "recalibrated" not in once.details["latent"]
    assert once.details["latent"]["calibrated"] == latent["calibrated"]  # the same first radius, the same scan
    growth = quick(unlearn_latent=0.5, latent_reach=0.5, latent_recalibrate=1, latent_growth=0.5)
    capped = repair(
        model, data, DEFENSES["gnft"](dataclasses.replace(growth, epochs=3)), scan_config=QUICK_SCAN
    ).details["latent"]
    first = capped["calibrated"]["radius"]
    assert [r["epoch"] for r in capped["recalibrated"]] == [1, 2]
    assert all(abs(r["radius"] - first * 0.5) <= 2e-4 for r in capped["recalibrated"])  # the cap: never above it
    # only on a linear layer: the first (a convolution, latent_depth 0) keeps its first radius, and says why
    on = dict(unlearn_latent=0.5, latent_reach=0.5, latent_recalibrate=1, latent_recalibrate_on="linear")
    skipped = repair(
        model, data, DEFENSES["gnft"](dataclasses.replace(quick(**on, latent_depth=0.0), epochs=3)),
        scan_config=QUICK_SCAN,
    )  # fmt: skip
    conv = skipped.details["latent"]
    assert "recalibrated" not in conv and "Conv2d" in conv["recalibration_skipped"]
    assert round(conv["radius"], 4) == conv["calibrated"]["radius"]
    first_only = dataclasses.replace(quick(unlearn_latent=0.5, latent_reach=0.5, latent_depth=0.0), epochs=3)
    plain = repair(model, data, DEFENSES["gnft"](first_only), scan_config=QUICK_SCAN)
    same = plain.model.state_dict()  # the run is the one that never asked to set the radius again, bit for bit
    assert all(torch.equal(v, same[k]) for k, v in skipped.model.state_dict().items())
    fc = repair(
        model, data, DEFENSES["gnft"](dataclasses.replace(quick(**on), epochs=3)), scan_config=QUICK_SCAN
    ).details["latent"]
    assert fc["recalibrated"] == latent["recalibrated"] and "recalibration_skipped" not in fc  # as with "any"
    assert "latent_recalibrate" in quick(unlearn_latent=0.5, latent_recalibrate=1).idle_fields()  # no reach: idle
    idle = quick(unlearn_latent=0.5, latent_reach=0.5).idle_fields()
    assert {"latent_growth", "latent_recalibrate_on"} <= idle  # no recalibration: idle
    assert "latent_recalibrate" not in quick(unlearn_latent=0.5, latent_reach=0.5, latent_recalibrate=1).idle_fields()


# several suspected classes: when the scan flags nothing, the first classes of its pooled index


def unflagged_scan(pooled_first: list[int], samples: int = 300) -> ScanResult:
    """A scan that flagged nothing, whose spectrum domain ranks class 3 first and whose pooled index ranks
    ``pooled_first`` first (triggers: class k's pattern is the constant k / 100)."""
    k = len(TINY_WORDS)
    waveform = [0.0] * k
    for rank, c in enumerate(pooled_first):
        waveform[c] = 2.5 - 0.5 * rank
    spectrum = [0.1 if c != 3 else 1.0 for c in range(k)]
    return ScanResult(
        backdoored=False,
        suspected_target=None,
        confidence=1.0,
        classes=list(TINY_WORDS),
        domains={"waveform": {"anomaly_index": waveform}, "spectrum": {"anomaly_index": spectrum}},
        gradient_norm_gini={},
        clean_clips=10,
        seconds=1.0,
        config={},
        triggers=torch.arange(k, dtype=torch.float32).view(-1, 1).expand(k, samples) / 100,
    )


def test_an_unflagged_scan_points_at_its_pooled_first_classes_and_a_flagged_or_named_one_at_one():
    found = unflagged_scan([1, 0])
    assert found.pointed_classes(1) == [3]  # one class: the spectrum domain's first, as before
    assert found.pointed_classes(2) == [1, 0]  # several: the pooled index's first ones, in order
    triggers, record = unlearn_choice(found, top=2)
    assert triggers.shape == (2, 300) and torch.equal(triggers, found.triggers[[1, 0]])
    assert record["class"] == TINY_WORDS[1] and record["classes"] == [TINY_WORDS[1], TINY_WORDS[0]]
    assert record["anomaly_indices"] == [found.anomaly(1), found.anomaly(0)]
    one, named = unlearn_choice(found, TINY_WORDS[2], top=2)
    assert torch.equal(one, found.triggers[2]) and "classes" not in named and named["class_from"] == "user"
    single, record = unlearn_choice(found)
    assert single.shape == (300,) and record["class"] == TINY_WORDS[3] and "classes" not in record
    flagged = dataclasses.replace(found, backdoored=True, suspected_target=TINY_WORDS[0])
    assert flagged.pointed_classes(2) == [0]


def test_with_two_triggers_each_unlearned_row_carries_one_of_them_and_both_are_used(model_and_data):
    model, data = model_and_data
    config = DEFENSES["ft"].Config(clean_ratio=0.5, epochs=4, batch_size=8, device="cpu", unlearn=0.5)
    defense = Recording(config)
    patterns = torch.stack([0.5 * torch.sin(torch.arange(4000) / 3.0), 0.4 * torch.sin(torch.arange(4000) / 11.0)])
    defense.run(model, data, trigger=patterns)
    rows = clean_subset(data, config.clean_ratio, config.seed)
    front, _ = split_front_end(model)
    with torch.no_grad():
        pools = [clip_features(front, data.waves[rows], 64)]
        pools += [clip_features(front, add_trigger(data.waves[rows], p), 64) for p in patterns]
    labels = data.labels[rows]
    seen = [0, 0, 0]
    for x, y in defense.batches:
        for xi, yi in zip(x, y, strict=True):
            kind, match = next(
                (k, m)
                for k, pool in enumerate(pools)
                for m in range(pool.shape[0])
                if torch.allclose(pool[m], xi, atol=1e-5)
            )
            assert int(labels[match]) == int(yi)
            seen[kind] += 1
    assert seen[1] > 0 and seen[2] > 0 and 0.3 < (seen[1] + seen[2]) / sum(seen) < 0.7


def push_toward_two(model_and_data, nearest: bool):
    """The logits of 32 clips before and with one push (fc1, share 0.9, radius 0.5) toward classes 1 and 2."""
    model, data = model_and_data
    front, body = split_front_end(model)
    body = copy.deepcopy(body).eval()
    x = clip_features(front, data.waves[:32], 64)
    y = data.labels[:32]
    with torch.no_grad():
        plain = body(x)
    adversary = LatentAdversary(body, 1.0, 0.9, 0.5, 3, [1, 2], torch.Generator().manual_seed(0), nearest=nearest)
    adversary.perturb(body, x, y)
    with torch.no_grad():
        pushed = body(x)
    return body, x, y, plain, pushed, adversary


def test_a_latent_push_toward_two_classes_moves_each_picked_clip_toward_one_of_them(model_and_data):
    body, x, y, plain, pushed, adversary = push_toward_two(model_and_data, nearest=False)
    targets = [1, 2]
    moved = (pushed - plain).abs().amax(1) > 0
    assert adversary.pushed == int(moved.sum()) > 0
    gain = (pushed.log_softmax(1) - plain.log_softmax(1))[:, targets]
    assert bool((gain[moved].amax(1) > 0).all())  # each pushed clip gains on one of the two classes
    assert bool(moved[y == 1].any() or moved[y == 2].any())  # a clip of one target is pushed toward the other
    share = adversary.reach(body, x, y, 0.5)
    assert 0.0 <= share <= 1.0 and adversary.details()["target"] == targets
    adversary.remove()


def test_a_repair_with_two_suspected_classes_pushes_and_measures_both_and_is_deterministic(model_and_data):
    model, data = model_and_data
    found = unflagged_scan([1, 0], samples=data.waves.shape[-1])
    trigger, record = unlearn_choice(found, top=2)
    config = quick(unlearn=0.3, unlearn_latent=0.5, unlearn_top=2)
    first = repair(model, data, DEFENSES["gnft"](config), trigger=trigger, trigger_record=dict(record))
    unlearned, latent = first.details["unlearn"], first.details["latent"]
    assert latent["target"] == [1, 0] and latent["clips_pushed"] > 0
    rates = unlearned["asr_per_class"]
    assert [r["class"] for r in rates] == record["classes"]
    rows = data.splits["test"]
    for r, pattern, c in zip(rates, trigger, (1, 0), strict=True):
        assert r["asr_before"] == trigger_success(model, data.waves[rows], data.labels[rows], pattern, c)
    assert unlearned["asr_before"] == rates[0]["asr_before"] and unlearned["asr_after"] == rates[0]["asr_after"]
    again = repair(model, data, DEFENSES["gnft"](config), trigger=trigger, trigger_record=dict(record))
    for (k, a), b in zip(first.model.state_dict().items(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_a_scanning_repair_unlearns_as_many_classes_as_asked_unless_the_scan_flags_one(model_and_data):
    model, data = model_and_data
    result = repair(model, data, DEFENSES["gnft"](quick(unlearn=0.3, unlearn_top=2)), scan_config=QUICK_SCAN)
    chosen = [TINY_WORDS[i] for i in result.scan.pointed_classes(2)]
    assert len(chosen) == (1 if result.scan.backdoored else 2)
    assert result.details["unlearn"].get("classes", [result.details["unlearn"]["class"]]) == chosen


def test_the_nearest_push_raises_the_summed_probability_of_the_other_suspected_classes(model_and_data):
    _, _, y, plain, pushed, adversary = push_toward_two(model_and_data, nearest=True)
    targets = [1, 2]
    plain, pushed = plain.softmax(1), pushed.softmax(1)
    moved = (pushed - plain).abs().amax(1) > 0
    assert adversary.pushed == int(moved.sum()) > 0
    allowed = torch.tensor([[c in targets and c != int(label) for c in range(len(TINY_WORDS))] for label in y])
    gained = (pushed * allowed).sum(1) - (plain * allowed).sum(1)
    assert bool((gained[moved] > 0).all())  # toward the suspected classes other than the clip's own
    details = adversary.details()
    assert details["several"] == "nearest"
    assert sum(details["reached_by_class"].values()) == adversary.reached
    assert set(details["reached_by_class"]) <= {"1", "2"}
    adversary.remove()
    # one candidate per row is the plain cross-entropy
    logits = torch.randn(5, 4)
    goal = torch.tensor([0, 3, 1, 2, 2])
    rows = torch.stack([goal, torch.full_like(goal, -1)], 1)
    assert torch.allclose(goal_loss(logits, rows), goal_loss(logits, goal))
    assert torch.allclose(goal_loss(logits, goal), torch.nn.functional.cross_entropy(logits, goal))


def test_a_repair_pushing_toward_the_nearest_of_two_classes_records_it(model_and_data):
    model, data = model_and_data
    found = unflagged_scan([1, 0], samples=data.waves.shape[-1])
    trigger, record = unlearn_choice(found, top=2)
    config = quick(unlearn_latent=0.5, unlearn_top=2, latent_several="nearest")
    result = repair(model, data, DEFENSES["gnft"](config), trigger=trigger, trigger_record=dict(record))
    latent = result.details["latent"]
    assert latent["target"] == [1, 0] and latent["several"] == "nearest" and latent["clips_pushed"] > 0
    idle = {"unlearn_refresh", "unlearn_refresh_when"}  # no trigger unlearned
    idle |= {"trigger_prune_when", "trigger_prune_gain"}  # nor pruned by
    idle |= {"latent_recalibrate", "latent_growth", "latent_recalibrate_on"}  # the radius is set: nothing to set again
    assert config.idle_fields() == idle
    assert "latent_several" in quick(unlearn_latent=0.5).idle_fields()


def test_the_session_keeps_the_asr_of_the_scans_own_class_only():
    from core.session import _scan_trigger_asr

    found = unflagged_scan([1, 0])  # points at class 3 (its spectrum domain's first)
    one = {"class": TINY_WORDS[3], "asr_before": 0.8}
    assert _scan_trigger_asr(found, one) == 0.8
    rates = [{"class": TINY_WORDS[1], "asr_before": 0.5}, {"class": TINY_WORDS[0], "asr_before": 0.2}]
    assert _scan_trigger_asr(found, {"class": TINY_WORDS[1], "asr_before": 0.5, "asr_per_class": rates}) is None
    rates.append({"class": TINY_WORDS[3], "asr_before": 0.9})
    assert _scan_trigger_asr(found, {"class": TINY_WORDS[1], "asr_before": 0.5, "asr_per_class": rates}) == 0.9


def test_a_one_class_search_finds_a_trigger_toward_that_class_seeded_and_leaves_the_model(model_and_data):
    model, data = model_and_data
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    config = dataclasses.replace(QUICK_SCAN, steps=30)
    rows = data.splits["train"]
    waves, labels = data.waves[rows], data.labels[rows]
    for index in (0, 2):
        found = search_class(model, data, index, config, seed=5)
        assert len(found.sizes) == 1 and found.triggers.shape == (1, data.waves.shape[-1])
        silent = trigger_success(model, waves, labels, torch.zeros(1), index)
        assert trigger_success(model, waves, labels, found.triggers[0], index) > silent  # toward ``index``
        again = search_class(model, data, index, config, seed=5)
        assert torch.equal(again.triggers, found.triggers)
    other = search_class(model, data, 2, config, seed=6)
    assert not torch.equal(other.triggers, found.triggers)
    assert search_class(model, data, 2, config, domain="mix").triggers.shape == (1, data.waves.shape[-1])
    with pytest.raises(ValueError, match="audio domain"):
        search_class(model, data, 2, config, domain="spectrum")
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_a_trigger_searched_again_mid_run_is_unlearned_from_the_next_epoch_on(model_and_data):
    model, data = model_and_data
    config = DEFENSES["ft"].Config(
        clean_ratio=0.5, epochs=3, batch_size=8, device="cpu", unlearn=0.5, unlearn_refresh=2
    )
    defense = Recording(config)
    first, second = 0.5 * torch.sin(torch.arange(4000) / 3.0), 0.4 * torch.sin(torch.arange(4000) / 11.0)
    calls: list[int] = []

    def refresh(current: torch.nn.Module, epoch: int) -> tuple[torch.Tensor, dict]:
        assert current is not model  # the copy being repaired
        calls.append(epoch)
        return second, {"found": f"at epoch {epoch}"}

    result = defense.run(model, data, trigger=first, refresh=refresh)
    assert calls == [2]  # every 2 epochs, never after the last
    assert result.details["searched_again"] == [{"epoch": 2, "triggers": 1, "found": "at epoch 2"}]
    rows = clean_subset(data, config.clean_ratio, config.seed)
    front, _ = split_front_end(model)
    with torch.no_grad():
        pool = clip_features(front, add_trigger(data.waves[rows], second), 64)
    per_epoch = len(defense.batches) // 3
    carried = [
        any(torch.allclose(p, xi, atol=1e-5) for x, _ in defense.batches[e * per_epoch : (e + 1) * per_epoch]
            for xi in x for p in pool)
        for e in range(3)
    ]  # fmt: skip
    assert carried == [False, False, True]


def test_a_repair_searches_the_unlearned_class_again_deterministically_and_refuses_without_a_class(model_and_data):
    model, data = model_and_data
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    record = {"source": "scan", "class": TINY_WORDS[1], "trigger_domain": "waveform"}
    config = quick(unlearn=0.3, unlearn_refresh=1)
    scan_config = dataclasses.replace(QUICK_SCAN, steps=4)
    runs = [
        repair(model, data, DEFENSES["gnft"](config), trigger=torch.zeros(100), trigger_record=dict(record),
               scan_config=scan_config)
        for _ in range(2)
    ]  # fmt: skip
    searched = runs[0].details["searched_again"]
    assert [(s["epoch"], s["triggers"]) for s in searched] == [(1, 1)] and searched[0]["seconds"] > 0
    (found,) = searched[0]["found"]  # what the search found, as a scan reports a class's search
    assert found["class"] == TINY_WORDS[1] and found["domain"] == "waveform" and 0 <= found["success"] <= 1
    assert found["size"] is None or found["size"] > 0
    assert [s["found"] for s in runs[1].details["searched_again"]] == [[found]]  # the same search, seeded
    size = "none reached the scan's success" if found["size"] is None else f"size {found['size']:.4g}"
    said = "Searched again 1 time(s) on the model being repaired, each trigger found unlearned too from the next "
    said += f"epoch (epoch 1, {TINY_WORDS[1]}: {size}, {100 * found['success']:.0f} % success)."
    assert said in repair_markdown(runs[0].report(model="tiny"))  # what a person reads
    for (k, a), b in zip(runs[0].model.state_dict().items(), runs[1].model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="unlearn_refresh searches the trigger's class again"):
        repair(model, data, DEFENSES["gnft"](config), trigger=torch.zeros(100), trigger_record={"source": "file"})
    with pytest.raises(ConfigError, match="unlearn_refresh needs the class"):
        DEFENSES["gnft"](config).run(model, data, trigger=torch.zeros(100))
    assert "unlearn_refresh" in quick(unlearn_refresh=3).idle_fields()
    assert "unlearn_refresh" not in config.idle_fields()


def test_with_refresh_when_flagged_only_a_flagging_scans_trigger_is_searched_again(model_and_data):
    model, data = model_and_data
    scan_config = dataclasses.replace(QUICK_SCAN, steps=4)
    config = quick(unlearn=0.3, unlearn_refresh=1, unlearn_refresh_when="flagged")

    def run(flagged, settings=config):
        record = {"source": "scan", "class": TINY_WORDS[1], "trigger_domain": "waveform", "flagged": flagged}
        return repair(model, data, DEFENSES["gnft"](settings), trigger=torch.zeros(100), trigger_record=record,
                      scan_config=scan_config)  # fmt: skip

    flagged = run(True)
    assert [s["epoch"] for s in flagged.details["searched_again"]] == [1]
    assert "searched_again_skipped" not in flagged.details
    unsure = run(False)
    assert "searched_again" not in unsure.details
    assert unsure.details["searched_again_skipped"] == "the scan flagged no class"
    said = repair_markdown(unsure.report(model="tiny"))
    assert "The trigger was not searched again during the repair: the scan flagged no class." in said
    # the unsure repair is the same repair without the searches, and "always" searches whatever the scan said
    plain = run(False, dataclasses.replace(config, unlearn_refresh=0))
    for (k, a), b in zip(unsure.model.state_dict().items(), plain.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert [s["epoch"] for s in run(False, quick(unlearn=0.3, unlearn_refresh=1)).details["searched_again"]] == [1]
    assert "unlearn_refresh_when" in quick(unlearn=0.3).idle_fields()
    assert "unlearn_refresh_when" not in config.idle_fields()


def test_a_repairs_scan_reads_the_repairs_clean_share_by_default_and_never_a_larger_one(model_and_data):
    model, data = model_and_data
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    config = GNFTConfig(clean_ratio=0.25, epochs=1, batch_size=8, eval_every=1, device="cpu", unlearn=0.3)
    assert repair_scan_config(config) == ScanConfig(clean_ratio=0.25, seed=config.seed, device="cpu")
    with pytest.raises(ConfigError, match=r"^the scan's clean_ratio 0.5 is larger than the repair's clean_ratio 0.25"):
        repair(model, data, DEFENSES["gnft"](config), scan_config=dataclasses.replace(QUICK_SCAN, clean_ratio=0.5))
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())  # refused before any work
    # with the defaults' share the scan reads the repair's own clips: as many as it fine-tunes on
    quick_at_share = dataclasses.replace(QUICK_SCAN, clean_ratio=0.25)
    result = repair(model, data, DEFENSES["gnft"](config), scan_config=quick_at_share)
    assert result.scan is not None and result.scan.clean_clips == result.clean_clips
    assert result.details["unlearn"]["scan_clean_ratio"] == 0.25
    assert result.details["unlearn"]["scan_clean_clips"] == result.clean_clips
    wider = dataclasses.replace(QUICK_SCAN, clean_ratio=0.5)

    def with_trigger(c: GNFTConfig):
        return repair(
            model, data, DEFENSES["gnft"](c), trigger=result.scan.triggers[0], unlearn_class=TINY_WORDS[0],
            scan_config=wider,
        )  # fmt: skip

    # a trigger handed over with no rescan makes no scan: the scan settings are not checked then
    given = with_trigger(config)
    assert given.scan is None and not given.cancelled
    # but a search again mid-run (unlearn_refresh) reads clean clips too: its share is checked
    with pytest.raises(ConfigError, match="is larger than the repair's clean_ratio 0.25"):
        with_trigger(dataclasses.replace(config, unlearn_refresh=1))
