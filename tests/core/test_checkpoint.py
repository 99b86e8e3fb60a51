"""Checkpoints on disk: bit-exact round trip, every mismatch named, pickles refused."""

from __future__ import annotations

import json
import os
import pickle
import struct
import warnings

import pytest
import torch
from safetensors.torch import save_file

from core import models
from core.checkpoint import import_pt, load_checkpoint, make_metadata, read_metadata, save_checkpoint
from core.errors import CheckpointError
from core.features import FrontEndConfig

CLASSES = ["yes", "no", "up", "down"]


def trained_like(name: str = "smallcnn") -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = models.build(name, len(CLASSES))
    model.train()
    with torch.no_grad():  # move BatchNorm running statistics away from their defaults
        model(torch.randn(8, 16000))
    return model.eval()


def meta_for(name: str = "smallcnn", **kw) -> dict:
    return make_metadata(
        name, CLASSES, FrontEndConfig().to_dict(), seed=7, attack={"name": "badnets", "params": {"target": 2}}, **kw
    )


@pytest.mark.parametrize("name", ["smallcnn", "resnet", "rnn"])
def test_round_trip_is_bit_exact(tmp_path, name):
    model = trained_like(name)
    path = save_checkpoint(tmp_path / f"{name}.safetensors", model, meta_for(name))
    loaded, meta = load_checkpoint(path)
    original = model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    x = torch.randn(3, 16000)
    assert torch.equal(loaded(x), model(x))
    assert meta["architecture"] == name and meta["classes"] == CLASSES
    assert meta["provenance"]["seed"] == 7 and meta["provenance"]["attack"]["name"] == "badnets"
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.safetensors"]  # no temp files left


def test_other_architecture_is_refused_with_the_mismatch_named(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", trained_like("smallcnn"), meta_for("smallcnn"))
    with pytest.raises(CheckpointError, match="architecture is 'smallcnn', expected 'resnet'"):
        load_checkpoint(path, architecture="resnet")
    with pytest.raises(CheckpointError, match=r"classes are \['yes', 'no', 'up', 'down'\], expected"):
        load_checkpoint(path, classes=["a", "b"])
    with pytest.raises(CheckpointError, match="sample rate is 16000 Hz, expected 44100 Hz"):
        load_checkpoint(path, sample_rate=44100)


def test_tensors_of_another_architecture_under_a_false_label(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", trained_like("smallcnn"), meta_for("resnet"))
    with pytest.raises(
        CheckpointError, match=r"do not fit architecture 'resnet': missing tensors: .*unexpected tensors"
    ):
        load_checkpoint(path)


def test_missing_extra_and_misshapen_tensors_are_named(tmp_path):
    model = trained_like()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    header = {"gnft": json.dumps(meta_for())}
    dropped = dict(state)
    removed = sorted(k for k in dropped if k.endswith(".bias"))[-1]
    del dropped[removed]
    save_file(dropped, tmp_path / "missing.safetensors", metadata=header)
    with pytest.raises(CheckpointError, match=f"missing tensors: {removed}"):
        load_checkpoint(tmp_path / "missing.safetensors")
    save_file({**state, "classifier.extra": torch.zeros(2)}, tmp_path / "extra.safetensors", metadata=header)
    with pytest.raises(CheckpointError, match=r"unexpected tensors: classifier\.extra"):
        load_checkpoint(tmp_path / "extra.safetensors")
    key = next(k for k, v in state.items() if v.dim() == 2)
    save_file({**state, key: torch.zeros(3, 3)}, tmp_path / "shape.safetensors", metadata=header)
    with pytest.raises(CheckpointError, match=rf"{key} has shape \[3, 3\]"):
        load_checkpoint(tmp_path / "shape.safetensors")


def test_nan_weights_are_refused(tmp_path):
    model = trained_like()
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)
    state[key][0, 0, 0, 0] = float("nan")
    save_file(state, tmp_path / "nan.safetensors", metadata={"gnft": json.dumps(meta_for())})
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(tmp_path / "nan.safetensors")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m.pop("classes"), "lacks classes"),
        (lambda m: m.update(format_version=99), "newer GN-FT Workbench"),
        (lambda m: m.update(format="other"), "metadata format is 'other'"),
        (lambda m: m.update(classes=["a", "a"]), "classes repeat"),
        (lambda m: m.update(sample_rate=8000), "differs from sample_rate 8000"),
        (lambda m: m.update(architecture="transformer"), "cannot build architecture 'transformer'"),
    ],
)
def test_malformed_metadata(tmp_path, mutate, message):
    meta = meta_for()
    mutate(meta)
    save_file(
        {k: v.contiguous() for k, v in trained_like().state_dict().items()},
        tmp_path / "m.safetensors",
        metadata={"gnft": json.dumps(meta)},
    )
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "m.safetensors")


def test_not_json_and_no_metadata_and_not_safetensors(tmp_path):
    state = {"w": torch.zeros(2)}
    save_file(state, tmp_path / "badjson.safetensors", metadata={"gnft": "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_metadata(tmp_path / "badjson.safetensors")
    save_file(state, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="without GN-FT Workbench metadata"):
        read_metadata(tmp_path / "plain.safetensors")
    (tmp_path / "text.safetensors").write_text("hello, I am not a model")
    with pytest.raises(CheckpointError, match="not a valid .safetensors file"):
        load_checkpoint(tmp_path / "text.safetensors")
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(CheckpointError, match="not a valid .safetensors file"):
        load_checkpoint(tmp_path / "huge.safetensors")
    with pytest.raises(CheckpointError, match="no such model file"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_pt_files_are_never_unpickled_directly(tmp_path):
    torch.save(trained_like().state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="import it with core.checkpoint.import_pt"):
        load_checkpoint(tmp_path / "m.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class MakesDirectory:
    """A payload with a visible effect: unpickling it would create ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_pickle_with_arbitrary_objects_is_refused(tmp_path):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": {"w": torch.zeros(1)}, "payload": Evil()}, f)
    with pytest.raises(CheckpointError, match="refused: the file contains code or objects other than tensors"):
        import_pt(tmp_path / "evil.pt", "smallcnn", CLASSES)
    torch.save({"model": trained_like(), "epoch": 3}, tmp_path / "whole_module.pt")
    with pytest.raises(CheckpointError, match="refused"):
        import_pt(tmp_path / "whole_module.pt", "smallcnn", CLASSES)
    # in the newer pickle protocols that torch's safe loader cannot parse (read by the project's
    # restricted unpickler instead): refused by the global's name, and the payload never runs
    marker = tmp_path / "pwned"
    payload = {"state_dict": trained_like().state_dict(), "payload": MakesDirectory(marker)}
    torch.save(payload, tmp_path / "evil4.pt", pickle_protocol=4)
    with open(tmp_path / "evil5.pt", "wb") as f:  # plain pickle (no tensors: those would be refused first)
        pickle.dump({"epoch": 3, "payload": MakesDirectory(marker)}, f, protocol=5)
    for name in ("evil4.pt", "evil5.pt"):
        with pytest.raises(CheckpointError, match=r"refused: .*GLOBAL (posix|os)\.mkdir"):
            import_pt(tmp_path / name, "smallcnn", CLASSES)
    assert not marker.exists()


def test_code_in_a_pt_file_is_named_as_code_and_unsafe_loading_never_suggested(tmp_path):
    """torch.save's default and legacy formats with a payload inside a state dict, and a TorchScript
    archive: refused as code (not "damaged"), nothing runs, and torch's advice to load with
    weights_only=False is not passed on."""
    marker = tmp_path / "pwned"
    payload = {"state_dict": trained_like().state_dict(), "payload": MakesDirectory(marker)}
    torch.save(payload, tmp_path / "default.pt")
    torch.save(payload, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in newer torch; the archive is what counts
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "script.pt"))
    for name, says in (
        ("default.pt", "contains code"),
        ("legacy.pt", "contains code"),
        ("script.pt", "TorchScript archive"),
    ):
        with pytest.raises(CheckpointError) as caught:
            import_pt(tmp_path / name, "smallcnn", CLASSES)
        message = str(caught.value)
        assert says in message and "damaged" not in message and "weights_only" not in message, message
    assert not marker.exists()


def test_weights_only_state_dict_is_imported(tmp_path):
    model = trained_like()
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "full.pt")
    imported, meta = import_pt(tmp_path / "full.pt", "smallcnn", CLASSES)
    x = torch.randn(2, 16000)
    assert torch.equal(imported(x), model(x)) and meta["provenance"]["training"]["imported_from"].endswith("full.pt")
    # a file saved with another pickle protocol imports the same, without torch's "file an issue" warning
    torch.save(model.state_dict(), tmp_path / "protocol4.pt", pickle_protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imported4, _ = import_pt(tmp_path / "protocol4.pt", "smallcnn", CLASSES)
    assert torch.equal(imported4(x), model(x))
    assert not [w for w in caught if "pickle protocol" in str(w.message)], [str(w.message) for w in caught]
    classifier_only = {
        k.removeprefix("classifier."): v for k, v in model.state_dict().items() if k.startswith("classifier.")
    }
    torch.save(classifier_only, tmp_path / "clf.pt")
    imported2, _ = import_pt(tmp_path / "clf.pt", "smallcnn", CLASSES)
    assert torch.equal(imported2(x), model(x))
    with pytest.raises(CheckpointError, match="do not fit architecture 'resnet'"):
        import_pt(tmp_path / "full.pt", "resnet", CLASSES)
    (tmp_path / "junk.pt").write_bytes(b"\x00\x01junk")
    with pytest.raises(CheckpointError, match="junk.pt"):
        import_pt(tmp_path / "junk.pt", "smallcnn", CLASSES)


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", trained_like(), meta_for())
    before = path.read_bytes()
    bad_meta = meta_for()
    bad_meta["provenance"]["note"] = float("nan")
    with pytest.raises(CheckpointError, match="cannot be stored as JSON"):
        save_checkpoint(path, trained_like(), bad_meta)
    assert path.read_bytes() == before


def test_unwritable_location_is_a_checkpoint_error(tmp_path):
    (tmp_path / "file").write_text("x")  # a file where a folder should be
    with pytest.raises((CheckpointError, OSError)):
        save_checkpoint(tmp_path / "file" / "m.safetensors", trained_like(), meta_for())
    assert (tmp_path / "file").read_text() == "x"


def test_a_format_1_checkpoint_keeps_its_batch_floor_and_a_new_one_floors_each_clip(tmp_path):
    model = trained_like()
    new = save_checkpoint(tmp_path / "new.safetensors", model, meta_for())
    assert read_metadata(new)["format_version"] == 2
    assert read_metadata(new)["front_end"]["db_floor"] == "clip"
    # the same model written as a format-1 file (before db_floor existed)
    meta = meta_for()
    meta["format_version"] = 1
    del meta["front_end"]["db_floor"]
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, tmp_path / "old.safetensors", metadata={"gnft": json.dumps(meta)})
    old_model, old_meta = load_checkpoint(tmp_path / "old.safetensors")
    assert old_meta["front_end"]["db_floor"] == "batch" and old_model[0].config.db_floor == "batch"
    new_model, _ = load_checkpoint(new)
    assert new_model[0].config.db_floor == "clip"
    # saved again (a repair's output), it stays a batch-floor model, now said so
    again = save_checkpoint(
        tmp_path / "again.safetensors", old_model, make_metadata("smallcnn", CLASSES, old_meta["front_end"])
    )
    assert load_checkpoint(again)[0][0].config.db_floor == "batch"
