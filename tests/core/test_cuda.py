"""The CUDA paths, where a GPU is present (the device machine: ``python -m pytest tests/core/test_cuda.py``).

Each was found broken by the first grid run on an H200 (2026-12-04); the CPU suite cannot see them.
"""

from __future__ import annotations

import pytest
import torch

from core.data.speech_commands import load_speech_commands
from core.defenses import DEFENSES
from core.features import FrontEndConfig
from core.models import build
from core.repair import repair
from core.scan import ScanConfig, gini, scan
from tests.conftest import TINY_WORDS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the device machine)")
FRONT = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)


def test_gini_of_a_tensor_on_the_gpu():
    values = torch.tensor([0.0, 0.0, 0.0, 1.0], device="cuda")
    assert gini(values) == pytest.approx(gini(values.cpu())) == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["smallcnn", "smalllstm", "lstm_attention", "rnn"])
def test_the_scan_runs_on_the_gpu_for_convolutional_and_recurrent_models(tiny_sc, name):
    data = load_speech_commands(tiny_sc, TINY_WORDS)
    torch.manual_seed(0)
    model = build(name, len(TINY_WORDS), FRONT).eval()
    result = scan(model, data, ScanConfig(steps=3, batch_size=2, clean_ratio=0.5, device="cuda"))
    assert len(result.domains["features"]["sizes"]) == len(TINY_WORDS)
    assert result.gradient_norm_gini


def test_a_gnft_repair_on_the_gpu_gives_the_same_weights_twice(tiny_sc):
    data = load_speech_commands(tiny_sc, TINY_WORDS)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build("resnet", len(TINY_WORDS), FRONT).eval()
        config = DEFENSES["gnft"].Config(clean_ratio=0.5, epochs=3, batch_size=8, seed=0, device="cuda")
        runs.append(repair(model, data.to("cuda"), DEFENSES["gnft"](config)).model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
