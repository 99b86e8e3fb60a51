"""Cost of one GN-FT step against one plain fine-tuning step, and in-place against copy-per-step.

    python benchmarks/gnft_step.py [--models resnet,smallcnn] [--batch-size 256] [--repeats 7] [--device auto]
                                   [--threads auto] [--memory-format auto]

For each model the step kinds run interleaved on the same model and batch (so a noisy,
shared machine slows them alike), as the defenses run them: on the classifier, with the
front end's features computed once per run. ``ft`` (forward, backward, SGD step), ``gnft``
(this project's in-place step: two passes, exact restore, BN statistics restored) and
``gnft_copy`` (the authors' way: a deep copy of the model per step, perturbed and
back-propagated); ``ft_waveform`` and ``gnft_waveform`` run the whole model from the
waveform (the front end in every pass), to show what computing features once saves.
Reported: median milliseconds per step and the ratios gnft/ft (target <= 2.0, the cost of
two passes), gnft_copy/gnft and gnft_waveform/gnft. On CUDA each timed step ends with a
synchronise. The path is the product's: the classifier in the layout the defense loop gives it
(``--memory-format auto``, with exact BatchNorm in channels_last), ``--threads`` torch threads and
the product's allocator (``import core``), all recorded. Writes benchmarks/results/gnft_step[_<device>].json.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.defenses.gnft import GNFTStep  # noqa: E402
from core.features import FrontEndConfig  # noqa: E402
from core.models import build, split_front_end  # noqa: E402
from core.models.batchnorm import use_exact_batchnorm  # noqa: E402
from core.runtime import (  # noqa: E402
    MEMORY_FORMATS,
    machine_info,
    memory_format,
    resolve_device,
    seed_everything,
    set_threads,
    write_json,
)


def copy_per_step(model, x, y, alpha: float, r: float) -> None:
    """The authors' GN-FT step: g1 on the model, g2 on a perturbed deep copy (per-tensor norms)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            if p.grad is not None:
                p.add_(r * p.grad / (p.grad.norm() + 1e-12))
    twin.zero_grad(set_to_none=True)
    F.cross_entropy(twin(x), y).backward()
    with torch.no_grad():
        for p, q in zip(model.parameters(), twin.parameters()):
            if p.grad is not None and q.grad is not None:
                p.grad.mul_(1 - alpha).add_(q.grad, alpha=alpha)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet,smallcnn")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", default="auto", help="torch CPU threads, as the commands' --threads (default auto)")
    p.add_argument("--memory-format", choices=MEMORY_FORMATS, default="auto", help="the defenses' layout option")
    p.add_argument("--out", help="JSON to write (default benchmarks/results/gnft_step_<device type>.json)")
    args = p.parse_args()
    device = resolve_device(args.device)
    set_threads(args.threads)
    layout = memory_format(args.memory_format, device)
    seed_everything(0)
    fe = FrontEndConfig()
    rows = []
    for name in args.models.split(","):
        full = build(name, 10, fe).to(device).train()
        front, model = split_front_end(full)
        model.to(memory_format=layout)  # as core.loop.Loop lays out the trained module
        if layout == torch.channels_last:
            use_exact_batchnorm(model)
        wave = torch.randn(args.batch_size, fe.num_samples, device=device) * 0.1
        with torch.no_grad():
            x = front(wave)
        y = torch.randint(0, 10, (args.batch_size,), device=device)
        opt = torch.optim.SGD(full.parameters(), lr=1e-6, momentum=0.9)
        step, full_step = GNFTStep(model, 0.7, 0.05), GNFTStep(full, 0.7, 0.05)

        def ft(net=model, inputs=x) -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(inputs), y).backward()
            opt.step()

        def gnft(net=model, inputs=x, two_pass=step) -> None:
            two_pass(net, inputs, y)
            opt.step()

        def gnft_copy() -> None:
            copy_per_step(model, x, y, 0.7, 0.05)
            opt.step()

        kinds = {
            "ft": ft,
            "gnft": gnft,
            "gnft_copy": gnft_copy,
            "ft_waveform": lambda: ft(full, wave),
            "gnft_waveform": lambda: gnft(full, wave, full_step),
        }
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for fn in kinds.values():  # warm-up (allocator, kernels, cached resamplers)
            fn()
        for _ in range(args.repeats):
            for k, fn in kinds.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[k].append(time.perf_counter() - start)
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        row = {
            "model": name,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "memory_format": "channels_last" if layout == torch.channels_last else "contiguous",
            "median_ms": {k: round(v, 2) for k, v in ms.items()},
            "gnft_over_ft": round(ms["gnft"] / ms["ft"], 3),
            "copy_over_inplace": round(ms["gnft_copy"] / ms["gnft"], 3),
            "waveform_over_features": round(ms["gnft_waveform"] / ms["gnft"], 3),
            "target_gnft_over_ft": 2.0,
            "meets_target": ms["gnft"] / ms["ft"] <= 2.0,
        }
        print(row)
        rows.append(row)
    out = args.out or str(ROOT / "benchmarks" / "results" / f"gnft_step_{device.type}.json")
    write_json(out, {"command": this_command(), "machine": machine_info(device), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
