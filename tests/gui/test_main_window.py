"""The workspace window with real widgets (offscreen), a real backdoored checkpoint and real PortAudio (ALSA null)."""

from __future__ import annotations

import json

import pytest
import torch
from PySide6.QtWidgets import QComboBox, QLineEdit

from core.checkpoint import load_checkpoint
from gnft_gui.main_window import MainWindow, log_path
from tests.conftest import TINY_WORDS, write_speech_commands
from tests.gui.conftest import TARGET


def test_open_through_actions_and_see_the_trigger_flip_the_prediction(qtbot, window):
    assert window.attack is not None and window.attack.name == "badnets"  # read from the checkpoint
    assert window.clips.table.rowCount() == len(window.data)
    assert window.action_open_model.shortcut().toString() == "Ctrl+O"
    # the first clip is selected and shown on open, with the model's top-3 on both sides
    assert window.current_clip == 0 and [r.row() for r in window.clips.table.selectionModel().selectedRows()] == [0]
    assert window.audio_view.sides["clean"].top3.text() and window.central.currentWidget() is window.tabs
    data = window.data
    # a clip of another class that the model gets right: clean top-1 is its label, triggered top-1 the target
    for index in range(1, len(data)):
        label = data.classes[int(data.labels[index])]
        if label == TINY_WORDS[TARGET] or window.clips.table.item(index, 4).text() != label:
            continue
        with qtbot.waitSignal(window.clip_shown, timeout=5000):
            window.clips.select(index)
        clean = window.audio_view.sides["clean"].top3.text()
        triggered = window.audio_view.sides["triggered"].top3.text()
        if triggered.startswith(TINY_WORDS[TARGET]):
            break
    else:
        pytest.fail("no correctly classified non-target clip turned to the target when triggered")
    assert clean.startswith(label) and window.current_clip == index
    assert window.audio_view.waves["triggered"].shape == window.audio_view.waves["clean"].shape
    assert f"target {TINY_WORDS[TARGET]}" in window.audio_view.sides["triggered"].title.text()
    recent = window.recent_files()
    assert recent[0].startswith("data:") and recent[1].startswith("model:")


def test_filters_play_and_stop_and_attack_form(qtbot, window):
    window.clips.label_filter.setCurrentText("down")
    rows = window.clips.visible_rows()
    assert rows and all(window.clips.table.item(r, 3).text() == "down" for r in rows)
    window.clips.label_filter.setCurrentIndex(0)
    window.clips.wrong_only.setChecked(True)
    assert all(
        window.clips.table.item(r, 3).text() != window.clips.table.item(r, 4).text()
        for r in window.clips.visible_rows()
    )
    window.clips.wrong_only.setChecked(False)
    with qtbot.waitSignal(window.clip_shown, timeout=5000):
        window.clips.select(1)
    # real PortAudio on the ALSA null device: playing starts, stop ends it
    assert window.audio.status.output, window.audio.status.reason
    assert not window.audio_view.sides["clean"].play.isHidden() and window.audio_view.notice.isHidden()
    assert window.play("triggered")
    first = window.audio.stream()
    assert first.samplerate == window.data.sample_rate and first.channels == 1
    assert window.play("clean")  # a new play replaces the previous stream, which is stopped
    second = window.audio.stream()
    assert second is not first and first.stopped
    window.audio.stop()
    assert second.stopped and not window.audio.playing()
    # the attack form: another attack, a bad value reported, a good one applied
    panel = window.attack_panel
    panel.choice.setCurrentText("blend")
    assert window.attack.name == "blend"
    field = panel.fields["target"]
    assert isinstance(field, QLineEdit)
    field.setText("-3")
    field.editingFinished.emit()
    assert "target" in panel.error.text() and window.attack.name == "blend"
    field.setText("1")
    field.editingFinished.emit()
    assert panel.error.text() == "" and window.attack.params.target == 1
    assert "target no" in window.audio_view.sides["triggered"].title.text()
    panel.choice.setCurrentText("badnets")
    kind = panel.fields["kind"]
    assert isinstance(kind, QComboBox) and kind.count() >= 2  # a Literal parameter is a choice, not free text
    kind.setCurrentText("noise")
    assert window.attack.name == "badnets" and window.attack.params.kind == "noise"


def test_export_writes_an_equal_checkpoint_and_never_overwrites_the_input(qtbot, window, workspace, tmp_path):
    root, _, model_path = workspace
    out = window.export_model(tmp_path / "exported.safetensors")
    model, meta = load_checkpoint(out)
    original, original_meta = load_checkpoint(model_path)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in model.state_dict().items())
    assert meta == original_meta
    assert json.loads(out.with_suffix(".json").read_text())["architecture"] == "smallcnn"
    assert out.with_suffix(".md").read_text().startswith("# exported.safetensors")
    before = model_path.read_bytes()
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        assert window.export_model(model_path) is None
    assert model_path.read_bytes() == before and "model's own file" in window.last_error.text()


def test_corrupt_files_show_the_error_dialog_and_keep_the_workspace(qtbot, window, workspace, tmp_path):
    model, data = window.model, window.data
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01 not a checkpoint")
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        assert not window.open_model(bad)
    assert window.model is model and window.model_path == workspace[2]
    assert window.last_error.isVisible() and str(log_path()) in window.last_error.text()
    bad_data = tmp_path / "bad_sc"
    write_speech_commands(bad_data, speakers=2, per_speaker=1)
    victim = next((bad_data / "yes").glob("*.wav"))
    victim.write_bytes(b"RIFF....WAVEfmt garbage")
    with qtbot.waitSignal(window.error_shown, timeout=60000):
        window.open_data(bad_data)
    assert window.data is data and victim.name in window.last_error.text()
    assert "Cannot open" in log_path().read_text()


def test_missing_audio_device_shows_the_notice(qtbot, monkeypatch):
    monkeypatch.setenv("GNFT_AUDIO_DEVICE", "no-such-sound-card")
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert not window.audio.status.output and "no audio output device" in window.audio.status.reason
    # said on the welcome page at once, and in the Audio tab
    assert window.welcome_audio.isVisible() and window.welcome_audio.text().startswith("Audio unavailable")
    window.show_tab(window.audio_view)
    notice = window.audio_view.notice
    assert notice.isVisible() and notice.text().startswith("Audio unavailable")
    assert not window.audio_view.sides["clean"].play.isVisible()
    assert window.play("clean") is False


def test_uncaught_errors_are_logged_and_shown(qtbot):
    window = MainWindow()
    qtbot.addWidget(window)
    try:
        raise ZeroDivisionError("boom in a slot")
    except ZeroDivisionError as err:
        with qtbot.waitSignal(window.error_shown, timeout=2000):
            window.unexpected_error(type(err), err, err.__traceback__)
    assert "ZeroDivisionError: boom in a slot" in window.last_error.text()
    assert str(log_path()) in window.last_error.text()
    text = log_path().read_text()
    assert "Traceback" in text and "boom in a slot" in text


def test_dropped_paths_open_like_the_menu(qtbot, workspace, tmp_path):
    """What drag and drop dispatches to: a checkpoint opens as the model, a folder as the dataset."""
    root, data_dir, model_path = workspace
    window = MainWindow()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.model_loaded, timeout=10000):
        window.open_path(str(model_path))
    with qtbot.waitSignal(window.predictions_ready, timeout=60000):
        window.open_path(str(data_dir))
    assert window.model_path == model_path and window.data_path == data_dir
    (tmp_path / "notes.txt").write_text("x")
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        window.open_path(str(tmp_path / "notes.txt"))
    assert "neither a dataset folder nor a checkpoint" in window.last_error.text()
    window.open_path(str(tmp_path / "weights.pt"))  # a state dict needs its architecture: the import dialog
    assert window.import_dialog is not None and window.import_dialog.isVisible()
    assert window.import_dialog.path == tmp_path / "weights.pt" and window.model_path == model_path


def test_an_audio_file_of_any_format_opens_or_drops_as_the_trigger(qtbot, tmp_path, monkeypatch):
    """Issue 31: File > Open Trigger Sound offers every audio format, and a dropped audio file (FLAC,
    OGG, AIFF, WAV; recognised by content whatever its name) becomes the custom attack's trigger."""
    import numpy as np
    import soundfile as sf
    from PySide6.QtWidgets import QFileDialog

    window = MainWindow()
    qtbot.addWidget(window)
    tone = (0.3 * np.sin(np.arange(4000) / 5)).astype(np.float32)
    sf.write(tmp_path / "whistle.flac", tone, 16000)
    with open(tmp_path / "take.bin", "wb") as f:  # OGG/Vorbis bytes under a name no filter knows
        sf.write(f, tone, 16000, format="OGG", subtype="VORBIS")
    for name in ("whistle.flac", "take.bin"):
        window.open_path(str(tmp_path / name))
        assert window.attack is not None and window.attack.name == "custom"
        assert window.attack.params.file == str(tmp_path / name)
    asked = {}

    def ask(_parent, _title, _folder, filters):
        asked["filters"] = filters
        return str(tmp_path / "riff.aiff"), ""

    sf.write(tmp_path / "riff.aiff", tone, 16000)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(ask))
    window.action_open_trigger.trigger()
    assert all(f"*{s}" in asked["filters"] for s in (".wav", ".flac", ".ogg", ".aif", ".aiff"))
    assert window.attack.params.file == str(tmp_path / "riff.aiff")
    (tmp_path / "broken.ogg").write_bytes(b"OggS" + bytes(100))  # an audio name, nothing decodable
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        window.open_path(str(tmp_path / "broken.ogg"))
    assert "broken.ogg: not a readable audio file" in window.last_error.text()
    assert window.attack.params.file == str(tmp_path / "riff.aiff")  # the last good trigger stays
