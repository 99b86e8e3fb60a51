"""The demo workspace: built once (corpus + backdoored model), then reused; an unfinished build is redone."""

from __future__ import annotations

import json

from core.checkpoint import load_checkpoint
from core.data.speech_commands import load_speech_commands
from core.demo import cached_demo, ensure_demo, main


def test_build_once_then_reuse_then_rebuild(tmp_path, capsys):
    folder = tmp_path / "demo"
    demo = ensure_demo(folder, clips_per_word=6, epochs=1)
    info = json.loads((folder / "demo.json").read_text())
    assert demo.model.is_file() and demo.data.is_dir() and info["model"] == demo.model.name
    model, meta = load_checkpoint(demo.model)
    assert meta["provenance"]["attack"]["name"] == "badnets" and meta["architecture"] == "smallcnn"
    data = load_speech_commands(demo.data, meta["classes"])
    assert list(data.classes) == meta["classes"] and len(data) == 60
    stamp = demo.model.stat().st_mtime_ns
    assert ensure_demo(folder, clips_per_word=6, epochs=1).model.stat().st_mtime_ns == stamp  # cached
    (folder / "demo.json").unlink()  # as after a cancelled or interrupted build
    assert cached_demo(folder) is None
    assert main(["--out", str(folder), "--clips-per-word", "6", "--epochs", "1", "--device", "cpu"]) == 0
    assert cached_demo(folder) is not None and "demo in" in capsys.readouterr().out
