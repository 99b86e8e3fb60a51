"""Clips per second and achieved GFLOP/s of a training step and a GN-FT step, against this machine's
own measured convolution and matrix-multiply rates, for the path before issue 30 and the product's.

    python benchmarks/throughput.py [--models smallcnn,resnet] [--batch-size 256] [--repeats 3] [--threads auto]

Paths, alternating in one process so a noisy machine slows them alike:

- ``before``: what the product ran before issue 30: the classifier in channels_last with PyTorch's
  BatchNorm, glibc's default allocator, and the MFCC front end run in every training step (the
  defenses already computed features once);
- ``product``: today's: the classifier in the layout the training loop gives it (``--memory-format
  auto``: channels_last on a CPU, with the exact BatchNorm of ``core.models.batchnorm``), large
  buffers kept (``core.allocator``), features computed once.

Steps: ``train`` (forward, backward, Adam, as ``core.train``) and ``gnft`` (``GNFTStep`` + SGD, as
``core.defend``). FLOPs are counted by ``torch.utils.flop_counter`` over one step; the peaks are a
3x3 convolution of ResNet's widest shape and a 2048x2048 matrix product. Writes
benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.allocator import configure_allocator  # noqa: E402
from core.defenses.gnft import GNFTStep  # noqa: E402
from core.features import FrontEndConfig, clip_features  # noqa: E402
from core.models import build, split_front_end  # noqa: E402
from core.models.batchnorm import use_exact_batchnorm  # noqa: E402
from core.runtime import machine_info, memory_format, seed_everything, set_threads, write_json  # noqa: E402


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peaks(repeats: int) -> dict[str, float]:
    """This machine's best GFLOP/s of a 3x3 convolution (forward, ResNet's three stage shapes at batch
    256; the fastest counts) and of a 2048x2048 float32 matrix product."""
    rates = {}
    for channels, frames, coeffs in ((16, 101, 40), (32, 51, 20), (64, 26, 10)):
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        x = torch.randn(256, channels, frames, coeffs)
        with torch.no_grad():
            rates[f"conv3x3_{channels}ch_gflops"] = round(
                _flops(lambda: conv(x)) / _median_seconds(lambda: conv(x), repeats) / 1e9, 2
            )
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    mm_s = _median_seconds(lambda: a @ b, repeats)
    return {**rates, "conv3x3_gflops": max(rates.values()), "matmul_gflops": round(2 * 2048**3 / mm_s / 1e9, 2)}


def steps(name: str, batch_size: int, path: str):
    """The train and GN-FT step functions of ``path`` on model ``name`` and one batch."""
    seed_everything(0)
    full = build(name, 10, FrontEndConfig()).train()
    front, classifier = split_front_end(full)
    wave = 0.1 * torch.randn(batch_size, 16000)
    y = torch.randint(0, 10, (batch_size,))
    feats = clip_features(front, wave, batch_size)
    if path == "before":  # PyTorch's channels_last BatchNorm; training ran the front end in every step
        classifier.to(memory_format=torch.channels_last)
        train_net, train_in = full, wave
    else:  # as core.loop.Loop lays out the trained module
        layout = memory_format("auto", torch.device("cpu"))
        classifier.to(memory_format=layout)
        if layout == torch.channels_last:
            use_exact_batchnorm(classifier)
        train_net, train_in = classifier, feats
    adam = torch.optim.Adam(classifier.parameters(), lr=1e-6)
    sgd = torch.optim.SGD(classifier.parameters(), lr=1e-6, momentum=0.9)
    two_pass = GNFTStep(classifier, 0.7, 0.1)  # the defenses computed features once before too

    def train() -> None:
        adam.zero_grad(set_to_none=True)
        F.cross_entropy(train_net(train_in), y).backward()
        adam.step()

    def gnft() -> None:
        two_pass(classifier, feats, y)
        sgd.step()

    return {"train": train, "gnft": gnft}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smallcnn,resnet")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", default="auto")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "throughput.json"))
    args = p.parse_args()
    set_threads(args.threads)
    peak = peaks(args.repeats)
    print(peak, flush=True)
    rows = []
    for name in args.models.split(","):
        fns = {path: steps(name, args.batch_size, path) for path in ("before", "product")}
        flops = {kind: _flops(fns["product"][kind]) for kind in ("train", "gnft")}  # the classifier's work
        seconds: dict[str, dict[str, list[float]]] = {k: {"before": [], "product": []} for k in flops}
        for _ in range(args.repeats):
            for path, allocator in (("before", "system"), ("product", "keep")):
                configure_allocator(allocator)
                for kind in flops:
                    seconds[kind][path].append(_median_seconds(fns[path][kind], 1))
        configure_allocator("keep")
        for kind in flops:
            before, product = (statistics.median(seconds[kind][p]) for p in ("before", "product"))
            row = {
                "model": name,
                "step": kind,
                "batch_size": args.batch_size,
                "gflop_per_step": round(flops[kind] / 1e9, 2),
                "seconds_before": round(before, 3),
                "seconds_product": round(product, 3),
                "speedup": round(before / product, 3),
                "clips_per_second_before": round(args.batch_size / before, 1),
                "clips_per_second_product": round(args.batch_size / product, 1),
                "gflops_product": round(flops[kind] / product / 1e9, 2),
                "fraction_of_conv_peak": round(flops[kind] / product / 1e9 / peak["conv3x3_gflops"], 3),
                "runs": seconds[kind],
            }
            print(row, flush=True)
            rows.append(row)
    write_json(
        args.out,
        {
            "command": this_command(),
            "machine": machine_info(),
            "peaks": peak,
            "what": "seconds, clips/s and GFLOP/s per step: the path before issue 30 (channels_last with "
            "PyTorch's BatchNorm, glibc's allocator, features every step) against the product's",
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
