"""Every command's option space, as hypothesis draws it: a tiny workspace, each option's good and bad values,
and the check every run must pass (it ran, or it failed with exit code 2 and one line naming an option it
was given; never a traceback, never an input changed, never a temporary left behind).

Used by ``tests/hardening/test_option_space.py`` (a few examples per command, derandomized) and by
``benchmarks/hardening.py`` (many more, recorded in ``benchmarks/results/hardening.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hypothesis import strategies as st

from core import models
from core.checkpoint import make_metadata, save_checkpoint
from core.features import FrontEndConfig
from core.runtime import run_command
from tests.conftest import TINY_WORDS, write_speech_commands

FRONT_END = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
FRONT_END_ARGS = ["--n-coeffs", "20", "--n-mels", "40", "--hop-length", "320"]
HUGE = "99999999999999999999999"
INT_BAD = ["0", "-1", "abc", "1.5", "", HUGE, "nan"]
FLOAT_BAD = ["nan", "inf", "-inf", "-1", "abc", "", "1e309"]
SEED = ["0", "7", str(2**64 - 1)]
SEED_BAD = ["-1", str(2**64), "x", "1e3"]


@dataclass
class Workspace:
    """Real files every command reads: a Speech Commands folder, a checkpoint, a clip, links that lead
    nowhere or in a loop, a name that is not UTF-8; ``fresh()`` names a new output folder."""

    root: Path
    data: Path = field(init=False)
    model: Path = field(init=False)
    clip: Path = field(init=False)
    dangling: Path = field(init=False)
    loop: Path = field(init=False)
    not_utf8: str = field(init=False)
    counter: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = write_speech_commands(self.root / "sc", speakers=4, per_speaker=1)
        torch.manual_seed(0)
        net = models.build("smallcnn", len(TINY_WORDS), FRONT_END).eval()
        self.model = save_checkpoint(
            self.root / "model.safetensors", net, make_metadata("smallcnn", TINY_WORDS, FRONT_END.to_dict(), seed=1)
        )
        self.clip = self.data / "yes" / "000000a0_nohash_0.wav"
        self.dangling = self.root / "dangling.safetensors"
        self.dangling.symlink_to(self.root / "nowhere.safetensors")
        self.loop = self.root / "loop.safetensors"
        self.loop.symlink_to(self.loop)
        self.not_utf8 = os.fsdecode(os.fsencode(self.root) + b"/\xff\xfe.safetensors")

    def fresh(self, name: str) -> Path:
        """A folder no run has used: each example writes its outputs there."""
        self.counter += 1
        folder = self.root / "runs" / f"{name}{self.counter}"
        folder.mkdir(parents=True)
        return folder

    def inputs(self) -> dict[Path, str]:
        """Digest of every file the commands read (none may change)."""
        files = [self.model, *sorted(self.data.rglob("*.wav")), *sorted(self.data.glob("*.txt"))]
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@dataclass(frozen=True)
class Outcome:
    """What one run did: exit code, its ``error:`` lines, all of stderr, seconds, and a traceback if any."""

    code: int | None
    errors: list[str]
    stderr: str
    seconds: float
    traceback: str | None


def run(module: str, argv: list[str]) -> Outcome:
    """Run ``core.cli.<module>``'s main in this process as ``python -m`` does (:func:`run_command`)."""
    main = importlib.import_module(f"core.cli.{module}").main
    err, out = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    trace = None
    code: int | None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = run_command(main, argv)
        except SystemExit as exc:  # --help and the like
            code = exc.code if isinstance(exc.code, int) else 0
        except BaseException as exc:  # noqa: BLE001 - anything else is what the tests look for
            import traceback

            trace = "".join(traceback.format_exception(exc))
            code = None
    text = err.getvalue()
    if "Traceback (most recent call last)" in text and trace is None:
        trace = text
    return Outcome(
        code, [ln for ln in text.splitlines() if ln.startswith("error:")], text, time.perf_counter() - started, trace
    )


# ------------------------------------------------------------------ the option spaces
Pools = dict[str, tuple[list[str], list[str]]]


def _pools(ws: Workspace, out: Path) -> dict[str, tuple[list[str], Pools]]:
    """Per command: the base command line (tiny and fast) and each option's (good, bad) values."""
    data = ["--data", str(ws.data), "--vocab", ",".join(TINY_WORDS)]
    common: Pools = {"--seed": (SEED, SEED_BAD)}
    long_name = str(out / ("n" * 300 + ".json"))
    paths_bad = [str(ws.dangling), str(ws.loop), ws.not_utf8, str(out / ("m" * 300 + ".safetensors"))]
    return {
        "train": (
            [*data, "--model", "smallcnn", "--epochs", "1", "--device", "cpu", "--quiet", *FRONT_END_ARGS]
            + ["--out", str(out / "t.safetensors")],
            {
                **common,
                "--epochs": (["1"], INT_BAD),
                "--batch-size": (["4", "1000"], INT_BAD),
                "--lr": (["0.01"], [*FLOAT_BAD, "0"]),
                "--weight-decay": (["0", "0.1"], FLOAT_BAD),
                "--patience": (["1"], INT_BAD),
                "--sample-rate": (["16000"], ["0", "999", "1000000000", "nan"]),
                "--n-fft": (["400"], ["0", "2000000", "-3"]),
                "--n-coeffs": (["20"], ["0", "600", "41"]),
                "--augment": (["none", "default", "shift=50"], ["shift=nan", "noise=2", "snr=inf:inf", "bogus=1"]),
                "--stop-on": (["auto", "clean"], ["bogus"]),
                "--report": ([str(out / "r.json")], [str(out / "t.safetensors"), "", long_name, str(out)]),
                "--init-from": ([str(ws.model)], paths_bad),
                "--attack": (["badnets"], ["bogus"]),
                "--attack-arg": (["poison_rate=0.5"], ["poison_rate=nan", "target=-1", "seed=-1", "x"]),
                "--threads": (["1"], ["0", "many"]),
            },
        ),
        "defend": (
            ["--model", str(ws.model), "--data", str(ws.data), "--device", "cpu", "--quiet", "--epochs", "1"]
            + ["--eval-every", "1", "--out", str(out / "d.safetensors")],
            {
                **common,
                "--clean-ratio": (["0.5", "1"], [*FLOAT_BAD, "0", "1.5"]),
                "--batch-size": (["4"], INT_BAD),
                "--lr": (["0.01"], [*FLOAT_BAD, "0"]),
                "--momentum": (["0", "0.9"], FLOAT_BAD),
                "--weight-decay": (["0"], FLOAT_BAD),
                "--r": (["0.05"], FLOAT_BAD),
                "--alpha": (["0.5"], [*FLOAT_BAD, "2"]),
                "--max-grad-norm": (["0", "1"], FLOAT_BAD),
                "--distill": (["0", "1"], FLOAT_BAD),
                "--head-shift": (["0", "0.2"], FLOAT_BAD),
                "--latent-recalibrate": (["0", "1"], [b for b in INT_BAD if b != "0"]),
                "--latent-growth": (["0", "2"], FLOAT_BAD),
                "--latent-recalibrate-on": (["any", "linear"], ["conv", ""]),
                "--report": ([str(out / "r.json")], [str(ws.model), str(out / "d.safetensors"), long_name, ""]),
                "--out": ([str(out / "d.safetensors")], [str(ws.model), str(out / "d.json"), str(out)]),
                "--model": ([str(ws.model)], paths_bad),
                "--data": ([str(ws.data)], [str(ws.dangling), str(ws.model)]),
            },
        ),
        "analyze": (
            ["--model", str(ws.model), *data, "--device", "cpu", "--quiet", "--max-clips", "4"]
            + ["--out", str(out / "a.json")],
            {
                **common,
                "--max-clips": (["4"], INT_BAD),
                "--clean-ratio": (["0.5"], [*FLOAT_BAD, "0"]),
                "--t-clc": (["0", "0.1"], FLOAT_BAD),
                "--t-blc": (["0"], FLOAT_BAD),
                "--grad-ord": (["1", "2"], ["3", "x"]),
                "--split": (["test", "validation"], ["holdout"]),
                "--layers": (["all"], ["classifier.nowhere"]),
                "--plot": ([str(out / "a.png")], [str(out / "a.xyz"), str(ws.model), str(out / "a.json")]),
                "--compare": ([str(ws.model)], paths_bad),
                "--out": ([str(out / "a.json")], [str(ws.model), str(out), long_name]),
            },
        ),
        "scan": (
            ["--model", str(ws.model), *data, "--device", "cpu", "--quiet", "--steps", "2", "--batch-size", "1"]
            + ["--out", str(out / "s.json")],
            {
                **common,
                "--steps": (["1", "2"], [v for v in INT_BAD if v != HUGE]),  # a huge count runs as long as asked
                "--batch-size": (["1", "3"], INT_BAD),
                "--clean-ratio": (["0.5", "1"], [*FLOAT_BAD, "0", "1.5"]),
                "--success": (["0.5", "1"], [*FLOAT_BAD, "0", "1.5"]),
                "--threshold": (["0.5", "3"], [*FLOAT_BAD, "0"]),
                "--peak": (["0.1", "1"], [*FLOAT_BAD, "0", "1.5"]),
                "--domains": (["features", "waveform", "waveform,features"], ["cepstrum", "", ",", "features,x"]),
                "--out": ([str(out / "s.json")], [str(ws.model), str(out / "s.wav"), str(out), long_name]),
                "--triggers": ([str(out / "wavs")], [str(ws.model), str(ws.clip), str(ws.data), long_name]),
                "--model": ([str(ws.model)], paths_bad),
                "--data": ([str(ws.data)], [str(ws.dangling), str(ws.model)]),
                "--threads": (["1"], ["0", "many"]),
            },
        ),
        "attacks": (
            ["example", "--attack", "badnets", "--clip", str(ws.clip), "--out", str(out / "e.wav")],
            {
                "--seed": (SEED, SEED_BAD),
                "--seconds": (["1", "2.5"], [*FLOAT_BAD, "0", "1e7"]),
                "--sample-rate": (["16000", "8000"], ["0", "1e9", "x"]),
                "--out": ([str(out / "e.wav")], [str(ws.clip), str(out / "e.mp3"), str(out)]),
                "--clip": ([str(ws.clip)], [str(ws.dangling), str(ws.loop), ws.not_utf8]),
                "--attack-arg": (["poison_rate=0.2"], ["poison_rate=nan", "target=-1", "x"]),
            },
        ),
        "synth": (
            ["--words", "yes,no", "--speakers", "4", "--clips-per-speaker", "1", "--out", str(out / "corpus")],
            {
                "--seed": (SEED, SEED_BAD),
                "--snr-db": (["20,40", "0,0"], ["inf,inf", "1e300,1e301", "40,20", "nan,1", "x"]),
                "--clip-seconds": (["1"], [*FLOAT_BAD, "0"]),
                "--sample-rate": (["16000", "8000"], ["0", "100", "x"]),
                "--workers": (["1"], INT_BAD),
                "--validation-fraction": (["0.1"], [*FLOAT_BAD, "1"]),
                "--speakers": (["4"], INT_BAD),
                "--out": ([str(out / "corpus")], [str(ws.model), long_name, ""]),
            },
        ),
        "grid": (
            [*data, "--models", "smallcnn", "--attacks", "badnets", "--defenses", "none", "--no-train", "--no-clean"]
            + ["--device", "cpu", "--quiet", "--out", str(out / "g")],
            {
                **common,
                "--jobs": (["1"], [*INT_BAD, "99999"]),
                "--defense-seeds": (["0,1"], ["a", "0,0", "-1", ""]),
                "--reuse": ([str(out / "{model}_{attack}.safetensors")], ["{bogus}", "{", "{0}"]),
                "--train-epochs": (["1"], INT_BAD),
                "--train-lr": (["0.01"], FLOAT_BAD),
                "--defense-arg": (["gnft.epochs=1"], ["gnft.r=nan", "gnft.bogus=1", "x", "ft.lr=0"]),
                "--work": ([str(out / "work")], [str(ws.model)]),
            },
        ),
        "demo": (
            ["--out", str(ws.root / "demo"), "--clips-per-word", "6"],
            {
                "--seed": (["0"], SEED_BAD),
                "--clips-per-word": (["6"], INT_BAD),
                "--epochs": ([], INT_BAD),
                "--out": ([str(ws.root / "demo")], [str(ws.model), long_name]),
            },
        ),
    }


COMMANDS = ("train", "defend", "analyze", "scan", "attacks", "synth", "grid", "demo")


@st.composite
def command_lines(draw: st.DrawFn, ws: Workspace, command: str, bad_share: float = 0.6) -> tuple[list[str], Path]:
    """A command line of ``command``: its base plus 0-3 options, each a good or a bad value."""
    out = ws.fresh(command)
    base, pools = _pools(ws, out)[command]
    flags = draw(st.lists(st.sampled_from(sorted(pools)), max_size=3, unique=True))
    argv = list(base)
    for flag in flags:
        good, bad = pools[flag]
        pick_bad = not good or draw(st.floats(0, 1)) < bad_share
        value = draw(st.sampled_from(bad if pick_bad else good))
        argv += [flag, value] if not value.startswith("-") else [f"{flag}={value}"]
    return argv, out


def check(command: str, argv: list[str], outcome: Outcome, ws: Workspace, before: dict[Path, str], out: Path) -> str:
    """The promise for one run; returns "ran" or "refused". Raises AssertionError saying what broke."""
    where = f"{command} {' '.join(argv)}"
    assert outcome.traceback is None, f"traceback from {where}:\n{outcome.traceback}"
    assert outcome.code in (0, 2), f"exit {outcome.code} from {where}:\n{outcome.stderr}"
    assert ws.inputs() == before, f"an input changed: {where}"
    litter = [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".partial-" in p.name]
    assert not litter, f"temporaries left by {where}: {litter}"
    if outcome.code == 0:
        return "ran"
    assert len(outcome.errors) == 1, f"{where}: {len(outcome.errors)} error lines:\n{outcome.stderr}"
    given = [a.split("=")[0] for a in argv if a.startswith("--")]
    keys = [a.split("=")[0].split(".")[-1] for a in argv if "=" in a and not a.startswith("-")]  # KEY=VALUE
    named = [f for f in given if f in outcome.errors[0] or f[2:].replace("-", "_") in outcome.errors[0]]
    named += [k for k in keys if k and k in outcome.errors[0]]
    assert named or str(ws.root) in outcome.errors[0], f"{where}: the error names no option:\n{outcome.errors[0]}"
    return "refused"


def one_example(ws: Workspace, command: str, argv: list[str], out: Path) -> tuple[str, Outcome]:
    """Run one command line and check it (see :func:`check`)."""
    before = ws.inputs()
    outcome = run(command, argv)
    return check(command, argv, outcome, ws, before, out), outcome


Runner = Callable[[Workspace, str, list[str], Path], tuple[str, Outcome]]
