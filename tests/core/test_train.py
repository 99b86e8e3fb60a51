"""Training on a tiny generated dataset: learning, backdoor, early stopping, determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.attacks import get_attack
from core.checkpoint import load_checkpoint, save_checkpoint
from core.data.speech_commands import load_speech_commands
from core.errors import ConfigError, Diverged
from core.evaluation import evaluate
from core.events import NullObserver
from core.features import FrontEndConfig
from core.training import TrainConfig, train_model
from tests.conftest import TINY_WORDS, write_speech_commands

FAST = dict(model="smallcnn", epochs=6, batch_size=32, lr=3e-3, patience=3, device="cpu")
SMALL_FE = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)  # 51 x 20 features: cheap on a CPU


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = write_speech_commands(tmp_path_factory.mktemp("train") / "sc", speakers=16, per_speaker=2)
    return load_speech_commands(root, TINY_WORDS)


def train(data, config, attack=None, observer=None):
    return train_model(data, config, attack, observer, front_end=SMALL_FE, show_progress=False)


class Recorder(NullObserver):
    def __init__(self, stop_after: int | None = None) -> None:
        self.steps, self.evals, self.stop_after = [], [], stop_after

    def on_step(self, info):
        self.steps.append(info)

    def on_eval(self, info):
        self.evals.append(info)

    def should_stop(self):
        return self.stop_after is not None and len(self.steps) >= self.stop_after


def test_clean_training_learns_and_reports(tiny_data):
    obs = Recorder()
    result = train(tiny_data, TrainConfig(**FAST, seed=0), observer=obs)
    rep = result.report
    assert rep["clean_accuracy"] >= 0.75  # chance is 0.25
    assert "attack_success_rate" not in rep and rep["device"] == "cpu" and rep["seconds"] > 0
    assert 1 <= rep["best_epoch"] <= rep["epochs_run"] <= 6
    assert len(obs.evals) == rep["epochs_run"] and all(e.phase == "validation" for e in obs.evals)
    assert obs.steps[-1].step == len(obs.steps) and all(s.loss == s.loss for s in obs.steps)
    assert result.metadata["provenance"]["training"]["early_stopping"].startswith("validation split")


def test_backdoor_training_reaches_high_asr(tiny_data):
    attack = get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10, seed=0)
    result = train(tiny_data, TrainConfig(**{**FAST, "epochs": 8, "patience": 8}, seed=0), attack)
    rep = result.report
    assert rep["attack_success_rate"] >= 0.8 and rep["clean_accuracy"] >= 0.7
    assert 0.0 <= rep["robust_accuracy"] <= 1 - rep["attack_success_rate"] + 1e-9
    assert rep["poisoned_clips"] == round(0.2 * 112)
    assert result.metadata["provenance"]["attack"]["name"] == "badnets"


def test_same_seed_same_model_and_metrics(tiny_data):
    a = train(tiny_data, TrainConfig(**{**FAST, "epochs": 2}, seed=5))
    b = train(tiny_data, TrainConfig(**{**FAST, "epochs": 2}, seed=5))
    c = train(tiny_data, TrainConfig(**{**FAST, "epochs": 2}, seed=6))
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.report["test"] == b.report["test"]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_test_split_never_steers_training(tiny_data):
    """Scrambling the test labels changes nothing about the trained weights."""
    scrambled = dataclasses.replace(tiny_data, labels=tiny_data.labels.clone())
    test_idx = tiny_data.splits["test"]
    scrambled.labels[test_idx] = (scrambled.labels[test_idx] + 1) % len(TINY_WORDS)
    a = train(tiny_data, TrainConfig(**FAST, seed=1))
    b = train(scrambled, TrainConfig(**FAST, seed=1))
    assert a.report["best_epoch"] == b.report["best_epoch"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.report["clean_accuracy"] < a.report["clean_accuracy"]


def test_channels_last_training_matches_contiguous_and_saves_the_usual_layout(tiny_data, tmp_path, monkeypatch):
    """memory_format changes only the layout the steps run in: without dropout (whose masks follow
    the memory order) both layouts take the same first steps up to float rounding, and the
    classifier comes back (and is saved) in the usual contiguous layout either way."""
    from core import models

    original = models.build

    def build_without_dropout(*args, **kwargs):
        model = original(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        return model

    monkeypatch.setattr(models, "build", build_without_dropout)
    losses = {}
    for layout in ("channels_last", "contiguous"):
        obs = Recorder()
        result = train(
            tiny_data, TrainConfig(**{**FAST, "epochs": 2, "patience": 2}, seed=0, memory_format=layout), observer=obs
        )
        assert result.report["config"]["memory_format"] == layout
        assert all(p.is_contiguous() for p in result.model.classifier.parameters())
        _, meta = load_checkpoint(save_checkpoint(tmp_path / f"{layout}.safetensors", result.model, result.metadata))
        assert meta["provenance"]["training"]["memory_format"] == layout
        losses[layout] = [s.loss for s in obs.steps]
    # Adam turns rounding-level gradient differences of near-zero weights into whole steps, so the
    # weights drift apart slowly; the losses of the first steps are where the layouts must agree
    assert len(losses["contiguous"]) == len(losses["channels_last"]) >= 4
    assert losses["channels_last"][0] == pytest.approx(losses["contiguous"][0], rel=1e-5)  # before any update
    assert losses["channels_last"][:4] == pytest.approx(losses["contiguous"][:4], rel=5e-3)
    with pytest.raises(ConfigError, match="memory_format"):
        TrainConfig(memory_format="nhwc")


def test_checkpoint_of_trained_model_reproduces_metrics(tiny_data, tmp_path):
    attack = get_attack("badnets", seed=0)
    result = train(tiny_data, TrainConfig(**{**FAST, "epochs": 2}, seed=0), attack)
    path = save_checkpoint(tmp_path / "m.safetensors", result.model, result.metadata)
    model, meta = load_checkpoint(path)
    assert evaluate(model, tiny_data, "test", attack) == result.report["test"]
    assert meta["provenance"]["training"]["epochs_run"] == result.report["epochs_run"]


def test_cancel_stops_at_the_next_step(tiny_data):
    from core.events import Cancelled

    obs = Recorder(stop_after=3)
    with pytest.raises(Cancelled):
        train(tiny_data, TrainConfig(**FAST, seed=0), observer=obs)
    assert len(obs.steps) == 3


def test_training_whose_loss_goes_nan_stops_at_that_step_with_one_clear_error(tiny_data):
    obs = Recorder()
    with pytest.raises(Diverged, match=r"the loss became (NaN|infinite) at epoch 1 \(step \d+ of \d+\)") as err:
        train(tiny_data, TrainConfig(**{**FAST, "lr": 1e30}, seed=0), observer=obs)
    assert f"(step {len(obs.steps) + 1} of" in str(err.value)  # no step past the first non-finite loss
    assert all(math.isfinite(step.loss) for step in obs.steps)


def test_bad_target_and_device(tiny_data):
    with pytest.raises(ConfigError, match="attack target 7 is not a class index"):
        train(tiny_data, TrainConfig(**FAST), get_attack("badnets", target=7))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            train(tiny_data, TrainConfig(**{**FAST, "device": "cuda"}))


def test_feature_domain_backdoor_is_trained_between_front_end_and_classifier(tiny_data):
    attack = get_attack("badnets-mfcc", poison_rate=0.2, size=3)
    result = train(tiny_data, TrainConfig(**{**FAST, "epochs": 8, "patience": 8}, seed=0), attack)
    rep = result.report
    assert rep["poisoned_clips"] == round(0.2 * 112)
    assert rep["attack_success_rate"] >= 0.8 and rep["clean_accuracy"] >= 0.7
    assert result.metadata["provenance"]["attack"]["domain"] == "features"


def test_evaluation_reuses_the_triggered_copy(tiny_data):
    from core.models import build

    class Counting(type(get_attack("badnets"))):
        calls = 0

        def apply_test(self, wave, sample_rate):
            Counting.calls += 1
            return super().apply_test(wave, sample_rate)

    attack = Counting()
    model = build("smallcnn", len(TINY_WORDS), SMALL_FE)
    cache: dict = {}
    first = evaluate(model, tiny_data, "test", attack, cache=cache)
    second = evaluate(model, tiny_data, "test", attack, cache=cache)
    assert Counting.calls == 1 and first == second and {key.split("|")[0] for key in cache} == {"test"}


def test_augmented_training_learns_is_reproducible_and_recorded(tiny_data):
    from core.augment import parse_augment

    fast = {**FAST, "epochs": 4}
    cfg = TrainConfig(**fast, seed=2, augment=parse_augment("default"))
    a, b = train(tiny_data, cfg), train(tiny_data, cfg)
    plain = train(tiny_data, TrainConfig(**fast, seed=2))
    sa, sb, sp = a.model.state_dict(), b.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sp[k]) for k in sa)  # the batches really were changed
    assert a.report["clean_accuracy"] >= 0.6  # chance is 0.25
    recorded = a.metadata["provenance"]["training"]["augment"]
    assert recorded["speed"] == [0.9, 1.1] and recorded["noise_prob"] == 0.8
    assert a.report["config"]["augment"] == recorded


def test_warm_start_continues_from_a_checkpoint_and_refuses_a_mismatch(tiny_data, tmp_path):
    first = train(tiny_data, TrainConfig(**{**FAST, "epochs": 1}, seed=0))
    path = save_checkpoint(tmp_path / "first.safetensors", first.model, first.metadata)
    zero_epochs_later = TrainConfig(**{**FAST, "epochs": 1, "lr": 1e-12}, seed=3, init_from=str(path))
    again = train(tiny_data, zero_epochs_later)
    # a negligible learning rate: the warm-started model is (nearly) the checkpoint, not a fresh init
    again_params = dict(again.model.named_parameters())
    for k, v in first.model.named_parameters():  # (BatchNorm statistics still move: they are not learned)
        torch.testing.assert_close(again_params[k], v, rtol=1e-5, atol=1e-6)
    assert again.metadata["provenance"]["training"]["init_from"] == str(path)
    with pytest.raises(ConfigError, match="architecture smallcnn vs resnet"):
        train(tiny_data, TrainConfig(**{**FAST, "model": "resnet"}, init_from=str(path)))


@pytest.mark.parametrize(
    "label_mode, stop_on, expected",
    [
        ("dirty", "auto", "mixed"),
        ("clean", "auto", "clean"),
        ("dirty", "clean", "clean"),
        ("clean", "mixed", "mixed"),
    ],
)
def test_early_stopping_keeps_the_epoch_the_criterion_chose(tiny_data, label_mode, stop_on, expected):
    """auto stops a clean-label backdoor on the clean loss (its backdoor loss rises while the clean
    task is learnt) and a dirty-label one on the authors' mixed score; the kept epoch is that argmin."""
    attack = get_attack("badnets", kind="noise", poison_rate=0.3, level_db=-10, seed=0, label_mode=label_mode)
    result = train(tiny_data, TrainConfig(**{**FAST, "epochs": 5, "patience": 5, "stop_on": stop_on}, seed=1), attack)
    hist = result.report["history"]
    score = [
        h["val_clean_loss"] if expected == "clean" else 0.5 * (h["val_clean_loss"] + h["val_backdoor_loss"])
        for h in hist
    ]
    assert result.report["best_epoch"] == hist[min(range(len(hist)), key=score.__getitem__)]["epoch"]
    training = result.metadata["provenance"]["training"]
    assert training["early_stopping"].endswith("backdoor loss)" if expected == "mixed" else "clean loss")
    assert training["stop_on"] == stop_on


def test_unknown_stop_criterion_is_refused():
    with pytest.raises(ConfigError, match="stop_on must be one of auto, clean, mixed"):
        TrainConfig(stop_on="test")
