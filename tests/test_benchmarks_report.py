"""``benchmarks/report.py``: the benchmarks README is generated from the results files and kept current."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_readme_matches_the_results():
    proc = subprocess.run([sys.executable, "benchmarks/report.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_rows_come_from_the_json(tmp_path):
    (tmp_path / "gnft_step_gpu.json").write_text(json.dumps({
        "command": "python benchmarks/gnft_step.py --device cuda", "machine": {"device": "cuda", "gpu": "H100"},
        "rows": [{"model": "resnet", "batch_size": 256, "gnft_over_ft": 1.87654, "copy_over_inplace": 1.2,
                  "target_gnft_over_ft": 2.0, "meets_target": True}]}))
    (tmp_path / "unknown_thing.json").write_text(json.dumps({"rows": [{"x": 1}]}))
    text = _report().render(tmp_path)
    assert "| gnft_step_gpu | resnet, batch 256: GN-FT step / FT step | 1.88 | ≤ 2.0 | yes | cuda (H100) |" in text
    assert "`python benchmarks/gnft_step.py --device cuda`" in text
    assert "`unknown_thing.json`" in text  # listed, not silently dropped
