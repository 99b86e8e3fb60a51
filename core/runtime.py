"""What every command shares: device choice, seeding, progress bars, machine facts, error exits."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.allocator import allocator_mode
from core.errors import ConfigError, GnftError

__all__ = [
    "resolve_device",
    "seed_everything",
    "machine_info",
    "progress_bar",
    "add_common_arguments",
    "parse_args",
    "THREADS_ENV",
    "available_cpus",
    "default_threads",
    "resolve_threads",
    "set_threads",
    "run_command",
    "write_json",
    "write_text_atomic",
    "check_writable",
    "check_distinct",
    "parse_bool",
    "MEMORY_FORMATS",
    "check_memory_format",
    "memory_format",
]

log = logging.getLogger("core")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a clear error."""
    if isinstance(name, torch.device):
        return name
    name = str(name).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for shuffling.

    On CUDA it also asks for cuDNN's deterministic algorithms (no autotuner) and a fixed cuBLAS
    workspace: two identical GN-FT columns of the H200 grid differed by 0.2 points of CA and 1.5
    of ASR without them (benchmarks/results/grid_asc10_h200.notes.md)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else the platform's): float results of MKL-backed
    kernels, and so the bytes of a synthetic corpus, can differ between CPU models."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model, GPU name (or None), torch/torchaudio/Python versions and the 1-minute load
    average (this machine is shared: a loaded machine explains slow timings): recorded with every result."""
    cpu = cpu_model()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    import torchaudio

    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "device": str(device) if device is not None else None,
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "available_cpus": available_cpus(),
        "allocator": allocator_mode(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def ran_on(machine: dict[str, Any] | None) -> str | None:
    """Where a result was computed, in words, from its :func:`machine_info` record: the GPU's name for a
    CUDA run, else the CPU's (e.g. ``NVIDIA H200 (cuda)``, ``AMD EPYC (cpu)``); None when not recorded."""
    if not machine:
        return None
    if str(machine.get("device") or "").startswith("cuda") and machine.get("gpu"):
        return f"{machine['gpu']} (cuda)"
    return f"{machine.get('cpu') or 'unknown CPU'} (cpu)"


def progress_bar(total: int, desc: str, enabled: bool | None = None):
    """A tqdm bar on a terminal, silent otherwise (logs carry the progress then)."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


#: ``GNFT_THREADS`` (a count or ``auto``) is the thread count when no ``--threads`` is given.
THREADS_ENV = "GNFT_THREADS"
#: torch's own thread count when this module was first imported (its default, or ``OMP_NUM_THREADS``).
_TORCH_DEFAULT_THREADS = torch.get_num_threads()


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Torch CPU threads when nobody chose: torch's own default (its cores, or ``OMP_NUM_THREADS``),
    at most the CPUs this process may use.

    Measured (``benchmarks/results/threads.json``, GN-FT steps on this 2-core machine): alone, two
    threads ran a step 1.5x (SmallCNN) and 2.2x (ResNet) faster than one, so one job gets the
    machine; beside a busy process two threads were 0.84-1.01x of one, and two 1-thread workers
    did 1.4-1.5x the steps of one 2-thread worker: on a shared machine pass ``--threads 1``, and
    ``core.grid --jobs 2 --threads 1``. The default never depends on the load, so a machine always
    computes the same bits (the thread count changes the rounding of parallel reductions)."""
    return max(1, min(_TORCH_DEFAULT_THREADS, available_cpus()))


def resolve_threads(choice: int | str | None) -> int:
    """The thread count ``choice`` names: a count >= 1, or ``auto``/None (then ``$GNFT_THREADS``,
    else :func:`default_threads`); anything else is a ConfigError naming ``--threads``."""
    if choice is None:
        choice = os.environ.get(THREADS_ENV) or "auto"
    given = choice
    if isinstance(choice, str):
        text = choice.strip().lower()
        if text == "auto":
            return default_threads()
        try:
            choice = int(text)
        except ValueError:
            raise ConfigError(f"--threads must be a whole number >= 1 or auto, got {choice!r}") from None
    if isinstance(choice, bool) or not isinstance(choice, int) or choice < 1:
        raise ConfigError(f"--threads must be a whole number >= 1 or auto, got {given!r}")
    return choice


def set_threads(choice: int | str | None) -> int:
    """Make torch use the threads ``choice`` names (see :func:`resolve_threads`); returns the count."""
    threads = resolve_threads(choice)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _threads_option(text: str) -> str:
    try:
        resolve_threads(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--threads ")) from None
    return text


def _seed_option(text: str) -> int:
    from core.options import SEED_RANGE, SEED_TEXT, read_number

    try:
        return int(read_number(text, int, SEED_RANGE, range_text=SEED_TEXT))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seed``, ``--device``, ``--threads`` and ``--quiet``, as every command has them."""
    parser.add_argument(
        "--seed",
        type=_seed_option,
        default=0,
        help="random seed, 0 to 2**64-1 (default 0); the same seed gives the same result",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default auto)")
    parser.add_argument(
        "--threads",
        type=_threads_option,
        default=None,
        metavar="N|auto",
        help=f"torch CPU threads (default: ${THREADS_ENV}, else auto: torch's own count, here "
        f"{default_threads()}; on a machine other work shares, 1 is faster). The same thread count gives "
        "the same numbers; it is recorded with every result",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` through the validation layer (:mod:`core.validate`: a bad option is one
    ConfigError line naming it; every declared path checked), then apply what acts on the whole
    process: ``--threads`` (``args.threads`` becomes the count in force)."""
    from core.validate import check_arguments, one_line_errors

    one_line_errors(parser)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if hasattr(args, "threads"):
        args.threads = set_threads(args.threads)
    return args


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is logged, not the one at set-up: a caller
    that swaps stderr (a test's capture, an embedding application) never gets a closed stream."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def run_command(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main``: expected failures end with one clear line and exit code 2, Ctrl-C with
    "interrupted" and 130 (quietly at once while the entry point was still importing: :mod:`core.interrupts`)."""
    from core.interrupts import restore_interrupts

    restore_interrupts()
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig, but following sys.stderr
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    try:
        return main(argv)
    except GnftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically (temp file + rename), creating parent folders; a failure names the file
    and leaves what was there."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a dead writer's is found by core.validate
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically (temp file + rename), creating parent folders."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def check_writable(*paths: str | os.PathLike | None) -> None:
    """Fail before hours of work when an output could not be written: each path's folder must exist
    (it is created) and take a new file. The paths themselves are not touched."""
    import tempfile

    for path in filter(None, paths):
        folder = Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".gnft-write-check-"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot write there ({exc.strerror or exc}); choose another location before the run starts"
            ) from exc


def check_distinct(
    outputs: dict[str, str | os.PathLike | None], inputs: dict[str, str | os.PathLike | None] | None = None
) -> None:
    """Fail before any work when an output would overwrite an input or another output (a report
    written over the checkpoint it reports on loses that checkpoint). Keys are the option names
    people typed; paths are compared resolved (a link and its target are one file)."""
    seen: dict[Path, str] = {}
    for role, group in (("read", inputs or {}), ("written", outputs)):
        for name, path in group.items():
            if not path:
                continue
            resolved = Path(path).resolve()
            if role == "written" and resolved in seen:
                raise ConfigError(
                    f"{name} is the same file as {seen[resolved]} ({path}): it would be overwritten; "
                    "choose another name"
                )
            seen.setdefault(resolved, name)


def parse_bool(text: str) -> bool:
    """A boolean option value: true/false, yes/no, on/off, 1/0 (``bool("false")`` would be True)."""
    value = {
        "true": True,
        "yes": True,
        "on": True,
        "1": True,
        "false": False,
        "no": False,
        "off": False,
        "0": False,
    }.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def check_memory_format(choice: str) -> None:
    """A ConfigError naming the choices unless ``choice`` is one of ``MEMORY_FORMATS``."""
    if choice not in MEMORY_FORMATS:
        raise ConfigError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {choice!r}")


def memory_format(choice: str, device: torch.device) -> torch.memory_format:
    """The layout conv weights and activations train in. ``auto`` is channels_last on a CPU, where
    its convolutions are faster and the loop's BatchNorm is exact in it
    (:mod:`core.models.batchnorm`; PyTorch's own is about 1e-3 off there in training): 1.1-1.4x per
    step over contiguous (``benchmarks/results/batchnorm_layout.json``). Contiguous on a GPU (its
    channels_last not measured yet)."""
    check_memory_format(choice)
    if choice == "auto":
        choice = "channels_last" if device.type == "cpu" else "contiguous"
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``amp == "bf16"`` (CUDA, or CPU where supported), else nothing."""
    if amp == "none":
        return contextlib.nullcontext()
    if amp != "bf16":
        raise ConfigError(f"amp must be none or bf16, got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
