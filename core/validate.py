"""The one validation layer: every option a command reads is checked here, before any work starts.

Numbers are checked while the command line is read, from the ranges their declarations carry
(:func:`core.options.number` and the fields' ``option(range=...)``). Paths are declared with a
:class:`core.options.PathRole` (:func:`input_path`, :func:`output_path`, or ``option(path=...)`` on
a dataclass field) and :func:`check_arguments` checks them all once the line is read: names the file
system can hold (UTF-8, each part at most ``NAME_MAX`` bytes, room left for the temporary file an
output is written to first), links that lead nowhere or in a loop, outputs distinct from each other
and from every input after links are resolved, the endings an output must have, folders that take
a new file. :func:`core.runtime.parse_args` runs both, so an option declared this way is checked for
free. Whatever is wrong is one :class:`ConfigError` line naming the option (exit code 2).

Stale temporaries (``.NAME.PID.XXXX.tmp`` files, ``.NAME.partial-PID`` folders of a process that is
gone) beside an output are removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.options import PATH_KEY, PathRole
from core.runtime import check_distinct, check_writable

__all__ = [
    "IMAGE_SUFFIXES",
    "TEMP_OVERHEAD",
    "input_path",
    "output_path",
    "declared_paths",
    "check_arguments",
    "check_paths",
    "check_name",
    "one_line_errors",
    "stale_temporaries",
    "remove_stale_temporaries",
]

log = logging.getLogger("core")

#: Image formats a plot may be written in (matplotlib's that need nothing beyond Pillow).
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
#: Bytes a temporary name adds to an output's (``.NAME.PID.XXXXXXXX.tmp``, ``.NAME.partial-PID``).
TEMP_OVERHEAD = 24
#: When this process started, about: temporaries without a process id older than this are stale.
_STARTED = time.time()


# ------------------------------------------------------------------ declarations
def input_path(
    parser: argparse.ArgumentParser | Any, *flags: str, kind: str = "file", **kwargs: Any
) -> argparse.Action:
    """``parser.add_argument(*flags, **kwargs)`` declaring a path the command reads (``kind`` file,
    folder or any): :func:`check_arguments` refuses links that lead nowhere, loops and names the
    file system cannot hold, and any output over it."""
    action = parser.add_argument(*flags, **kwargs)
    setattr(action, PATH_KEY, PathRole("input", kind))  # type: ignore[arg-type]
    return action


def output_path(
    parser: argparse.ArgumentParser | Any,
    *flags: str,
    kind: str = "file",
    suffixes: Sequence[str] = (),
    suffix_text: str | None = None,
    also: Callable[[str], dict[str, str]] | None = None,
    **kwargs: Any,
) -> argparse.Action:
    """``parser.add_argument(*flags, **kwargs)`` declaring a path the command writes: ``suffixes`` it may
    end in, ``also`` the files written beside it (name -> path). Checked by :func:`check_arguments`."""
    action = parser.add_argument(*flags, **kwargs)
    role = PathRole("output", kind, tuple(s.lower() for s in suffixes), suffix_text, also)  # type: ignore[arg-type]
    setattr(action, PATH_KEY, role)
    return action


def _subparser_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Iterable[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                yield action.choices[chosen]


def declared_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, Any, PathRole]]:
    """``(option, value, role)`` for every declared path option of ``parser`` (and the chosen subcommand)."""
    found: list[tuple[str, Any, PathRole]] = []
    for action in parser._actions:
        role = getattr(action, PATH_KEY, None)
        if role is not None and hasattr(args, action.dest):
            found.append(
                (action.option_strings[0] if action.option_strings else action.dest, getattr(args, action.dest), role)
            )
    for sub in _subparser_of(parser, args):
        found.extend(declared_paths(sub, args))
    return found


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check every declared path option of a parsed command line (see :func:`check_paths`)."""
    check_paths(declared_paths(parser, args))


# ------------------------------------------------------------------ paths
def _name_max(path: Path) -> int:
    """The longest name (bytes) the file system under ``path`` takes (255 where it does not say)."""
    probe = path
    while True:
        try:
            return int(os.pathconf(probe, "PC_NAME_MAX"))
        except (OSError, ValueError):
            if probe == probe.parent:
                return 255
            probe = probe.parent


def _show(text: str, limit: int | None = None) -> str:
    """A name as an error line shows it: printable (non-UTF-8 bytes escaped), long ones shortened."""
    shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return shown if limit is None or len(shown) <= limit else shown[: limit - 3] + "..."


def check_name(option: str, text: str | os.PathLike, *, output: bool = False) -> Path:
    """``text`` as a Path, or a ConfigError naming ``option``: empty, not UTF-8, or a part longer than the
    file system takes (an output's last part leaves room for its temporary file)."""
    text = os.fspath(text)
    if text == "":
        raise ConfigError(f"{option} needs a path, got an empty one")
    if "\0" in text:
        raise ConfigError(f"{option}: a path cannot hold a NUL character, got {_show(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{option}: the name {_show(text)} is not valid UTF-8; rename it (reports and the "
            "application show names as text)"
        ) from None
    path = Path(text)
    limit = _name_max(path.absolute().parent)
    parts = path.parts
    for i, part in enumerate(parts):
        size = len(os.fsencode(part))
        room = limit - TEMP_OVERHEAD if output and i == len(parts) - 1 else limit
        if size > room:
            extra = " (the rest is kept for the temporary file it is written to first)" if room < limit else ""
            raise ConfigError(
                f"{option}: the name {_show(part, 60)} is {size} bytes long; this file system takes at most "
                f"{room} bytes{extra}; choose a shorter name"
            )
    return path


def _check_links(option: str, path: Path, *, reading: bool) -> None:
    """A link that leads back to itself is refused; an input that is a link to nothing is named as one."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"{option}: {_show(str(path))} is a symbolic link that leads back to itself (a loop); "
                "point it at a real file or remove it"
            ) from None
        if exc.errno == errno.ENAMETOOLONG:
            raise ConfigError(f"{option}: {_show(str(path))}: the path is too long for this system") from None
        if reading and exc.errno == errno.ENOENT and os.path.islink(path):
            raise ConfigError(
                f"{option}: {_show(str(path))} is a symbolic link to {_show(os.readlink(path))}, which does not exist"
            ) from None
    try:
        path.resolve()
    except (RuntimeError, OSError):  # a loop further up the path
        raise ConfigError(f"{option}: {_show(str(path))} goes through a symbolic link loop") from None


def _check_output(option: str, path: Path, role: PathRole) -> None:
    if role.kind == "file":
        if path.is_dir():
            raise ConfigError(f"{option}: {_show(str(path))} is a folder; give the name of a file to write")
        if role.suffixes and path.suffix.lower() not in role.suffixes:
            wanted = role.suffix_text or " or ".join(role.suffixes)
            raise ConfigError(f"{option} must end in {wanted}, got {_show(path.name)}")
    elif role.kind == "folder" and path.exists() and not path.is_dir():
        raise ConfigError(f"{option}: {_show(str(path))} is a file; give a folder")


def check_paths(entries: Sequence[tuple[str, Any, PathRole]]) -> None:
    """Check declared paths before any work: names and links first, then outputs distinct from each other
    and from every input (links resolved), then the endings and kinds outputs must have, then folders
    that take a new file; stale temporaries beside an output are removed. ``entries`` are ``(option,
    value, role)``; None values are options not given."""
    inputs: dict[str, Path] = {}
    outputs: dict[str, tuple[Path, PathRole]] = {}
    for option, value, role in entries:
        if value is None:
            continue
        reading = role.role == "input"
        path = check_name(option, value, output=not reading)
        _check_links(option, path, reading=reading)
        if reading:
            inputs[option] = path
            continue
        outputs[option] = (path, role)
        for label, extra in (role.also(os.fspath(value)) if role.also else {}).items():
            extra_path = check_name(label, extra, output=True)
            _check_links(label, extra_path, reading=False)
            outputs[label] = (extra_path, PathRole("output"))
    check_distinct({k: p for k, (p, _) in outputs.items()}, inputs)  # type: ignore[arg-type]
    for option, (path, role) in outputs.items():
        _check_output(option, path, role)
    writable = [path for path, role in outputs.values() if role.kind in ("file", "folder")]  # a folder: its parent
    check_writable(*writable)
    for path in writable:
        remove_stale_temporaries(path)


# ------------------------------------------------------------------ command-line errors
def _one_line(message: str) -> str:
    """argparse's "argument --lr: must be ..." as "--lr must be ...", on one line."""
    message = " ".join(message.split())
    match = re.match(r"argument (\S+?)(?:/\S+)?: (.*)$", message)
    if match:
        flag, rest = match.groups()
        return f"{flag} {rest}" if rest.startswith("must ") else f"{flag}: {rest}"
    return message


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` (and its subcommands) raise a one-line ConfigError naming the option instead of
    printing its usage: the command then ends like any other bad input (one line, exit code 2)."""

    def error(message: str) -> Any:
        raise ConfigError(_one_line(message))

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                one_line_errors(sub)


# ------------------------------------------------------------------ litter
_PID_TEMP = re.compile(r"(?P<pid>\d+)(?:\.\w{1,16})?\.tmp|(?:partial|old)-(?P<pid2>\d+)")
_LEGACY_TEMP = re.compile(r"\w{8}\.tmp|tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporaries left beside ``path`` by writers that are gone: ``.NAME.PID[.X].tmp`` files and
    ``.NAME.partial-PID`` / ``.NAME.old-PID`` folders of a dead process, and ``.NAME.XXXXXXXX.tmp`` /
    ``.NAME.tmp`` (older writers, no process id) last changed before this process started."""
    path = Path(path)
    prefix = f".{path.name}."
    found = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        rest = entry.name[len(prefix) :]
        match = _PID_TEMP.fullmatch(rest)
        try:
            if match:
                if _alive(int(match["pid"] or match["pid2"])):
                    continue
            elif not (_LEGACY_TEMP.fullmatch(rest) and entry.stat(follow_symlinks=False).st_mtime < _STARTED):
                continue
        except OSError:
            continue
        found.append(Path(entry.path))
    return sorted(found)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove :func:`stale_temporaries` beside ``path`` (each removal logged); what cannot be removed is
    named in the log and left. Returns what was removed."""
    removed = []
    for stale in stale_temporaries(path):
        try:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
        except OSError as exc:
            log.warning("%s: a stale temporary left by an interrupted run; cannot remove it (%s)", stale, exc)
            continue
        log.info("removed %s, a temporary left by an interrupted run", stale)
        removed.append(stale)
    return removed
