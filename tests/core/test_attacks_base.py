"""The attack interface and Audio BadNets (waveform tone/noise burst)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.attacks import attack_from_dict, get_attack, list_attacks, parse_attack_args
from core.attacks.base import position_offset
from core.errors import AttackError


def test_registry_lists_badnets():
    assert "badnets" in list_attacks()
    with pytest.raises(AttackError, match="unknown attack 'nope'; available: .*badnets"):
        get_attack("nope")


def test_tone_is_added_at_the_position_with_the_level():
    attack = get_attack("badnets", position="middle", level_db="-20", duration="0.1", frequency="1000")
    wave = torch.zeros(2, 16000)
    out = attack.apply(wave, 16000)
    assert torch.equal(wave, torch.zeros(2, 16000))  # input untouched
    nz = out[0].nonzero().flatten()
    assert 7200 <= int(nz.min()) and int(nz.max()) < 8800
    assert abs(float(out.abs().max()) - 0.1) < 1e-3
    spectrum = np.abs(np.fft.rfft(out[0, 7200:8800].numpy()))
    assert abs(np.argmax(spectrum) * 16000 / 1600 - 1000) <= 10


def test_noise_burst_is_deterministic_for_a_seed():
    a = get_attack("badnets", kind="noise", seed=3).apply(torch.zeros(1, 16000), 16000)
    b = get_attack("badnets", kind="noise", seed=3).apply(torch.zeros(1, 16000), 16000)
    c = get_attack("badnets", kind="noise", seed=4).apply(torch.zeros(1, 16000), 16000)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_poisoning_dirty_label():
    attack = get_attack("badnets", poison_rate=0.1, target=2, seed=1)
    labels = torch.arange(200) % 5
    waves = torch.zeros(200, 16000)
    train = torch.arange(0, 200, 2)  # 100 candidates
    ps = attack.poison(waves, labels, train, 16000)
    assert ps.waves.shape == (100, 16000) and ps.poisoned.numel() == 10
    assert torch.all(ps.labels[ps.poisoned] == 2)
    original = labels[train][ps.poisoned]
    assert torch.all(original != 2)  # dirty label poisons come from other classes
    assert torch.all(ps.waves[ps.poisoned].abs().amax(1) > 0.05)
    clean_rows = torch.ones(100, dtype=torch.bool)
    clean_rows[ps.poisoned] = False
    assert torch.all(ps.waves[clean_rows] == 0) and torch.equal(ps.labels[clean_rows], labels[train][clean_rows])
    again = get_attack("badnets", poison_rate=0.1, target=2, seed=1).poison(waves, labels, train, 16000)
    assert torch.equal(again.poisoned, ps.poisoned)
    other = get_attack("badnets", poison_rate=0.1, target=2, seed=2).poison(waves, labels, train, 16000)
    assert not torch.equal(other.poisoned, ps.poisoned)


def test_clean_label_poisons_only_target_class():
    attack = get_attack("badnets", label_mode="clean", poison_rate=0.5, target=1)
    labels = torch.arange(40) % 4
    ps = attack.poison(torch.zeros(40, 1600), labels, torch.arange(40), 16000)
    assert ps.poisoned.numel() == 5 and torch.all(labels[ps.poisoned] == 1)
    assert torch.equal(ps.labels, labels)


def test_parameter_parsing_and_errors():
    assert parse_attack_args(["poison-rate=0.2", "kind=noise"]) == {"poison_rate": "0.2", "kind": "noise"}
    with pytest.raises(AttackError, match="key=value"):
        parse_attack_args(["oops"])
    with pytest.raises(AttackError, match="unknown parameter.*colour"):
        get_attack("badnets", colour="red")
    with pytest.raises(AttackError, match="kind must be one of tone, noise"):
        get_attack("badnets", kind="laser")
    with pytest.raises(AttackError, match="poison_rate must be in"):
        get_attack("badnets", poison_rate="1.5")
    with pytest.raises(AttackError, match="duration must be float"):
        get_attack("badnets", duration="long")
    with pytest.raises(AttackError, match="9000 Hz tone cannot exist at 16000 Hz"):
        get_attack("badnets", frequency=9000)


def test_round_trip_through_dict():
    attack = get_attack("badnets", kind="noise", level_db=-30.0, seed=9)
    again = attack_from_dict(attack.to_dict())
    assert again.to_dict() == attack.to_dict()
    assert torch.equal(again.apply(torch.zeros(1, 16000), 16000), attack.apply(torch.zeros(1, 16000), 16000))


def test_positions():
    assert position_offset("start", 100, 10, 16000) == 0
    assert position_offset("end", 100, 10, 16000) == 90
    assert position_offset("0.001", 100, 10, 16000) == 16
    with pytest.raises(AttackError, match="outside the clip"):
        position_offset("1.0", 100, 10, 16000)
    with pytest.raises(AttackError, match="longer than the clip"):
        position_offset("start", 5, 10, 16000)
