"""A new user's first half hour, at 1280x800: open the demo, pick a clip, run the default
(Recommended) defense to the end, Accept, Export, and the exported model measures the same."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog

from core.checkpoint import load_checkpoint
from core.evaluation import evaluate
from gnft_gui.main_window import SMALL_SCREEN, MainWindow


def test_demo_journey_recommended_repair_removes_the_backdoor(qtbot, tmp_path, monkeypatch):
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(*SMALL_SCREEN)
    window.show()
    with qtbot.waitSignal(window.predictions_ready, timeout=300000):
        window.welcome_buttons["demo"].click()  # builds the demo in this test's data folder, then opens it
    hint = window.minimumSizeHint()
    assert hint.width() <= SMALL_SCREEN[0] and hint.height() <= SMALL_SCREEN[1]
    assert window.current_clip is not None and window.central.currentWidget() is window.tabs
    with qtbot.waitSignal(window.clip_shown, timeout=5000):
        window.clips.select(3)

    panel = window.defense_panel
    assert panel.preset_name() == "recommended"
    window.show_tab(window.neurons)
    panel.run_button.click()
    # the scan, then 120 epochs with the latent push: about 3 minutes alone on a 2-core CPU, more on a shared one
    qtbot.waitUntil(lambda: panel.state == "finished", timeout=900000)
    outcome = window.session.pending
    before, after = outcome.before, outcome.after
    assert outcome.preset == {"name": "recommended"}
    # the repair's own scan (no attack record read) flagged the planted backdoor and named its target
    unlearned = outcome.details["unlearn"]
    assert outcome.scan is not None and outcome.scan.backdoored, outcome.scan
    assert unlearned["flagged"] and unlearned["class"] == window.data.classes[window.attack.params.target], unlearned
    # the demo's promise: a real backdoor, and the default repair removes it while keeping accuracy
    assert before["clean_accuracy"] >= 0.85 and before["attack_success_rate"] >= 0.95, before
    assert after["attack_success_rate"] <= 0.10, after
    # CA within 3 points: with the previous Recommended the 2 was not met on every CPU at seed 0 (Intel
    # Xeon -1.5, AMD EPYC with two threads -2.3); today's gives +1.2 / +3.1 headless (seeds 0 / 1, round 7)
    assert after["clean_accuracy"] >= before["clean_accuracy"] - 0.03, (before, after)
    assert panel.after_value("ASR") == f"{100 * after['attack_success_rate']:.1f} %"

    with qtbot.waitSignal(window.predictions_ready, timeout=60000):
        panel.accept_button.click()
    target = tmp_path / "repaired.safetensors"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    window.action_export.trigger()
    assert target.is_file() and window.unsaved_repair == "" and window.last_notice.isVisible()
    model, meta = load_checkpoint(target)
    assert meta["provenance"]["defenses"][-1]["preset"] == {"name": "recommended"}
    again = evaluate(model, window.data, "test", window.attack)
    assert again["clean_accuracy"] == after["clean_accuracy"]
    assert again["attack_success_rate"] == after["attack_success_rate"]
