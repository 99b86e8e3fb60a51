"""The session's scan without Qt: scan, keep or drop, the reconstructed trigger as the attack, before/after."""

from __future__ import annotations

import pytest
import torch

from core.defenses import GNFTConfig
from core.errors import ConfigError
from core.evaluation import evaluate
from core.events import Cancelled, NullObserver
from core.scan import ScanConfig, trigger_success
from core.session import Session, mix_trigger
from tests.conftest import TINY_WORDS, backdoored_workspace, open_session

#: a scan that takes a second or two: a few steps on half the training split
QUICK = dict(steps=6, batch_size=2, clean_ratio=0.5, device="cpu")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return backdoored_workspace(tmp_path_factory.mktemp("session_scan"), speakers=8, per_speaker=2, epochs=2)


@pytest.fixture
def session(workspace):
    return open_session(workspace)


class Stop(NullObserver):
    def should_stop(self) -> bool:
        return True


def test_without_a_model_or_a_scan_the_session_says_what_is_missing():
    s = Session()
    with pytest.raises(ConfigError, match="open a model and its dataset first"):
        s.run_scan(ScanConfig(**QUICK))
    with pytest.raises(ConfigError, match="no scan yet"):
        s.scan_trigger(0)
    assert s.scan is None and s.input_scan is None and s.scan_comparison() is None


def test_a_scan_changes_nothing_until_kept_and_its_trigger_is_the_results(session):
    weights = {k: v.clone() for k, v in session.model.state_dict().items()}
    attack = session.attack
    record = session.run_scan(ScanConfig(**QUICK))
    assert session.scan is None  # run_scan only computes (it may run in a worker thread)
    assert all(torch.equal(v, weights[k]) for k, v in session.model.state_dict().items())
    assert session.attack is attack
    assert record.of_input and record.model_name == "attacked.safetensors"
    assert record.result.classes == TINY_WORDS
    assert set(record.result.domains) == {"features", "waveform", "spectrum", "mix"}
    assert session.finish_scan(record) and session.scan is record and session.input_scan is record
    assert session.scan_comparison() is None  # nothing repaired yet
    for k in range(len(TINY_WORDS)):
        assert torch.equal(session.scan_trigger(k), record.result.triggers[k])
    with pytest.raises(ConfigError, match="outside"):
        session.scan_trigger(len(TINY_WORDS))


def test_a_cancelled_scan_leaves_the_previous_one(session):
    first = session.run_scan(ScanConfig(**QUICK))
    session.finish_scan(first)
    with pytest.raises(Cancelled):
        session.run_scan(ScanConfig(**QUICK), Stop())
    assert session.scan is first and session.input_scan is first


def test_use_scan_trigger_makes_the_waveform_the_attack_with_that_target(session, tmp_path):
    session.finish_scan(session.run_scan(ScanConfig(**QUICK)))
    k = 3
    attack = session.use_scan_trigger(k, tmp_path / "triggers")
    assert session.attack is attack and attack.name == "custom" and attack.params.target == k
    assert session.attack_source == "chosen in the application"
    files = list((tmp_path / "triggers").glob("*.wav"))
    assert len(files) == 1 and files[0].name.startswith(f"scan-attacked-class{k}-")
    trigger = session.scan.result.triggers[k]
    rate = session.data.sample_rate
    assert torch.equal(attack.pattern(rate), trigger)  # a float WAV: the very samples the scan found
    clips = session.data.waves[:4]
    triggered = attack.apply_test(clips, rate)
    assert torch.allclose(triggered, clips + trigger, atol=1e-7)  # added at the start, whole clip long
    # ASR is now measured against the reconstructed trigger and its class
    metrics = evaluate(session.model, session.data, "test", attack)
    assert metrics["attack_success_rate"] is not None and 0.0 <= metrics["attack_success_rate"] <= 1.0
    second = session.use_scan_trigger(k, tmp_path / "triggers")  # the same class of the same scan: its file
    assert second.params.file == attack.params.file and len(list((tmp_path / "triggers").glob("*.wav"))) == 1


def test_a_features_only_scan_has_no_trigger_to_use(session, tmp_path):
    session.finish_scan(session.run_scan(ScanConfig(**QUICK, domains="features")))
    attack = session.attack
    with pytest.raises(ConfigError, match="searched no audio domain"):
        session.use_scan_trigger(0, tmp_path)
    assert session.attack is attack and not list(tmp_path.glob("*.wav"))


def test_rescan_after_an_accepted_repair_compares_with_the_input_model(session):
    before = session.run_scan(ScanConfig(**QUICK))
    assert session.finish_scan(before)
    stale = session.run_scan(ScanConfig(**QUICK))  # started before the repair is accepted
    config = GNFTConfig(clean_ratio=0.5, epochs=1, batch_size=16, eval_every=1, seed=0, device="cpu")
    session.finish_repair(session.run_repair("gnft", config))
    session.accept()
    assert not session.finish_scan(stale) and session.scan is before  # of a model no longer current: dropped
    assert session.scan_comparison() is None  # the repaired model not scanned yet
    after = session.run_scan(ScanConfig(**QUICK))
    assert not after.of_input and after.repairs == 1
    assert session.finish_scan(after) and session.input_scan is before
    assert session.scan_comparison() == (before, after)
    # opening a model again forgets both
    session.open_model(session.model_path)
    assert session.scan is None and session.input_scan is None and session.scan_comparison() is None


def test_mix_trigger_adds_from_the_start_and_clamps():
    clip = torch.tensor([0.5, -0.5, 0.9, 0.0])
    assert torch.allclose(mix_trigger(clip, torch.tensor([0.25, -0.75])), torch.tensor([0.75, -1.0, 0.9, 0.0]))
    longer = mix_trigger(clip, torch.tensor([0.6, 0.1, 0.2, 0.3, 9.0]))  # cropped to the clip
    assert torch.allclose(longer, torch.tensor([1.0, -0.4, 1.0, 0.3])) and longer.abs().max() <= 1.0
    assert torch.equal(clip, torch.tensor([0.5, -0.5, 0.9, 0.0]))  # the clip itself untouched


def test_each_scan_knows_the_asr_of_the_input_scans_trigger_through_its_model(session):
    first = session.run_scan(ScanConfig(**QUICK))
    session.finish_scan(first)
    target = first.result.most_anomalous()
    trigger = first.result.triggers[target]
    rows = session.data.splits["test"]
    waves, labels = session.data.waves[rows], session.data.labels[rows]
    assert first.input_trigger_asr == trigger_success(session.model, waves, labels, trigger, target)
    result = session.run_repair("gnft", GNFTConfig(clean_ratio=0.5, epochs=2, batch_size=8, device="cpu"))
    session.finish_repair(result)
    session.accept()
    second = session.run_scan(ScanConfig(**QUICK))
    # the input scan's trigger, not this scan's own, through the repaired model
    assert second.input_trigger_asr == trigger_success(session.model, waves, labels, trigger, target)


def test_using_one_class_of_one_scan_again_writes_no_second_wav(session, tmp_path):
    session.finish_scan(session.run_scan(ScanConfig(**QUICK)))
    folder = tmp_path / "triggers"
    first = session.use_scan_trigger(1, folder)
    again = session.use_scan_trigger(1, folder)
    assert again.params.file == first.params.file and len(list(folder.glob("*.wav"))) == 1
    session.use_scan_trigger(2, folder)  # another class: its own file
    assert len(list(folder.glob("*.wav"))) == 2
    session.finish_scan(session.run_scan(ScanConfig(**{**QUICK, "steps": 7})))  # another scan: its own file,
    assert session.use_scan_trigger(1, folder).params.file != first.params.file  # never an overwrite
    assert len(list(folder.glob("*.wav"))) == 3
