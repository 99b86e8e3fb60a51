"""GN-FT's step against a reference computed the slow, obvious way (a model copy per step)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from core.data.audioset import AudioSet
from core.defenses import FTSAM, GNFT, FineTune, FTSAMConfig, GNFTConfig, GNFTStep, clean_subset
from core.defenses.base import mask_bands
from core.errors import ConfigError, Diverged
from core.events import NullObserver


class Tiny(nn.Module):
    def __init__(self, unused: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 5)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(4 * 28, 3)
        if unused:
            self.spare = nn.Linear(3, 3)  # never called: its gradient stays None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.bn(self.conv(x.unsqueeze(1)))))
        return self.fc(h.flatten(1))


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 32, generator=g), torch.randint(0, 3, (16,), generator=g)


def perturbed_copy(model: nn.Module, x, y, r, norm="per-tensor", seed=11):
    """(copy of ``model`` at θ + r·g1/‖g1‖, g1 by name, global ‖g1‖): the perturbation the slow, obvious way."""
    torch.manual_seed(seed)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    g1 = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    twin = copy.deepcopy(model)
    with torch.no_grad():
        total = torch.sqrt(sum(g.pow(2).sum() for g in g1.values()))
        for n, p in twin.named_parameters():
            if n in g1:
                p.add_(r * g1[n] / (total if norm == "global" else g1[n].norm()))
    return twin, g1, total


def reference_gradient(model: nn.Module, x, y, alpha, r, norm="per-tensor", mix="raw", seed=11):
    """g = (1-a) g1 + a g2 with g2 taken on a perturbed *copy*, the authors' way (same dropout masks)."""
    twin, g1, total = perturbed_copy(model, x, y, r, norm, seed)
    torch.manual_seed(seed)
    twin.zero_grad()
    F.cross_entropy(twin(x), y).backward()
    g2 = {n: p.grad for n, p in twin.named_parameters() if p.grad is not None}
    first = {n: (g / total if mix == "normalised" else g) for n, g in g1.items()}
    return {n: (1 - alpha) * first[n] + alpha * g2[n] for n in g1}


@pytest.mark.parametrize("norm, mix", [("per-tensor", "raw"), ("global", "raw"), ("global", "normalised")])
def test_step_matches_the_copy_based_reference(norm, mix):
    torch.manual_seed(0)
    model = Tiny().train()
    x, y = batch()
    ref_model = copy.deepcopy(model)
    expected = reference_gradient(ref_model, x, y, 0.7, 0.05, norm, mix)
    torch.manual_seed(11)
    GNFTStep(model, 0.7, 0.05, norm, mix)(model, x, y)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], rtol=1e-5, atol=1e-6)


def test_parameters_restored_bit_exactly_and_bn_statistics_from_the_clean_pass_only():
    torch.manual_seed(0)
    model = Tiny().train()
    x, y = batch()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plain = copy.deepcopy(model)
    plain(x)  # what one unperturbed training forward does to the BN statistics
    GNFTStep(model, 0.7, 0.5, "per-tensor", "raw")(model, x, y)  # a large r makes any leak visible
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    assert torch.equal(model.bn.running_mean, plain.bn.running_mean)
    assert torch.equal(model.bn.running_var, plain.bn.running_var)
    assert int(model.bn.num_batches_tracked) == 1


def test_unused_parameters_and_zero_gradients_give_no_nan():
    torch.manual_seed(0)
    model = Tiny(unused=True).train()
    with torch.no_grad():
        model.fc.weight[0].zero_()
    x, y = batch()
    step = GNFTStep(model, 0.7, 0.05)
    model.fc.bias.requires_grad_(True)
    loss, g1 = step(model, x, y)
    assert model.spare.weight.grad is None and model.spare.bias.grad is None
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), n
    # a parameter whose gradient is exactly zero gets a zero perturbation, not NaN
    frozen_input = Tiny().train()
    frozen_input.conv.weight.data.zero_()
    frozen_input.conv.bias.data.zero_()
    GNFTStep(frozen_input, 0.7, 0.05)(frozen_input, x, y)
    assert all(torch.isfinite(p.grad).all() for p in frozen_input.parameters() if p.grad is not None)
    assert loss == loss


def test_alpha_zero_is_plain_fine_tuning():
    torch.manual_seed(0)
    model = Tiny().train()
    x, y = batch()
    twin = copy.deepcopy(model)
    torch.manual_seed(3)
    GNFTStep(model, 0.0, 0.05)(model, x, y)
    torch.manual_seed(3)
    F.cross_entropy(twin(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad)


@pytest.mark.parametrize("norm", ["per-tensor", "global"])
def test_perturbed_loss_is_the_loss_at_theta_plus_epsilon(norm):
    torch.manual_seed(0)
    model = Tiny().train()
    x, y = batch()
    twin, _, _ = perturbed_copy(copy.deepcopy(model), x, y, 0.5, norm, seed=5)
    torch.manual_seed(5)
    expected = F.cross_entropy(twin(x), y)
    step = GNFTStep(model, 0.7, 0.5, norm)
    torch.manual_seed(5)
    clean, _ = step(model, x, y)
    torch.testing.assert_close(step.perturbed_loss, expected.detach())
    assert float(step.perturbed_loss) > clean  # the ascent direction raises the loss
    step.alpha = 0.0
    step(model, x, y)
    assert step.perturbed_loss is None  # no perturbed pass, nothing stale left


def test_gnft_reports_its_first_steps_losses_and_ftsam_does_not():
    torch.manual_seed(0)
    data = tiny_set()
    config = GNFTConfig(clean_ratio=0.5, epochs=2, batch_size=8, device="cpu", lr=0.05, r=0.5)
    defense = GNFT(config)
    details = defense.run(Tiny().eval(), data).details
    assert set(details) == {
        "first_step_clean_loss",
        "first_step_perturbed_loss",
        "first_step_clean_gradient_norm",
        "first_step_gradient_norm",
    }
    assert details["first_step_perturbed_loss"] > details["first_step_clean_loss"] > 0
    assert details["first_step_gradient_norm"] > 0 and details["first_step_clean_gradient_norm"] > 0
    again = defense.run(Tiny().eval(), data).details  # a second run on the same instance starts afresh
    assert again != details
    assert (
        FTSAM(FTSAMConfig(clean_ratio=0.5, epochs=1, batch_size=8, device="cpu")).run(Tiny().eval(), data).details == {}
    )


def tiny_set(n: int = 60, length: int = 32) -> AudioSet:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 3
    waves = torch.randn(n, length, generator=g) + labels.view(-1, 1).float()
    return AudioSet(
        waves,
        labels,
        [f"s{i % 5}" for i in range(n)],
        ["a", "b", "c"],
        16000,
        {"train": torch.arange(0, 50), "test": torch.arange(50, n)},
    )


class StopAfter(NullObserver):
    def __init__(self, n: int) -> None:
        self.n, self.steps = n, 0

    def on_step(self, info) -> None:
        self.steps += 1

    def should_stop(self) -> bool:
        return self.steps >= self.n


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_run_works_on_a_copy_and_cancel_returns_the_input_untouched(defense):
    torch.manual_seed(0)
    model = Tiny().eval()
    original = copy.deepcopy(model.state_dict())
    data = tiny_set()
    config = defense.Config(clean_ratio=0.5, epochs=3, batch_size=8, device="cpu", lr=0.05)
    result = defense(config).run(model, data, evaluate=lambda m: {"clean_accuracy": 0.5})
    assert not result.cancelled and result.model is not model and result.clean_clips == 8 + 8 + 8  # half of 17, 17, 16
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert any(not torch.equal(v, result.model.state_dict()[k]) for k, v in original.items())
    assert [h["epoch"] for h in result.history] == [3]
    stopped = defense(config).run(model, data, StopAfter(2))
    assert stopped.cancelled and stopped.model is model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_a_run_whose_loss_goes_nan_stops_there_says_so_and_leaves_the_input(defense):
    torch.manual_seed(0)
    model = Tiny().eval()
    original = copy.deepcopy(model.state_dict())
    steps = StopAfter(10**9)  # counts the steps the run made before it stopped
    config = defense.Config(clean_ratio=0.5, epochs=50, batch_size=8, device="cpu", lr=1e30)
    with pytest.raises(Diverged, match=r"the loss became (NaN|infinite) at epoch \d+ \(step \d+ of 150\)") as err:
        defense(config).run(model, tiny_set(), steps)
    assert f"(step {steps.steps + 1} of 150)" in str(err.value)  # the step it stopped at, never told as done
    assert steps.steps < 150 and "lower the learning rate" in str(err.value)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())


def test_clean_subset_is_seeded_and_stratified():
    data = tiny_set()
    a, b = clean_subset(data, 0.2, seed=1), clean_subset(data, 0.2, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, clean_subset(data, 0.2, seed=2))
    assert torch.bincount(data.labels[a], minlength=3).tolist() == [3, 3, 3]
    assert bool(torch.isin(a, data.splits["train"]).all())


def test_config_defaults_and_errors():
    c = GNFTConfig()
    assert (c.alpha, c.r, c.clean_ratio, c.lr, c.momentum, c.batch_size, c.weight_decay) == (
        0.7,
        0.05,
        0.05,
        0.001,
        0.9,
        256,
        0.0,
    )
    with pytest.raises(ConfigError, match="alpha"):
        GNFT(GNFTConfig(alpha=1.5))
    with pytest.raises(ConfigError, match="norm"):
        GNFT(GNFTConfig(norm="max"))


class Probe(nn.Module):
    """Features -> 6 hidden units -> classifier.fc; unit k's activation is known by construction."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Module()
        self.classifier.hidden = nn.Linear(32, 6)
        self.classifier.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.fc(F.relu(self.classifier.hidden(x)))


def test_fine_pruning_prunes_least_active_inputs_within_the_accuracy_budget():
    from core.defenses import FinePruning, FinePruningConfig
    from core.defenses.fine_pruning import output_layer_activations

    torch.manual_seed(0)
    model = Probe()
    before = model.classifier.fc.weight.detach().clone()
    data = tiny_set()
    acts = output_layer_activations(model, data.waves)
    assert acts.shape == (6,) and torch.all(acts >= 0)
    config = FinePruningConfig(
        clean_ratio=1.0, epochs=1, batch_size=8, device="cpu", prune_step=0.2, max_accuracy_drop=1.0
    )
    defense = FinePruning(config)
    result = defense.run(model, data)
    pruned = result.details["pruned_inputs"]
    # steps of ceil(0.2 * 6) = 2 inputs, never all of them: 4 with an unlimited accuracy budget
    assert pruned == 4 and result.details["output_layer_inputs"] == 6
    w = result.model.classifier.fc.weight
    zero_cols = (w.abs().sum(0) == 0).nonzero().flatten()
    assert set(zero_cols.tolist()) == set(acts.argsort()[:4].tolist())  # the least active, still zero after FT
    strict = FinePruning(
        FinePruningConfig(clean_ratio=1.0, epochs=1, batch_size=8, device="cpu", prune_step=0.2, max_accuracy_drop=0.0)
    ).run(model, data)
    assert strict.details["pruned_inputs"] <= pruned
    assert torch.equal(model.classifier.fc.weight, before)  # the input model was not pruned


def test_gnft_prune_first_prunes_like_fine_pruning_and_keeps_the_columns_zero():
    """GN-FT's ``prune`` option prunes exactly what Fine-Pruning would at the same budget (1 % steps),
    then fine-tunes with GN-FT with those columns held at zero; prune 0 prunes nothing."""
    from core.defenses import GNFT, FinePruning, FinePruningConfig, GNFTConfig

    torch.manual_seed(1)
    data = tiny_set()
    model = Probe()
    before = copy.deepcopy(model.state_dict())
    fp = FinePruning(FinePruningConfig(device="cpu", prune_step=0.01, max_accuracy_drop=1.0))
    fp.prepare(copy.deepcopy(model), data.waves, data.labels)
    settings = dict(clean_ratio=1.0, epochs=2, batch_size=8, device="cpu", lr=0.05, r=0.1)
    result = GNFT(GNFTConfig(prune=1.0, **settings)).run(model, data)
    assert result.details["pruned_inputs"] == int((~fp.mask).sum()) > 0
    w = result.model.classifier.fc.weight
    assert torch.all(w[:, ~fp.mask] == 0) and torch.all(w[:, fp.mask].abs().sum(0) > 0)
    plain = GNFT(GNFTConfig(**settings)).run(model, data)
    assert "pruned_inputs" not in plain.details
    assert torch.all(plain.model.classifier.fc.weight.abs().sum(0) > 0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched


def test_head_reinit_starts_the_output_layer_afresh_seeded_and_only_it():
    """``head="reinit"``: the output layer starts from a seeded fresh initialisation (the same for the same
    seed), the rest of the model from its own weights; zero epochs is refused (nothing would re-learn it)."""
    from core.defenses import FineTune, FineTuneConfig
    from core.errors import ConfigError

    torch.manual_seed(2)
    data = tiny_set()
    model = Probe()
    before = copy.deepcopy(model.state_dict())
    settings = dict(clean_ratio=1.0, epochs=1, batch_size=8, device="cpu", lr=1e-9, momentum=0.0)
    fresh = FineTune(FineTuneConfig(head="reinit", **settings)).run(model, data).model
    again = FineTune(FineTuneConfig(head="reinit", **settings)).run(model, data).model
    kept = FineTune(FineTuneConfig(**settings)).run(model, data).model
    w = fresh.classifier.fc.weight
    assert (w - before["classifier.fc.weight"]).abs().max() > 1e-3  # a new layer, not the trained one
    assert torch.allclose(kept.classifier.fc.weight, before["classifier.fc.weight"], atol=1e-6)
    assert torch.equal(w, again.classifier.fc.weight)  # seeded
    assert torch.allclose(fresh.classifier.hidden.weight, before["classifier.hidden.weight"], atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="head reinit"):
        FineTuneConfig(head="reinit", epochs=0).validate()


def test_head_shift_turns_the_output_layer_away_at_its_norm():
    """``head_shift``: each step adds that weight times the head's weight before the repair to the head's gradient
    (the derivative of the inner product) and puts the head back at its norm before the repair; the head ends
    turned further from its old direction than plain fine-tuning leaves it, and 0 changes nothing."""
    from core.defenses import FineTune, FineTuneConfig

    torch.manual_seed(3)
    data = tiny_set()
    model = Probe()
    w0 = model.classifier.fc.weight.detach().clone()
    settings = dict(clean_ratio=1.0, epochs=6, batch_size=8, device="cpu", lr=0.05, head="reinit")

    def cosine(w: torch.Tensor) -> float:
        return float((w * w0).sum() / (w.norm() * w0.norm()))

    shifted = FineTune(FineTuneConfig(head_shift=1.0, **settings)).run(model, data).model
    plain = FineTune(FineTuneConfig(**settings)).run(model, data).model
    w, w_plain = shifted.classifier.fc.weight.detach(), plain.classifier.fc.weight.detach()
    assert torch.allclose(w.norm(), w0.norm(), rtol=1e-5)  # the norm held
    assert not torch.allclose(w_plain.norm(), w0.norm(), rtol=1e-3)  # it is the shift's doing
    assert cosine(w) < cosine(w_plain) - 0.05
    zero = FineTune(FineTuneConfig(head_shift=0.0, **settings)).run(model, data).model
    assert all(torch.equal(a, b) for a, b in zip(zero.state_dict().values(), plain.state_dict().values()))
    assert torch.equal(model.classifier.fc.weight, w0)  # the input is untouched
    with pytest.raises(ConfigError, match="head_shift"):
        FineTuneConfig(head_shift=0.1, epochs=0).validate()


class ShiftedProbe(Probe):
    """Adds a fixed offset after the output layer: its logits are not that layer's output alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + torch.tensor([0.0, 0.5, -0.5])


@pytest.mark.parametrize("model_class, passes_at_most", [(Probe, 1), (ShiftedProbe, None)])
def test_fine_pruning_search_matches_whole_model_passes(model_class, passes_at_most):
    """The pruning search keeps what whole-model passes would keep, and on a model ending in its output
    layer it runs the model once in all (the output layer's inputs are reused for every trial)."""
    from core.defenses import FinePruning, FinePruningConfig
    from core.defenses.fine_pruning import output_layer_activations
    from core.metrics import accuracy, predict_logits

    torch.manual_seed(3)
    data = tiny_set()
    waves, labels = data.waves, data.labels
    kept_counts = set()
    for drop in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0):
        model = model_class()
        order = output_layer_activations(model, waves).argsort()
        fc = model.classifier.fc
        original = fc.weight.detach().clone()
        base = accuracy(predict_logits(model, waves), labels)
        expected = torch.ones(6, dtype=torch.bool)
        for k in range(1, 6):  # prune_step 1/6: one input a trial, the reference runs the whole model each time
            trial = torch.ones(6, dtype=torch.bool)
            trial[order[:k]] = False
            with torch.no_grad():
                fc.weight.copy_(original * trial)
            if accuracy(predict_logits(model, waves), labels) < base - drop:
                break
            expected = trial
        with torch.no_grad():
            fc.weight.copy_(original)
        calls: list[int] = []
        handle = model.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        defense = FinePruning(FinePruningConfig(device="cpu", prune_step=1 / 6, max_accuracy_drop=drop))
        defense.prepare(model, waves, labels)
        handle.remove()
        assert torch.equal(defense.mask, expected), drop
        assert torch.equal(fc.weight, original * expected)
        if passes_at_most is not None:
            assert len(calls) <= passes_at_most
        else:
            assert len(calls) >= 1 + int((~expected).sum())  # a full pass for every trial
        kept_counts.add(int(expected.sum()))
    assert len(kept_counts) >= 2  # the budgets stop the search at different depths


def test_features_computed_once_give_the_same_repair_as_full_passes(tmp_path):
    """Defense.run trains the classifier on precomputed features: same result as running the whole model."""
    from core.data.speech_commands import load_speech_commands
    from core.features import FrontEndConfig
    from core.models import build, split_front_end
    from tests.conftest import TINY_WORDS, write_speech_commands

    data = load_speech_commands(write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1), TINY_WORDS)
    torch.manual_seed(0)
    model = build("smallcnn", 4, FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).eval()
    front, body = split_front_end(model)
    assert front is model.front_end and body is model.classifier
    # contiguous like the hand loop below (channels_last draws dropout masks in another order)
    config = GNFTConfig(clean_ratio=1.0, epochs=2, batch_size=8, device="cpu", lr=0.01, memory_format="contiguous")
    result = GNFT(config).run(model, data)
    # the same schedule by hand, every pass through the whole model (front end included)
    rows = clean_subset(data, 1.0, config.seed)
    waves, labels = data.waves[rows], data.labels[rows]
    work = copy.deepcopy(model)
    opt = torch.optim.SGD(work.parameters(), lr=0.01, momentum=0.9)
    step = GNFTStep(work, config.alpha, config.r)
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        for _ in range(config.epochs):
            work.train()
            order = torch.randperm(waves.shape[0], generator=gen)
            for start in range(0, order.numel(), config.batch_size):
                batch = order[start : start + config.batch_size]
                step(work, waves[batch], labels[batch])
                opt.step()
    for (name, p), q in zip(work.named_parameters(), result.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.equal(result.model.classifier.fc.weight, model.classifier.fc.weight)


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_test_split_labels_never_steer_a_defense(defense):
    """The evaluations during a run only report: scrambled test labels give the same repaired weights."""
    torch.manual_seed(0)
    model = Tiny().eval()
    data = tiny_set()
    scrambled = tiny_set()
    test = scrambled.splits["test"]
    scrambled.labels[test] = (scrambled.labels[test] + 1) % 3

    def report(ds):
        return lambda m: {"clean_accuracy": float((m(ds.waves[test]).argmax(1) == ds.labels[test]).float().mean())}

    config = defense.Config(clean_ratio=0.5, epochs=4, batch_size=8, device="cpu", eval_every=1, lr=0.05)
    a = defense(config).run(model, data, evaluate=report(data))
    b = defense(config).run(model, scrambled, evaluate=report(scrambled))
    assert [h["clean_accuracy"] for h in a.history] != [h["clean_accuracy"] for h in b.history]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_max_grad_norm_clips_the_applied_step(defense):
    """One full-batch SGD step (no momentum) moves the parameters by lr·‖g‖, or by lr·max_grad_norm
    when the gradient is longer than that (GNP's global-norm clipping); the mixed gradient is what
    gets clipped."""
    torch.manual_seed(0)
    model = Tiny().eval()
    data = tiny_set()

    def displacement(max_grad_norm: float) -> float:
        config = defense.Config(
            clean_ratio=0.5, epochs=1, batch_size=64, momentum=0.0, lr=0.1, device="cpu", max_grad_norm=max_grad_norm
        )
        out = defense(config).run(model, data).model
        with torch.no_grad():
            return float(torch.sqrt(sum((p - q).pow(2).sum() for p, q in zip(out.parameters(), model.parameters()))))

    free = displacement(0.0)
    assert free > 0.1 * 0.05 * 2  # the unclipped step is longer than the clip below
    assert displacement(0.05) == pytest.approx(0.1 * 0.05, rel=1e-4)
    assert displacement(1e6) == pytest.approx(free, rel=1e-6)  # a loose clip changes nothing
    with pytest.raises(ConfigError, match="max_grad_norm"):
        defense(defense.Config(max_grad_norm=-1.0))


class LrLog(NullObserver):
    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.total = 0

    def on_step(self, info) -> None:
        self.lrs.append(info.lr)
        self.total = info.total_steps


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_cosine_schedule_with_warm_up_sets_the_lr_each_step_uses(defense):
    """Observers see the lr each step used: a linear warm-up over ``warmup_epochs``, then a cosine
    from ``lr`` towards 0. And the optimizer really uses it: a two-step cosine run (lr, then lr/2)
    lands where a step at lr followed by a separate step at lr/2 lands."""
    torch.manual_seed(0)
    model = Tiny().eval()
    model.drop.p = 0.0  # two separate runs must see the same forward passes as one
    data = tiny_set()
    log = LrLog()
    defense(
        defense.Config(
            clean_ratio=0.5, epochs=4, batch_size=8, lr=0.1, device="cpu", lr_schedule="cosine", warmup_epochs=1
        )
    ).run(model, data, log)
    per_epoch = log.total // 4
    assert per_epoch >= 2 and len(log.lrs) == log.total
    rest = log.total - per_epoch
    expected = [0.1 * (i + 1) / per_epoch for i in range(per_epoch)] + [
        0.05 * (1 + math.cos(math.pi * k / rest)) for k in range(rest)
    ]
    assert log.lrs == pytest.approx(expected, rel=1e-12)
    assert log.lrs[per_epoch - 1] == pytest.approx(0.1) and log.lrs[-1] < 0.01

    def run(m, epochs, lr, schedule):
        config = defense.Config(
            clean_ratio=0.5, epochs=epochs, batch_size=64, momentum=0.0, lr=lr, device="cpu", lr_schedule=schedule
        )
        return defense(config).run(m, data).model

    one = run(model, 2, 0.1, "cosine")
    two = run(run(model, 1, 0.1, "constant"), 1, 0.05, "constant")
    halfway = run(run(model, 1, 0.1, "constant"), 1, 0.1, "constant")
    for p, q in zip(one.parameters(), two.parameters()):
        torch.testing.assert_close(p, q)
    assert not all(torch.allclose(p, h) for p, h in zip(one.parameters(), halfway.parameters()))
    with pytest.raises(ConfigError, match="lr_schedule"):
        defense(defense.Config(lr_schedule="step"))
    with pytest.raises(ConfigError, match="warmup_epochs"):
        defense(defense.Config(epochs=3, warmup_epochs=4))


def test_mask_bands_sets_one_band_per_axis_to_the_clip_time_average():
    """Per clip, the masked entries are whole rows of one time band and whole columns of one
    frequency band, each at most ``width`` of its axis, filled with that clip's time average (each
    coefficient's own mean level); the input is left alone and a generator seed repeats the masks."""
    x = torch.randn(16, 1, 40, 20, generator=torch.Generator().manual_seed(0))
    kept = x.clone()
    out = mask_bands(x, 0.25, torch.Generator().manual_seed(3))
    assert torch.equal(x, kept) and out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, mask_bands(x, 0.25, torch.Generator().manual_seed(3)))
    assert not torch.equal(out, mask_bands(x, 0.25, torch.Generator().manual_seed(4)))
    widths = []
    for clip, new in zip(x[:, 0], out[:, 0]):
        changed = new != clip
        rows = changed.all(1).nonzero().flatten()
        cols = changed.all(0).nonzero().flatten()
        assert torch.equal(changed, changed.all(1, keepdim=True) | changed.all(0, keepdim=True))
        for band, n in ((rows, 40), (cols, 20)):
            assert band.numel() <= 0.25 * n
            if band.numel():
                assert torch.equal(band, torch.arange(int(band[0]), int(band[0]) + band.numel()))  # contiguous
        level = clip.mean(0, keepdim=True).expand_as(clip)  # [frames, coeffs]: each coefficient's mean
        assert torch.allclose(new[changed], level[changed])
        widths.append(rows.numel() + cols.numel())
    assert sum(widths) > 0
    waves = torch.randn(8, 100, generator=torch.Generator().manual_seed(1))
    masked = mask_bands(waves, 0.1, torch.Generator().manual_seed(0))
    for clip, new in zip(waves, masked):  # a waveform: one band of the time axis only
        idx = (new != clip).nonzero().flatten()
        assert idx.numel() <= 10 and (idx.numel() == 0 or int(idx[-1] - idx[0]) + 1 == idx.numel())


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_spec_augment_changes_the_run_and_repeats_for_a_seed(defense):
    torch.manual_seed(0)
    model = Tiny().eval()
    data = tiny_set()

    def run(width: float) -> dict:
        config = defense.Config(clean_ratio=0.5, epochs=3, batch_size=8, lr=0.05, device="cpu", spec_augment=width)
        return defense(config).run(model, data).model.state_dict()

    plain, masked, again = run(0.0), run(0.3), run(0.3)
    assert all(torch.equal(masked[k], again[k]) for k in masked)
    assert not all(torch.equal(masked[k], plain[k]) for k in masked)
    with pytest.raises(ConfigError, match="spec_augment"):
        defense(defense.Config(spec_augment=1.0))


class FirstLoss(NullObserver):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step(self, info) -> None:
        self.losses.append(info.loss)


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_frozen_batchnorm_normalises_with_the_running_statistics_and_keeps_them(defense):
    """batchnorm="frozen": the first step's loss is the eval-mode loss of the input model (running
    statistics, not the batch's), the running statistics come out bit-identical while the affine
    weights train; "train" (the default) updates the statistics and sees batch statistics."""
    torch.manual_seed(0)
    model = Tiny()
    model.drop.p = 0.0  # no dropout: the first step's loss is a plain function of the weights
    model.train()
    model(torch.randn(64, 32) * 3 + 1)  # running statistics far from any clean batch's
    model.eval()
    data = tiny_set()
    rows = clean_subset(data, 0.5, 0)
    eval_loss = F.cross_entropy(model(data.waves[rows]), data.labels[rows]).item()
    runs = {}
    for mode in ("frozen", "train"):
        observer = FirstLoss()
        config = defense.Config(clean_ratio=0.5, epochs=2, batch_size=64, lr=0.05, device="cpu", batchnorm=mode)
        runs[mode] = (defense(config).run(model, data, observer).model, observer.losses[0])
    frozen, first = runs["frozen"]
    assert first == pytest.approx(eval_loss, rel=1e-5)
    assert runs["train"][1] != pytest.approx(eval_loss, rel=1e-3)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(getattr(frozen.bn, key), getattr(model.bn, key))
        assert not torch.equal(getattr(runs["train"][0].bn, key), getattr(model.bn, key))
    assert not torch.equal(frozen.bn.weight, model.bn.weight)
    assert frozen.drop.training is False and not frozen.training  # handed back in eval mode
    with pytest.raises(ConfigError, match="batchnorm"):
        defense(defense.Config(batchnorm="eval"))


class Tiny2d(nn.Module):
    """Conv2d + BatchNorm2d on [B, 1, 8, 8] inputs; records the layout its conv saw."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 36, 3)
        self.layouts: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x.view(-1, 1, 8, 8))))
        if self.training:
            self.layouts.append(h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous())
        return self.fc(h.flatten(1))


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_channels_last_trains_in_that_layout_and_hands_back_the_usual_one(defense):
    """memory_format: the steps run in the asked layout ("auto" is channels_last on a CPU), the
    repaired model comes back contiguous, and both layouts give the same weights up to float rounding."""
    torch.manual_seed(0)
    model = Tiny2d().eval()
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    data = tiny_set(length=64)  # an 8 x 8 'spectrogram' per clip
    results = {}
    for layout in ("auto", "channels_last", "contiguous"):
        model.layouts.clear()
        config = defense.Config(clean_ratio=1.0, epochs=2, batch_size=16, lr=0.05, device="cpu", memory_format=layout)
        results[layout] = defense(config).run(model, data).model
        assert results[layout].layouts and all(results[layout].layouts) == (layout != "contiguous")
        assert all(t.is_contiguous() for t in results[layout].state_dict().values())
    assert all(torch.equal(v, kept[k]) for k, v in model.state_dict().items())  # the input is left alone
    for (name, p), q in zip(results["contiguous"].named_parameters(), results["channels_last"].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    auto, plain = results["auto"].state_dict(), results["channels_last"].state_dict()
    assert all(torch.equal(auto[k], plain[k]) for k in auto)
    with pytest.raises(ConfigError, match="memory_format"):
        defense(defense.Config(memory_format="nchw"))
