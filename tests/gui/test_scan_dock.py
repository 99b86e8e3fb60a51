"""The Scan dock on a real backdoored checkpoint (offscreen): scan in the worker, read the verdict, cancel,
hear the reconstructed trigger (real PortAudio, ALSA null), use it as the attack, re-scan after a repair."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QObject, QPoint, Qt
from PySide6.QtWidgets import QFileDialog

from core.events import SEARCH_AGAIN_PHASE, StepInfo
from core.scan import DOMAINS, ScanConfig, ScanResult
from core.session import ScanRecord, mix_trigger
from gnft_gui.main_window import SMALL_SCREEN, MainWindow
from gnft_gui.views.scan_panel import DOMAIN_COLOURS, FLAGGED, POOLED, Y_CAP, index_text
from tests.gui.conftest import open_workspace

#: a scan of a few seconds: ten steps, four clips a class a step, half the training split
QUICK = {"clean_ratio": "50", "steps": "10", "batch_size": "4", "success": "50"}


def fill(window: MainWindow, values: dict[str, str]) -> None:
    panel = window.scan_panel
    panel.form.show_advanced(True)
    for name, value in values.items():
        panel.fields[name].setText(value)


def repair_through_the_dock(qtbot, window: MainWindow, values: dict[str, str]):
    """Set the Defense dock's fields, run the defense and wait for it: the pending result."""
    defense = window.defense_panel
    for name, value in values.items():
        defense.fields[name].setText(value)
    defense.run_button.click()
    qtbot.waitUntil(lambda: defense.state == "finished", timeout=120000)
    return window.session.pending


def scan_through_the_dock(qtbot, window: MainWindow, **extra: str):
    fill(window, {**QUICK, **extra})
    with qtbot.waitSignal(window.scan_finished, timeout=120000) as done:
        window.scan_panel.scan_button.click()
    assert done.args[0] is not None, window.scan_panel.eta.text()
    return done.args[0]


def test_the_scan_button_says_what_is_missing_and_the_dock_sits_with_defense_and_attack(qtbot, workspace, monkeypatch):
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(*SMALL_SCREEN)
    window.show()
    docks = window.docks
    assert docks["Scan"] in window.tabifiedDockWidgets(docks["Defense"])
    assert docks["Attack"] in window.tabifiedDockWidgets(docks["Scan"])
    assert "Scan" in {a.text() for a in window.view_menu.actions()}
    button = window.scan_panel.scan_button
    assert not button.isEnabled() and "Open a model and its dataset" in button.toolTip()
    assert window.run_scan() is None and window.last_error is not None  # asked anyway: an error box, no crash
    assert window.session.scan is None
    _root, _data_dir, model_path = workspace
    assert window.open_model(model_path)
    assert not button.isEnabled() and "dataset" in button.toolTip() and "model first" not in button.toolTip()
    open_workspace(qtbot, window, workspace, monkeypatch)
    assert button.isEnabled() and "Open" not in button.toolTip()
    # the primary fields show, the rest folds under Advanced; seed and device are not in the form
    panel = window.scan_panel
    assert set(panel.fields) >= {"clean_ratio", "steps", "threshold", "domains"} and "device" not in panel.fields
    assert panel.form.advanced_box.isHidden() and not panel.fields["steps"].isHidden()
    assert not panel.play_trigger.isEnabled() and panel.play_trigger.toolTip() == "scan first"
    # the dock raised on a 1280x800 screen: the window still fits it, every domain's name shows whole
    docks["Scan"].raise_()
    panel.form.show_advanced(True)
    qtbot.waitUntil(lambda: panel.fields["domains"].isVisible())
    for box in panel.fields["domains"].boxes.values():
        assert box.width() >= box.sizeHint().width(), box.text()
    hint = window.minimumSizeHint()
    assert hint.width() <= SMALL_SCREEN[0] and hint.height() <= SMALL_SCREEN[1], hint


def test_a_scan_shows_its_verdict_bars_table_and_gini(qtbot, window):
    panel = window.scan_panel
    record = scan_through_the_dock(qtbot, window)
    r = record.result
    assert window.session.scan is record and record.of_input and r.config["steps"] == 10
    assert r.config["clean_ratio"] == pytest.approx(0.5) and r.config["batch_size"] == 4
    assert panel.progress.value() == panel.progress.maximum() == 4 * 10 and panel.redraws > 0  # four domains
    verdict = panel.verdict.text()
    assert index_text(r.confidence) in verdict
    if r.backdoored:
        assert verdict.startswith("\u26a0 Backdoored") and f"\u201c{r.suspected_target}\u201d" in verdict
    else:
        assert verdict.startswith("\u2713 No backdoor found")
    threshold = r.config["threshold"]
    assert panel.threshold_line.value() == threshold and panel.threshold_line.isVisible()
    assert panel.threshold_line.label.toPlainText() == f"threshold {threshold:g}"
    # the verdict's series, the domains pooled per class, first; only its bars above the threshold are flagged
    flagged = set(r.suspicious())
    assert flagged == {i for i, a in enumerate(r.pooled) if a > threshold}
    assert panel.bar_heights(POOLED) == pytest.approx([min(a, Y_CAP * threshold) for a in r.pooled])
    assert panel.bar_colours(POOLED) == [FLAGGED if i in flagged else "#2b2b2b" for i in range(len(r.classes))]
    for domain, rec in r.domains.items():
        heights = panel.bar_heights(domain)
        assert heights == pytest.approx([min(a, Y_CAP * threshold) for a in rec["anomaly_index"]])
        assert panel.bar_colours(domain) == [DOMAIN_COLOURS[domain]] * len(r.classes)
    columns = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    assert columns == ["class", POOLED, "feat.", "wave", "spec.", "mix"]  # short, the full name in each tooltip
    assert "in the waveform domain" in panel.table.horizontalHeaderItem(3).toolTip()
    assert panel.table.rowCount() == len(r.classes)
    assert list(panel.legend.entries()) == [POOLED, "features", "waveform", "spectrum", "mix", "flagged"]  # not latent
    for i, name in enumerate(r.classes):
        assert panel.table.item(i, 0).text() == name
        assert panel.table.item(i, 1).text() == index_text(r.pooled[i])
        for c, domain in enumerate(["features", "waveform", "spectrum", "mix"], start=2):
            assert panel.table.item(i, c).text() == index_text(r.domains[domain]["anomaly_index"][i])
    top = max(r.gradient_norm_gini.values())
    assert f"over {len(r.gradient_norm_gini)} layer(s)" in panel.gini.text() and f"{top:.2f}" in panel.gini.text()
    assert all(layer in panel.gini.toolTip() for layer in r.gradient_norm_gini)
    # the class offered first: the suspected target, else the most anomalous one; the table follows the combo
    expected = r.classes.index(r.suspected_target) if r.backdoored else None
    if expected is not None:
        assert panel.selected_class() == expected
    panel.table.selectRow(1)
    assert panel.selected_class() == 1
    assert panel.compare.isHidden() and "as opened" in panel.detail.text()
    assert panel.scan_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_flagged_classes_are_highlighted_and_an_off_scale_index_is_written_at_the_top(qtbot):
    from gnft_gui.views.scan_panel import ScanPanel

    panel = ScanPanel()
    qtbot.addWidget(panel)
    domain = {
        "sizes": [0.5, 0.02, 0.4, 0.45],
        "success": [0.9, 1.0, 0.95, 0.9],
        "anomaly_index": [0.0, 56881.5, 0.7, 3.5],
    }
    plain = {**domain, "anomaly_index": [0.0, 1.2, 0.0, 0.3]}
    report = {
        "backdoored": False,  # as an old report may say: the verdict is made again from the domains
        "suspected_target": None,
        "confidence": 0.0,
        "classes": ["yes", "no", "up", "down"],
        "domains": {"features": plain, "waveform": domain},
        "gradient_norm_gini": {"classifier.conv1": 0.25, "classifier.fc": 0.75},
        "clean_clips": 40,
        "seconds": 1.5,
        "config": {"threshold": 2.0},
    }
    result = ScanResult.from_report(report, torch.zeros(4, 160))
    # pooled: (1.2 + 56881.5) / sqrt 2 for "no", (0.3 + 3.5) / sqrt 2 = 2.69 for "down": both above 2; "up" 0.49
    assert result.backdoored and result.suspected_target == "no" and result.suspicious() == [1, 3]
    assert result.pooled == pytest.approx([0.0, 40222.143, 0.495, 2.687], abs=1e-3)
    panel.show_record(ScanRecord(result, version=1, repairs=0, model_name="m.safetensors"))
    assert panel.verdict.text() == (
        "\u26a0 Backdoored: suspected target \u201cno\u201d, confidence 40,222 (anomaly index pooled over 2 "
        "domains; flagged above 2, 40,219 above the next class; also above it: \u201cdown\u201d 2.69 (listen to "
        "each class's trigger))"
    )
    assert panel.bar_colours(POOLED) == ["#2b2b2b", FLAGGED, "#2b2b2b", FLAGGED]
    assert panel.bar_colours("waveform") == [DOMAIN_COLOURS["waveform"]] * 4  # a domain's bars: its own colour
    assert panel.bar_heights("waveform") == pytest.approx([0.0, Y_CAP * 2.0, 0.7, 3.5])  # cut at the axis top
    assert [t.toPlainText() for t in panel.off_scale] == ["40,222", "56,882"]
    assert panel.table.item(1, 1).text() == "40,222" and panel.table.item(1, 1).font().bold()
    assert panel.table.item(1, 3).text() == "56,882" and not panel.table.item(1, 3).font().bold()
    assert not panel.table.item(2, 1).font().bold() and panel.table.item(3, 1).foreground().color().name() == FLAGGED
    assert panel.selected_class() == 1 and panel.class_choice.currentText() == "no \u2014 flagged"
    assert "Largest index per domain: features no 1.20; waveform no 56,882." in panel.detail.text()
    assert (
        panel.gini.text()
        == "Gradient-norm Gini over 2 layer(s): mean 0.50, range 0.25\u20130.75 (highest: classifier.fc)"
    )
    assert panel.use_button.isEnabled() and panel.use_button.toolTip().startswith("make this class")
    # nothing flagged: the verdict reads so
    quiet = ScanResult.from_report({**report, "domains": {"features": plain}}, torch.zeros(4, 160))
    assert not quiet.backdoored and quiet.confidence == pytest.approx(1.2)  # one domain: its own index
    panel.show_record(ScanRecord(quiet, version=2, repairs=1, model_name="m.safetensors"), current=False)
    assert panel.verdict.text() == "\u2713 No backdoor found: highest anomaly index 1.20, not above 2"
    assert panel.off_scale == [] and panel.bar_heights("waveform") == [] and panel.bar_heights(POOLED) == []
    assert panel.bar_colours("features") == [DOMAIN_COLOURS["features"]] * 4 and panel.selected_class() == 1
    assert "after 1 accepted repair" in panel.detail.text() and "scan again" in panel.detail.text()
    # above the threshold but close to the next class: not flagged, and the line says why
    close = {**domain, "anomaly_index": [0.0, 3.5, 0.0, 3.1]}
    near = ScanResult.from_report({**report, "domains": {"waveform": close}}, torch.zeros(4, 160))
    assert not near.backdoored and near.suspicious() == [] and near.most_anomalous() == 1
    panel.show_record(ScanRecord(near, version=3, repairs=1, model_name="m.safetensors"), current=False)
    assert panel.verdict.text() == (
        "\u2713 No backdoor found: \u201cno\u201d has anomaly index 3.50, above 2, but stands only 0.40 above "
        "\u201cdown\u201d (a flag needs 1.25: classes equally easy to reach are not a planted trigger)"
    )
    assert FLAGGED not in panel.bar_colours("waveform") + panel.bar_colours(POOLED)


def test_cancel_leaves_the_previous_scan_as_it_was(qtbot, window):
    panel = window.scan_panel
    first = scan_through_the_dock(qtbot, window)
    shown = (panel.verdict.text(), panel.table.item(0, 1).text(), panel.gini.text(), panel.bar_heights("waveform"))
    attack = window.attack
    fill(window, {"steps": "100000"})
    panel.scan_button.click()
    task = window.scan_task
    assert task is not None and not panel.scan_button.isEnabled() and panel.cancel_button.isEnabled()
    with qtbot.waitSignal(task.observer.stepped, timeout=60000):
        pass
    model = window.model
    assert window.run_defense("ft", window.defense_panel.config()) is None  # no repair under a running scan
    assert window.defense_task is None and window.model is model
    with qtbot.waitSignal(window.scan_finished, timeout=60000) as done:
        panel.cancel_button.click()
    assert done.args == [None] and window.scan_task is None
    assert window.session.scan is first and panel.record is first and window.attack is attack
    again = (panel.verdict.text(), panel.table.item(0, 1).text(), panel.gini.text(), panel.bar_heights("waveform"))
    assert again == shown and "cancelled" in panel.eta.text()
    assert panel.scan_button.isEnabled() and panel.progress.isHidden()


def test_the_trigger_plays_alone_and_on_the_selected_clip(qtbot, window, monkeypatch):
    if not window.audio.status.output:
        pytest.skip(f"no audio output here (PortAudio or a device missing): {window.audio.status.reason}")
    record = scan_through_the_dock(qtbot, window)
    panel = window.scan_panel
    played = []
    real_play = window.audio.play

    def recording_play(wave, sample_rate):  # what reaches the real sounddevice path, recorded on the way
        played.append((torch.as_tensor(wave).clone(), sample_rate))
        return real_play(wave, sample_rate)

    monkeypatch.setattr(window.audio, "play", recording_play)
    k = 2
    panel.select_class(k)
    assert panel.play_trigger.isEnabled()
    panel.play_trigger.click()
    stream = window.audio.stream()
    assert stream is not None and stream.samplerate == record.result.sample_rate and stream.channels == 1
    assert torch.equal(played[-1][0], record.result.triggers[k])
    with qtbot.waitSignal(window.clip_shown, timeout=5000):
        window.clips.select(3)
    assert window.clip_name(3) in panel.clip_label.text() and panel.play_mixed.isEnabled()
    panel.play_mixed.click()
    expected = mix_trigger(window.data.waves[3], record.result.triggers[k])
    assert torch.equal(played[-1][0], expected) and float(expected.abs().max()) <= 1.0
    assert window.audio.stream() is not stream and stream.stopped  # the new play replaced the first
    window.audio.stop()
    assert not window.audio.playing()


def test_use_as_attack_sets_the_session_attack_to_the_reconstructed_trigger(qtbot, window, tmp_path):
    record = scan_through_the_dock(qtbot, window)
    panel = window.scan_panel
    k = 1
    panel.select_class(k)
    panel.use_button.click()
    attack = window.attack
    assert attack is window.session.attack and attack.name == "custom" and attack.params.target == k
    assert torch.equal(attack.pattern(window.data.sample_rate), record.result.triggers[k])
    assert Path(attack.params.file).parent == tmp_path / "data" / "triggers"  # $GNFT_DATA_DIR/triggers
    assert window.session.attack_source == "chosen in the application"
    # the Attack dock shows it, and the triggered side of the clip is the clip with this trigger
    assert window.attack_panel.choice.currentText() == "custom"
    assert window.attack_panel.fields["target"].text() == str(k)
    target = record.result.classes[k]
    assert f"target {target}" in window.audio_view.sides["triggered"].title.text()
    clip = window.data.waves[window.current_clip]
    assert torch.allclose(
        torch.as_tensor(window.audio_view.waves["triggered"]), clip + record.result.triggers[k], atol=1e-6
    )


def test_a_scan_without_an_audio_domain_has_no_trigger_to_play_or_use(qtbot, window):
    panel = window.scan_panel
    fill(window, QUICK)
    boxes = panel.fields["domains"].boxes  # a check box per domain, the defaults ticked
    assert list(boxes) == list(DOMAINS) and [w for w, b in boxes.items() if b.isChecked()] == ScanConfig().domain_list()
    for word in ("waveform", "mix", "latent"):  # as a person does it: untick the audio domains, tick latent
        qtbot.mouseClick(boxes[word], Qt.MouseButton.LeftButton, pos=QPoint(4, boxes[word].height() // 2))
    assert panel.fields["domains"].text() == "features,latent,spectrum"
    with qtbot.waitSignal(window.scan_finished, timeout=120000) as done:
        panel.scan_button.click()
    record = done.args[0]
    assert record is not None and record.result.config["domains"] == "features,latent,spectrum"
    assert [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())] == [
        "class",
        POOLED,
        "feat.",
        "latent",
        "spec.",
    ]
    assert panel.bar_heights("waveform") == []
    threshold = record.result.config["threshold"]
    for domain in ("latent", "spectrum"):
        index = record.result.domains[domain]["anomaly_index"]
        assert panel.bar_heights(domain) == pytest.approx([min(a, Y_CAP * threshold) for a in index])
    assert list(panel.legend.entries()) == [POOLED, "features", "latent", "spectrum", "flagged"]  # those searched
    for button in (panel.play_trigger, panel.play_mixed, panel.use_button):
        assert not button.isEnabled() and "searched no audio domain" in button.toolTip()


def test_rescan_after_an_accepted_repair_shows_before_and_after(qtbot, window):
    panel = window.scan_panel
    before = scan_through_the_dock(qtbot, window)
    defense = window.defense_panel
    # no scan of its own after the repair (rescan_passes 0; with it, that scan is shown: test_rescan_passes.py)
    values = {"clean_ratio": "50", "epochs": "1", "batch_size": "32", "eval_every": "1", "rescan_passes": "0"}
    repair_through_the_dock(qtbot, window, values)
    with qtbot.waitSignal(window.predictions_ready, timeout=60000):
        defense.accept_button.click()
    # the scan shown is of the model before the repair, and says so; nothing to compare yet
    assert panel.record is before and "scan again" in panel.detail.text() and panel.compare.isHidden()
    after = scan_through_the_dock(qtbot, window)
    assert not after.of_input and window.session.scan_comparison() == (before, after)
    assert not panel.compare.isHidden() and "after 1 accepted repair" in panel.detail.text()
    headers = [panel.compare.horizontalHeaderItem(c).text() for c in range(3)]
    assert headers == ["", "as opened", "after repair"]
    target = before.result.most_anomalous()
    assert panel.compare.item(3, 0).text() == f"ASR of {before.result.classes[target]}'s trigger"
    assert before.input_trigger_asr is not None and after.input_trigger_asr is not None
    for col, rec in ((1, before), (2, after)):
        r = rec.result
        assert panel.compare.item(3, col).text() == f"{100 * rec.input_trigger_asr:.1f} %"
        assert panel.compare.item(0, col).text() == ("Backdoored" if r.backdoored else "No backdoor")
        assert panel.compare.item(1, col).text() == (r.suspected_target or "-")
        assert panel.compare.item(2, col).text() == index_text(r.confidence)


def test_a_repair_that_unlearns_scans_first_and_the_dock_shows_that_scan(qtbot, window):
    fill(window, QUICK)  # the repair's scan takes the Scan dock's settings
    defense, panel = window.defense_panel, window.scan_panel
    values = (("clean_ratio", "50"), ("epochs", "1"), ("batch_size", "32"), ("eval_every", "1"), ("unlearn", "30"))
    for name, value in values:
        defense.fields[name].setText(value)
    scanning: list[str] = []
    defense.progress.valueChanged.connect(
        lambda _v: scanning.append(defense.eta.text()) if "Scanning for the trigger" in defense.eta.text() else None
    )
    defense.run_button.click()
    qtbot.waitUntil(lambda: defense.state == "finished", timeout=120000)
    result = window.session.pending
    assert result is not None and result.scan is not None and result.details["unlearn"]["source"] == "scan"
    assert scanning and scanning[-1].startswith("Scanning for the trigger to unlearn (mix, 4 of 4): step ")
    assert any(text.startswith("Scanning for the trigger to unlearn (features, 1 of 4): step ") for text in scanning)
    steps = result.config.epochs * -(-result.clean_clips // result.config.batch_size)
    assert len(defense.loss_curve.getData()[0]) == steps  # the fine-tuning's losses only, not the scan's
    assert window.session.scan is not None and window.session.scan.result is result.scan
    assert panel.record is window.session.scan  # the dock shows the scan the repair made


def test_a_repairs_scan_reads_no_more_clean_clips_than_the_repair(qtbot, window):
    fill(window, QUICK)  # the dock scans half the training split; the repair has a quarter
    values = {"clean_ratio": "25", "epochs": "1", "batch_size": "32", "eval_every": "1", "unlearn": "30"}
    result = repair_through_the_dock(qtbot, window, values)
    assert result is not None and result.scan is not None
    assert result.scan.config["clean_ratio"] == pytest.approx(0.25) and result.scan.config["steps"] == 10
    assert result.scan.clean_clips == result.clean_clips  # the repair's own clips, the dock's other settings
    assert window.scan_panel.config().clean_ratio == pytest.approx(0.5)  # the dock's field is left as the user set it


def test_a_repair_searching_its_trigger_again_says_so_and_keeps_the_runs_bar(qtbot, window):
    fill(window, QUICK)  # the repair's scan, and its searches mid-run, take the Scan dock's settings
    defense = window.defense_panel
    values = (("clean_ratio", "50"), ("epochs", "3"), ("batch_size", "32"), ("eval_every", "1"), ("unlearn", "30"))
    for name, value in (*values, ("unlearn_refresh", "1")):
        defense.fields[name].setText(value)
    seen: list[tuple[str, int, int]] = []

    class Look(QObject):  # a receiver in the GUI thread: its slot is queued after the dock's, in order
        def look(self, info: StepInfo) -> None:
            if info.phase.startswith(SEARCH_AGAIN_PHASE):
                seen.append((defense.eta.text(), defense.progress.value(), defense.progress.maximum()))

    looker = Look()
    defense.run_button.click()
    window.defense_task.observer.stepped.connect(looker.look)
    qtbot.waitUntil(lambda: defense.state == "finished", timeout=120000)
    result = window.session.pending
    assert result is not None
    assert [(s["epoch"], s["triggers"], len(s["found"])) for s in result.details["searched_again"]] == [
        (1, 1, 1),
        (2, 1, 1),
    ]
    steps = result.config.epochs * -(-result.clean_clips // result.config.batch_size)
    assert (
        seen
        and seen[-1][0]
        == f"Searching the trigger again on the model being repaired: step {QUICK['steps']}/{QUICK['steps']}"
    )
    assert all(maximum == steps and 0 < value < steps for _, value, maximum in seen)  # the run's bar, mid-run
    assert len(defense.loss_curve.getData()[0]) == steps  # the fine-tuning's losses only, not the searches'


def test_a_scan_of_every_domain_fits_the_dock_on_a_1280x800_screen(qtbot):
    """Seven series (pooled, five domains, flagged): the legend wraps, so the dock's form is not wider than the
    dock (nothing cut at its right edge) and every searched domain has bars and a legend entry."""
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(*SMALL_SCREEN)
    window.show()
    window.docks["Scan"].raise_()
    classes = ["yes", "no", "up", "down", "left", "right", "stop", "start", "enable", "disable"]
    index = [0.1 * (i % 4) for i in range(len(classes))]
    domains = {d: {"sizes": [0.1] * len(classes), "success": [1.0] * len(classes), "anomaly_index": index}
               for d in DOMAINS}  # fmt: skip
    report = {
        "backdoored": False, "suspected_target": None, "confidence": 0.0, "classes": classes, "domains": domains,
        "gradient_norm_gini": {}, "clean_clips": 10, "seconds": 1.0, "config": {"threshold": 3.0},
    }  # fmt: skip
    result = ScanResult.from_report(report, torch.zeros(len(classes), 16000))
    panel = window.scan_panel
    panel.show_record(ScanRecord(result, 0, 0, "every domain"))
    qtbot.waitUntil(lambda: panel.bar_heights("mix") != [])
    assert list(panel.legend.entries()) == [POOLED, *DOMAINS, "flagged"]
    scroll = panel.parentWidget().parentWidget()  # the dock's scroll area (its viewport, then the area)
    assert panel.minimumSizeHint().width() <= scroll.viewport().width()  # one row of seven did not fit
    qtbot.waitUntil(lambda: panel.width() <= scroll.viewport().width())  # once the scroll area has laid it out
    panel.views.setCurrentWidget(panel.table)
    header = panel.table.horizontalHeader()
    qtbot.waitUntil(lambda: header.sectionSize(0) > 0)
    for c in range(panel.table.columnCount()):  # every column title readable whole, not cut at its edges
        text = panel.table.horizontalHeaderItem(c).text()
        assert header.fontMetrics().horizontalAdvance(text) + 8 <= header.sectionSize(c), text


def reference_report(path: Path, classes: list[str], config: ScanConfig, **changes) -> str:
    """A scan report of a clean model (another file) of ``classes`` made with ``config``: every class about as
    easy to reach (nothing flagged), as a clean reference's is."""
    sizes = [0.1 * (1 + 0.05 * i) for i in range(len(classes))]
    domains = {d: {"sizes": sizes, "anomaly_index": [0.0] * len(classes)} for d in config.domain_list()}
    report = {"model": str(path.with_suffix(".safetensors")), "classes": classes, "config": asdict(config)}
    path.write_text(json.dumps({**report, "domains": domains, **changes}))
    return str(path)


def test_a_clean_reference_is_chosen_beside_its_field_checked_before_the_scan_and_said_in_the_result(
    qtbot, window, monkeypatch, tmp_path
):
    panel = window.scan_panel
    fill(window, QUICK)
    # the field sits under Advanced with its Choose… button in the same row; the dialog's picks fill it
    button = panel.choose_reference
    assert panel.form.advanced_box.isAncestorOf(button) and panel.form.advanced_box.isAncestorOf(
        panel.fields["reference"]
    )
    assert panel.fields["reference"].text() == "" and panel.reference_count.isHidden()
    help_text = panel.fields["reference"].toolTip()
    classes = list(window.session.meta["classes"])
    good = reference_report(tmp_path / "clean_a.json", classes, panel.config())
    other = reference_report(tmp_path / "clean_b.json", classes[::-1], panel.config())
    picked = [good, other]
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *a, **k: (picked, "")))
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert panel.fields["reference"].text() == f"{good},{other}" and panel.config().reference == f"{good},{other}"
    # long paths show truncated in the line: how many it names stands beside it, each one in its tooltip
    assert panel.reference_count.text() == "2 scan(s)" and not panel.reference_count.isHidden()
    assert panel.fields["reference"].toolTip().splitlines()[1:] == [good, other]
    assert panel.fields["reference"].cursorPosition() == 0
    # one of them is of other classes: said under the form, no scan starts, nothing changes
    panel.scan_button.click()
    assert window.scan_task is None and window.session.scan is None
    assert not panel.error.isHidden() and panel.error.text().startswith(f"Clean reference scans: {other}")
    assert "classes" in panel.error.text()
    # the one that fits: the scan is read against it, and the dock says so
    panel.set_reference([good])
    record = scan_through_the_dock(qtbot, window)
    assert panel.error.isHidden()
    ref = record.result.reference
    assert ref is not None and ref["reports"] == [good] and ref["scans"] == 1 and ref["models"] == 1
    assert all("plain_anomaly_index" in rec for rec in record.result.domains.values())
    assert "Read against a clean reference: 1 scan(s) of 1 clean model(s)" in panel.detail.text()
    assert "against 1 clean model(s)" in panel.verdict.text()
    folder = tmp_path / "refs"  # a folder typed in counts as the reports in it
    folder.mkdir()
    for path in (good, other):
        (folder / Path(path).name).write_text(Path(path).read_text())
    panel.fields["reference"].setText(str(folder))
    assert panel.reference_count.text() == "2 scan(s)"
    listed = [str(folder / "clean_a.json"), str(folder / "clean_b.json")]
    assert panel.fields["reference"].toolTip().splitlines()[1:] == listed
    panel.fields["reference"].clear()  # emptied by hand: the count goes, the field's help comes back
    assert panel.reference_count.isHidden() and panel.fields["reference"].toolTip() == help_text
