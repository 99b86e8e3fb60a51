"""``python -m core.defend`` end to end on a tiny backdoored checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.attacks import attack_from_dict, get_attack
from core.checkpoint import load_checkpoint, save_checkpoint
from core.data.speech_commands import load_speech_commands
from core.evaluation import evaluate
from core.features import FrontEndConfig
from core.metrics import defense_findings
from core.repair import metrics_only
from core.training import TrainConfig, train_model
from tests.conftest import TINY_WORDS, write_speech_commands

REPO = Path(__file__).resolve().parents[2]
FAST = ["--clean-ratio", "0.5", "--epochs", "2", "--batch-size", "16", "--eval-every", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("defend")
    data_dir = write_speech_commands(root / "sc", speakers=12, per_speaker=2)
    data = load_speech_commands(data_dir, TINY_WORDS)
    fe = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
    config = TrainConfig(model="smallcnn", epochs=4, batch_size=32, lr=3e-3, device="cpu")
    attacked = train_model(
        data,
        config,
        get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10),
        front_end=fe,
        show_progress=False,
    )
    clean = train_model(data, config, front_end=fe, show_progress=False)
    save_checkpoint(root / "attacked.safetensors", attacked.model, attacked.metadata)
    save_checkpoint(root / "clean.safetensors", clean.model, clean.metadata)
    return root, data_dir


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.defend", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


EXTRA = {"ftsam": ["--rho", "0.5", "--adaptive", "false"], "clp": ["--u", "2.5"]}


@pytest.mark.parametrize("defense", ["gnft", "ft", "fp", "ftsam", "clp"])
def test_defend_writes_repaired_checkpoint_and_reports(workspace, defense):
    root, data_dir = workspace
    model_in = root / "attacked.safetensors"
    original = model_in.read_bytes()
    out, report = root / f"{defense}.safetensors", root / f"{defense}.json"
    proc = run(
        "--model",
        str(model_in),
        "--data",
        str(data_dir),
        "--defense",
        defense,
        *FAST,
        *EXTRA.get(defense, []),
        "--out",
        str(out),
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    assert "attack success rate" in proc.stdout
    rep = json.loads(report.read_text())
    for side in ("before", "after"):
        assert set(rep[side]) == {"clean_accuracy", "attack_success_rate", "robust_accuracy"}
    assert rep["defense"]["name"] == defense and rep["attack"]["name"] == "badnets"
    assert rep["eval_split"] == "test" and "on the test split" in proc.stdout  # the default
    assert rep["attack_source"] == "checkpoint metadata" and 0 <= rep["defense_effectiveness_rating"] <= 1
    assert [h["epoch"] for h in rep["history"]] == [1, 2]
    if defense == "gnft":
        assert (rep["defense"]["alpha"], rep["defense"]["r"], rep["defense"]["clean_ratio"]) == (0.7, 0.05, 0.5)
    if defense == "fp":
        assert 0 <= rep["defense_details"]["pruned_inputs"] < rep["defense_details"]["output_layer_inputs"]
    if defense == "ftsam":
        assert (rep["defense"]["rho"], rep["defense"]["adaptive"]) == (0.5, False)  # "false" is not truthy
    if defense == "clp":
        assert rep["defense"]["u"] == 2.5 and rep["defense_details"]["conv_channels"] == 160
        assert rep["defense_details"]["pruned_total"] == sum(
            map(len, rep["defense_details"]["pruned_channels"].values())
        )
    assert model_in.read_bytes() == original  # the input is never modified
    repaired, meta = load_checkpoint(out)
    data = load_speech_commands(data_dir, TINY_WORDS)
    attack = attack_from_dict(meta["provenance"]["attack"], sample_rate=meta["sample_rate"])
    again = evaluate(repaired, data, "test", attack)
    assert {k: again[k] for k in rep["after"]} == rep["after"]  # the report's numbers are the checkpoint's
    history = meta["provenance"]["defenses"]
    assert len(history) == 1 and history[0]["defense"]["name"] == defense
    assert history[0]["after"] == rep["after"]
    md = report.with_suffix(".md").read_text()
    assert "| attack success rate (ASR) |" in md and "DER" in md
    # the findings are the report's own numbers judged, and the Markdown and the terminal carry each
    assert rep["findings"] == defense_findings(
        rep["before"], rep["after"], rep["history"], rep["clean_clips"], len(TINY_WORDS), rep["defense_details"]
    )
    for finding in rep["findings"]:
        assert f"- {finding}" in md and f"warning: {finding}" in proc.stderr
    assert ("## Findings" in md) == bool(rep["findings"])


def test_the_recommended_preset_is_the_default_and_is_recorded(workspace):
    """No --defense: the Recommended preset runs, explicit options on top of it; the report, the
    checkpoint history, the Markdown and the terminal name it, numbers in percent."""
    root, data_dir = workspace
    out, report = root / "preset.safetensors", root / "preset.json"
    proc = run(
        "--model",
        str(root / "attacked.safetensors"),
        "--data",
        str(data_dir),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--scan-steps",
        "20",  # the Recommended scans for the trigger it unlearns: a short scan (not a defense setting)
        "--device",
        "cpu",
        "--out",
        str(out),
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(report.read_text())
    assert rep["defense"]["name"] == "gnft"
    assert (rep["defense"]["clean_ratio"], rep["defense"]["r"], rep["defense"]["lr"]) == (0.1, 0.1, 0.003)
    assert rep["defense"]["unlearn"] == 0.3 and rep["defense_details"]["unlearn"]["source"] == "scan"
    assert rep["defense"]["unlearn_latent"] == 0.3 and rep["defense"]["latent_reach"] == 0.2
    assert rep["preset"] == {"name": "custom", "from": "recommended", "changed": {"epochs": 2, "batch_size": 16}}
    _model, meta = load_checkpoint(out)
    assert meta["provenance"]["defenses"][-1]["preset"] == rep["preset"]
    assert "(custom, from the Recommended preset)" in report.with_suffix(".md").read_text()
    assert f"{100 * rep['after']['clean_accuracy']:.1f} %" in proc.stdout and "custom settings" in proc.stdout
    # the paper preset as it stands is recorded by its name
    paper = root / "paper.json"
    proc = run(
        "--model",
        str(root / "attacked.safetensors"),
        "--data",
        str(data_dir),
        "--preset",
        "paper",
        "--epochs",
        "300",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(root / "paper.safetensors"),
        "--report",
        str(paper),
    )
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(paper.read_text())
    assert (
        rep["preset"] == {"name": "paper"} and rep["defense"]["lr"] == 0.001 and "Paper (authors' loop)" in proc.stdout
    )


def test_without_attack_information_only_clean_accuracy(workspace):
    root, data_dir = workspace
    report = root / "noattack.json"
    proc = run(
        "--model",
        str(root / "clean.safetensors"),
        "--data",
        str(data_dir),
        "--defense",
        "ft",
        *FAST,
        "--out",
        str(root / "noattack.safetensors"),
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(report.read_text())
    assert set(rep["after"]) == {"clean_accuracy"} and rep["attack"] is None
    assert "no attack information" in rep["note"] and "ASR not measured" in proc.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--defense", "ft", "--alpha", "0.5"], "--alpha does not apply to --defense ft"),
        (["--preset", "recommended", "--defense", "ft"], "--preset recommended is a gnft preset"),
        (["--vocab", "yes,no,up"], "classes"),
        (["--alpha", "2"], "alpha must be in [0, 1]"),
        (["--defense", "ft", "--lr", "1e30"], "the run diverged and was stopped, nothing of it kept"),
    ],
)
def test_bad_input_one_line(workspace, extra, message):
    root, data_dir = workspace
    proc = run(
        "--model",
        str(root / "attacked.safetensors"),
        "--data",
        str(data_dir),
        *FAST,
        *extra,
        "--out",
        str(root / "x.safetensors"),
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "x.safetensors").exists()


def test_refuses_to_overwrite_its_input(workspace):
    root, data_dir = workspace
    proc = run(
        "--model",
        str(root / "attacked.safetensors"),
        "--data",
        str(data_dir),
        *FAST,
        "--out",
        str(root / "attacked.safetensors"),
    )
    assert proc.returncode == 2 and "--out is the same file as --model" in proc.stderr


def test_every_defense_option_has_its_meaning_in_the_help():
    """Each config field of every defense has a one-line meaning (a new field without one fails here),
    and ``--help`` shows it beside the option with the defaults, '%' intact."""
    import dataclasses
    import re

    from core.cli.defend import build_parser
    from core.defenses import DEFENSES, OPTION_HELP

    names = {f.name for cls in DEFENSES.values() for f in dataclasses.fields(cls.Config)}
    assert names - set(OPTION_HELP) == set()
    text = re.sub(r"-\s+", "-", re.sub(r"\s+", " ", build_parser().format_help()))  # argparse wraps at hyphens
    for option in ("batchnorm", "clean_ratio", "alpha", "u", "max_accuracy_drop"):
        assert OPTION_HELP[option] in text
    assert "(at 5 % of a few thousand clips" in text


def test_eval_split_validation_measures_every_figure_there(workspace):
    """--eval-split validation: before, after and every evaluation during the run are core.evaluation's
    figures on the validation split (not the test split's), recorded in the report, the checkpoint's
    history, the Markdown and the summary line."""
    root, clean_dir = workspace
    # the validation speaker's 'yes' and 'no' clips swapped: its clean accuracy cannot be the test split's
    data_dir = root / "sc_swapped"
    shutil.copytree(clean_dir, data_dir)
    for n in (0, 1):
        yes, no = data_dir / "yes" / f"000000a0_nohash_{n}.wav", data_dir / "no" / f"000000a0_nohash_{n}.wav"
        yes.rename(root / "swap.wav")
        no.rename(yes)
        (root / "swap.wav").rename(no)
    out, report = root / "val.safetensors", root / "val.json"
    proc = run(
        "--model",
        str(root / "attacked.safetensors"),
        "--data",
        str(data_dir),
        "--defense",
        "ft",
        *FAST,
        "--eval-split",
        "validation",
        "--out",
        str(out),
        "--report",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(report.read_text())
    assert rep["eval_split"] == "validation"
    data = load_speech_commands(data_dir, TINY_WORDS)
    model, meta = load_checkpoint(root / "attacked.safetensors")
    attack = attack_from_dict(meta["provenance"]["attack"], sample_rate=meta["sample_rate"])
    assert rep["before"] == metrics_only(evaluate(model, data, "validation", attack))
    assert rep["before"] != metrics_only(evaluate(model, data, "test", attack))
    repaired, repaired_meta = load_checkpoint(out)
    assert rep["after"] == metrics_only(evaluate(repaired, data, "validation", attack))
    assert rep["history"][-1]["clean_accuracy"] == rep["after"]["clean_accuracy"]  # the last epoch's is the after
    entry = repaired_meta["provenance"]["defenses"][-1]
    assert entry["eval_split"] == "validation" and entry["after"] == rep["after"]
    assert "on the validation split:" in proc.stdout
    assert "CA, ASR and RA measured on the validation split." in report.with_suffix(".md").read_text()


def test_a_dataset_without_the_split_is_one_line_before_any_work(workspace):
    """A testing list and no validation list: no validation clips, so --eval-split validation is refused."""
    root, _ = workspace
    data_dir = write_speech_commands(root / "sc_no_validation", speakers=12, per_speaker=2)
    (data_dir / "validation_list.txt").unlink()
    out = root / "noval.safetensors"
    proc = run(
        "--model",
        str(root / "attacked.safetensors"),
        "--data",
        str(data_dir),
        *FAST,
        "--eval-split",
        "validation",
        "--out",
        str(out),
    )
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert "--eval-split validation: the data has no validation split" in errors[0]
    assert not out.exists()
