"""``rescan_passes``: after a repair that unlearned a scanned (or named) class, the repaired model is scanned
again, and repaired once more when that scan flags a class the repair did not unlearn (the repair pipeline,
its progress, its report and its cancel). The tiny backdoored SmallCNN's scans at a low threshold flag a
class: these are the mechanics, the benchmark grids measure what a second pass does on real speech."""

from __future__ import annotations

import io

import pytest
import torch
from tqdm import tqdm

from core.cli.scan import ScanProgress
from core.defenses import DEFENSES, GNFTConfig
from core.errors import ConfigError
from core.events import SCAN_PHASE, NullObserver, ProgressObserver, StepInfo
from core.repair import repair, unlearn_choice
from core.reports import repair_markdown, rescan_passes_sentence
from core.scan import ScanConfig, rescan, scan
from tests.conftest import TINY_WORDS, backdoored_workspace, model_and_data_of, open_session

#: a scan of a few seconds that flags its most anomalous class (threshold and standout low)
FLAGGING_SCAN = ScanConfig(steps=6, batch_size=2, clean_ratio=0.5, device="cpu", threshold=0.5, standout=1.0)
EPOCHS = 2


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    return model_and_data_of(
        backdoored_workspace(tmp_path_factory.mktemp("passes"), speakers=8, per_speaker=2, epochs=2)
    )


def quick(**kw) -> GNFTConfig:
    return GNFTConfig(clean_ratio=0.5, epochs=EPOCHS, batch_size=8, eval_every=1, device="cpu", unlearn=0.3, **kw)


def weights_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def without_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("seconds", "machine")}


class Steps(NullObserver):
    """Keeps every step, and stops the run at the first step ``stop_at`` accepts."""

    def __init__(self, stop_at=lambda info, seen: False) -> None:
        self.steps: list[StepInfo] = []
        self.stop_at, self.stop = stop_at, False

    def on_step(self, info: StepInfo) -> None:
        self.stop = self.stop or self.stop_at(info, self.steps)
        self.steps.append(info)

    def should_stop(self) -> bool:
        return self.stop


@pytest.fixture(scope="module")
def flagged_after(model_and_data):
    """The class the scan of the repaired model flags after a first pass unlearning `yes` (not the target)."""
    model, data = model_and_data
    once = repair(model, data, DEFENSES["gnft"](quick()), scan_config=FLAGGING_SCAN, unlearn_class="yes")
    found = scan(once.model, data, FLAGGING_SCAN)
    assert found.backdoored and found.suspected_target != "yes"  # the premise of the tests below
    return once, found


def test_a_rescan_flagging_another_class_repairs_again_as_a_run_on_the_repaired_model_would(
    model_and_data, flagged_after
):
    model, data = model_and_data
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    once, found = flagged_after
    steps = Steps()
    result = repair(
        model, data, DEFENSES["gnft"](quick(rescan_passes=1)), scan_config=FLAGGING_SCAN, unlearn_class="yes",
        observer=steps,
    )  # fmt: skip
    assert not result.cancelled and all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    (record,) = result.details["rescan_passes"]
    assert record["scan"]["flagged"] and record["scan"]["class"] == found.suspected_target and record["repaired"]
    assert record["pass"] == 2 and record["unlearn"]["class"] == found.suspected_target
    assert record["started_from"]["clean_accuracy"] == once.after["clean_accuracy"]
    # the second pass is the defense run on the first pass's model with the rescan's trigger, nothing else
    trigger, _ = unlearn_choice(found)
    target = TINY_WORDS.index(found.suspected_target)
    by_hand = DEFENSES["gnft"](quick()).run(once.model, data, trigger=trigger, target=target, flagged=True)
    assert weights_equal(result.model, by_hand.model) and not weights_equal(result.model, once.model)
    assert result.final_scan is None  # the passes ran out: the model returned was not scanned
    assert [(h["epoch"], h["pass"]) for h in result.history] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert result.details["unlearn"]["class"] == "yes"  # the first pass's record stays the report's first
    # progress: the rescan's steps come between the passes, and the second pass counts its steps on
    phases = ["scan" if s.phase.startswith(SCAN_PHASE) else "fit" for s in steps.steps]
    runs = [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]]
    assert runs == ["scan", "fit", "scan", "fit"]
    fits = [s for s in steps.steps if not s.phase.startswith(SCAN_PHASE)]
    per_pass = fits[0].total_steps
    assert [s.step for s in fits] == list(range(1, 2 * per_pass + 1))
    assert {s.total_steps for s in fits[per_pass:]} == {2 * per_pass} and fits[-1].epoch == 2 * EPOCHS
    said = repair_markdown(result.report(model="tiny"))
    assert f"flagged {found.suspected_target} (anomaly index" in said and "pass 2 repaired again" in said


def test_a_rescan_flagging_the_unlearned_class_changes_nothing_and_is_the_after_scan(model_and_data, flagged_after):
    model, data = model_and_data
    _, found = flagged_after
    named = found.suspected_target  # unlearned first: the rescan flags it again, or nothing
    plain = repair(model, data, DEFENSES["gnft"](quick()), scan_config=FLAGGING_SCAN, unlearn_class=named)
    result = repair(
        model, data, DEFENSES["gnft"](quick(rescan_passes=1)), scan_config=FLAGGING_SCAN, unlearn_class=named
    )
    (record,) = result.details["rescan_passes"]
    assert not record["repaired"] and record["scan"]["class"] in (named, None)
    assert weights_equal(result.model, plain.model) and result.after == plain.after
    assert result.final_scan is not None
    assert without_time(result.final_scan.to_dict()) == without_time(scan(result.model, data, FLAGGING_SCAN).to_dict())
    steps = Steps()  # core.defend --rescan takes both scans the repair made: it scans nothing more
    rescan(model, result.model, data, FLAGGING_SCAN, observer=steps, before=result.scan, after=result.final_scan)
    assert steps.steps == []


@pytest.mark.parametrize("where", ["rescan", "second pass"])
def test_a_cancel_during_the_rescan_or_the_second_pass_hands_the_model_back_untouched(model_and_data, where):
    model, data = model_and_data
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    def stop_at(info: StepInfo, seen: list[StepInfo]) -> bool:
        fitted = any(not s.phase.startswith(SCAN_PHASE) for s in seen)
        if where == "rescan":
            return fitted and info.phase.startswith(SCAN_PHASE)
        return info.epoch > EPOCHS and not info.phase.startswith(SCAN_PHASE)

    steps = Steps(stop_at)
    config = quick(rescan_passes=1)
    result = repair(
        model, data, DEFENSES["gnft"](config), scan_config=FLAGGING_SCAN, unlearn_class="yes", observer=steps
    )
    assert result.cancelled and result.model is model and result.after == result.before
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_the_command_lines_bars_grow_by_a_pass_and_by_a_scan():
    stream = io.StringIO()
    epochs = tqdm(total=3, file=stream, disable=False)
    progress = ProgressObserver(__import__("logging").getLogger("t"), epochs)
    for epoch in range(1, 7):
        progress.on_step(StepInfo("gnft", epoch, 2 * epoch, 12, 0.1))
    assert (epochs.n, epochs.total) == (6, 6)
    scans = tqdm(total=4, file=stream, disable=False)
    bar = ScanProgress(scans)
    for step in range(1, 9):
        bar.on_step(StepInfo("scan waveform", 0, (step - 1) % 4 + 1, 4, 0.1))
    assert (scans.n, scans.total) == (8, 8)


def test_passes_are_idle_without_unlearning_and_refused_below_zero():
    assert "rescan_passes" in GNFTConfig().idle_fields()
    assert "rescan_passes" not in quick().idle_fields()
    with pytest.raises(ConfigError, match="rescan_passes"):
        GNFTConfig(rescan_passes=-1).validate()


def test_the_session_keeps_the_repairs_scan_of_the_model_it_accepts(tmp_path):
    session = open_session(backdoored_workspace(tmp_path, speakers=8, per_speaker=2, epochs=2))
    result = session.run_repair("gnft", quick(rescan_passes=2), scan_config=FLAGGING_SCAN)
    # the tiny model: the first scan flags `up`, the next `down`, unlearned in a second pass, the third `down` again
    assert [p["repaired"] for p in result.details["rescan_passes"]] == [True, False]
    assert result.final_scan is not None and session.finish_repair(result)
    assert session.scan is not None and session.scan.result is result.scan and session.scan.of_input
    session.accept()
    kept = session.scan
    assert kept.result is result.final_scan and kept.version == session.model_version and not kept.of_input
    assert kept.input_trigger_asr == result.details["unlearn"]["asr_after"]  # the input scan's trigger, repaired
    assert session.scan_comparison() == (session.input_scan, kept)


def test_the_report_says_what_an_unflagged_rescan_pointed_at():
    record = {"scan": {"flagged": False, "class": None, "most_anomalous": "stop", "most_anomalous_index": 2.93}}
    assert rescan_passes_sentence([{**record, "repaired": False}]) == (
        "The scan of the repaired model flagged nothing (its most anomalous class stop, index 2.93): no further pass."
    )
