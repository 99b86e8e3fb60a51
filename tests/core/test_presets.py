"""Defense presets: one table for the command line and the application, recorded with every run."""

from __future__ import annotations

import dataclasses

import pytest

from core.defenses import DEFENSES, GNFTConfig
from core.errors import ConfigError
from core.presets import DEFAULT_PRESET, PRESETS, matching_preset, preset_record


def test_the_presets_are_the_measured_settings():
    assert DEFAULT_PRESET == "recommended"
    rec = PRESETS["recommended"].config()
    assert (rec.clean_ratio, rec.r, rec.lr, rec.epochs, rec.alpha, rec.prune, rec.unlearn) == (
        0.1,
        0.1,
        0.003,
        120,
        0.7,
        0,
        0.3,
    )
    assert (rec.unlearn_latent, rec.latent_reach, rec.latent_depth) == (0.3, 0.2, 1.0)
    assert PRESETS["paper"].config() == GNFTConfig()  # the paper's loop is the config's defaults
    for preset in PRESETS.values():
        assert preset.defense in DEFENSES and preset.summary and preset.title
        fields = {f.name for f in dataclasses.fields(DEFENSES[preset.defense].Config)}
        assert set(preset.settings) <= fields


def test_matching_ignores_where_a_run_happens_but_not_what_it_computes():
    rec = PRESETS["recommended"].config(seed=3, device="cpu", grad_norm_every=1, memory_format="contiguous")
    assert matching_preset("gnft", rec) == "recommended"
    assert matching_preset("ft", DEFENSES["ft"].Config()) is None  # no FT preset
    assert matching_preset("gnft", dataclasses.replace(rec, r=0.2)) is None


def test_a_custom_run_records_what_it_changed_from_its_preset():
    config = PRESETS["recommended"].config(epochs=5, lr=0.02)
    assert preset_record("gnft", config, base="recommended") == {
        "name": "custom",
        "from": "recommended",
        "changed": {"epochs": 5, "lr": 0.02},
    }
    assert preset_record("gnft", PRESETS["paper"].config(), base="recommended") == {"name": "paper"}
    assert preset_record("ft", DEFENSES["ft"].Config(), base="recommended") == {"name": "custom"}
    assert preset_record("gnft", config) == {"name": "custom"}
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_record("gnft", config, base="fastest")


def test_a_preset_config_is_validated():
    with pytest.raises(ConfigError, match="alpha"):
        PRESETS["recommended"].config(alpha=2.0)
