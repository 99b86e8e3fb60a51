"""Pruning by the suspected trigger (``trigger_prune``): the output layer's inputs the trigger raises most are
zeroed before fine-tuning and held at zero, within a clean-accuracy budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.attacks import get_attack
from core.defenses import DEFENSES, GNFTConfig
from core.defenses.base import output_layer
from core.defenses.fine_pruning import prune_trigger_inputs
from core.errors import ConfigError
from core.repair import repair, unlearn_choice
from core.reports import repair_markdown, trigger_pruned_sentence
from core.scan import ScanConfig
from tests.conftest import backdoored_workspace, model_and_data_of


class Bare(nn.Module):
    """A classifier that is only its output layer: its inputs are the 'activations'."""

    def __init__(self, weight: list[list[float]]) -> None:
        super().__init__()
        self.fc = nn.Linear(len(weight[0]), len(weight), bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def planted():
    """Units 2 and 3 carry classes 0 and 1; the trigger raises unit 0 (wired to class 1) a lot and unit 1
    (wired to nothing) a little: triggered clips of class 0 go to class 1."""
    model = Bare([[0.0, 0.0, 1.0, 0.0], [3.0, 0.0, 0.0, 1.0]])
    clean = torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 4 + [[0.0, 0.0, 0.0, 1.0]] * 4)
    labels = torch.tensor([0] * 4 + [1] * 4)
    triggered = clean + torch.tensor([1.0, 0.5, 0.0, 0.0])
    return model, clean, triggered, labels


def test_the_unit_the_trigger_raises_most_is_pruned_and_the_trigger_no_longer_works():
    model, clean, triggered, labels = planted()
    keep, about = prune_trigger_inputs(model, clean, triggered, labels, 0.25, 0.05)
    assert keep.tolist() == [False, True, True, True]
    assert model.fc.weight[:, 0].abs().sum() == 0 and model.fc.weight[1, 3] == 1.0
    assert about["triggered_accuracy"] == [0.5, 1.0] and about["clean_accuracy"] == [1.0, 1.0]
    assert about["pruned_inputs"] == 1 and about["output_layer_inputs"] == 4


def test_a_pruning_that_leaves_the_trigger_working_is_undone():
    """The trigger raises unit 0, wired to nothing, and swaps the two class units: pruning all it raises wins back
    none of the accuracy it costs, so the pruning is undone and the layer is as it was (as on the ASC-10 ResNets);
    with no least gain it stays. A pruning that wins back all of it stays at any least gain."""
    model = Bare([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    _, clean, _, labels = planted()
    triggered = clean[:, [0, 1, 3, 2]] + torch.tensor([1.0, 0.0, 0.0, 0.0])
    before = model.fc.weight.detach().clone()
    keep, about = prune_trigger_inputs(model, clean, triggered, labels, 0.25, 0.05, 0.25)
    assert keep.all() and torch.equal(model.fc.weight, before) and about["pruned_inputs"] == 0
    assert about["triggered_accuracy"] == [0.0, 0.0] and about["clean_accuracy"] == [1.0, 1.0]
    assert about["undone"] == {"tried_inputs": 1, "clean_accuracy": 1.0, "triggered_accuracy": 0.0, "min_gain": 0.25}
    assert trigger_pruned_sentence(about) == (
        "Pruning by the trigger: undone. Zeroing the 1 output-layer inputs the trigger raises most took its accuracy "
        "on the clean share only from 0.0 % to 0.0 % (less than 25 % of what it costs): the trigger's path is not "
        "in those inputs, so none was pruned."
    )
    keep, about = prune_trigger_inputs(model, clean, triggered, labels, 0.25, 0.05, 0.0)
    assert keep.tolist() == [False, True, True, True] and "undone" not in about
    keep, about = prune_trigger_inputs(*planted(), 0.25, 0.05, 1.0)  # 50 -> 100 %: all it cost won back
    assert keep.tolist() == [False, True, True, True] and "undone" not in about


def test_nothing_is_pruned_beyond_the_clean_budget_or_when_the_trigger_does_nothing():
    model = Bare([[0.0, 0.0, 1.0, 0.0], [3.0, 0.0, 0.0, 1.0]])
    _, clean, triggered, labels = planted()
    clean[4:, 0] = 1.0  # class 1 now needs unit 0 too: pruning it costs half the clean accuracy
    clean[4:, 3] = 0.0
    before = model.fc.weight.detach().clone()
    keep, about = prune_trigger_inputs(model, clean, clean + torch.tensor([1.0, 0.5, 0.0, 0.0]), labels, 0.25, 0.1)
    assert keep.all() and torch.equal(model.fc.weight, before) and about["pruned_inputs"] == 0
    model, clean, _, labels = planted()
    keep, about = prune_trigger_inputs(model, clean, clean.clone(), labels, 0.25, 0.05)  # a harmless "trigger"
    assert keep.all() and about["triggered_accuracy"] == [1.0, 1.0]


def test_with_two_triggers_the_ranking_pools_both():
    model, clean, triggered, labels = planted()
    other = clean + torch.tensor([0.0, 2.0, 0.0, 0.0])  # raises unit 1 most, but changes no answer
    keep, about = prune_trigger_inputs(model, clean, torch.cat([triggered, other]), labels, 0.25, 0.05)
    assert about["triggered_accuracy"][0] == 0.75  # 4 of 16 triggered clips sent to class 1
    assert not keep[1] and not keep[0]  # unit 1 first (raised 1.25 on average), then unit 0 (0.5)


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    return model_and_data_of(
        backdoored_workspace(tmp_path_factory.mktemp("tprune"), speakers=8, per_speaker=2, epochs=6)
    )


def quick(**kw) -> GNFTConfig:
    return GNFTConfig(clean_ratio=0.5, epochs=2, batch_size=8, eval_every=1, device="cpu", **kw)


def test_trigger_pruning_needs_a_trigger_and_fine_tuning(model_and_data):
    with pytest.raises(ConfigError, match="trigger_prune needs fine-tuning"):
        GNFTConfig(trigger_prune=0.05, epochs=0, device="cpu").validate()
    assert GNFTConfig(trigger_prune=0.05).unlearns()  # a repair scans for the trigger to prune by
    model, data = model_and_data
    with pytest.raises(ConfigError, match="trigger_prune needs a trigger"):
        DEFENSES["gnft"](quick(trigger_prune=0.05)).run(model, data)


def test_the_pruned_inputs_stay_zero_through_fine_tuning_and_the_run_is_deterministic(model_and_data):
    model, data = model_and_data
    attack = get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10)  # the planted one
    trigger = attack.apply(torch.zeros(16000), 16000)  # the burst alone: added to a clip, the triggered clip
    runs = [
        repair(model, data, DEFENSES["gnft"](quick(trigger_prune=0.2, unlearn=0.3)), trigger=trigger) for _ in range(2)
    ]
    about = runs[0].details["trigger_pruned"]
    keep = output_layer(runs[0].model).weight.abs().sum(0) > 0
    assert about["pruned_inputs"] >= 1 and int((~keep).sum()) >= about["pruned_inputs"]
    assert about["triggered_accuracy"][1] > about["triggered_accuracy"][0]  # the trigger works less
    assert output_layer(model).weight.abs().sum(0).gt(0).all()  # the given model is untouched
    assert runs[1].details["trigger_pruned"] == about
    assert torch.equal(output_layer(runs[0].model).weight, output_layer(runs[1].model).weight)


def test_pruning_only_when_unflagged_skips_a_flagged_scan_or_a_given_trigger(model_and_data):
    model, data = model_and_data
    trigger = get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10).apply(torch.zeros(16000), 16000)
    only = quick(trigger_prune=0.2, unlearn=0.3, trigger_prune_when="unflagged")
    assert "trigger_prune_when" in quick(unlearn=0.3, trigger_prune_when="unflagged").idle_fields()
    assert "trigger_prune_when" not in only.idle_fields()

    def run(config: GNFTConfig, flagged: bool | None):
        return DEFENSES["gnft"](config).run(model, data, trigger=trigger, flagged=flagged)

    plain = run(quick(unlearn=0.3), None)
    skipped = run(only, True)
    assert skipped.details["trigger_pruned"] == {"skipped": "the scan flagged the model"}
    assert torch.equal(output_layer(skipped.model).weight, output_layer(plain.model).weight)  # as without pruning
    unsure = run(only, False)
    always = run(quick(trigger_prune=0.2, unlearn=0.3), False)
    assert unsure.details["trigger_pruned"]["pruned_inputs"] >= 1
    assert unsure.details["trigger_pruned"] == always.details["trigger_pruned"]
    assert torch.equal(output_layer(unsure.model).weight, output_layer(always.model).weight)
    demanding = run(quick(trigger_prune=0.2, unlearn=0.3, trigger_prune_gain=1.0), False)  # won back all, or undone
    assert demanding.details["trigger_pruned"]["undone"]["tried_inputs"] >= 1
    assert demanding.details["trigger_pruned"]["pruned_inputs"] == 0
    assert torch.equal(output_layer(demanding.model).weight, output_layer(plain.model).weight)  # as without pruning
    assert "trigger_prune_gain" in quick(unlearn=0.3).idle_fields() and "trigger_prune_gain" not in only.idle_fields()
    given = repair(model, data, DEFENSES["gnft"](only), trigger=trigger)  # a recording: no scan's verdict
    assert given.details["trigger_pruned"] == {"skipped": "the trigger was given, not scanned"}
    said = repair_markdown(given.report(model="tiny"))
    assert "Pruning by the trigger: skipped (the trigger was given, not scanned)." in said
    about = unsure.details["trigger_pruned"]
    assert trigger_pruned_sentence(about).startswith(
        f"Pruned by the trigger: {about['pruned_inputs']} of the output layer's {about['output_layer_inputs']} inputs"
    )


def test_a_repair_passes_its_scans_verdict_to_the_pruning(model_and_data):
    model, data = model_and_data
    quick_scan = ScanConfig(steps=6, batch_size=2, clean_ratio=0.5, device="cpu")
    only = quick(trigger_prune=0.2, unlearn=0.3, trigger_prune_when="unflagged")
    result = repair(model, data, DEFENSES["gnft"](only), scan_config=quick_scan)
    assert result.scan is not None and result.details["unlearn"]["flagged"] == result.scan.backdoored
    about = result.details["trigger_pruned"]
    assert ("skipped" in about) == result.scan.backdoored and ("pruned_inputs" in about) != result.scan.backdoored
    # a scan's trigger handed over with its record (as the grid and the application do) carries the verdict too
    trigger, record = unlearn_choice(result.scan)
    for flagged in (True, False):
        handed = repair(
            model, data, DEFENSES["gnft"](only), trigger=trigger, trigger_record={**record, "flagged": flagged}
        )
        assert ("skipped" in handed.details["trigger_pruned"]) == flagged
