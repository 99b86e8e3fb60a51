"""The in-memory dataset: every clip decoded once, cached as ``.npy``, moved whole to the device.

Training and defenses take batches as slices of one ``[N, T]`` tensor already on the
device: no DataLoader workers, no per-epoch file reading. The decoded arrays are cached in
the user cache directory under a key made from the file list (paths, sizes, modification
times) and the processing settings, so a second load of the same folder costs one
``np.load``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import DataError

__all__ = ["AudioSet", "SPLITS", "cache_dir", "cached_build", "files_key"]

SPLITS = ("train", "validation", "test")
CACHE_FORMAT = 1


@dataclass
class AudioSet:
    """Waveforms ``float32 [N, T]``, labels ``int64 [N]``, speakers, class names and splits.

    ``splits`` maps a split name to an ``int64`` index tensor into the rows.
    ``source`` describes where the clips came from (stored in checkpoint provenance).
    """

    waves: torch.Tensor
    labels: torch.Tensor
    speakers: list[str]
    classes: list[str]
    sample_rate: int
    splits: dict[str, torch.Tensor]
    files: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.waves.shape[0]
        if self.waves.dim() != 2:
            raise DataError(f"waves must be [N, T], got shape {tuple(self.waves.shape)}")
        if self.labels.shape != (n,):
            raise DataError(f"labels must be [N] with N={n}, got shape {tuple(self.labels.shape)}")
        if len(self.speakers) != n:
            raise DataError(f"{len(self.speakers)} speakers given for {n} clips")
        if self.files and len(self.files) != n:
            raise DataError(f"{len(self.files)} file names given for {n} clips")
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise DataError(
                f"labels must lie in [0, {len(self.classes)}), got [{int(self.labels.min())}, {int(self.labels.max())}]"
            )
        for name, idx in self.splits.items():
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise DataError(f"split {name!r} indexes outside the {n} clips")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.waves.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.waves.shape[1])

    @property
    def device(self) -> torch.device:
        return self.waves.device

    def to(self, device: torch.device | str) -> AudioSet:
        """The same set with waveforms, labels and split indices moved to ``device``."""
        device = torch.device(device)
        return AudioSet(
            waves=self.waves.to(device),
            labels=self.labels.to(device),
            speakers=self.speakers,
            classes=self.classes,
            sample_rate=self.sample_rate,
            splits={k: v.to(device) for k, v in self.splits.items()},
            files=self.files,
            source=self.source,
        )

    def summary(self) -> dict[str, Any]:
        """Sizes per split and class, for reports and logs."""
        return {
            "clips": len(self),
            "classes": list(self.classes),
            "sample_rate": self.sample_rate,
            "num_samples": self.num_samples,
            "speakers": len(set(self.speakers)),
            "splits": {k: int(v.numel()) for k, v in self.splits.items()},
            "source": self.source,
        }

    # ------------------------------------------------------------------ saving
    def save_npy(self, folder: Path) -> None:
        """Write the arrays and metadata into ``folder`` (used by the cache)."""
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "waves.npy", self.waves.cpu().numpy())
        np.save(folder / "labels.npy", self.labels.cpu().numpy())
        meta = {
            "format": CACHE_FORMAT,
            "speakers": self.speakers,
            "classes": self.classes,
            "sample_rate": self.sample_rate,
            "splits": {k: v.cpu().tolist() for k, v in self.splits.items()},
            "files": self.files,
            "source": self.source,
        }
        (folder / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load_npy(cls, folder: Path) -> AudioSet:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            raise DataError(f"{folder}: cache format {meta.get('format')} is not {CACHE_FORMAT}")
        return cls(
            waves=torch.from_numpy(np.load(folder / "waves.npy")),
            labels=torch.from_numpy(np.load(folder / "labels.npy")),
            speakers=meta["speakers"],
            classes=meta["classes"],
            sample_rate=int(meta["sample_rate"]),
            splits={k: torch.tensor(v, dtype=torch.int64) for k, v in meta["splits"].items()},
            files=meta["files"],
            source=meta["source"],
        )


# ---------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$GNFT_CACHE_DIR`` or the user cache directory."""
    env = os.environ.get("GNFT_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("gnft-workbench")) / "datasets"


def files_key(files: Sequence[Path], settings: dict[str, Any]) -> str:
    """A content key: every file's path, size and mtime plus the processing settings."""
    h = hashlib.sha256()
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for f in files:
        try:
            st = os.stat(f)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:  # a link to nothing, a loop: decoding names it
            size, mtime = -1, -1
        h.update(os.fsencode(f) + f"\0{size}\0{mtime}\n".encode())  # any file name, UTF-8 or not
    return h.hexdigest()[:32]


def cached_build(key: str, build: Callable[[], AudioSet], *, use_cache: bool = True) -> AudioSet:
    """Return the cached set for ``key`` or build it and store it atomically (temp dir + rename)."""
    if not use_cache:
        return build()
    root = cache_dir()
    folder = root / key
    if (folder / "meta.json").is_file():
        try:
            return AudioSet.load_npy(folder)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, DataError):
            shutil.rmtree(folder, ignore_errors=True)  # a damaged cache entry is rebuilt
    data = build()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        data.save_npy(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process won the race; its copy is equivalent
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # a read-only or full cache only costs speed, never the load itself
    return data


def decode_clips(
    files: Sequence[Path],
    sample_rate: int,
    num_samples: int,
    *,
    skip_bad: bool = False,
    workers: int | None = None,
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode ``files`` to ``float32 [N, num_samples]`` with a thread pool.

    Returns the array of the clips that decoded, their positions in ``files`` and the
    error messages of those that did not. Unless ``skip_bad``, any bad file raises one
    :class:`DataError` naming up to five of them.
    """
    from concurrent.futures import ThreadPoolExecutor

    from core.audio import load_clip

    def one(path: Path) -> np.ndarray | str:
        try:
            return load_clip(path, sample_rate, num_samples)
        except DataError as exc:
            return str(exc)

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, files, chunksize=64))
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    errors = [r for r in results if isinstance(r, str)]
    if errors and not skip_bad:
        shown = "\n  ".join(errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise DataError(
            f"{len(errors)} of {len(files)} audio files cannot be read:\n  {shown}{more}\n"
            "Fix or remove them, or load with skip_bad=True (--skip-bad) to leave them out."
        )
    waves = np.stack([results[i] for i in kept]) if kept else np.zeros((0, num_samples), np.float32)
    return waves.astype(np.float32, copy=False), kept, errors
