"""The allocator setting (core/allocator.py): in force from ``import core``, and the same bits either way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.allocator import allocator_mode, mmapped_bytes

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import hashlib, torch
import core
from core.allocator import allocator_mode, mmapped_bytes
from core.defenses import GNFTStep
from core.features import FrontEndConfig
from core.models import build

before = mmapped_bytes()
big = torch.ones(16 << 20)  # 64 MB: above glibc's largest mmap threshold
grown = mmapped_bytes() - before
del big
torch.manual_seed(0)
model = build("smallcnn", 4, FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)).train()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
step = GNFTStep(model, 0.7, 0.05)
gen = torch.Generator().manual_seed(1)
for _ in range(3):
    x, y = torch.randn(64, 16000, generator=gen), torch.randint(0, 4, (64,), generator=gen)
    step(model, x, y)
    opt.step()
digest = hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values())).hexdigest()
print(allocator_mode(), grown, digest)
"""


def probe(mode: str | None) -> tuple[str, int, str]:
    env = {k: v for k, v in os.environ.items() if k != "GNFT_ALLOCATOR"}
    if mode is not None:
        env["GNFT_ALLOCATOR"] = mode
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=True
    ).stdout.split()
    return out[0], int(out[1]), out[2]


@pytest.mark.skipif(mmapped_bytes() is None, reason="glibc's mallinfo2 is not available on this system")
def test_kept_by_default_and_the_same_bits_as_the_system_allocator():
    kept, system = probe(None), probe("system")
    assert kept[0] == "keep" and system[0] == "system"
    assert kept[1] < 1 << 20  # the 64 MB tensor came from the heap: no mmapped block for it
    assert system[1] >= 64 << 20  # glibc's default: a fresh mmap, handed back when freed
    assert kept[2] == system[2]  # three GN-FT steps give the same weights to the bit


def test_this_process_runs_with_it_and_records_it():
    from core.runtime import machine_info

    assert allocator_mode() in ("keep", "unsupported") or os.environ.get("GNFT_ALLOCATOR") == "system"
    assert machine_info()["allocator"] == allocator_mode()


def test_a_bad_setting_warns_and_keeps():
    env = dict(os.environ, GNFT_ALLOCATOR="jemalloc")
    proc = subprocess.run(
        [sys.executable, "-c", "import core; from core.allocator import allocator_mode; print(allocator_mode())"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() in ("keep", "unsupported")
    assert "GNFT_ALLOCATOR must be 'keep' or 'system'" in proc.stderr


RELEASE_PROBE = """
import torch
import core
from core.allocator import allocator_mode, release_free_memory

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmRSS"))

start = rss()
big = torch.ones(64 << 20)  # 256 MB, touched
del big
kept = rss() - start  # still held: below the 1 GiB trim threshold, not mmapped
release_free_memory()
print(allocator_mode(), kept, rss() - start)
"""


@pytest.mark.skipif(mmapped_bytes() is None, reason="glibc's mallinfo2 is not available on this system")
def test_release_gives_the_kept_memory_back_between_units_of_work():
    """What a grid does after each cell: the free buffers the setting keeps go back to the system."""
    env = {k: v for k, v in os.environ.items() if k != "GNFT_ALLOCATOR"}
    out = subprocess.run(
        [sys.executable, "-c", RELEASE_PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    mode, kept, after = out[0], int(out[1]), int(out[2])
    assert mode == "keep"
    assert kept > 200 << 20  # freed by torch, kept by glibc
    assert after < kept - (200 << 20)  # given back
