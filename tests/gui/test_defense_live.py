"""A defense run from the window: live signals and plots, before/after, Accept, Cancel, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.defenses import DEFENSES, OPTION_HELP, GNFTConfig
from core.events import SCAN_PHASE, StepInfo
from core.metrics import defense_findings
from core.repair import unlearn_choice
from gnft_gui.views.defense_panel import DefensePanel

#: what the repair adds to the unlearned trigger's record: its ASR before and after, on the split measured
ASR_KEYS = ("split", "asr_before", "asr_after")


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def run_collecting(qtbot, window) -> tuple[list, list]:
    """Click Run and wait for the end: the steps and evaluations the worker's observer sent."""
    steps, evals = [], []
    window.defense_panel.run_button.click()
    task = window.defense_task
    task.observer.stepped.connect(steps.append)
    task.observer.evaluated.connect(evals.append)
    qtbot.waitUntil(lambda: window.defense_panel.state == "finished", timeout=300000)
    return steps, evals


def test_gnft_run_updates_the_plots_lowers_asr_and_accept_replaces_the_model(qtbot, window):
    panel = window.defense_panel
    # the Recommended preset first, in the units people read (the clean share in percent)
    assert panel.preset_name() == "recommended" and panel.preset.currentText() == "Recommended"
    assert panel.defense_name() == "gnft" and panel.choice.currentText() == "GN-FT"
    assert (
        panel.fields["alpha"].text(),
        panel.fields["r"].text(),
        panel.fields["clean_ratio"].text(),
        panel.fields["lr"].text(),
        panel.fields["epochs"].text(),
    ) == ("0.7", "0.1", "10", "0.003", "120")
    for name, value in (
        ("clean_ratio", "100"),
        ("epochs", "12"),
        ("lr", "0.05"),
        ("eval_every", "3"),
        ("batch_size", "32"),
        ("rescan_passes", "0"),  # one pass: the next test runs the second
    ):
        panel.fields[name].setText(value)
        panel.fields[name].editingFinished.emit()
    assert panel.preset_name() == "custom" and "Recommended" in panel.preset_summary.text()
    original, original_state = window.model, state(window.model)
    steps, evals = run_collecting(qtbot, window)
    # the Recommended unlearns the trigger a scan reconstructs: the scan's steps come first, then the fine-tuning's
    scanned = [s for s in steps if s.phase.startswith(SCAN_PHASE)]
    assert scanned and steps[: len(scanned)] == scanned
    steps = steps[len(scanned) :]
    assert steps and steps[-1].step == steps[-1].total_steps and steps[-1].grad_norms
    assert [e.epoch for e in evals if e.phase == "gnft"] == [3, 6, 9, 12]
    x, y = panel.curves["attack_success_rate"].getData()
    assert list(x) == [3, 6, 9, 12] and len(y) == 4
    assert np.allclose(y, [100 * e.attack_success_rate for e in evals if e.phase == "gnft"])  # percent, as the tables
    assert len(panel.loss_curve.getData()[0]) == len(steps) and panel.redraws >= 1
    neurons = window.neurons
    layer = neurons.layer.currentText()
    heights = neurons.norm_bars.opts["height"]
    assert len(heights) > 0 and np.all(np.asarray(heights) >= 0)
    assert np.array_equal(heights, np.asarray(steps[-1].grad_norms[layer], dtype=np.float32))  # the last step's g1
    assert neurons.heat.image.shape == (len(heights), len(steps))  # neurons x steps
    labels = [s.label for s in neurons.snapshots[layer]]
    assert labels == ["before (exact)", *[f"evaluation {i} (first-order)" for i in range(1, 5)], "after (exact)"]
    shown_x, shown_y = neurons.scatter.getData()
    after_snapshot = neurons.snapshots[layer][-1]
    assert np.allclose(shown_x, after_snapshot.clc) and np.allclose(shown_y, after_snapshot.blc)
    assert sum(after_snapshot.counts().values()) == len(heights)
    assert neurons.counts.text().startswith("after (exact)")
    # the live views (first-order zones at each evaluation, exact before/after) leave the run itself alone:
    # the same config headless gives the same weights
    result = window.session.pending  # the finished run, awaiting Accept
    trigger, unlearned = unlearn_choice(result.scan)  # the scan the repair made, as the Scan dock now shows it
    assert result.details["unlearn"] == {**unlearned, **{k: result.details["unlearn"][k] for k in ASR_KEYS}}
    assert window.scan_panel.record.result is result.scan
    target = window.data.classes.index(unlearned["class"])  # where the Recommended's latent push points
    headless = DEFENSES["gnft"](result.config).run(original, window.data, trigger=trigger, target=target).model
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in headless.state_dict().items())
    before, after = result.before, result.after
    assert after["attack_success_rate"] < before["attack_success_rate"]
    assert panel.after_value("ASR") == f"{100 * after['attack_success_rate']:.1f} %"
    findings = defense_findings(
        before, after, result.history, result.clean_clips, len(window.meta["classes"]), result.details
    )
    # the panel says what the headless report would, one warning line each, before Accept
    assert panel.findings.text() == "\n".join(f"\u26a0 {f}" for f in findings)
    assert panel.findings.isVisibleTo(panel) == bool(findings)
    assert window.model is original and all(
        torch.equal(v, window.model.state_dict()[k]) for k, v in original_state.items()
    )  # untouched until Accept
    with qtbot.waitSignal(window.predictions_ready, timeout=60000):
        panel.accept_button.click()
    entry = window.meta["provenance"]["defenses"][-1]
    assert entry == result.history_entry() and window.session.pending is None
    assert (
        window.model is not original and entry["defense"]["name"] == "gnft" and entry["defense"]["clean_ratio"] == 1.0
    )
    assert entry["preset"] == {
        "name": "custom",
        "from": "recommended",
        "changed": {
            "clean_ratio": 1.0,
            "epochs": 12,
            "lr": 0.05,
            "eval_every": 3,
            "batch_size": 32,
            "rescan_passes": 0,
        },
    }
    assert panel.state == "idle" and "Accepted" in panel.eta.text() and "Export" in window.status_label.text()
    assert window.unsaved_repair
    assert panel.runs_table.rowCount() == 1 and panel.runs_table.item(0, 0).text() == "GN-FT #1"

    # a second run (plain fine-tuning, cosine schedule) is drawn over the first: its curves stay as dashed ghosts
    panel.select_defense("ft")
    assert panel.preset_name() == "custom"
    for name, value in (("clean_ratio", "100"), ("epochs", "2"), ("eval_every", "1"), ("batch_size", "32")):
        panel.fields[name].setText(value)
    panel.fields["lr_schedule"].setCurrentText("cosine")
    assert panel.fields["batchnorm"].toolTip() == OPTION_HELP["batchnorm"]  # each option says what it does
    assert panel.fields["lr"].toolTip() == OPTION_HELP["lr"]
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.state == "finished", timeout=180000)
    assert window.session.pending.config.lr_schedule == "cosine"  # the form's choice reached the engine
    assert [g.name() for g in panel.ghosts] == ["GN-FT #1 CA", "GN-FT #1 ASR"]
    assert list(panel.ghosts[1].getData()[0]) == [3, 6, 9, 12]
    assert panel.runs_table.rowCount() == 2 and panel.runs_table.item(1, 0).text() == "Fine-tuning (FT) #2"
    panel.on_step(StepInfo("ft", 2, 4, 4, 0.1, 0.00125))  # the step line names the lr that step used
    assert "step 4/4, lr 0.00125, " in panel.eta.text()


def test_findings_line_shows_each_warning_and_clears_at_the_next_run(qtbot, window):
    panel = window.defense_panel
    panel.finish(
        {"clean_accuracy": 0.9},
        {"clean_accuracy": 0.5},
        1.0,
        "ft",
        ["clean accuracy fell 40.0 points", "the clean share is 12 clips"],
    )
    assert panel.findings.text().splitlines() == [
        "\u26a0 clean accuracy fell 40.0 points",
        "\u26a0 the clean share is 12 clips",
    ]
    assert panel.findings.isVisibleTo(panel)
    panel.start({"clean_accuracy": 0.9})
    assert panel.findings.text() == "" and not panel.findings.isVisibleTo(panel)


def test_cancel_mid_run_leaves_the_model_bit_exact(qtbot, window):
    original, original_state = window.model, state(window.model)
    panel = window.defense_panel
    panel.fields["epochs"].setText("500")
    panel.fields["clean_ratio"].setText("100")
    panel.fields["batch_size"].setText("16")
    panel.run_button.click()
    task = window.defense_task
    with qtbot.waitSignal(task.observer.stepped, timeout=60000):
        pass
    with qtbot.waitSignal(task.finished, timeout=60000):
        panel.cancel_button.click()
    assert window.defense_task is None and panel.state == "idle" and "cancelled" in window.status_label.text()
    assert panel.eta.text() == "Cancelled: the model is as it was."  # no stale step or scan line
    assert window.model is original
    assert all(torch.equal(v, window.model.state_dict()[k]) for k, v in original_state.items())
    assert window.last_error is None


def test_an_error_inside_the_defense_shows_the_dialog(qtbot, window):
    if torch.cuda.is_available():
        pytest.skip("the failure provoked here (device cuda on a machine without CUDA) needs a CPU-only machine")
    with qtbot.waitSignal(window.error_shown, timeout=60000) as shown:
        window.run_defense("gnft", GNFTConfig(epochs=1, device="cuda"))
    assert "CUDA" in shown.args[0] and window.defense_panel.state == "idle" and window.defense_task is None


def test_a_run_that_diverges_says_so_and_leaves_the_model_bit_exact(qtbot, window):
    original, original_state = window.model, state(window.model)
    config = GNFTConfig(epochs=5, lr=1e30, clean_ratio=0.5, batch_size=16, device="cpu")
    with qtbot.waitSignal(window.error_shown, timeout=60000) as shown:
        window.run_defense("gnft", config)
    assert "the run diverged and was stopped, nothing of it kept" in shown.args[0]
    assert window.defense_panel.state == "idle" and window.defense_task is None
    assert window.session.pending is None and window.model is original
    assert all(torch.equal(v, window.model.state_dict()[k]) for k, v in original_state.items())


def test_a_second_repair_pass_lengthens_the_loss_axis_and_says_it_scans_the_repaired_model(qtbot):
    panel = DefensePanel()
    qtbot.addWidget(panel)
    panel.scan_domains = ["mix"]
    panel.start({"clean_accuracy": 0.9})
    panel.on_step(StepInfo("scan mix", 0, 1, 10, 0.5))
    assert panel.eta.text().startswith("Scanning for the trigger to unlearn (mix): step 1/10")
    for step in range(1, 5):
        panel.on_step(StepInfo("gnft", (step + 1) // 2, step, 4, 0.1))
    assert panel.loss_plot.viewRange()[0] == pytest.approx([0, 5])
    panel.on_step(StepInfo("scan mix", 0, 3, 10, 0.5))
    assert panel.eta.text().startswith("Scanning the repaired model for a class left to unlearn (mix): step 3/10")
    assert (panel.progress.maximum(), panel.progress.value()) == (10, 3)
    for step in range(5, 9):  # pass 2 counts on
        panel.on_step(StepInfo("gnft", (step + 1) // 2, step, 8, 0.1))
    assert panel.loss_plot.viewRange()[0] == pytest.approx([0, 9])
    assert (panel.progress.maximum(), panel.progress.value()) == (8, 8)
    assert list(panel.loss_curve.getData()[0]) == list(range(1, 9))


def test_a_recommended_run_that_repairs_again_shows_both_passes_as_one_run(qtbot, window):
    """The Recommended's scan of the repaired model (rescan_passes 1) flags a class the tiny model's repair did
    not unlearn: the second pass's steps and evaluations run on in the same plots and bar."""
    panel = window.defense_panel
    settings = (("clean_ratio", "100"), ("epochs", "12"), ("lr", "0.05"), ("eval_every", "3"), ("batch_size", "32"))
    for name, value in settings:
        panel.fields[name].setText(value)
        panel.fields[name].editingFinished.emit()
    assert panel.fields["rescan_passes"].text() == "1"
    steps, evals = run_collecting(qtbot, window)
    result = window.session.pending
    (again,) = result.details["rescan_passes"]
    assert again["repaired"] and again["pass"] == 2 and again["unlearn"]["class"] != result.details["unlearn"]["class"]
    kinds = ["scan" if s.phase.startswith(SCAN_PHASE) else "fit" for s in steps]
    assert [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]] == ["scan", "fit", "scan", "fit"]
    fits = [s for s in steps if not s.phase.startswith(SCAN_PHASE)]
    assert [s.step for s in fits] == list(range(1, len(fits) + 1)) and fits[-1].total_steps == len(fits)
    assert [e.epoch for e in evals if e.phase == "gnft"] == list(range(3, 25, 3))
    assert list(panel.curves["attack_success_rate"].getData()[0]) == list(range(3, 25, 3))
    assert len(panel.loss_curve.getData()[0]) == len(fits) and panel.progress.value() == panel.progress.maximum()
    assert all(s.grad_norms for s in fits) and window.neurons.heat.image.shape[1] == len(fits)  # both passes
    assert panel.after_value("ASR") == f"{100 * result.after['attack_success_rate']:.1f} %"
