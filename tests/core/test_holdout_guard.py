"""The guard that needs no trigger (issue 31): a held-out share of the clean set, its CA before and after,
and ``max_ca_drop`` keeping the last evaluated state within that many points of the CA before."""

from __future__ import annotations

import pytest
import torch

from core.defenses import GNFT, FineTune
from core.defenses.base import accuracy, clean_subset, split_holdout
from core.errors import ConfigError
from core.metrics import defense_findings
from core.reports import repair_markdown
from tests.core.test_gnft import Tiny, tiny_set


def trained_tiny() -> Tiny:
    """A Tiny model that has learnt tiny_set's easy task (a level offset per class)."""
    torch.manual_seed(0)
    data = tiny_set()
    config = FineTune.Config(clean_ratio=1.0, epochs=30, batch_size=16, lr=0.01, device="cpu")
    return FineTune(config).run(Tiny().eval(), data).model


def test_split_holdout_is_stratified_disjoint_and_seeded():
    data = tiny_set()
    rows = clean_subset(data, 1.0, seed=0)
    labels = data.labels[rows]
    kept, held = split_holdout(rows, labels, 0.2, seed=3)
    assert sorted(torch.cat([kept, held]).tolist()) == rows.tolist()  # a partition of the clean set
    assert not set(kept.tolist()) & set(held.tolist())
    for c in range(3):
        n = int((labels == c).sum())
        assert int((data.labels[held] == c).sum()) == round(0.2 * n)  # 20 % of every class
    again = split_holdout(rows, labels, 0.2, seed=3)
    assert torch.equal(again[1], held) and not torch.equal(split_holdout(rows, labels, 0.2, seed=4)[1], held)
    one_each = torch.tensor([0, 1, 2, 3])  # classes 0, 1, 2, 0: a class's only clip is never held out
    _, held = split_holdout(one_each, data.labels[one_each], 0.5, seed=0)
    assert held.tolist() in ([0], [3])


@pytest.mark.parametrize("defense", [GNFT, FineTune])
def test_held_out_clips_are_measured_but_never_trained_on(defense):
    """Changing the held-out clips' audio changes their measured CA, not the repaired weights."""
    model = trained_tiny()
    data, noisy = tiny_set(), tiny_set()
    config = defense.Config(clean_ratio=1.0, holdout=0.25, epochs=3, batch_size=8, lr=0.05, device="cpu")
    rows = clean_subset(data, 1.0, config.seed)
    _, held = split_holdout(rows, data.labels[rows], 0.25, config.seed)
    noisy.waves[held] = 5 * torch.randn(held.numel(), noisy.waves.shape[1], generator=torch.Generator().manual_seed(1))
    a = defense(config).run(model, data, evaluate=lambda m: {"clean_accuracy": 0.5})
    b = defense(config).run(model, noisy, evaluate=lambda m: {"clean_accuracy": 0.5})
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    ha, hb = a.details["holdout"], b.details["holdout"]
    assert ha["clips"] == held.numel() == 12 and a.clean_clips == 50  # 38 fine-tune + 4 a class held out
    assert ha["accuracy_before"] != hb["accuracy_before"]
    assert ha["accuracy_after"] == pytest.approx(accuracy(a.model, data.waves[held], data.labels[held]))
    assert [h["holdout_accuracy"] for h in a.history] == [ha["accuracy_after"]]  # beside the run's evaluation


def test_max_ca_drop_keeps_the_last_state_within_the_bound():
    """Steps far too large wreck the clean task; the guard hands back the last evaluated state whose
    held-out CA stayed within the bound (here the model as it came: epoch 0) and says so."""
    model = trained_tiny()
    data = tiny_set()
    base = dict(clean_ratio=1.0, holdout=0.25, epochs=4, batch_size=8, lr=50.0, eval_every=1, device="cpu")
    wrecked = FineTune(FineTune.Config(**base)).run(model, data)
    guarded = FineTune(FineTune.Config(**base, max_ca_drop=0.05)).run(model, data)
    free, held = wrecked.details["holdout"], guarded.details["holdout"]
    assert free["accuracy_before"] >= 0.9 and free["accuracy_after"] < free["accuracy_before"] - 0.05
    assert held["within"] and held["kept_epoch"] == 0 and held["last_epoch"] == 4
    assert held["accuracy_after"] >= held["accuracy_before"] - 0.05
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in guarded.model.state_dict().items())
    assert [r["epoch"] for r in held["evaluations"]] == [0, 1, 2, 3, 4]
    findings = defense_findings({"clean_accuracy": 1.0}, {"clean_accuracy": 1.0}, [], 50, 3, guarded.details)
    assert any("state of epoch 0 of 4 was kept" in f for f in findings)
    report = {
        "defense": {"name": "ft"},
        "model": "m.safetensors",
        "before": {"clean_accuracy": 1.0},
        "after": {"clean_accuracy": 1.0},
        "seconds": 1.0,
        "device": "cpu",
        "clean_clips": 50,
        "defense_details": guarded.details,
    }
    assert f"| clean accuracy on {held['clips']} held-out clean clips |" in repair_markdown(report)


def test_the_guard_reports_when_no_state_is_within_the_bound():
    findings = defense_findings(
        {"clean_accuracy": 1.0},
        {"clean_accuracy": 1.0},
        [],
        50,
        3,
        {
            "holdout": {
                "max_ca_drop": 0.01,
                "within": False,
                "accuracy_before": 0.9,
                "kept_epoch": 2,
                "accuracy_after": 0.8,
            }
        },
    )
    assert any("no evaluated state kept the held-out clean accuracy within 1.0 points" in f for f in findings)


def test_max_ca_drop_needs_a_held_out_share():
    with pytest.raises(ConfigError, match="max_ca_drop needs a held-out share"):
        FineTune.Config(max_ca_drop=0.02).validate()
    with pytest.raises(ConfigError, match="holdout"):
        GNFT.Config(holdout=0.95).validate()
    with pytest.raises(ConfigError, match="too few clips a class"):
        FineTune(FineTune.Config(clean_ratio=0.02, holdout=0.2, epochs=1, device="cpu")).run(Tiny(), tiny_set())
