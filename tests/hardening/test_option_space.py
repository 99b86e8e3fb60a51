"""Property tests over every command's options, its paths, checkpoint headers and loader folders (issue 32).

Each command is run in this process on a tiny workspace (``tests/hardening/harness.py``): every drawn
command line either runs (exit 0) or is refused with exit code 2 and one line naming an option it was
given; never a traceback, never an input changed, never a temporary left. Derandomized and a few
examples per command (``benchmarks/hardening.py`` runs many more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from core.checkpoint import MAX_CLASSES, MAX_NESTING, load_checkpoint, read_metadata
from core.data import load_dataset
from core.errors import CheckpointError, ConfigError, DataError
from core.runtime import parse_args
from core.validate import declared_paths, remove_stale_temporaries, stale_temporaries
from tests.conftest import TINY_WORDS, write_speech_commands
from tests.hardening.harness import COMMANDS, Workspace, command_lines, one_example, run

REPO = Path(__file__).resolve().parents[2]


def quick(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("space"))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_drawn_command_line_runs_or_is_refused_in_one_line(ws, command):
    seen = {"ran": 0, "refused": 0}

    @quick(12)
    @given(case=command_lines(ws, command))
    def property_(case):
        argv, out = case
        verdict, _ = one_example(ws, command, argv, out)
        seen[verdict] += 1

    property_()
    assert seen["refused"] > 0  # the bad values were drawn and refused, not ignored


# ------------------------------------------------------------------ output-collision matrix
def _parsers():
    from core.cli import analyze, attacks, defend, grid, scan, synth, train

    return {
        "train": (train.build_parser, ["--data", "{data}", "--out", "{o}"]),
        "defend": (defend.build_parser, ["--model", "{m}", "--data", "{data}", "--out", "{o}"]),
        "analyze": (analyze.build_parser, ["--model", "{m}", "--data", "{data}", "--out", "{j}"]),
        "scan": (scan.build_parser, ["--model", "{m}", "--data", "{data}", "--out", "{j}"]),
        "grid": (grid.build_parser, ["--data", "{data}", "--out", "{g}"]),
        "attacks": (attacks.build_parser, ["example", "--attack", "badnets", "--clip", "{c}", "--out", "{w}"]),
        "synth": (synth.build_parser, ["--out", "{s}"]),
    }


def _pairs():
    for command, (build, base) in _parsers().items():
        parser = build()
        args = parser.parse_args([a.replace("{", "").replace("}", "") for a in base])
        paths = declared_paths(parser, args)
        outputs = [f for f, _, role in paths if role.role == "output"]
        for out in outputs:
            for other, _, _ in paths:
                if other != out:
                    yield command, out, other


@pytest.mark.parametrize("command, output, other", list(_pairs()))
def test_any_output_named_like_another_path_is_refused_before_work(ws, tmp_path, command, output, other):
    build, base = _parsers()[command]
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"must survive")
    values = {
        "data": str(ws.data),
        "m": str(ws.model),
        "o": str(tmp_path / "o.safetensors"),
        "j": str(tmp_path / "a.json"),
        "g": str(tmp_path / "g"),
        "c": str(ws.clip),
        "w": str(tmp_path / "e.wav"),
        "s": str(tmp_path / "corpus"),
    }
    argv = [a.format(**values) for a in base]
    shared = argv[argv.index(other) + 1] if other in argv else str(victim)
    for flag in (other, output):
        if flag in argv:
            argv[argv.index(flag) + 1] = shared
        else:
            argv += [flag, shared]
    before = {p: p.read_bytes() for p in (ws.model, ws.clip, victim)}
    with pytest.raises(ConfigError, match="is the same file as"):
        parse_args(build(), argv)
    assert {p: p.read_bytes() for p in before} == before
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


# ------------------------------------------------------------------ checkpoint headers
def _header_values():
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8))
    return st.recursive(
        leaf,
        lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=4), kids, max_size=3)),
        max_leaves=12,
    )


@quick(60)
@given(
    key=st.sampled_from(
        ["classes", "arch_args", "front_end", "sample_rate", "provenance", "architecture", "format_version"]
    ),
    value=_header_values(),
    depth=st.sampled_from([0, 0, 0, MAX_NESTING + 1, 5000]),
    classes=st.sampled_from([0, 0, MAX_CLASSES + 1, 2_000_000]),
)
def test_any_checkpoint_header_loads_or_is_refused_naming_the_file(ws, tmp_path_factory, key, value, depth, classes):
    meta = json.loads(json.dumps(read_metadata(ws.model)))
    meta[key] = value
    if depth:
        meta["provenance"] = json.loads("[" * depth + "]" * depth) if depth < 900 else None
    if classes:
        meta["classes"] = [f"c{i}" for i in range(classes)]
    text = json.dumps(meta)
    if depth >= 900:  # deeper than Python's own JSON reader goes
        text = text.replace('"provenance": null', '"provenance": ' + "[" * depth + "]" * depth)
    path = tmp_path_factory.mktemp("hdr") / "h.safetensors"
    good, _ = load_checkpoint(ws.model)
    save_file({k: v.contiguous() for k, v in good.state_dict().items()}, path, metadata={"gnft": text})
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)


@pytest.mark.parametrize(
    "count, message",
    [
        (2_000_000, r"the metadata is 2\d.\d MB; .* at most 16 MB"),
        (200_000, f"classes lists 200000 names; at most {MAX_CLASSES}"),
    ],
)
def test_a_header_naming_millions_of_classes_is_refused_before_anything_is_built(ws, tmp_path, count, message):
    import resource

    meta = read_metadata(ws.model)
    meta["classes"] = [f"word{i}" for i in range(count)]
    path = tmp_path / "huge.safetensors"
    good, _ = load_checkpoint(ws.model)
    save_file({k: v.contiguous() for k, v in good.state_dict().items()}, path, metadata={"gnft": json.dumps(meta)})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 600_000  # kB: far from 1.9 GB


def test_deeply_nested_metadata_is_one_error(ws, tmp_path):
    meta = json.dumps(read_metadata(ws.model))[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    good, _ = load_checkpoint(ws.model)
    save_file(
        {k: v.contiguous() for k, v in good.state_dict().items()}, tmp_path / "d.safetensors", metadata={"gnft": meta}
    )
    with pytest.raises(CheckpointError, match="the metadata nests deeper"):
        load_checkpoint(tmp_path / "d.safetensors")


# ------------------------------------------------------------------ loader names and folder shapes
ODD_NAMES = [b"\xff\xfe_nohash_0.wav", "caf\u00e9_nohash_0.wav".encode(), b"sp ace_nohash_0.wav", b"-dash_nohash_0.wav"]


@quick(25)
@given(
    shape=st.lists(
        st.sampled_from(["dangling", "loop", "odd_name", "empty_word", "dir_loop", "fifo", "stray_file", "dir_as_wav"]),
        max_size=3,
    ),
    odd=st.sampled_from(ODD_NAMES),
    skip_bad=st.booleans(),
)
def test_loader_folders_of_any_shape_load_or_name_the_problem(tmp_path_factory, shape, odd, skip_bad):
    root = write_speech_commands(tmp_path_factory.mktemp("shape") / "sc", speakers=4, per_speaker=1)
    yes = root / "yes"
    for kind in shape:
        if kind == "dangling" and not (yes / "b_nohash_0.wav").is_symlink():
            (yes / "b_nohash_0.wav").symlink_to(root / "nowhere.wav")
        elif kind == "loop" and not (yes / "l_nohash_0.wav").is_symlink():
            (yes / "l_nohash_0.wav").symlink_to(yes / "l_nohash_0.wav")
        elif kind == "odd_name":
            (Path(os.fsdecode(os.fsencode(yes) + b"/" + odd))).write_bytes((yes / "000000a0_nohash_0.wav").read_bytes())
        elif kind == "empty_word":
            (root / "quiet").mkdir(exist_ok=True)
        elif kind == "dir_loop" and not (root / "again").is_symlink():
            (root / "again").symlink_to(root)
        elif kind == "fifo" and not (yes / "f_nohash_0.wav").exists():
            os.mkfifo(yes / "f_nohash_0.wav")
        elif kind == "stray_file":
            (root / "notes.txt").write_text("x")
        elif kind == "dir_as_wav":
            (yes / "d_nohash_0.wav").mkdir(exist_ok=True)
    try:
        data = load_dataset(root, vocab=TINY_WORDS, use_cache=False, skip_bad=skip_bad)
    except DataError as exc:
        assert not skip_bad or "no .wav" in str(exc) or "empty" in str(exc), exc
        assert str(root) in str(exc)
    else:
        assert len(data) >= 16 and torch.isfinite(data.waves).all()


# ------------------------------------------------------------------ the application's start
@pytest.mark.parametrize("marker", [b'{"demo_version": 3, "data": "scd10", "mo', b"[1, 2]\xff\xfe"])
def test_the_application_starts_over_a_corrupt_demo_cache(tmp_path, marker):
    """A truncated marker, and one of the wrong JSON type and encoding: the window starts all the same."""
    demo = tmp_path / "data" / "demo"
    (demo / "scd10").mkdir(parents=True)
    (demo / "demo.json").write_bytes(marker)
    env = {**os.environ, "GNFT_DATA_DIR": str(tmp_path / "data"), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [sys.executable, "-m", "gnft_gui.app", "--self-test"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr


# ------------------------------------------------------------------ litter and Ctrl-C
def test_a_killed_writers_temporaries_are_removed_by_the_next_run_and_live_ones_kept(ws, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    out = tmp_path / "m.safetensors"
    stale = [tmp_path / f".m.safetensors.{pid}.abcd1234.tmp", tmp_path / f".m.safetensors.{pid}.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    partial = tmp_path / f".corpus.partial-{pid}"
    (partial / "yes").mkdir(parents=True)
    live = tmp_path / f".m.safetensors.{os.getpid()}.zzzz9999.tmp"  # this process's own: not stale
    live.write_bytes(b"being written")
    legacy = tmp_path / ".m.safetensors.Ab3_x9Qz.tmp"  # an older writer's name, from before this run
    legacy.write_bytes(b"old")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    assert sorted(stale_temporaries(out)) == sorted([*stale, legacy])
    code_line = ["--model", str(ws.model), "--data", str(ws.data), "--device", "cpu", "--quiet", "--epochs", "1"]
    outcome = run("defend", [*code_line, "--eval-every", "1", "--out", str(out)])
    assert outcome.code == 0 and outcome.traceback is None and out.is_file()
    assert not any(p.exists() for p in [*stale, legacy]) and live.exists()
    assert remove_stale_temporaries(tmp_path / "corpus") == [partial] and not partial.exists()


#: Runs ``python -m MODULE --help`` and sends itself SIGINT the moment torch starts to import (no sleeps).
CTRL_C_IN_IMPORTS = """
import os, runpy, signal, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlC())
sys.argv = ["-m", "--help"]
runpy.run_module(MODULE, run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "module", ["core.train", "core.defend", "core.data.synth", "core.attacks", "core.demo", "core.scan"]
)
def test_ctrl_c_while_torch_imports_exits_130_quietly(module):
    code = CTRL_C_IN_IMPORTS.replace("MODULE", repr(module))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "interrupted" and proc.stdout == ""
