"""CA, ASR (non-target clips only), RA and DER on a model whose predictions are known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core.metrics import backdoor_metrics, defense_effectiveness_rating, defense_findings


class Oracle(nn.Module):
    """Predicts the class written in sample 0 of each clip."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.n = n_classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x[:, 0].long(), self.n).float() * 10 + self.dummy


def test_clean_accuracy_and_model_mode_restored():
    model = Oracle().train()
    waves = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    labels = torch.tensor([0, 1, 2, 0])
    assert backdoor_metrics(model, waves, labels, batch_size=3)["clean_accuracy"] == 0.75
    assert model.training


def test_asr_excludes_target_class_and_ra():
    model = Oracle()
    labels = torch.tensor([0, 1, 2, 2, 3])
    triggered = torch.tensor([[2.0], [2.0], [2.0], [1.0], [3.0]])  # clip 4 resists, clip 3 is target class
    m = backdoor_metrics(model, torch.tensor([[0.0], [1.0], [2.0], [2.0], [3.0]]), labels, triggered, 2)
    assert m["clean_accuracy"] == 1.0 and m["attack_success_rate"] == pytest.approx(2 / 3)
    assert m["robust_accuracy"] == pytest.approx(1 / 3)
    assert m["backdoor_loss"] > 0 and m["clean_loss"] < 1e-3


def test_empty_set_is_nan():
    m = backdoor_metrics(Oracle(), torch.tensor([[2.0]]), torch.tensor([2]), torch.tensor([[2.0]]), 2)
    assert math.isnan(m["attack_success_rate"]) and math.isnan(m["robust_accuracy"])


def test_der():
    before = {"clean_accuracy": 0.95, "attack_success_rate": 1.0}
    assert defense_effectiveness_rating(before, {"clean_accuracy": 0.95, "attack_success_rate": 0.0}) == 1.0
    assert defense_effectiveness_rating(before, before) == 0.5
    assert defense_effectiveness_rating(before, {"clean_accuracy": 0.85, "attack_success_rate": 0.1}) == pytest.approx(
        0.9
    )


BACKDOORED = {"clean_accuracy": 0.98, "attack_success_rate": 0.99}


def test_findings_empty_for_a_clean_repair():
    after = {"clean_accuracy": 0.965, "attack_success_rate": 0.10}  # 1.5 points, 10 %: both at the bar
    assert defense_findings(BACKDOORED, after, [{"epoch": 10, "clean_accuracy": 0.75}], 400, 10) == []


def test_findings_name_each_problem_with_its_figures():
    after = {"clean_accuracy": 0.86, "attack_success_rate": 0.55}
    history = [
        {"epoch": 10, "clean_accuracy": 0.47},
        {"epoch": 20, "clean_accuracy": 0.80},
        {"epoch": 60, "clean_accuracy": 0.86},
    ]
    found = defense_findings(BACKDOORED, after, history, 120, 10)
    assert len(found) == 4
    assert "fell 12.0 points (98.0 % -> 86.0 %)" in found[0]
    assert "not removed" in found[1] and "55.0 %" in found[1]
    assert "collapsed to 47.0 % at epoch 10" in found[2]  # the lowest evaluation, not the first
    assert "120 clips, 12 per class" in found[3]


def test_findings_say_when_there_was_no_working_backdoor():
    weak = {"clean_accuracy": 0.87, "attack_success_rate": 0.08}
    found = defense_findings(weak, {"clean_accuracy": 0.86, "attack_success_rate": 0.05}, [], 0, 10)
    assert len(found) == 1 and "does not work on the input model" in found[0] and "8.0 %" in found[0]
    # without attack information only clean accuracy is judged; a data-free run has no clean share
    assert defense_findings({"clean_accuracy": 0.9}, {"clean_accuracy": 0.85}, [], 0, 10)[0].startswith(
        "clean accuracy fell 5.0 points"
    )


def test_findings_say_when_gnfts_penalty_dominates_the_step():
    after = {"clean_accuracy": 0.975, "attack_success_rate": 0.02}
    sharp = {"first_step_clean_gradient_norm": 0.067, "first_step_gradient_norm": 13.93}
    found = defense_findings(BACKDOORED, after, [], 400, 10, sharp)
    assert len(found) == 1 and "208x the clean gradient (13.9 against 0.067)" in found[0]
    mild = {"first_step_clean_gradient_norm": 3.617, "first_step_gradient_norm": 5.70}  # SmallCNN: 1.6x
    assert defense_findings(BACKDOORED, after, [], 400, 10, mild) == []
    assert defense_findings(BACKDOORED, after, [], 400, 10, {"pruned_inputs": 3}) == []
    zero = {"first_step_clean_gradient_norm": 0.0, "first_step_gradient_norm": 0.0}  # nothing to divide by
    assert defense_findings(BACKDOORED, after, [], 400, 10, zero) == []


def test_findings_say_when_the_backdoor_came_back_and_what_to_try():
    """Removed at an evaluation before the last, above the bar at the end: said with both figures; a repair that
    unlearned a scanned trigger without searching it again is pointed at ``unlearn_refresh``."""
    after = {"clean_accuracy": 0.975, "attack_success_rate": 0.143}
    history = [
        {"epoch": 10, "clean_accuracy": 0.81, "attack_success_rate": 0.009},
        {"epoch": 20, "clean_accuracy": 0.935, "attack_success_rate": 0.21},
        {"epoch": 30, "clean_accuracy": 0.975, "attack_success_rate": 0.143},
    ]
    found = defense_findings(BACKDOORED, after, history, 400, 10)
    assert found[0] == (
        "the backdoor is not removed: attack success rate 14.3 % after the defense (removed means at most 10 %)"
    )
    assert found[1].startswith("the backdoor came back: its attack success rate was 0.9 % at epoch 10 and is 14.3 %")
    assert "--unlearn-refresh" not in found[1] and len(found) == 2
    unlearned = defense_findings(BACKDOORED, after, history, 400, 10, {"unlearn": {"class": "up"}})
    assert "--unlearn-refresh 40" in unlearned[1] and "4 on a ResNet" in unlearned[1]  # what it costs, measured
    searched = {"unlearn": {"class": "up"}, "searched_again": [{"epoch": 40}]}
    assert "--unlearn-refresh" not in defense_findings(BACKDOORED, after, history, 400, 10, searched)[1]
    # never under the bar before the end, or under it at the end, or only at the last evaluation: no return
    never = [{**h, "attack_success_rate": 0.5} for h in history[:-1]] + history[-1:]
    assert len(defense_findings(BACKDOORED, after, never, 400, 10)) == 1
    assert defense_findings(BACKDOORED, {**after, "attack_success_rate": 0.05}, history, 400, 10) == []
    assert len(defense_findings(BACKDOORED, after, history[-1:], 400, 10)) == 1
