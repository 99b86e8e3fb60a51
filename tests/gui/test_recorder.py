"""The trigger recorder on real PortAudio (ALSA null input): a take of the asked length, judged (real
recording, silence or invalid input), trimmed, saved, used."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from core.attacks import get_attack
from gnft_gui.audio_io import AudioIO
from gnft_gui.main_window import MainWindow
from gnft_gui.views.recorder import (
    SILENCE_PEAK_DBFS,
    RecorderDialog,
    assess_take,
    format_db,
    meter_reading,
)

RATE = 16000


def sine(seconds: float, peak_dbfs: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# -- the pure judgement, on arrays ------------------------------------------------------------------


def test_zeros_are_silence_at_minus_infinity_never_0_dbfs():
    a = assess_take(np.zeros(RATE, np.float32), RATE)
    assert a.kind == "silent" and not a.usable and a.invalid == 0
    assert a.peak_dbfs == -math.inf and a.rms_dbfs == -math.inf
    assert "only silence" in a.message and "check the microphone" in a.message and "0.0 dBFS" not in a.message


def test_nans_are_counted_and_kept_out_of_the_level():
    take = sine(1.0, -20.0)
    take[::2] = np.nan  # half the samples invalid
    take[1] = np.inf
    a = assess_take(take, RATE)
    assert a.kind == "invalid" and not a.usable
    assert a.invalid == a.nonfinite == RATE // 2 + 1
    assert f"{RATE // 2 + 1} of {RATE} samples were invalid (NaN/inf)" in a.message
    assert "did not deliver audio" in a.message
    assert math.isfinite(a.peak_dbfs) and a.peak_dbfs <= -20.0 + 0.1  # measured on the finite samples only


def test_a_few_nans_in_a_real_take_are_excluded_and_mentioned():
    take = sine(1.0, -20.0)
    take[[100, 5000, 9000]] = np.nan  # 3 in 16000: under 1 in 1000
    a = assess_take(take, RATE)
    assert a.kind == "ok" and a.invalid == 3 and abs(a.peak_dbfs + 20.0) < 0.1
    assert "3 invalid samples were set to silence" in a.message


def test_garbage_far_beyond_full_scale_is_invalid_not_a_loud_take():
    take = np.zeros(4000, np.float32)
    take[::300] = 1.5e36  # what ALSA's null capture device delivers from uninitialised memory
    a = assess_take(take, RATE)
    assert a.kind == "invalid" and a.nonfinite == 0 and a.invalid == 14
    assert "14 of 4000 samples were invalid (far beyond full scale)" in a.message


def test_uninitialised_memory_is_invalid_even_when_it_looks_like_a_level():
    """What ALSA's null device was measured to hand over: impossibly tiny values between plausible ones."""
    take = np.zeros(4000, np.float32)
    take[0::2] = 4.56e-41  # a subnormal: below any converter's step
    take[1::2] = np.linspace(0.2919, 0.2930, 2000)  # would read as a -10.7 dBFS "recording"
    a = assess_take(take, RATE)
    assert a.kind == "invalid" and a.invalid == 2000 and a.nonfinite == 0
    assert a.message.startswith("2000 of 4000 samples were invalid (impossibly tiny)")
    real = sine(0.25, -20.0)
    real[:40] = 1e-20  # a few such values in a real take (a DSP tail) do not condemn it
    assert assess_take(real, RATE).kind == "ok"


def test_a_minus_20_dbfs_sine_is_a_real_recording():
    a = assess_take(sine(0.5, -20.0), RATE)
    assert a.kind == "ok" and a.usable and a.invalid == 0
    assert abs(a.peak_dbfs - (-20.0)) < 0.1
    assert abs(a.rms_dbfs - (-23.01)) < 0.1  # a sine's RMS is 3.01 dB under its peak
    assert a.message == "Recorded 0.50 s: peak -20.0 dBFS, RMS -23.0 dBFS"


def test_very_quiet_noise_is_silence():
    noise = np.random.default_rng(0).normal(0.0, 10 ** (-85 / 20), RATE).astype(np.float32)  # RMS -85 dBFS
    a = assess_take(noise, RATE)
    assert a.kind == "silent" and a.peak_dbfs < SILENCE_PEAK_DBFS and abs(a.rms_dbfs + 85) < 0.5
    assert "only silence" in a.message and "-85." in a.message


def test_an_empty_take_is_empty():
    a = assess_take(np.zeros(0, np.float32), RATE)
    assert a.kind == "empty" and not a.usable


@pytest.mark.parametrize(
    "samples, text",
    [
        (np.zeros(800, np.float32), "silent: peak below -60 dBFS"),
        (np.full(800, np.nan, np.float32), "invalid input (NaN/inf)"),
        (sine(0.05, -12.0), "peak -12.0 dBFS"),
    ],
)
def test_the_meter_reads_the_true_peak_or_says_silent_or_invalid(samples, text):
    assert meter_reading(samples, RATE)[1] == text


# -- the dialog -------------------------------------------------------------------------------------


def meter_text(dialog: RecorderDialog) -> str:
    return dialog.level.format()


def test_record_trim_save_and_load_as_custom_trigger(qtbot, tmp_path):
    audio = AudioIO()
    assert audio.status.input, audio.status.reason
    dialog = RecorderDialog(audio, RATE)
    qtbot.addWidget(dialog)
    dialog.seconds.setValue(0.25)
    with qtbot.waitSignal(dialog.recorded, timeout=15000) as got:
        dialog.record_button.click()
    assert got.args[0].shape == (4000,) and np.all(np.isfinite(got.args[0]))
    # ALSA's null device hands over whatever is in its buffer (zeros, or stale memory): usually silence or
    # invalid samples, now and then something audio-like; whatever it was, the dialog says what it judged
    # and Save follows that judgement
    assert dialog.status.text() == dialog.assessment.message
    assert dialog.save_button.isEnabled() == dialog.assessment.usable
    if not dialog.assessment.usable:
        assert dialog.save_button.toolTip() == f"Cannot save: {dialog.assessment.message}"
        assert "0.0 dBFS" not in dialog.status.text() and dialog.save(tmp_path / "silence.wav") is None
        assert not (tmp_path / "silence.wav").exists()
    # a real take, handed in where a finished recording is
    with qtbot.waitSignal(dialog.recorded, timeout=2000):
        dialog.finish_take(sine(0.25, -20.0))
    assert dialog.save_button.isEnabled() and dialog.status.text().startswith("Recorded 0.25 s: peak -20.0 dBFS")
    dialog.trim_start.setValue(0.05)
    dialog.trim_end.setValue(0.0)
    assert dialog.trimmed().shape == (3200,)
    assert dialog.status.text().startswith("After trimming: recorded 0.20 s")
    path = dialog.save(tmp_path / "take.wav")
    info = sf.info(str(path))
    assert (info.frames, info.samplerate, info.channels) == (3200, RATE, 1)
    attack = get_attack("custom", file=str(path))
    assert attack.pattern(RATE).numel() == 3200


def test_silence_and_a_real_take_through_the_dialog(qtbot, tmp_path):
    dialog = RecorderDialog(AudioIO(), RATE)
    qtbot.addWidget(dialog)
    assert not dialog.save_button.isEnabled() and meter_text(dialog) == "not recording"
    with qtbot.waitSignal(dialog.recorded, timeout=2000):
        dialog.finish_take(np.zeros(RATE, np.float32))
    assert dialog.assessment.kind == "silent"
    assert dialog.status.text() == (
        "The input gave only silence (every sample is zero): check the microphone / input device"
    )
    assert not dialog.save_button.isEnabled() and "only silence" in dialog.save_button.toolTip()
    assert meter_text(dialog) == "take: silent (peak -inf dBFS)"
    with qtbot.waitSignal(dialog.recorded, timeout=2000):
        dialog.finish_take(sine(1.0, -20.0))
    assert dialog.assessment.kind == "ok" and dialog.save_button.isEnabled()
    assert dialog.status.text() == "Recorded 1.00 s: peak -20.0 dBFS, RMS -23.0 dBFS"
    assert meter_text(dialog) == "take: peak -20.0 dBFS" and dialog.level.value() == -200
    # trimming the sound away leaves silence again: Save goes off with the reason
    quiet_end = np.concatenate([sine(0.5, -20.0), np.zeros(RATE // 2, np.float32)])
    dialog.finish_take(quiet_end)
    assert dialog.save_button.isEnabled()
    dialog.trim_start.setValue(0.5)
    assert not dialog.save_button.isEnabled()
    assert dialog.status.text().startswith("After trimming: the input gave only silence")


def test_a_saved_take_becomes_the_windows_custom_attack(qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("GNFT_DATA_DIR", str(tmp_path / "data"))
    window = MainWindow()
    qtbot.addWidget(window)
    dialog = window.open_recorder()
    dialog.seconds.setValue(0.1)
    with qtbot.waitSignal(dialog.recorded, timeout=15000):
        dialog.record_button.click()
    # the null device's stale buffer: Save only if it was judged a real take (it usually is not)
    assert dialog.save_button.isEnabled() == dialog.assessment.usable
    dialog.finish_take(sine(0.1, -12.0))  # as if a microphone had recorded a tone
    with qtbot.waitSignal(dialog.saved, timeout=5000) as saved:
        dialog.save_button.click()
    assert saved.args[0].startswith(str(tmp_path / "data" / "triggers"))
    assert window.attack is not None and window.attack.name == "custom"
    assert window.attack.params.file == saved.args[0]
    assert window.attack_panel.choice.currentText() == "custom"


def test_without_an_input_device_recording_is_off_with_the_reason(qtbot, monkeypatch):
    monkeypatch.setenv("GNFT_AUDIO_DEVICE", "no-such-sound-card")
    dialog = RecorderDialog(AudioIO(), RATE)
    qtbot.addWidget(dialog)
    assert not dialog.record_button.isEnabled()
    assert dialog.status.text().startswith("Recording unavailable: no audio")


def test_invalid_samples_from_a_device_never_reach_the_wav(qtbot, tmp_path):
    """Some capture devices deliver NaN/inf (ALSA's null device can): the take is made finite, says so and
    cannot be saved."""
    dialog = RecorderDialog(AudioIO(), RATE)
    qtbot.addWidget(dialog)
    dialog.seconds.setValue(0.05)
    garbage = np.full(800, np.nan, dtype=np.float32)
    garbage[:10] = np.inf
    dialog._chunks = [garbage]  # what the queue would hold after a bad device's callback

    class Done:  # a recorder whose stream has ended and whose queue is empty
        def drain(self):
            return []

        def stop(self):
            pass

    dialog.recorder = Done()
    with qtbot.waitSignal(dialog.recorded, timeout=2000) as got:
        dialog._drain()
    assert np.all(np.isfinite(got.args[0])) and np.all(got.args[0] == 0.0)
    assert dialog.status.text() == (
        "800 of 800 samples were invalid (NaN/inf): the device did not deliver audio; choose another input device"
    )
    assert not dialog.save_button.isEnabled() and meter_text(dialog) == "take: invalid input"
    assert dialog.save(tmp_path / "t.wav") is None and not (tmp_path / "t.wav").exists()
    assert dialog.status.text().startswith("Not saved: 800 of 800 samples were invalid")


def test_the_live_meter_shows_the_null_devices_real_level(qtbot):
    """While recording, the meter shows what arrives: silent or invalid for ALSA's null device, never a
    working-looking level stuck at a floor."""
    dialog = RecorderDialog(AudioIO(), RATE)
    qtbot.addWidget(dialog)
    dialog.seconds.setValue(0.5)
    shown: list[tuple[float, str]] = []
    show = dialog._show_level
    dialog._show_level = lambda peak, text: (shown.append((peak, text)), show(peak, text))
    with qtbot.waitSignal(dialog.recorded, timeout=15000):
        dialog.record_button.click()
    live = [text for _peak, text in shown if not text.startswith("take:")]
    assert live, shown  # the meter was updated while the blocks came in
    # each reading is what arrived: silent, invalid, or (when the null device's stale buffer looks like
    # audio) its true peak, and the bar stands where the text says, never at a floor that looks alive
    for peak, text in shown:
        if text.startswith("peak "):
            assert text == f"peak {peak:.1f} dBFS" and peak >= -60, (peak, text)
        elif not text.startswith("take:"):
            assert text in ("silent: peak below -60 dBFS", "invalid input", "invalid input (NaN/inf)"), text
    kind = dialog.assessment.kind
    if kind in ("invalid", "silent"):
        assert shown[-1][1] == (
            "take: invalid input"
            if kind == "invalid"
            else f"take: silent (peak {format_db(dialog.assessment.peak_dbfs)} dBFS)"
        )
    else:
        assert shown[-1][1].startswith("take: peak ")
