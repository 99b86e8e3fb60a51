"""``python -m core.scan`` and ``core.defend --rescan`` (issue 33): what they write, that the scan never
reads the checkpoint's attack record, that a cancelled scan writes nothing, and their one-line refusals.
The models are untrained SmallCNNs on a tiny tone corpus: these are the commands' mechanics, not the
scan's detection rates (benchmarks measure those)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from torch import nn

from core import models
from core.attacks import get_attack
from core.checkpoint import load_checkpoint, make_metadata, read_metadata, save_checkpoint
from core.cli.defend import main as defend_main
from core.cli.scan import main as scan_main
from core.data.speech_commands import load_speech_commands
from core.events import NullObserver
from core.features import FrontEndConfig
from core.reports import rescan_markdown
from core.runtime import run_command
from core.scan import ScanConfig, pointed_class, pooled_index, scan, trigger_success
from tests.conftest import TINY_WORDS, write_speech_commands

REPO = Path(__file__).resolve().parents[2]
FRONT_END = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
#: a scan of a second or two: a few steps on half the training split (8 clips)
QUICK = ["--steps", "4", "--batch-size", "2", "--clean-ratio", "0.5", "--device", "cpu", "--quiet"]
CONFIG = ScanConfig(steps=4, batch_size=2, clean_ratio=0.5, device="cpu")
#: what differs between two runs of one scan: the time, the machine, and where the caller put things
RUN_FIELDS = ("command", "model", "seconds", "machine", "trigger_audio")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan_cli")
    data = write_speech_commands(root / "sc", speakers=6, per_speaker=1)
    torch.manual_seed(0)
    net = models.build("smallcnn", len(TINY_WORDS), FRONT_END).eval()
    attack = get_attack("badnets", target=2).to_dict()
    model = save_checkpoint(
        root / "model.safetensors", net, make_metadata("smallcnn", TINY_WORDS, FRONT_END.to_dict(), attack=attack)
    )
    return root, data, model


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


def test_python_m_core_scan_writes_the_report_and_the_trigger_wavs(workspace, tmp_path):
    _, data, model = workspace
    out = tmp_path / "scan.json"
    proc = subprocess.run(
        [sys.executable, "-m", "core.scan", "--model", str(model), "--data", str(data), *QUICK, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["command"].startswith("python -m core.scan --model") and report["model"] == str(model)
    assert report["classes"] == TINY_WORDS and report["clean_clips"] == 8 and report["sample_rate"] == 16000
    assert report["config"] == {**vars(CONFIG), "seed": 0}
    assert set(report["domains"]) == {"features", "waveform", "spectrum", "mix"}
    assert {"cpu", "torch", "torch_threads", "device"} <= set(report["machine"]) and report["machine"][
        "device"
    ] == "cpu"
    assert report["backdoored"] == (report["suspected_target"] is not None)
    assert report["pooled"] == pytest.approx(pooled_index(report["domains"]), abs=1e-3)
    flagged = sorted(i for i, a in enumerate(report["pooled"]) if a > report["config"]["threshold"])
    top = report["most_anomalous"]
    suspected = report["classes"].index(report["suspected_target"]) if report["backdoored"] else None
    assert top["index"] == pointed_class(report["domains"], suspected)[0]
    assert top["anomaly_index"] == report["pooled"][top["index"]]
    assert top["flagged"] == (top["index"] in flagged)
    if report["backdoored"]:
        assert top["class"] == report["suspected_target"]
    # the WAVs: one per flagged class, and the most anomalous class's in any case, in the default folder
    audio = report["trigger_audio"]
    folder = tmp_path / "scan_triggers"
    assert audio["folder"] == str(folder) and audio["sample_rate"] == 16000
    assert sorted(f["index"] for f in audio["files"] if f["flagged"]) == flagged
    assert top["index"] in [f["index"] for f in audio["files"]]
    assert sorted(Path(f["path"]) for f in audio["files"]) == files_in(folder)
    for entry in audio["files"]:
        name = Path(entry["path"]).name
        assert entry["class"] in name and name.startswith("flagged_" if entry["flagged"] else "not_flagged_most_")
        wave, rate = sf.read(entry["path"], dtype="float32")
        info = sf.info(entry["path"])
        assert rate == 16000 and info.subtype == "FLOAT" and wave.shape == (16000,)
        assert 0 < abs(wave).max() <= CONFIG.peak + 1e-6
    # the summary on the terminal
    assert proc.stdout.startswith("verdict: ") and "waveform  anomaly index per class: yes " in proc.stdout
    assert f"wrote {out}" in proc.stdout and "Traceback" not in proc.stderr


def without_attack_record(model: Path, path: Path) -> Path:
    net, _ = load_checkpoint(model)
    meta = read_metadata(model)
    del meta["provenance"]["attack"]
    return save_checkpoint(path, net, meta)


def test_the_scan_never_reads_the_attack_record(workspace, tmp_path, capsys):
    """The same weights with and without the attack record in the header: the same numbers and the same
    trigger audio, which are also :func:`core.scan.scan`'s own on that model and data."""
    _, data, model = workspace
    bare = without_attack_record(model, tmp_path / "bare.safetensors")
    assert "attack" not in read_metadata(bare)["provenance"]
    reports, audio = [], []
    for name, path in (("with", model), ("without", bare)):
        out, folder = tmp_path / f"{name}.json", tmp_path / f"{name}_wavs"
        argv = ["--model", str(path), "--data", str(data), *QUICK, "--out", str(out), "--triggers", str(folder)]
        assert run_command(scan_main, argv) == 0, capsys.readouterr().err
        report = json.loads(out.read_text())
        audio.append([(Path(f["path"]).name, sf.read(f["path"])[0].tolist()) for f in report["trigger_audio"]["files"]])
        reports.append({k: v for k, v in report.items() if k not in RUN_FIELDS})
    assert reports[0] == reports[1] and audio[0] == audio[1] and audio[0]
    net, _ = load_checkpoint(bare)
    direct = scan(net, load_speech_commands(data, TINY_WORDS), CONFIG).to_dict()
    assert {k: v for k, v in reports[0].items() if k in direct and k != "seconds"} == {
        k: v for k, v in direct.items() if k != "seconds"
    }


class StopAfter(NullObserver):
    """Asks to stop after ``n`` steps, or (``interrupt``) raises KeyboardInterrupt there, as Ctrl-C does."""

    def __init__(self, n: int, interrupt: bool = False) -> None:
        self.steps, self.n, self.interrupt = 0, n, interrupt

    def on_step(self, info) -> None:
        self.steps += 1
        if self.interrupt and self.steps >= self.n:
            raise KeyboardInterrupt

    def should_stop(self) -> bool:
        return not self.interrupt and self.steps >= self.n


@pytest.mark.parametrize("interrupt", [False, True], ids=["cancelled", "ctrl-c"])
def test_a_stopped_scan_writes_nothing(workspace, tmp_path, capsys, interrupt):
    _, data, model = workspace
    out = tmp_path / "runs" / "scan.json"
    out.parent.mkdir()
    stop = StopAfter(6, interrupt)  # into the second domain, after the first was done
    argv = ["--model", str(model), "--data", str(data), *QUICK, "--out", str(out)]
    code = run_command(lambda a: scan_main(a, observer=stop), argv)
    err = capsys.readouterr().err
    assert code == 130 and stop.steps == 6 and "Traceback" not in err
    assert err.strip() == ("interrupted" if interrupt else "cancelled: nothing written")
    assert files_in(tmp_path) == [out.parent]  # no report, no trigger folder, no temporary


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--model": "{root}/missing.safetensors"}, "error: --model: {root}/missing.safetensors: no such model file"),
        ({"--out": "{tmp}/scan.txt"}, "error: --out must end in .json, got scan.txt"),
        ({"--steps": "0"}, "error: --steps must be at least 1, got 0"),
        ({"--clean-ratio": "1.5"}, "error: --clean-ratio must be in (0, 1], got 1.5"),
        (
            {"--domains": "cepstrum"},
            "error: --domains must be a comma list of features, waveform, latent, spectrum and mix, got 'cepstrum'",
        ),
        ({"--triggers": "{model}"}, "error: --triggers is the same file as --model"),
        ({"--batch-size": "20000"}, "error: --batch-size 20000: a step would hold 80000 clips over 4 classes;"),
        ({"--amp": "fp16"}, "error: --amp: invalid choice: 'fp16' (choose from 'none', 'bf16')"),
        ({"--memory-format": "nhwc"}, "error: --memory-format: invalid choice: 'nhwc'"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(workspace, tmp_path, capsys, change, message):
    root, data, model = workspace
    values = {"--model": str(model), "--data": str(data), "--out": str(tmp_path / "scan.json")}
    fill = {"root": root, "tmp": tmp_path, "model": model}
    values.update({k: v.format(**fill) for k, v in change.items()})
    argv = [*QUICK, *(x for kv in values.items() for x in kv)]
    code = run_command(scan_main, argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message.format(**fill)), err
    assert files_in(tmp_path) == []


class Loudness(nn.Module):
    """Class 1 when a clip's peak is above 0.5, else class 0: a model whose trigger is any loud sample."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        peak = x.abs().amax(-1)
        return torch.stack([torch.zeros_like(peak), self.scale * (peak - 0.5)], -1)


def test_trigger_success_is_the_share_of_other_classes_sent_to_the_target():
    waves = 0.2 * torch.ones(6, 100)
    waves[4:] = 0.8  # two clips of class 1 (loud)
    labels = torch.tensor([0, 0, 0, 2, 1, 1])
    model = Loudness().train()
    spike = torch.zeros(10)
    spike[3] = 0.5  # 0.2 + 0.5 = 0.7: loud; a trigger shorter than the clip is padded
    assert trigger_success(model, waves, labels, spike, 1) == 1.0  # the 4 clips of classes 0 and 2, all sent
    assert trigger_success(model, waves, labels, torch.zeros(100), 1) == 0.0
    assert trigger_success(model, waves, labels, -spike, 1) == 0.0  # 0.2 - 0.5: |-0.3| stays quiet
    assert trigger_success(model, waves, labels, torch.full((200,), 0.9), 0) == 0.0  # clamped to 1: class 1
    assert trigger_success(model, waves[4:], labels[4:], spike, 1) is None  # no clip of another class
    assert model.training  # its mode is given back


def test_defend_rescan_adds_the_scan_before_and_after_to_the_report(workspace, tmp_path, capsys):
    _, data, model = workspace
    out, report = tmp_path / "fixed.safetensors", tmp_path / "fixed.json"
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--epochs", "1", "--clean-ratio", "0.5"]
    argv += ["--device", "cpu", "--quiet", "--out", str(out), "--report", str(report), "--rescan"]
    argv += ["--scan-steps", "4", "--scan-batch-size", "2", "--scan-clean-ratio", "0.5"]
    assert run_command(defend_main, argv) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    rescan = json.loads(report.read_text())["rescan"]
    assert rescan["config"] == {**vars(CONFIG), "seed": 0}
    assert rescan["before"]["config"] == rescan["after"]["config"] == rescan["config"]  # one config for both
    for side in ("before", "after"):
        assert rescan[f"flagged_{side}"] == rescan[side]["backdoored"]
        assert rescan[f"suspected_target_{side}"] == rescan[side]["suspected_target"]
        assert rescan[f"confidence_{side}"] == rescan[side]["confidence"]
    assert rescan["flag_gone"] == ((not rescan["flagged_after"]) if rescan["flagged_before"] else None)
    trigger = rescan["trigger"]
    data_set = load_speech_commands(data, TINY_WORDS)
    test_labels = data_set.labels[data_set.splits["test"]]
    assert trigger["split"] == "test" and trigger["clips"] == int((test_labels != trigger["index"]).sum()) > 0
    assert trigger["class"] == TINY_WORDS[trigger["index"]]
    if rescan["flagged_before"]:
        assert trigger["class"] == rescan["suspected_target_before"] and trigger["flagged"]
    assert all(0.0 <= trigger[k] <= 1.0 for k in ("asr_before", "asr_after"))
    # the ASR before is the before-scan's trigger on the input model, recomputed here from the same seeded scan
    net, _ = load_checkpoint(model)
    again = scan(net, data_set, CONFIG)
    rows = data_set.splits["test"]
    assert trigger_success(
        net, data_set.waves[rows], test_labels, again.triggers[trigger["index"]], trigger["index"]
    ) == pytest.approx(trigger["asr_before"])
    markdown = report.with_suffix(".md").read_text()
    assert "## Scan before and after (trigger inversion, without the attack record)" in markdown
    assert f"| ASR of the reconstructed trigger of {trigger['class']} (" in markdown
    assert "rescan: before " in stdout and f"ASR {100 * trigger['asr_before']:.1f} % -> " in stdout
    assert out.is_file()


def test_scan_options_without_rescan_are_refused_and_nothing_is_loaded(workspace, tmp_path, capsys):
    _, data, model = workspace
    argv = ["--model", str(model), "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "f.safetensors")]
    code = run_command(defend_main, [*argv, "--preset", "paper", "--scan-steps", "4", "--scan-peak", "0.1"])
    assert code == 2 and capsys.readouterr().err.splitlines() == [
        "error: --scan-peak, --scan-steps only applies with --rescan, with --unlearn and no --unlearn-trigger, "
        "or with --rescan-passes"
    ]
    trigger = tmp_path.parent / f"{tmp_path.name}-trigger.wav"
    sf.write(trigger, 0.1 * torch.ones(800).numpy(), 16000)
    code = run_command(defend_main, [*argv, "--preset", "paper", "--unlearn-trigger", str(trigger)])
    assert code == 2 and capsys.readouterr().err.splitlines() == [
        "error: --unlearn-trigger only applies with --unlearn above 0 (a share of each batch)"
    ]
    code = run_command(defend_main, [*argv, "--unlearn", "0.3", "--scan-domains", "features"])
    assert code == 2 and capsys.readouterr().err.splitlines() == [
        "error: unlearning a scanned trigger needs an audio domain of the scan: --scan-domains must include "
        "waveform or mix, got 'features'"
    ]
    code = run_command(defend_main, [*argv, "--unlearn", "0.3", "--unlearn-trigger", str(tmp_path / "none.wav")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and "none.wav" in err[0], err
    code = run_command(defend_main, [*argv, "--preset", "paper", "--rescan-passes", "1"])
    assert code == 2 and capsys.readouterr().err.splitlines() == [
        "error: --rescan-passes only applies with --unlearn, --unlearn-latent or --trigger-prune above 0 (a pass "
        "unlearns the class a scan flags)"
    ]
    code = run_command(defend_main, [*argv, "--rescan", "--scan-domains", "cepstrum"])
    assert code == 2 and capsys.readouterr().err.splitlines() == [
        "error: --scan-domains must be a comma list of features, waveform, latent, spectrum and mix, got 'cepstrum'"
    ]
    assert files_in(tmp_path) == []


def test_the_rescan_markdown_says_when_no_waveform_trigger_was_searched():
    record = {
        "flagged_before": True,
        "flagged_after": False,
        "flag_gone": True,
        "suspected_target_before": "up",
        "suspected_target_after": None,
        "confidence_before": 3.5,
        "confidence_after": 1.2,
        "trigger": {"class": "up", "index": 2, "flagged": True, "asr_before": None, "asr_after": None},
        "config": {**vars(ScanConfig(domains="features"))},
    }
    text = rescan_markdown(record)
    assert "domains features: the flag is gone." in text
    assert "| verdict | flagged, target up (anomaly index 3.50) | not flagged |" in text
    assert "No waveform trigger was searched" in text and "ASR of the reconstructed" not in text


def test_defend_unlearns_the_scanned_trigger_and_rescans_from_that_scan(workspace, tmp_path, capsys):
    _, data, model = workspace
    out, report = tmp_path / "fixed.safetensors", tmp_path / "fixed.json"
    argv = ["--model", str(model), "--data", str(data), "--defense", "gnft", "--epochs", "1", "--clean-ratio", "0.5"]
    argv += ["--unlearn", "0.3", "--device", "cpu", "--quiet", "--out", str(out), "--report", str(report)]
    argv += ["--rescan", "--scan-steps", "4", "--scan-batch-size", "2", "--scan-clean-ratio", "0.5"]
    assert run_command(defend_main, argv) == 0, capsys.readouterr().err
    written = json.loads(report.read_text())
    unlearned, rescan = written["defense_details"]["unlearn"], written["rescan"]
    assert written["defense"]["unlearn"] == 0.3 and unlearned["source"] == "scan"
    assert unlearned["scan_domains"] == ScanConfig().domains and unlearned["trigger_domain"] in ("waveform", "mix")
    # the repair's scan of the input model is the rescan's "before": its most anomalous class was unlearned
    assert unlearned["class"] == rescan["trigger"]["class"]
    assert unlearned["flagged"] == rescan["flagged_before"]
    history = read_metadata(out)["provenance"]["defenses"][-1]
    assert history["defense_details"]["unlearn"] == unlearned
    markdown = report.with_suffix(".md").read_text()
    assert f"| ASR of the unlearned trigger (the scan's reconstruction for {unlearned['class']}, " in markdown
    assert "Unlearned: the trigger a scan of the model reconstructed was added to 30 % of each batch's" in markdown


def test_defend_unlearns_a_trigger_file_without_scanning(workspace, tmp_path, capsys):
    _, data, model = workspace
    trigger = tmp_path / "tone.flac"
    sf.write(trigger, (0.2 * torch.sin(torch.arange(4000) / 5.0)).numpy(), 16000)
    out, report = tmp_path / "fixed.safetensors", tmp_path / "fixed.json"
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--epochs", "1", "--clean-ratio", "0.5"]
    argv += ["--unlearn", "0.5", "--unlearn-trigger", str(trigger), "--device", "cpu", "--quiet"]
    argv += ["--out", str(out), "--report", str(report)]
    assert run_command(defend_main, argv) == 0, capsys.readouterr().err
    written = json.loads(report.read_text())
    assert written["defense_details"]["unlearn"] == {"source": "file", "file": str(trigger)}
    assert "rescan" not in written


def test_defend_unlearns_the_scanned_trigger_of_the_class_the_user_names(workspace, tmp_path, capsys):
    _, data, model = workspace
    out, report = tmp_path / "fixed.safetensors", tmp_path / "fixed.json"
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--epochs", "1", "--clean-ratio", "0.5"]
    argv += ["--unlearn", "0.3", "--device", "cpu", "--quiet", "--out", str(out), "--report", str(report)]
    scanning = ["--scan-steps", "4", "--scan-batch-size", "2", "--scan-clean-ratio", "0.5", "--rescan"]
    named = "down"
    assert run_command(defend_main, [*argv, *scanning, "--unlearn-class", named]) == 0, capsys.readouterr().err
    written = json.loads(report.read_text())
    unlearned, before = written["defense_details"]["unlearn"], written["rescan"]["before"]
    assert unlearned["source"] == "scan" and unlearned["class"] == named and unlearned["class_from"] == "user"
    assert unlearned["anomaly_index"] == pytest.approx(
        max(d["anomaly_index"][TINY_WORDS.index(named)] for d in before["domains"].values()), abs=1e-3
    )
    # the unlearned trigger is the scan's reconstruction for that class: replayed, it sends clips there as recorded
    scanned = scan(load_checkpoint(model)[0], load_speech_commands(data, TINY_WORDS), CONFIG)
    net = load_checkpoint(model)[0].eval()
    test = load_speech_commands(data, TINY_WORDS)
    rows = test.splits["test"]
    asr = trigger_success(
        net, test.waves[rows], test.labels[rows], scanned.triggers[TINY_WORDS.index(named)], TINY_WORDS.index(named)
    )
    assert unlearned["asr_before"] == pytest.approx(asr)
    # with a recording, the named class is recorded as the one it sends clips to
    tone = tmp_path / "tone.wav"
    sf.write(tone, (0.2 * torch.sin(torch.arange(4000) / 5.0)).numpy(), 16000)
    again = [*argv, "--unlearn-trigger", str(tone), "--unlearn-class", named]
    assert run_command(defend_main, again) == 0
    record = json.loads(report.read_text())["defense_details"]["unlearn"]
    assert record["source"] == "file" and record["class"] == named and record["class_from"] == "user"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--unlearn", "0.3", "--unlearn-class", "maybe"], "error: --unlearn-class 'maybe' is not one of the model's"),
        (["--unlearn-class", "up"], "error: --unlearn-class only applies with --unlearn or --unlearn-latent above 0"),
    ],
)
def test_defend_refuses_an_unlearn_class_it_cannot_use_before_any_work(workspace, tmp_path, capsys, extra, message):
    _, data, model = workspace
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--epochs", "1", "--clean-ratio", "0.5"]
    argv += ["--device", "cpu", "--quiet", "--out", str(tmp_path / "o.safetensors"), *extra]
    code = run_command(defend_main, argv)
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), lines
    assert files_in(tmp_path) == []


def test_defend_refuses_to_search_a_recorded_trigger_again_without_its_class_before_any_work(
    workspace, tmp_path, capsys
):
    _, data, model = workspace
    tone = tmp_path / "tone.wav"
    sf.write(tone, (0.2 * torch.sin(torch.arange(4000) / 5.0)).numpy(), 16000)
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--epochs", "2", "--clean-ratio", "0.5"]
    argv += ["--unlearn", "0.3", "--unlearn-trigger", str(tone), "--unlearn-refresh", "1"]
    argv += ["--device", "cpu", "--quiet", "--out", str(tmp_path / "o.safetensors")]
    code = run_command(defend_main, argv)
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: --unlearn-refresh searches the trigger's class again"), lines
    assert files_in(tmp_path) == [tone]


def test_defend_unlearning_a_scanned_trigger_scans_once_and_does_not_rescan_unasked(workspace, tmp_path, capsys):
    _, data, model = workspace
    out, report = tmp_path / "fixed.safetensors", tmp_path / "fixed.json"
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--epochs", "1", "--clean-ratio", "0.5"]
    argv += ["--unlearn", "0.3", "--device", "cpu", "--out", str(out), "--report", str(report)]
    argv += ["--scan-steps", "4", "--scan-batch-size", "2", "--scan-clean-ratio", "0.5"]
    assert run_command(defend_main, argv) == 0
    err = capsys.readouterr().err
    written = json.loads(report.read_text())
    assert written["defense_details"]["unlearn"]["source"] == "scan" and "rescan" not in written
    assert "rescan" not in err  # no second progress bar: one scan, for the trigger


def test_the_summary_names_every_other_class_above_the_threshold():
    from core.cli.scan import _summary

    index = {"anomaly_index": [0.0, 9.0, 5.0, 3.5]}
    report = {
        "classes": ["yes", "no", "up", "down"],
        "config": {"threshold": 3.0},
        "domains": {"mix": index},
        "pooled": [0.0, 9.0, 5.0, 3.5],
        "backdoored": True,
        "suspected_target": "no",
        "confidence": 9.0,
        "most_anomalous": {"class": "no"},
        "trigger_audio": {"files": []},
        "clean_clips": 8,
        "seconds": 1.0,
        "out": "scan.json",
    }
    first = _summary(report).splitlines()[0]
    assert first == (
        "verdict: backdoor suspected, target 'no' (confidence: anomaly index 9.00, threshold 3, 4.00 above the "
        "next class; also above it: up 5.00, down 3.50)"
    )
    assert "no 9.00*, up 5.00*, down 3.50*" in _summary(report)  # the flagged model's classes above it marked
    alone = _summary({**report, "pooled": [0.0, 9.0, 1.0, 0.5], "domains": {"mix": {"anomaly_index": [0, 9, 1, 0.5]}}})
    assert alone.splitlines()[0].endswith("threshold 3, 8.00 above the next class)")


def test_the_summary_says_why_a_class_above_the_threshold_is_not_flagged():
    """The clean ResNet's case: `stop` above the threshold with `right` close behind; the line names both."""
    from core.cli.scan import _summary

    report = {
        "classes": ["up", "right", "stop"],
        "config": {"threshold": 3.0, "standout": 1.0},
        "domains": {"spectrum": {"anomaly_index": [1.9, 2.85, 3.78]}},
        "pooled": [1.9, 2.85, 3.78],
        "backdoored": False,
        "suspected_target": None,
        "confidence": 3.78,
        "most_anomalous": {"class": "stop", "domain": "spectrum"},
        "trigger_audio": {"files": []},
        "clean_clips": 8,
        "seconds": 1.0,
        "out": "scan.json",
    }
    text = _summary(report)
    assert text.splitlines()[0] == (
        "verdict: no backdoor found (largest anomaly index 3.78, threshold 3; 'stop' is above it but only 0.93 "
        "above the next class, 'right': a flag needs 1; most anomalous class 'stop' (spectrum))"
    )
    assert "*" not in text  # nothing marked as flagged


def test_defend_rescan_passes_records_each_scan_and_reuses_the_last_as_the_after_scan(workspace, tmp_path, capsys):
    _, data, model = workspace
    flagging = ["--scan-steps", "4", "--scan-batch-size", "2", "--scan-clean-ratio", "0.5"]
    flagging += ["--scan-threshold", "0.5", "--scan-standout", "1.0"]  # flags its most anomalous class
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--epochs", "1", "--clean-ratio", "0.5"]
    argv += ["--unlearn", "0.3", "--rescan-passes", "1", "--rescan", "--device", "cpu", "--quiet", *flagging]
    reports = {}
    for named in ("yes", "down"):  # the untrained model's scans flag `down` after a pass unlearning either
        out, report = tmp_path / f"{named}.safetensors", tmp_path / f"{named}.json"
        code = run_command(defend_main, [*argv, "--unlearn-class", named, "--out", str(out), "--report", str(report)])
        assert code == 0, capsys.readouterr().err
        reports[named] = json.loads(report.read_text())
        history = read_metadata(out)["provenance"]["defenses"][-1]
        assert history["defense_details"]["rescan_passes"] == reports[named]["defense_details"]["rescan_passes"]
    (again,) = reports["yes"]["defense_details"]["rescan_passes"]
    assert again["scan"]["class"] == "down" and again["repaired"] and again["unlearn"]["class"] == "down"
    assert [h["pass"] for h in reports["yes"]["history"]] == [1, 2]
    markdown = (tmp_path / "yes.md").read_text()
    assert "flagged down (anomaly index" in markdown and "pass 2 repaired again, unlearning its trigger" in markdown
    (last,) = reports["down"]["defense_details"]["rescan_passes"]
    assert last["scan"]["class"] == "down" and not last["repaired"] and "pass" not in last
    assert [h["pass"] for h in reports["down"]["history"]] == [1]
    after = reports["down"]["rescan"]  # the repair's scan of the model it returned is the rescan's "after"
    assert after["flagged_after"] and after["suspected_target_after"] == "down"
    assert after["after"]["seconds"] == last["scan"]["seconds"]
    assert "already unlearned: no further pass" in (tmp_path / "down.md").read_text()


def test_defend_scans_at_the_repairs_clean_share_unless_told_and_refuses_a_larger_one(workspace, tmp_path, capsys):
    _, data, model = workspace
    out, report = tmp_path / "fixed.safetensors", tmp_path / "fixed.json"
    argv = ["--model", str(model), "--data", str(data), "--defense", "ft", "--epochs", "1", "--clean-ratio", "0.5"]
    argv += ["--unlearn", "0.3", "--device", "cpu", "--quiet", "--out", str(out), "--report", str(report)]
    argv += ["--scan-steps", "4", "--scan-batch-size", "2"]  # no --scan-clean-ratio: the repair's 0.5, not 0.1
    assert run_command(defend_main, argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    unlearned = json.loads(report.read_text())["defense_details"]["unlearn"]
    repair_clips = json.loads(report.read_text())["clean_clips"]
    assert unlearned["scan_clean_ratio"] == 0.5 != ScanConfig().clean_ratio
    assert unlearned["scan_clean_clips"] == repair_clips  # the same seeded clips the repair fine-tunes on
    # a scan that would read clips the repair does not have is refused before any work: one line, nothing written
    for written in files_in(tmp_path):
        written.unlink()
    code = run_command(defend_main, [*argv, "--clean-ratio", "0.25", "--scan-clean-ratio", "0.5"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == (
        "error: --scan-clean-ratio 0.5 is larger than the repair's --clean-ratio 0.25: a repair's scan may read only "
        "the clean clips the repair has; give a share no larger, or none to use the repair's"
    )
    assert files_in(tmp_path) == []
    # a smaller share is the user's choice, and is kept
    assert run_command(defend_main, [*argv, "--scan-clean-ratio", "0.25"]) == 0, capsys.readouterr().err
    assert json.loads(report.read_text())["defense_details"]["unlearn"]["scan_clean_ratio"] == 0.25
