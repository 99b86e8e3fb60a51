"""Scan a checkpoint the way ``python -m core.scan`` did before 2026-12-05 (the model's own contiguous layout,
its BatchNorms run: ``ScanConfig(memory_format="contiguous", fold_batchnorm=False)``, the second a hidden
setting) and write the report as the command does (``ScanResult.to_dict()`` and the model's path).

    python docs/experiments/scan_plain.py runs/speed_asc10/train_resnet_clean.safetensors \\
        ../shared/data/arabic_sc 1 runs/layout/resnet_clean_plain_s1.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.scan import ScanConfig, scan  # noqa: E402

if __name__ == "__main__":
    model_path, data_path, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    model, meta = load_checkpoint(Path(model_path))
    data = load_dataset(
        data_path, vocab=list(meta["classes"]), sample_rate=meta["sample_rate"],
        num_samples=meta["front_end"]["num_samples"],
    )  # fmt: skip
    result = scan(model, data, ScanConfig(seed=seed, memory_format="contiguous", fold_batchnorm=False))
    Path(out).write_text(json.dumps({"model": model_path, **result.to_dict()}, indent=1) + "\n")
    print(result.suspected_target, result.confidence, result.seconds)
