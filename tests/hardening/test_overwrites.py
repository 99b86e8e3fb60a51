"""An output named like an input or like another output is refused before any work, and nothing is touched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.runtime import check_distinct

REPO = Path(__file__).resolve().parents[2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("core.defend", ["--model", "{m}", "--out", "{o}", "--report", "{m}"], "--report is the same file as --model"),
        ("core.defend", ["--model", "{m}", "--out", "{o}", "--report", "{o}"], "--report is the same file as --out"),
        (
            "core.defend",
            ["--model", "{md}", "--out", "{o}", "--report", "{md_json}"],
            "the report's Markdown (--report with .md) is the same file as --model",
        ),
        ("core.defend", ["--model", "{m}", "--out", "{link}"], "--out is the same file as --model"),
        ("core.train", ["--out", "{o}", "--report", "{o}"], "--report is the same file as --out"),
        ("core.train", ["--out", "{m}", "--init-from", "{m}"], "--out is the same file as --init-from"),
        ("core.analyze", ["--model", "{m}", "--out", "{m}"], "--out is the same file as --model"),
        (
            "core.scan",
            ["--model", "{m}", "--out", "{x}", "--triggers", "{m}"],
            "--triggers is the same file as --model",
        ),
        ("core.scan", ["--model", "{m}", "--out", "{x}", "--triggers", "{x}"], "--triggers is the same file as --out"),
        (
            "core.analyze",
            ["--model", "{m}", "--compare", "{o}", "--out", "{x}", "--plot", "{o}"],
            "--plot is the same file as --compare",
        ),
    ],
)
def test_an_output_over_an_input_or_another_output_is_refused(tmp_path, module, args, message):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not really a checkpoint, but nobody may overwrite it")
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"another file that must stay")
    markdown = tmp_path / "notes.md"  # an input named like the Markdown that goes beside --report
    markdown.write_bytes(b"read, never written")
    (tmp_path / "link.safetensors").symlink_to(model)
    paths = {
        "m": model,
        "o": other,
        "x": tmp_path / "x.json",
        "md": markdown,
        "md_json": tmp_path / "notes.json",
        "link": tmp_path / "link.safetensors",
    }
    before = {p: digest(p) for p in (model, other, markdown)}
    cmd = [sys.executable, "-m", module, *(a.format(**paths) for a in args), "--data", str(tmp_path / "no-data")]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert {p: digest(p) for p in before} == before


def test_two_inputs_may_be_one_file_and_distinct_paths_pass(tmp_path):
    model = tmp_path / "m.safetensors"
    check_distinct({"--out": tmp_path / "a.json", "--plot": tmp_path / "a.png"}, {"--model": model, "--compare": model})
    with pytest.raises(ConfigError, match="--plot is the same file as --out"):
        check_distinct({"--out": tmp_path / "a.json", "--plot": tmp_path / "sub" / ".." / "a.json"})
