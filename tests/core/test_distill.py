"""Keeping clean outputs while repairing (``distill``): a KL term to the model's own softmax before the repair, on
each batch's clean rows only (never those given the trigger to unlearn or a latent push), over the classes other
than the suspected one (a backdoor raises its class on clean clips too)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from core.defenses import DEFENSES, FineTune
from core.defenses.base import clean_subset, clip_features
from core.errors import ConfigError
from core.models import split_front_end
from tests.conftest import backdoored_workspace, model_and_data_of


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    return model_and_data_of(
        backdoored_workspace(tmp_path_factory.mktemp("distill"), speakers=8, per_speaker=2, epochs=2)
    )


class Recording(FineTune):
    """Fine-tuning that keeps, per step, its batch and what the distillation term saw."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.steps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def train_step(self, model, x, y, optimizer):
        assert self._kept is not None
        before, clean_rows = self._kept
        self.steps.append((x.detach().clone(), before.clone(), clean_rows.clone()))
        return super().train_step(model, x, y, optimizer)


def test_distillation_needs_fine_tuning():
    with pytest.raises(ConfigError, match="distill needs fine-tuning"):
        DEFENSES["gnft"].Config(distill=1.0, epochs=0, device="cpu").validate()
    with pytest.raises(ConfigError, match="distill must be"):
        DEFENSES["gnft"].Config(distill=-1.0, device="cpu").validate()


def test_only_clean_rows_are_distilled_toward_the_models_own_outputs(model_and_data):
    model, data = model_and_data
    config = DEFENSES["ft"].Config(
        clean_ratio=0.5, epochs=4, batch_size=8, device="cpu", distill=1.0, unlearn=0.3, unlearn_latent=0.3
    )
    defense = Recording(config)
    defense.run(model, data, trigger=0.5 * torch.sin(torch.arange(4000) / 3.0), target=0)
    rows = clean_subset(data, config.clean_ratio, config.seed)
    front, body = split_front_end(model)
    with torch.no_grad():
        clean = clip_features(front, data.waves[rows], 64)
        own = body.eval()(clean)[:, 1:].softmax(-1)  # the suspected class 0 is not held
    kinds = {"clean kept": 0, "triggered": 0, "pushed": 0}
    for x, before, clean_rows in defense.steps:
        for xi, pi, keep in zip(x, before, clean_rows, strict=True):
            match = [i for i in range(clean.shape[0]) if torch.allclose(clean[i], xi, atol=1e-5)]
            if not match:  # the clip with the trigger: never distilled
                assert not keep
                kinds["triggered"] += 1
                continue
            # the targets are the model's own softmax on that clip, before any step, over the other classes
            assert torch.allclose(pi, own[match[0]], atol=1e-5)
            kinds["clean kept" if keep else "pushed"] += 1
    assert all(n > 0 for n in kinds.values()), kinds  # every kind of row was seen, and told apart


def kl_to_own(model, repaired, data) -> float:
    rows = data.splits["test"]
    with torch.no_grad():
        own = model.eval()(data.waves[rows]).log_softmax(-1)
        after = repaired.eval()(data.waves[rows]).log_softmax(-1)
    return float(F.kl_div(after, own, log_target=True, reduction="batchmean"))


@pytest.mark.parametrize("name", ["ft", "gnft"])
def test_distillation_keeps_the_repaired_models_clean_outputs_nearer_its_own(model_and_data, name):
    model, data = model_and_data
    settings = dict(clean_ratio=0.5, epochs=6, batch_size=8, lr=0.01, device="cpu", unlearn_latent=0.3)
    plain = DEFENSES[name](DEFENSES[name].Config(**settings)).run(model, data, target=0).model
    kept = DEFENSES[name](DEFENSES[name].Config(**settings, distill=2.0)).run(model, data, target=0).model
    assert kl_to_own(model, kept, data) < 0.5 * kl_to_own(model, plain, data)


def test_without_a_suspected_class_every_class_is_held(model_and_data):
    model, data = model_and_data
    config = DEFENSES["ft"].Config(clean_ratio=0.5, epochs=1, batch_size=8, device="cpu", distill=1.0)
    defense = Recording(config)
    defense.run(model, data)
    rows = clean_subset(data, config.clean_ratio, config.seed)
    front, body = split_front_end(model)
    with torch.no_grad():
        clean = clip_features(front, data.waves[rows], 64)
        own = body.eval()(clean).softmax(-1)
    for x, before, clean_rows in defense.steps:
        assert bool(clean_rows.all()) and before.shape[1] == len(data.classes)
        for xi, pi in zip(x, before, strict=True):
            match = next(i for i in range(clean.shape[0]) if torch.allclose(clean[i], xi, atol=1e-5))
            assert torch.allclose(pi, own[match], atol=1e-5)
