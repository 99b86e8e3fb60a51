"""``python -m core.grid --backend ray``: the same cells and numbers as the local backend, on a local Ray instance."""

from __future__ import annotations

import json
import shutil

import pytest

from core.cli.grid import main
from tests.cli.test_grid_cli import TINY

ray = pytest.importorskip("ray", reason="the Ray backend needs the 'ray' extra (pip install '.[ray]')")


# the tiny grid of test_grid_cli without its fine-tuning settings (this grid runs GN-FT only)
GNFT_ONLY = [
    a
    for i, a in enumerate(TINY)
    if not a.startswith("ft.") and not (a == "--defense-arg" and TINY[i + 1].startswith("ft."))
]


def _rows(path):
    rows = json.loads(path.read_text())["rows"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_ray_backend_resumes_a_local_grid_and_gives_the_local_numbers(tiny_sc, tmp_path):
    """One Ray start (a few seconds each on this machine): the Ray run finds the training cell the local
    backend left, leaves it alone, and runs the GN-FT cell as a Ray task with the local cell's numbers."""
    common = ["--data", str(tiny_sc), *GNFT_ONLY, "--defenses", "none,gnft", "--no-clean", "--threads", "1"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    local_work, ray_work = tmp_path / "local_work", tmp_path / "onray_work"
    ray_work.mkdir()
    for name in ("train_smallcnn_badnets.safetensors", "train_smallcnn_badnets.json"):  # a grid stopped after training
        shutil.copy2(local_work / name, ray_work / name)
    stamps = {p.name: p.stat().st_mtime_ns for p in ray_work.iterdir()}
    assert main([*common, "--backend", "ray", "--out", str(tmp_path / "onray")]) == 0
    assert not ray.is_initialized()  # the local Ray instance it started is shut down again
    assert {p.name: p.stat().st_mtime_ns for p in ray_work.iterdir() if p.name in stamps} == stamps
    assert sorted(p.name for p in ray_work.iterdir()) == sorted(p.name for p in local_work.iterdir())
    local, on_ray = _rows(tmp_path / "local.json"), _rows(tmp_path / "onray.json")
    assert len(local) == 2 and local == on_ray  # backdoored and GN-FT cells: equal CA/ASR/RA/DER
    ray_result, local_result = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("onray", "local"))
    assert ray_result["backend"] == "ray"
    assert ray_result["data"] == local_result["data"] and ray_result["data"]["clips"] > 0  # summary from a worker
    ray_cell = json.loads((ray_work / "defend_smallcnn_badnets_gnft.json").read_text())
    local_cell = json.loads((local_work / "defend_smallcnn_badnets_gnft.json").read_text())
    assert ray_cell["history"] == local_cell["history"] and ray_cell["after"] == local_cell["after"]
