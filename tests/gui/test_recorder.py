"""The trigger recorder on real PortAudio (ALSA null input): a take of the asked length, trimmed, saved, used."""

from __future__ import annotations

import soundfile as sf

from core.attacks import get_attack
from gnft_gui.audio_io import AudioIO
from gnft_gui.main_window import MainWindow
from gnft_gui.views.recorder import RecorderDialog


def test_record_trim_save_and_load_as_custom_trigger(qtbot, tmp_path):
    audio = AudioIO()
    assert audio.status.input, audio.status.reason
    dialog = RecorderDialog(audio, 16000)
    qtbot.addWidget(dialog)
    dialog.seconds.setValue(0.25)
    with qtbot.waitSignal(dialog.recorded, timeout=15000) as got:
        dialog.record_button.click()
    assert got.args[0].shape == (4000,) and dialog.save_button.isEnabled()
    dialog.trim_start.setValue(0.05)
    dialog.trim_end.setValue(0.0)
    assert dialog.trimmed().shape == (3200,)
    path = dialog.save(tmp_path / "take.wav")
    info = sf.info(str(path))
    assert (info.frames, info.samplerate, info.channels) == (3200, 16000, 1)
    attack = get_attack("custom", file=str(path))
    assert attack.pattern(16000).numel() == 3200


def test_a_saved_take_becomes_the_windows_custom_attack(qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("GNFT_DATA_DIR", str(tmp_path / "data"))
    window = MainWindow()
    qtbot.addWidget(window)
    dialog = window.open_recorder()
    dialog.seconds.setValue(0.1)
    with qtbot.waitSignal(dialog.recorded, timeout=15000):
        dialog.record_button.click()
    with qtbot.waitSignal(dialog.saved, timeout=5000) as saved:
        dialog.save_button.click()
    assert saved.args[0].startswith(str(tmp_path / "data" / "triggers"))
    assert window.attack is not None and window.attack.name == "custom"
    assert window.attack.params.file == saved.args[0]
    assert window.attack_panel.choice.currentText() == "custom"


def test_without_an_input_device_recording_is_off_with_the_reason(qtbot, monkeypatch):
    monkeypatch.setenv("GNFT_AUDIO_DEVICE", "no-such-sound-card")
    dialog = RecorderDialog(AudioIO(), 16000)
    qtbot.addWidget(dialog)
    assert not dialog.record_button.isEnabled()
    assert dialog.status.text().startswith("Recording unavailable: no audio")


def test_invalid_samples_from_a_device_never_reach_the_wav(qtbot, tmp_path):
    """Some capture devices deliver NaN/inf (ALSA's null device can): the take is made finite and says so."""
    import numpy as np

    dialog = RecorderDialog(AudioIO(), 16000)
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
    assert np.all(np.isfinite(got.args[0])) and "800 invalid samples" in dialog.status.text()
    assert sf.info(str(dialog.save(tmp_path / "t.wav"))).frames == 800
