"""Whole-clip trigger inversion probe (issue 33): can a search that mixes one sound over the whole clip
find a Blend or JingleBack target the scan's domains miss?

Candidate domains, per class, on the scan's clean share (10 %, seed 0), 200 steps, 8 clips a class; the
size is the smallest of a batch that reached 90 % (the scan's loop), except for ``core``:

- ``mix``: ``x' = (1 - a) x + a s`` with ``s`` a whole-clip waveform (``|s| <= 1``) and ``a`` in (0, 1);
  size ``a`` (Blend's own form: a sound mixed at a weight).
- ``energy``: ``x' = x + d`` with ``d`` a whole-clip waveform; size ``rms(d) / rms(clean clips)``.
- ``mix_shift``: ``mix`` with the sound circularly shifted by a random offset for every clip and step.
- ``core``: the product's ``core.scan.invert.invert_mix`` (``mix_shift``, its size then measured apart on 64
  clips by bisection).

Prints each domain's per-class sizes, the log-MAD anomaly index (``core.scan.anomaly_index``) and where
the true target ranks (read from the checkpoint's attack record: the probe's truth, never the scan's input).

    python docs/experiments/whole_clip_probe.py --domains mix,energy MODEL [MODEL ...]   # ASC-10 models of runs/
"""

from __future__ import annotations

import argparse
import json

import torch

from core.checkpoint import load_checkpoint
from core.data import load_dataset
from core.defenses.base import clean_subset
from core.events import NullObserver
from core.scan import anomaly_index
from core.scan.invert import Search, invert_mix


def invert_mix_plain(model, waves, search, lam0=0.01, lr=0.05):
    k, n = search.n_classes, waves.shape[1]
    raw = (1e-2 * torch.randn(k, n, generator=search.gen)).requires_grad_()
    a_logit = torch.full((k,), -3.0, requires_grad=True)

    def candidate(rows):
        a = torch.sigmoid(a_logit).view(k, 1, 1)
        x = (1 - a) * waves[rows] + a * torch.tanh(raw).unsqueeze(1)
        return model(x.reshape(-1, n)).view(k, rows.shape[1], -1), torch.sigmoid(a_logit)

    size, hit, _ = search.run("mix", [raw, a_logit], candidate, lam0, lr)
    return size.tolist(), hit.tolist()


def invert_mix_shift(model, waves, search, lam0=0.01, lr=0.05):
    """``mix`` with the sound circularly shifted by a random offset for every clip and step: a planted
    sound works wherever it starts, a universal adversarial pattern is tied to its alignment."""
    k, n = search.n_classes, waves.shape[1]
    raw = (1e-2 * torch.randn(k, n, generator=search.gen)).requires_grad_()
    a_logit = torch.full((k,), -3.0, requires_grad=True)
    base = torch.arange(n)

    def candidate(rows):
        b = rows.shape[1]
        a = torch.sigmoid(a_logit).view(k, 1, 1)
        shift = torch.randint(n, (k, b, 1), generator=search.gen)
        idx = (base.view(1, 1, n) + shift) % n
        s = torch.tanh(raw).unsqueeze(1).expand(k, b, n).gather(2, idx)
        x = (1 - a) * waves[rows] + a * s
        return model(x.reshape(-1, n)).view(k, b, -1), torch.sigmoid(a_logit)

    size, hit, _ = search.run("mix_shift", [raw, a_logit], candidate, lam0, lr)
    return size.tolist(), hit.tolist()


def invert_energy(model, waves, search, lam0=0.01, lr=0.01):
    k, n = search.n_classes, waves.shape[1]
    rms = float(waves.pow(2).mean().sqrt())
    raw = (1e-3 * torch.randn(k, n, generator=search.gen)).requires_grad_()

    def candidate(rows):
        x = (waves[rows] + raw.unsqueeze(1)).clamp(-1, 1)
        size = raw.pow(2).mean(1).sqrt() / rms
        return model(x.reshape(-1, n)).view(k, rows.shape[1], -1), size

    size, hit, _ = search.run("energy", [raw], candidate, lam0, lr)
    return size.tolist(), hit.tolist()


def invert_core(model, waves, search):
    inv = invert_mix(model, waves, search)
    return inv.sizes, inv.success


DOMAINS = {"mix": invert_mix_plain, "energy": invert_energy, "mix_shift": invert_mix_shift, "core": invert_core}


def main() -> None:
    torch.set_num_threads(1)
    data = load_dataset("../shared/data/arabic_sc", vocab="asc10")
    rows = clean_subset(data, 0.1, 0)
    waves, labels = data.waves[rows], data.labels[rows]
    p = argparse.ArgumentParser()
    p.add_argument("--domains", default="mix_shift")
    p.add_argument("models", nargs="+")
    args = p.parse_args()
    for path in args.models:
        model, meta = load_checkpoint(path)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        attack = meta.get("provenance", {}).get("attack") or {}  # read only to rank the true target
        t = attack.get("params", {}).get("target")
        target = data.classes[t] if isinstance(t, int) else t
        out = {"model": path, "target": target}
        for name in args.domains.split(","):
            fn = DOMAINS[name]
            search = Search(labels, len(data.classes), 200, 8, 0.9, torch.Generator().manual_seed(0), NullObserver())
            sizes, hits = fn(model, waves, search)
            index = anomaly_index(sizes)
            order = sorted(range(len(sizes)), key=lambda i: -index[i])
            rank = [data.classes[i] for i in order].index(target) + 1 if target in data.classes else None
            out[name] = {
                "sizes": [round(s, 4) for s in sizes],
                "index": [round(a, 2) for a in index],
                "top": data.classes[order[0]],
                "target_rank": rank,
            }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
