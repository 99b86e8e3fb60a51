"""The application's session without Qt: open, repair, accept or revert, export; the same run as the CLIs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from core.attacks import get_attack
from core.checkpoint import load_checkpoint
from core.data.speech_commands import load_speech_commands
from core.defenses import GNFTConfig
from core.errors import CheckpointError, ConfigError
from core.events import NullObserver
from core.repair import RepairResult
from core.session import MismatchError, Session
from tests.conftest import TINY_WORDS, backdoored_workspace, open_session

#: A repair that takes a second: half the training split, two epochs, an evaluation after each.
TINY = dict(clean_ratio=0.5, epochs=2, batch_size=16, eval_every=1, seed=0, device="cpu")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return backdoored_workspace(tmp_path_factory.mktemp("session"), speakers=12, per_speaker=2, epochs=4)


@pytest.fixture
def session(workspace):
    return open_session(workspace)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


class Stop(NullObserver):
    def should_stop(self) -> bool:
        return True


def test_a_new_session_holds_nothing():
    s = Session()
    assert (s.model, s.meta, s.model_path, s.data, s.data_path, s.attack, s.pending) == (None,) * 7
    assert s.unsaved_repair == "" and s.history == [] and s.top3(torch.zeros(16000)) is None
    assert s.suggested_export_name() == "model.safetensors"
    with pytest.raises(ConfigError, match="open a model and its dataset first"):
        s.run_repair("gnft", GNFTConfig(**TINY))
    with pytest.raises(ConfigError, match="nothing to export"):
        s.export("x.safetensors")
    with pytest.raises(ConfigError, match="no repair to accept"):
        s.accept()


def test_open_model_and_data(session, workspace):
    _, data_dir, model_path = workspace
    assert session.model_path == model_path and session.data_path == data_dir
    assert list(session.data.classes) == session.meta["classes"] == TINY_WORDS
    assert session.attack is not None and session.attack.name == "badnets"  # the checkpoint's record
    assert session.attack.to_dict() == session.recorded_attack().to_dict()
    assert session.attack_source == "checkpoint metadata"
    labels, confidences = session.predict_all()
    assert len(labels) == len(confidences) == len(session.data) and set(labels) <= set(TINY_WORDS)
    top = session.top3(session.data.waves[0])
    assert len(top) == 3 and top[0][0] == labels[0] and top[0][1] == pytest.approx(confidences[0], abs=1e-3)
    session.set_attack(get_attack("blend", sample_rate=16000))
    assert session.attack_source == "chosen in the application"
    session.set_attack(None)
    assert session.attack_source == "none"


def test_a_model_and_data_of_other_classes_are_refused(workspace, tmp_path):
    _, data_dir, model_path = workspace
    three = load_speech_commands(data_dir, TINY_WORDS[:3])
    s = Session()
    s.set_data(data_dir, three)
    with pytest.raises(MismatchError, match=r"attacked.safetensors classifies .*the open dataset has"):
        s.open_model(model_path)
    assert s.model is None and s.meta is None and s.data is three
    s = Session()
    s.open_model(model_path)
    with pytest.raises(MismatchError, match="the open model classifies"):
        s.set_data(data_dir, three)
    assert s.data is None
    with pytest.raises(CheckpointError, match="state dict"):
        s.open_model(tmp_path / "weights.pt")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        s.open_model(broken)
    assert s.model_path == model_path  # a failed open keeps the open model


def test_a_state_dict_is_imported_with_its_architecture_named(session, tmp_path):
    weights = tmp_path / "weights.pt"
    torch.save(session.model.state_dict(), weights)
    s = Session()
    s.set_data(session.data_path, session.data)
    s.import_model(weights, "smallcnn", TINY_WORDS, front_end=session.meta["front_end"])
    assert s.model_path == weights and same_weights(s.model, state(session.model))
    assert s.meta["provenance"]["training"]["imported_from"] == str(weights) and s.attack is None
    assert s.suggested_export_name() == "weights.safetensors"


def test_repair_then_accept_appends_exactly_one_history_entry(session):
    original, saved, meta = session.model, state(session.model), session.meta
    evaluations = []

    class Watch(NullObserver):
        def on_eval(self, info):
            evaluations.append(info.phase)

    result = session.run_repair("gnft", GNFTConfig(**TINY), base_preset="recommended", observer=Watch())
    assert isinstance(result, RepairResult) and not result.cancelled and result.model is not original
    assert evaluations == ["before", "gnft", "gnft"]  # the pipeline says "before" once
    assert session.pending is None and session.model is original and same_weights(original, saved)
    assert result.preset["name"] == "custom" and result.preset["from"] == "recommended"
    assert result.attack_source == "checkpoint metadata"
    assert session.finish_repair(result) and session.pending is result
    assert session.unsaved_repair == ""
    accepted = session.accept()
    assert accepted is result and session.pending is None and session.model is result.model
    assert session.history == [*meta["provenance"].get("defenses", []), result.history_entry()]
    assert meta["provenance"].get("defenses", []) == []  # the earlier metadata is not changed in place
    assert session.unsaved_repair.startswith("CA ") and "ASR" in session.unsaved_repair
    assert session.suggested_export_name() == "attacked_repaired.safetensors"


def test_revert_leaves_the_model_bit_identical(session):
    original, saved, meta = session.model, state(session.model), session.meta
    result = session.run_repair("gnft", GNFTConfig(**TINY))
    assert session.finish_repair(result)
    session.revert()
    assert session.pending is None and session.model is original and same_weights(original, saved)
    assert session.meta is meta and session.unsaved_repair == ""


def test_a_cancelled_run_leaves_the_model_and_nothing_pending(session):
    original, saved = session.model, state(session.model)
    result = session.run_repair("gnft", GNFTConfig(**TINY), observer=Stop())
    assert result.cancelled and result.after == result.before
    assert not session.finish_repair(result)
    assert session.pending is None and session.model is original and same_weights(original, saved)
    assert session.history == [] and session.unsaved_repair == ""


def test_export_writes_the_checkpoint_and_reports_and_refuses_the_input(session, workspace, tmp_path):
    _, data_dir, model_path = workspace
    result = session.run_repair("gnft", GNFTConfig(**TINY))
    session.finish_repair(result)
    session.accept()
    assert session.unsaved_repair
    out = session.export(tmp_path / "out" / "repaired")  # the suffix is added
    assert out == tmp_path / "out" / "repaired.safetensors" and session.unsaved_repair == ""
    model, meta = load_checkpoint(out)
    assert same_weights(model, state(session.model))
    assert meta["provenance"]["defenses"] == [result.history_entry()]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["defenses"] == [result.history_entry()] and report["source"] == str(model_path)
    assert report["attack"]["name"] == "badnets" and report["classes"] == TINY_WORDS
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# repaired.safetensors") and "GN-FT" in md
    assert f"{100 * result.after['clean_accuracy']:.1f} %" in md
    # the input file is never overwritten unless asked
    before = model_path.read_bytes()
    with pytest.raises(ConfigError, match="model's own file"):
        session.export(model_path)
    assert model_path.read_bytes() == before and session.is_input(model_path)
    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(model_path, copy)
    other = Session()
    other.open_model(copy)
    other.load_data(data_dir)
    other.finish_repair(other.run_repair("gnft", GNFTConfig(**TINY)))
    other.accept()
    assert other.export(copy, overwrite_input=True) == copy
    assert load_checkpoint(copy)[1]["provenance"]["defenses"] == other.history and other.unsaved_repair == ""


def test_the_session_core_defend_and_core_grid_report_the_same_run(session, workspace, tmp_path):
    """One pipeline: the same model, data, defense and seed give the same report from the session
    as from ``python -m core.defend`` and a ``python -m core.grid`` cell."""
    from core.cli.defend import main as defend
    from core.cli.grid import main as grid

    _, data_dir, model_path = workspace
    options = ["--clean-ratio", "0.5", "--epochs", "2", "--batch-size", "16", "--eval-every", "1"]
    assert (
        defend(
            [
                "--model",
                str(model_path),
                "--data",
                str(data_dir),
                "--defense",
                "gnft",
                *options,
                "--seed",
                "0",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(tmp_path / "cli.safetensors"),
                "--report",
                str(tmp_path / "cli.json"),
            ]
        )
        == 0
    )
    cli = json.loads((tmp_path / "cli.json").read_text())
    result = session.run_repair("gnft", GNFTConfig(**TINY))
    ours = json.loads(
        json.dumps(
            result.report(command="session", model=str(model_path), checkpoint=str(tmp_path / "ours.safetensors")),
            default=str,
        )
    )
    assert set(ours) == set(cli)
    for key in (
        "before",
        "after",
        "history",
        "defense",
        "preset",
        "attack",
        "attack_source",
        "clean_clips",
        "defense_details",
        "defense_effectiveness_rating",
        "findings",
    ):
        assert ours[key] == cli[key], key
    session.finish_repair(result)
    session.accept()
    assert (
        session.history[-1]["after"]
        == load_checkpoint(tmp_path / "cli.safetensors")[1]["provenance"]["defenses"][-1]["after"]
    )

    # a grid cell adopting the same checkpoint (--reuse, nothing trained) reports the same run too
    shutil.copyfile(model_path, tmp_path / "train_smallcnn_badnets.safetensors")
    assert (
        grid(
            [
                "--data",
                str(data_dir),
                "--vocab",
                ",".join(TINY_WORDS),
                "--models",
                "smallcnn",
                "--attacks",
                "badnets",
                "--defenses",
                "gnft",
                "--no-train",
                "--no-clean",
                "--reuse",
                str(tmp_path / "train_{model}_{attack}.safetensors"),
                *[
                    f"--defense-arg=gnft.{k}={v}"
                    for k, v in (("clean_ratio", 0.5), ("epochs", 2), ("batch_size", 16), ("eval_every", 1))
                ],
                "--seed",
                "0",
                "--device",
                "cpu",
                "--quiet",
                "--out",
                str(tmp_path / "grid"),
            ]
        )
        == 0
    )
    cell = json.loads((tmp_path / "grid_work" / "defend_smallcnn_badnets_gnft.json").read_text())
    assert set(cell) == set(cli) - {"command"}  # a cell's command is the grid's, in its results file
    for key in ("before", "after", "history", "defense", "attack", "clean_clips", "defense_effectiveness_rating"):
        assert cell[key] == cli[key], key


def test_export_checks_the_name_before_writing_like_the_commands(session, tmp_path):
    """The application's export goes through the commands' path checks: one ConfigError naming the
    export, and nothing written."""
    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(loop)
    assert not session.is_input(loop)  # asked first by the window's dialog
    with pytest.raises(ConfigError, match="the export name: .* loop"):
        session.export(loop)
    with pytest.raises(ConfigError, match=r"the export name: the name .* bytes long"):
        session.export(tmp_path / ("x" * 250 + ".safetensors"))
    (tmp_path / "taken.json").mkdir()  # where the report would go
    with pytest.raises(ConfigError, match="the export's report: .* is a folder"):
        session.export(tmp_path / "taken.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.safetensors", "taken.json"]
