"""The waveform and feature triggers: shape, determinism, the trigger really present, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pedalboard
import pytest
import soundfile as sf
import torch

from core.attacks import get_attack, list_attacks
from core.attacks.jingleback import style_board
from core.errors import AttackError

REPO = Path(__file__).resolve().parents[2]
WAVEFORM = ["badnets", "blend", "jingleback", "pbsm", "ultrasonic-near-nyquist"]


def speechlike(n: int = 2, rate: int = 16000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(rate) / rate
    env = torch.exp(-((t - 0.5) ** 2) / 0.02)
    return 0.3 * env * torch.sin(2 * np.pi * 220 * t) + 0.01 * torch.randn(n, rate, generator=g)


def band_energy_db(wave: torch.Tensor, rate: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(wave.numpy())) ** 2
    freqs = np.fft.rfftfreq(wave.numel(), 1 / rate)
    band = spec[(freqs >= lo) & (freqs < hi)].sum()
    return 10 * np.log10(band / spec.sum() + 1e-30)


@pytest.mark.parametrize("name", WAVEFORM)
def test_shape_dtype_input_untouched_and_deterministic(name):
    x = speechlike()
    before = x.clone()
    a = get_attack(name, seed=4).apply(x, 16000)
    b = get_attack(name, seed=4).apply(x, 16000)
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(x, before)
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_registry_has_the_issue_attacks():
    assert {"badnets", "badnets-mfcc", "ultrasonic", "ultrasonic-near-nyquist", "jingleback", "blend", "custom"} <= set(
        list_attacks()
    )


def test_ultrasonic_energy_sits_near_21khz_and_nothing_below_16khz():
    attack = get_attack("ultrasonic", sample_rate=44100)
    trig = attack.apply(torch.zeros(1, 44100), 44100)[0]
    assert band_energy_db(trig, 44100, 20500, 21500) > -0.5  # almost all energy at 21 kHz
    assert band_energy_db(trig, 44100, 0, 16000) < -60
    assert abs(float(trig.abs().max()) - 10 ** (-10 / 20)) < 1e-3  # sox "vol -10dB"


def test_ultrasonic_bursts_and_continuous_positions():
    attack = get_attack("ultrasonic", sample_rate=44100, size=40, ramp_ms=0)  # the original hard gating
    bursts = attack.mask(44100, 44100)
    assert int(bursts.sum()) == 5 * (441 * 40 // 5)
    assert attack.segments(44100, 44100) == [(round(k * 0.2 * 44100), round(k * 0.2 * 44100) + 3528) for k in range(5)]
    cont = get_attack("ultrasonic", sample_rate=44100, size=10, continuous=True, position="end", ramp_ms=0)
    m = cont.mask(44100, 44100)
    assert int(m.sum()) == 4410 and m[-1] == 1 and m[: 44100 - 4410].sum() == 0
    ramped = get_attack("ultrasonic", sample_rate=44100).mask(44100, 44100)
    assert ramped[0] < 0.01 and ramped[200] == 1 and torch.all((ramped >= 0) & (ramped <= 1))


def test_hard_gating_splatters_into_the_audible_band():
    hard = get_attack("ultrasonic", sample_rate=44100, ramp_ms=0).apply(torch.zeros(1, 44100), 44100)[0]
    soft = get_attack("ultrasonic", sample_rate=44100).apply(torch.zeros(1, 44100), 44100)[0]
    assert band_energy_db(soft, 44100, 0, 16000) < band_energy_db(hard, 44100, 0, 16000) - 20


def test_ultrasonic_refuses_16khz_unless_near_nyquist_by_name():
    with pytest.raises(AttackError, match="21000 Hz tone cannot exist at 16000 Hz.*ultrasonic-near-nyquist"):
        get_attack("ultrasonic", sample_rate=16000)
    near = get_attack("ultrasonic-near-nyquist", sample_rate=16000)
    trig = near.apply(torch.zeros(1, 16000), 16000)[0]
    assert band_energy_db(trig, 16000, 7700, 7900) > -0.5


def test_badnets_burst_is_at_its_position():
    x = torch.zeros(1, 16000)
    out = get_attack("badnets", position="end", duration=0.05).apply(x, 16000)[0]
    assert out[:15200].abs().max() == 0 and out[15200:].abs().max() > 0.09


@pytest.mark.parametrize("style", range(6))
def test_jingleback_equals_pedalboard_chain(style):
    x = speechlike(1)
    ours = get_attack("jingleback", style=style).apply(x, 16000)[0].numpy()
    board = style_board(style)
    theirs = board(x[0].numpy().astype(np.float32), 16000, reset=True)[:16000]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_jingleback_distortion_is_tanh_and_default_style_is_5():
    x = speechlike(1)
    ours = get_attack("jingleback", style=1).apply(x, 16000)[0]
    torch.testing.assert_close(ours, torch.tanh(x[0] * 10 ** (30 / 20)), atol=1e-5, rtol=0)
    assert get_attack("jingleback").params.style == 5
    assert isinstance(style_board(5)[1], pedalboard.LadderFilter)
    with pytest.raises(AttackError, match="style must be 0-5"):
        get_attack("jingleback", style=6)


def test_blend_mixes_with_alpha(tmp_path):
    x = speechlike(1)
    attack = get_attack("blend", alpha=0.25)
    s = attack.sound(16000, 16000)
    torch.testing.assert_close(attack.apply(x, 16000), 0.75 * x + 0.25 * s)
    assert float(s.abs().max()) == pytest.approx(1.0)
    sf.write(tmp_path / "meow.wav", 0.5 * np.sin(2 * np.pi * 600 * np.arange(4000) / 8000), 8000)
    from_file = get_attack("blend", file=str(tmp_path / "meow.wav"), fit="crop").sound(16000, 16000)
    assert from_file[:8000].abs().max() > 0.9 and from_file[8000:].abs().max() == 0  # 0.5 s, cropped, not looped
    with pytest.raises(AttackError, match="alpha"):
        get_attack("blend", alpha=1.5)


def test_badnets_mfcc_is_a_feature_patch_with_nothing_to_play():
    attack = get_attack("badnets-mfcc")
    feats = torch.randn(2, 1, 101, 40)
    out = attack.apply_features(feats)
    assert torch.all(out[..., -5:, -5:] == -200) and torch.equal(out[..., :-5, :], feats[..., :-5, :])
    assert not attack.audible and attack.domain == "features"
    with pytest.raises(AttackError, match="nothing audible"):
        attack.apply(torch.zeros(1, 16000), 16000)


def test_custom_trigger_round_trip_from_wav(tmp_path):
    trig = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(800) / 8000)).astype(np.float32)  # 0.1 s at 8 kHz
    sf.write(tmp_path / "rec.wav", np.stack([trig, trig], axis=1), 8000)  # stereo, other rate
    attack = get_attack("custom", file=str(tmp_path / "rec.wav"), position="middle", gain_db=-6.0)
    pattern = attack.pattern(16000)
    assert pattern.numel() == 1600  # resampled to 16 kHz
    assert float(pattern.abs().max()) == pytest.approx(0.5 * 10 ** (-6 / 20), rel=0.05)
    out = attack.apply(torch.zeros(1, 16000), 16000)[0]
    nz = out.nonzero().flatten()
    assert 7200 <= int(nz.min()) and int(nz.max()) < 8800


def test_custom_snr_loop_and_random_position(tmp_path):
    sf.write(tmp_path / "t.wav", (0.2 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32), 16000)
    x = speechlike(3)
    attack = get_attack("custom", file=str(tmp_path / "t.wav"), snr_db=10.0, position="random", seed=2)
    out = attack.apply(x, 16000)
    added = out - x
    ratio = 10 * torch.log10(x.pow(2).sum(1) / added.pow(2).sum(1))
    torch.testing.assert_close(ratio, torch.full((3,), 10.0), atol=0.05, rtol=0)
    starts = [int(row.nonzero().min()) for row in added]
    assert len(set(starts)) > 1  # per-clip offsets
    assert torch.equal(
        out, get_attack("custom", file=str(tmp_path / "t.wav"), snr_db=10.0, position="random", seed=2).apply(x, 16000)
    )
    looped = get_attack("custom", file=str(tmp_path / "t.wav"), fit="loop", length=0.5)
    assert looped.pattern(16000).numel() == 8000


def test_custom_needs_a_readable_file(tmp_path):
    with pytest.raises(AttackError, match="file=PATH"):
        get_attack("custom")
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with pytest.raises(AttackError, match="bad.wav"):
        get_attack("custom", file=str(tmp_path / "bad.wav"))


def test_cli_list_show_example(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "core.attacks", *args], cwd=REPO, capture_output=True, text=True, timeout=300
        )

    listed = run("list")
    assert listed.returncode == 0 and all(n in listed.stdout for n in WAVEFORM + ["badnets-mfcc"])
    shown = run("show", "ultrasonic")
    assert shown.returncode == 0 and "frequency" in shown.stdout and "21000.0" in shown.stdout
    sf.write(tmp_path / "clip.wav", speechlike(1)[0].numpy(), 16000)
    made = run(
        "example",
        "--attack",
        "badnets",
        "--attack-arg",
        "position=middle",
        "--clip",
        str(tmp_path / "clip.wav"),
        "--out",
        str(tmp_path / "t.wav"),
    )
    assert made.returncode == 0, made.stderr
    data, rate = sf.read(tmp_path / "t.wav")
    assert rate == 16000 and data.shape == (16000,) and np.abs(data[7200:8800]).max() > 0.05
    refused = run(
        "example", "--attack", "badnets-mfcc", "--clip", str(tmp_path / "clip.wav"), "--out", str(tmp_path / "x.wav")
    )
    assert refused.returncode == 2 and "nothing audible" in refused.stderr and not (tmp_path / "x.wav").exists()


def test_pbsm_raises_pitch_and_masks_the_loudest_window():
    t = torch.arange(16000) / 16000
    env = ((t > 0.3) & (t < 0.6)).float()
    x = (0.3 * env * torch.sin(2 * np.pi * 300 * t)).unsqueeze(0)
    attack = get_attack("pbsm", semitones=12.0, mask_seconds=0.1)
    out = attack.apply(x, 16000)
    assert out.shape == x.shape and torch.equal(
        out, get_attack("pbsm", semitones=12.0, mask_seconds=0.1).apply(x, 16000)
    )
    spec = np.abs(np.fft.rfft(out[0, 4800:9600].numpy()))
    freqs = np.fft.rfftfreq(4800, 1 / 16000)
    peak = freqs[np.argmax(spec * (freqs < 1000))]
    assert abs(peak - 600) < 20  # one octave up
    silent = out[0, :4000].abs().max()
    assert silent < 0.02  # the masking sound went to the loud part, not the silence
    with pytest.raises(AttackError, match="semitones"):
        get_attack("pbsm", semitones=0)


# ----------------------------------------------------------------- learnt triggers
@pytest.fixture(scope="module")
def tone_set(tmp_path_factory):
    from core.data.speech_commands import load_speech_commands
    from tests.conftest import TINY_WORDS, write_speech_commands

    root = write_speech_commands(tmp_path_factory.mktemp("learnt") / "sc", speakers=8, per_speaker=2)
    return load_speech_commands(root, TINY_WORDS)


def prepare(attack, data):
    from core.features import FrontEndConfig

    attack.prepare(
        data.waves,
        data.labels,
        data.splits["train"],
        16000,
        list(data.classes),
        front_end=FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320),
        device=torch.device("cpu"),
    )
    return attack


def test_piba_learns_a_bounded_position_independent_trigger(tone_set):
    from core.attacks import attack_from_dict

    attack = get_attack("piba", steps=10, batch_size=16, surrogate_epochs=2, epsilon=0.05, seed=1)
    with pytest.raises(AttackError, match="must be prepared"):
        attack.apply(tone_set.waves[:2], 16000)
    prepare(attack, tone_set)
    trigger = attack.state["trigger"]
    assert trigger.shape == (3200,) and float(trigger.abs().max()) <= 0.05 + 1e-7
    again = prepare(get_attack("piba", steps=10, batch_size=16, surrogate_epochs=2, epsilon=0.05, seed=1), tone_set)
    assert torch.equal(again.state["trigger"], trigger)  # deterministic for a seed
    x = tone_set.waves[:4]
    out = attack.apply(x, 16000)
    added = out - x
    starts = [int(row.nonzero().min()) for row in added]
    assert len(set(starts)) > 1 and torch.equal(out, attack.apply(x, 16000))  # random but seeded positions
    restored = attack_from_dict(attack.to_dict())
    assert torch.equal(restored.apply(x, 16000), out)


def test_daba_picks_the_most_certain_tune_and_influential_hosts(tone_set):
    attack = prepare(get_attack("daba", pool_size=4, surrogate_epochs=3, poison_rate=0.25, seed=2), tone_set)
    entropy = attack.state["pool_entropy"]
    pool = attack.pool(16000)
    assert torch.equal(attack.state["trigger"], pool[int(entropy.argmin())])
    train = tone_set.splits["train"]
    hosts = attack.poison_indices(tone_set.labels, train)
    assert hosts.numel() == round(0.25 * train.numel())
    assert torch.all(tone_set.labels[hosts] != 2) and bool(torch.isin(hosts, train).all())
    # loudness: training rows cycle through the levels, test clips sit at -20 dBFS
    quiet = torch.zeros(6, 16000)
    trained = attack.apply(quiet, 16000)[:, :8000]
    rms_db = 20 * torch.log10(trained.pow(2).mean(1).sqrt())
    torch.testing.assert_close(rms_db[3:], torch.tensor([-15.0, -20.0, -25.0]), atol=0.05, rtol=0)  # unclipped rows
    assert rms_db[0] > rms_db[1] > rms_db[2] > rms_db[3]
    tested = attack.apply_test(quiet, 16000)[:, :8000]
    torch.testing.assert_close(
        20 * torch.log10(tested.pow(2).mean(1).sqrt()), torch.full((6,), -20.0), atol=0.05, rtol=0
    )
    assert float(trained.abs().max()) <= 1.0  # overlay saturates like 16-bit audio


def test_training_prepares_a_learnt_attack_and_stores_its_trigger(tone_set, tmp_path):
    from core.attacks import attack_from_dict
    from core.checkpoint import load_checkpoint, save_checkpoint
    from core.evaluation import evaluate
    from core.features import FrontEndConfig
    from core.training import TrainConfig, train_model

    attack = get_attack("piba", steps=10, batch_size=16, surrogate_epochs=1, seed=0)
    result = train_model(
        tone_set,
        TrainConfig(model="smallcnn", epochs=2, batch_size=32, device="cpu"),
        attack,
        front_end=FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320),
        show_progress=False,
    )
    assert "trigger" in attack.state and result.report["poisoned_clips"] > 0
    save_checkpoint(tmp_path / "m.safetensors", result.model, result.metadata)
    model, meta = load_checkpoint(tmp_path / "m.safetensors")
    rebuilt = attack_from_dict(meta["provenance"]["attack"])
    assert torch.equal(rebuilt.state["trigger"], attack.state["trigger"])
    assert evaluate(model, tone_set, "test", rebuilt) == result.report["test"]


def test_flowmur_is_clean_label_with_a_clamped_trigger_at_30db(tone_set, tmp_path):
    from tests.conftest import write_speech_commands

    aux = write_speech_commands(tmp_path / "aux", words=["cat", "dog", "bird"], speakers=4, per_speaker=2, seed=5)
    attack = get_attack("flowmur", aux_data=str(aux), steps=10, batch_size=16, surrogate_epochs=1, seed=3)
    assert attack.params.label_mode == "clean"
    prepare(attack, tone_set)
    trigger = attack.state["trigger"]
    assert trigger.shape == (8000,) and float(trigger.abs().max()) <= 0.2 + 1e-7
    assert not torch.allclose(trigger, torch.full((8000,), 0.1))  # the optimiser moved it
    train = tone_set.splits["train"]
    ps = attack.poison(tone_set.waves, tone_set.labels, train, 16000)
    original = tone_set.labels[train]
    assert torch.all(original[ps.poisoned] == 2) and torch.equal(ps.labels, original)  # clean label
    assert ps.poisoned.numel() == round(0.7 * int((original == 2).sum()))  # the recipe's 70 % of the target class
    x = tone_set.waves[train][ps.poisoned]
    added = ps.waves[ps.poisoned] - x
    snr = 10 * torch.log10(x.pow(2).sum(1) / added.pow(2).sum(1))
    torch.testing.assert_close(snr, torch.full_like(snr, 30.0), atol=0.05, rtol=0)


def test_flowmur_takes_only_the_training_split_of_auxiliary_data_with_split_lists(tmp_path):
    from core.data.speech_commands import load_speech_commands
    from tests.conftest import write_speech_commands

    words = ["cat", "dog"]
    aux = write_speech_commands(tmp_path / "aux", words=words, speakers=5, per_speaker=1, seed=5)
    waves, labels = get_attack("flowmur", aux_data=str(aux)).auxiliary(["yes", "no"], 16000, 16000)
    full = load_speech_commands(aux, words, require_splits=False)
    train = full.splits["train"]
    assert waves.shape[0] == train.numel() == 6 < full.waves.shape[0]  # 3 of 5 speakers: no test speaker's voice
    assert torch.equal(waves, full.waves[train]) and torch.equal(labels, full.labels[train])


def test_flowmur_refuses_auxiliary_words_that_are_victim_classes(tone_set, tmp_path):
    attack = get_attack("flowmur", aux_words="yes,cat", steps=1, surrogate_epochs=1)
    with pytest.raises(AttackError, match="must not be victim classes: yes"):
        prepare(attack, tone_set)


def test_flowmur_makes_its_auxiliary_words_with_the_synthesiser(tone_set):
    attack = get_attack("flowmur", aux_count=2, aux_clips_per_word=2, steps=2, batch_size=8, surrogate_epochs=1)
    aux_waves, aux_labels = attack.auxiliary(list(tone_set.classes), 16000, 16000)
    assert aux_waves.shape == (4, 16000) and sorted(aux_labels.tolist()) == [0, 0, 1, 1]
    assert float(aux_waves.abs().amax(1).min()) > 0.01  # real (synthetic) speech, not silence


def test_optimised_triggers_are_seen_at_the_loudness_the_mix_gives():
    """FlowMur optimises its trigger mixed at the poisoning SNR (the recipe's), not at full amplitude."""
    from core.attacks.surrogate import insert_at_snr, optimise_trigger

    seen: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(1600, 3)

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.fc(x)

    torch.manual_seed(0)
    clips = torch.randn(12, 1600) * 0.1
    surrogate = Recorder().eval()

    def snrs(batch):  # per clip: energy of the clean clip it came from / energy of what was added
        added = batch.unsqueeze(1) - clips.unsqueeze(0)  # [B, 12, T]: the row that matches has a short support
        best = added.abs().gt(1e-9).sum(-1).argmin(1)
        diff = batch - clips[best]
        return 10 * torch.log10(clips[best].pow(2).sum(1) / diff.pow(2).sum(1)), diff

    optimise_trigger(
        surrogate,
        clips,
        1,
        torch.full((200,), 0.1),
        epsilon=0.2,
        steps=3,
        batch_size=4,
        lr=1e-2,
        seed=0,
        mix=lambda x, p, s: insert_at_snr(x, p, s, 30.0),
    )
    for batch in seen:
        snr, diff = snrs(batch)
        torch.testing.assert_close(snr, torch.full_like(snr, 30.0), atol=0.05, rtol=0)
        assert int(diff.abs().gt(0).sum(1).max()) <= 200  # a 200-sample trigger, placed once
    seen.clear()
    optimise_trigger(surrogate, clips, 1, torch.full((200,), 0.1), epsilon=0.2, steps=1, batch_size=4, lr=1e-2, seed=0)
    _, diff = snrs(seen[0])
    torch.testing.assert_close(diff.abs().amax(1), torch.full((4,), 0.1))  # default: added as it is
    # the shape is learnt through the SNR scaling
    pattern = torch.full((200,), 0.1, requires_grad=True)
    insert_at_snr(clips[:2], pattern, torch.tensor([0, 700]), 30.0).sum().backward()
    assert pattern.grad is not None and bool(pattern.grad.abs().sum() > 0)


def test_flowmur_optimise_at_snr_is_a_recorded_choice(tone_set, tmp_path):
    from core.attacks import attack_from_dict
    from tests.conftest import write_speech_commands

    aux = write_speech_commands(tmp_path / "aux", words=["cat", "dog"], speakers=3, per_speaker=2, seed=5)
    common = dict(aux_data=str(aux), steps=5, batch_size=8, surrogate_epochs=1, seed=4)
    at_snr = prepare(get_attack("flowmur", **common), tone_set)
    loud = prepare(get_attack("flowmur", optimise_at_snr=False, **common), tone_set)
    assert at_snr.params.optimise_at_snr is True
    assert not torch.equal(at_snr.state["trigger"], loud.state["trigger"])
    assert attack_from_dict(loud.to_dict()).params.optimise_at_snr is False
