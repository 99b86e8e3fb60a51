"""CLC / BLC per neuron and the four zones of the paper's Figure 4.

Pruning a neuron means what the authors' ``prune_one_neuron`` does: zero its weights (a conv
filter, a linear row, an LSTM unit's four gate rows of the input and recurrent weights), leaving
biases and BatchNorm alone. CLC is the change of mean cross-entropy on the clean set when one
neuron is pruned; BLC the change on the backdoor set (triggered non-target clips labelled with
the target, plus the clean target-class clips). Zones by thresholds (default 0): clean
(CLC > t_clc, BLC <= t_blc), backdoor (BLC > t_blc, CLC <= t_clc), hybrid (both above),
redundant (neither).

Three ways to get the values:
- :func:`looped_loss_changes`: prune one neuron, run the set, restore; the definition itself.
- :func:`exact_loss_changes`: the same numbers for many neurons per forward pass. The eval set
  is pruned once per neuron in a group; every module that runs before the layer returns its
  cached output instead of recomputing it, and activations of the unpruned clips are repeated
  for the group only where they meet pruned ones (a residual sum), so per neuron only the rest
  of the network runs.
  A pruned conv or linear neuron's output is its bias (or 0); an LSTM runs a step-by-step
  unroll whose gate pre-activations for the pruned unit are the gate biases.
- :func:`first_order_loss_changes`: -Σ w·∂L/∂w over the neuron's weights, from one backward
  pass: a cheap estimate for live display, whose rank correlation to the exact values
  :func:`rank_correlation` measures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from core.errors import ConfigError
from core.models import analysable_layers, split_front_end

__all__ = [
    "ZONES",
    "ZONE_COLOURS",
    "assign_zones",
    "backdoor_set",
    "exact_loss_changes",
    "first_order_loss_changes",
    "looped_loss_changes",
    "neuron_count",
    "rank_correlation",
    "ZoneAnalysis",
    "analyse_layer",
]

ZONES = ("clean", "backdoor", "hybrid", "redundant")
#: One colour per zone wherever zones are drawn (plots, the application): Okabe-Ito, told apart with
#: the common colour-vision deficiencies.
ZONE_COLOURS = {"clean": "#009e73", "backdoor": "#d55e00", "hybrid": "#cc79a7", "redundant": "#999999"}

log = logging.getLogger("core.analysis")


# --------------------------------------------------------------------------- neurons
def neuron_count(module: nn.Module) -> int:
    """Neurons of an analysable layer: output channels, output units or LSTM hidden units (all layers)."""
    if isinstance(module, nn.LSTM):
        return module.hidden_size * module.num_layers * (2 if module.bidirectional else 1)
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return module.weight.shape[0]
    raise ConfigError(f"{type(module).__name__} is not an analysable layer (Conv2d, Linear, LSTM)")


def _lstm_slots(module: nn.LSTM) -> list[tuple[int, str]]:
    """(layer, suffix) per block of ``hidden_size`` neurons, in neuron order."""
    dirs = ("", "_reverse")[: 2 if module.bidirectional else 1]
    return [(layer, sfx) for layer in range(module.num_layers) for sfx in dirs]


def _neuron_weights(module: nn.Module, k: int) -> list[tuple[torch.Tensor, Any]]:
    """(weight tensor, index) pairs that hold neuron ``k``'s weights."""
    if isinstance(module, nn.LSTM):
        h = module.hidden_size
        layer, sfx = _lstm_slots(module)[k // h]
        rows = [k % h + g * h for g in range(4)]
        return [
            (getattr(module, f"weight_ih_l{layer}{sfx}"), rows),
            (getattr(module, f"weight_hh_l{layer}{sfx}"), rows),
        ]
    return [(module.weight, k)]


# --------------------------------------------------------------------------- sets
def backdoor_set(
    waves: torch.Tensor, labels: torch.Tensor, triggered: torch.Tensor, target: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' backdoor set: triggered non-target clips labelled ``target``, plus the target-class clips."""
    non_target = labels != target
    x = torch.cat([triggered[non_target], waves[~non_target]])
    y = torch.full((x.shape[0],), target, dtype=labels.dtype, device=labels.device)
    return x, y


def _inputs(model: nn.Module, waves: torch.Tensor, batch_size: int) -> tuple[nn.Module, torch.Tensor]:
    """The classifier and its input: the front end's features, computed once."""
    front, body = split_front_end(model)
    if front is None:
        return model, waves
    with torch.no_grad():
        feats = torch.cat([front(waves[i : i + batch_size]) for i in range(0, waves.shape[0], batch_size)])
    return body, feats


def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        names = ", ".join(n for n, _ in analysable_layers(model))
        raise ConfigError(f"no layer {layer!r} in the model; analysable layers: {names}")
    return modules[layer]


def _body_layer(model: nn.Module, layer: str) -> tuple[nn.Module, str]:
    """The classifier and the layer's name in it (``classifier.conv1`` -> ``conv1``)."""
    analysable = dict(analysable_layers(model))
    if layer not in analysable:
        raise ConfigError(f"no layer {layer!r} to analyse in the model; analysable layers: {', '.join(analysable)}")
    front, body = split_front_end(model)
    if front is not None:
        prefix = list(model._modules)[1] + "."
        return body, layer[len(prefix) :] if layer.startswith(prefix) else layer
    return model, layer


@contextmanager
def _in_eval(model: nn.Module, layer: str, waves: torch.Tensor, batch_size: int):
    """``(classifier, layer module, classifier input)`` with the model in eval mode (restored after)."""
    was_training = model.training
    model.eval()
    try:
        body, name = _body_layer(model, layer)
        module = _module(body, name)
        body, x = _inputs(model, waves, batch_size)
        yield body, module, x
    finally:
        model.train(was_training)


@torch.no_grad()
def _mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    total = 0.0
    for i in range(0, x.shape[0], batch_size):
        total += float(F.cross_entropy(model(x[i : i + batch_size]), y[i : i + batch_size], reduction="sum"))
    return total / max(1, x.shape[0])


# --------------------------------------------------------------------------- the definition
@torch.no_grad()
def looped_loss_changes(
    model: nn.Module, layer: str, waves: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """ΔL per neuron of ``layer`` by pruning one neuron at a time (the reference; slow)."""
    with _in_eval(model, layer, waves, batch_size) as (body, module, x):
        base = _mean_loss(body, x, labels, batch_size)
        out = torch.empty(neuron_count(module), dtype=torch.float64)
        for k in range(out.numel()):
            saved = [(w, idx, w[idx].clone()) for w, idx in _neuron_weights(module, k)]
            for w, idx, _ in saved:
                w[idx] = 0.0
            out[k] = _mean_loss(body, x, labels, batch_size) - base
            for w, idx, old in saved:
                w[idx] = old
        return out


# --------------------------------------------------------------------------- batched
def _repeat(t: torch.Tensor, m: int, dim: int = 0) -> torch.Tensor:
    shape = list(t.shape)
    return (
        t.unsqueeze(dim).expand(*shape[:dim], m, *shape[dim:]).reshape(*shape[:dim], m * shape[dim], *shape[dim + 1 :])
    )


def _repeat_output(module: nn.Module, out: Any, m: int, batch: int) -> Any:
    """The cached output of a module, repeated ``m`` times along its batch dimension (None: cannot)."""
    if isinstance(out, torch.Tensor):
        return _repeat(out, m) if out.dim() and out.shape[0] == batch else None
    if isinstance(module, nn.LSTM) and isinstance(out, tuple) and len(out) == 2:
        seq, (h, c) = out
        return (_repeat(seq, m, 0 if module.batch_first else 1), (_repeat(h, m, 1), _repeat(c, m, 1)))
    return None


class _MeetBatches(TorchFunctionMode):
    """Where an op gets activations of ``batch`` clips and of ``m * batch`` clips, repeat the former.

    Only non-parameter tensors of two or more dimensions count as activations (weights, biases
    and BatchNorm statistics are never touched); the batch is their first dimension.
    """

    def __init__(self, batch: int, m: int) -> None:
        super().__init__()
        self.batch, self.m = batch, m

    def _is_small(self, t: Any) -> bool:
        return (
            isinstance(t, torch.Tensor)
            and not isinstance(t, nn.Parameter)
            and t.dim() >= 2
            and t.shape[0] == self.batch
        )

    def _is_big(self, t: Any) -> bool:
        return (
            isinstance(t, torch.Tensor)
            and not isinstance(t, nn.Parameter)
            and t.dim() >= 2
            and t.shape[0] == self.batch * self.m
        )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.m > 1:
            flat = [a for a in args if isinstance(a, torch.Tensor)]
            flat += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
            if any(self._is_small(t) for t in flat) and any(self._is_big(t) for t in flat):

                def widen(a):
                    if self._is_small(a):
                        return _repeat(a, self.m)
                    if isinstance(a, (list, tuple)):
                        return type(a)(widen(t) for t in a)
                    return a

                args = tuple(widen(a) for a in args)
        return func(*args, **kwargs)


class _Patched:
    """Replays cached outputs for every leaf call before the layer; prunes the layer's neurons per copy."""

    def __init__(self, body: nn.Module, target: nn.Module) -> None:
        self.body, self.target = body, target
        self.leaves = [m for m in body.modules() if not list(m.children())]
        if target not in self.leaves:
            raise ConfigError("the analysed layer must be a leaf module")

    def record(self, x: torch.Tensor) -> list[tuple[nn.Module, Any]]:
        """Run the clean pass; return (module, output) for each leaf call up to and including the target's."""
        calls: list[tuple[nn.Module, Any]] = []
        done = [False]

        def hook(module, _inputs, output):
            if not done[0]:
                calls.append((module, output))
                if module is self.target:
                    done[0] = True

        handles = [m.register_forward_hook(hook) for m in self.leaves]
        try:
            self.body(x)
        finally:
            for h in handles:
                h.remove()
        if not done[0]:
            raise ConfigError("the analysed layer is not used in the model's forward pass")
        return calls

    def run(
        self, x: torch.Tensor, calls: list[tuple[nn.Module, Any]], neurons: torch.Tensor, batch: int, lazy: bool = True
    ) -> torch.Tensor:
        """Logits ``[len(neurons) * batch, classes]``, copy m with neuron ``neurons[m]`` pruned.

        ``lazy``: the part before the layer stays at ``batch`` clips (cached outputs are returned
        as they are) and a tensor of ``batch`` clips is repeated only where it meets one of
        ``m * batch`` clips (a residual sum after the layer); otherwise every cached output is
        repeated ``m`` times up front (always valid, more memory traffic).
        """
        m = neurons.numel()
        queue = list(calls)
        position = [0]
        originals: dict[nn.Module, Any] = {}

        def make(module: nn.Module):
            forward = module.forward

            def patched(*args, **kwargs):
                i = position[0]
                if i < len(queue) and queue[i][0] is module:
                    position[0] += 1
                    cached = queue[i][1]
                    if module is self.target:
                        return self._prune(module, cached, args, kwargs, neurons, batch)
                    if lazy:
                        return cached
                    repeated = _repeat_output(module, cached, m, batch)
                    if repeated is not None:
                        return repeated
                return forward(*args, **kwargs)

            return patched

        for leaf in self.leaves:
            originals[leaf] = leaf.__dict__.get("forward")
            leaf.forward = make(leaf)
        try:
            if lazy:
                with _MeetBatches(batch, m):
                    return self.body(x)
            return self.body(_repeat(x, m))
        finally:
            for leaf, original in originals.items():
                if original is None:
                    del leaf.forward
                else:
                    leaf.forward = original

    def _prune(self, module: nn.Module, cached: Any, args, kwargs, neurons: torch.Tensor, batch: int) -> Any:
        m = neurons.numel()
        ar = torch.arange(m, device=neurons.device)
        if isinstance(module, nn.LSTM):
            return _lstm_pruned(module, args[0], args[1] if len(args) > 1 else kwargs.get("hx"), neurons, batch)
        out = _repeat(cached, m).view(m, batch, *cached.shape[1:]).clone()
        fill = module.bias[neurons] if module.bias is not None else torch.zeros(m, device=out.device, dtype=out.dtype)
        if isinstance(module, nn.Conv2d):
            out[ar, :, neurons] = fill.view(m, 1, *([1] * (out.dim() - 3)))
        else:  # Linear: neurons on the last axis
            out[ar, ..., neurons] = fill.view(m, *([1] * (out.dim() - 2)))
        return out.view(m * batch, *cached.shape[1:])


def _lstm_pruned(module: nn.LSTM, x: torch.Tensor, hx: Any, neurons: torch.Tensor, batch: int) -> Any:
    """``module(x)`` unrolled step by step, copy m's unit ``neurons[m]`` with zero weights (gates = biases)."""
    if module.proj_size:
        raise ConfigError("LSTM layers with proj_size are not supported")
    m, h = neurons.numel(), module.hidden_size
    seq = x if module.batch_first else x.transpose(0, 1)  # [M*B, T, F]
    slots = _lstm_slots(module)
    if hx is None:
        zeros = seq.new_zeros(len(slots), seq.shape[0], h)
        hx = (zeros, zeros)
    h_n, c_n = [], []
    layer_input = seq
    for layer in range(module.num_layers):
        outputs = []
        for d, sfx in enumerate(("", "_reverse")[: 2 if module.bidirectional else 1]):
            slot = layer * (2 if module.bidirectional else 1) + d
            w_ih, w_hh = getattr(module, f"weight_ih_l{layer}{sfx}"), getattr(module, f"weight_hh_l{layer}{sfx}")
            bias = (
                getattr(module, f"bias_ih_l{layer}{sfx}") + getattr(module, f"bias_hh_l{layer}{sfx}")
                if module.bias
                else w_ih.new_zeros(4 * h)
            )
            pruned = torch.zeros(m, 4 * h, dtype=torch.bool, device=x.device)
            local = neurons - slot * h
            inside = (local >= 0) & (local < h)
            for g in range(4):
                pruned[inside.nonzero().flatten(), local[inside] + g * h] = True
            pruned = pruned.repeat_interleave(batch, dim=0)  # [M*B, 4H]
            state_h, state_c = hx[0][slot], hx[1][slot]
            steps = range(layer_input.shape[1])
            outs = [None] * layer_input.shape[1]
            pre_x = layer_input @ w_ih.T  # [M*B, T, 4H]
            for t in reversed(steps) if sfx else steps:
                pre = torch.where(pruned, bias, pre_x[:, t] + state_h @ w_hh.T + bias)
                i, f, g, o = pre.chunk(4, dim=1)
                state_c = torch.sigmoid(f) * state_c + torch.sigmoid(i) * torch.tanh(g)
                state_h = torch.sigmoid(o) * torch.tanh(state_c)
                outs[t] = state_h
            outputs.append(torch.stack(outs, dim=1))
            h_n.append(state_h)
            c_n.append(state_c)
        layer_input = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
    out = layer_input if module.batch_first else layer_input.transpose(0, 1)
    return out, (torch.stack(h_n), torch.stack(c_n))


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def pass_elements(device: torch.device) -> int:
    """Default size (values of the layer's repeated output) of one batched pass on ``device``.

    On a CPU, 4 Mi values (16 MB): measured on the ResNet side by side with one thread, 32 Mi made
    the first conv layer's pass 1.8x slower than the one-neuron loop (its passes spill the caches,
    and an early layer has little prefix to save), 4 Mi keeps it level with the loop and a deep
    layer at 10-11x (``benchmarks/zones_speed.py``). On a GPU, 32 Mi: wide passes fill the device."""
    return 32 * 2**20 if device.type == "cuda" else 4 * 2**20


def _fit(layer_output: Any, max_elements: int, n: int) -> int:
    first = layer_output[0] if isinstance(layer_output, tuple) else layer_output
    return max(1, min(n, max_elements // max(1, first.numel())))


@torch.no_grad()
def exact_loss_changes(
    model: nn.Module,
    layer: str,
    waves: torch.Tensor,
    labels: torch.Tensor,
    *,
    neurons_per_pass: int | None = None,
    batch_size: int = 64,
    max_elements: int | None = None,
    lazy: bool = True,
) -> torch.Tensor:
    """ΔL per neuron of ``layer`` (equal to :func:`looped_loss_changes`), many neurons per forward pass.

    ``neurons_per_pass`` × ``batch_size`` clips go through the part of the network after the
    layer at once; by default as many neurons as keep the layer's repeated output under
    ``max_elements`` values (the prefix's outputs for ``batch_size`` clips are held too).
    ``max_elements`` defaults to :func:`pass_elements` of the device: a CPU wants passes that stay
    near its caches, a GPU wide ones.
    """
    with _in_eval(model, layer, waves, batch_size) as (body, module, x):
        n = neuron_count(module)
        patched = _Patched(body, module)
        sums = torch.zeros(n, dtype=torch.float64, device=x.device)
        base = 0.0
        for clips in _chunks(x.shape[0], batch_size):
            xb, yb = x[clips], labels[clips]
            b = xb.shape[0]
            calls = patched.record(xb)
            base += float(F.cross_entropy(body(xb), yb, reduction="sum"))
            per_pass = neurons_per_pass or _fit(calls[-1][1], max_elements or pass_elements(x.device), n)
            for group in _chunks(n, per_pass):
                neurons = torch.arange(group.start, group.stop, device=x.device)
                logits = None
                if lazy:
                    try:
                        logits = patched.run(xb, calls, neurons, b, lazy=True)
                        if logits.shape[0] != neurons.numel() * b:
                            raise RuntimeError("the pruned copies did not reach the output")
                    except RuntimeError as err:  # an op the lazy mode cannot widen: repeat everything
                        log.debug("lazy batching failed on %s (%s); repeating the prefix", layer, err)
                        lazy, logits = False, None
                if logits is None:
                    logits = patched.run(xb, calls, neurons, b, lazy=False)
                loss = F.cross_entropy(logits, yb.repeat(neurons.numel()), reduction="none")
                sums[group] += loss.view(neurons.numel(), b).double().sum(1)
        total = max(1, x.shape[0])
        return (sums / total - base / total).cpu()


# --------------------------------------------------------------------------- first order
def first_order_loss_changes(
    model: nn.Module, layer: str, waves: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """-Σ w·∂L/∂w over each neuron's weights: the first-order ΔL of pruning it, from one backward pass."""
    with _in_eval(model, layer, waves, batch_size) as (body, module, x):
        n = neuron_count(module)
        weights = list({id(w): w for k in range(n) for w, _ in _neuron_weights(module, k)}.values())
        grads = {id(w): torch.zeros_like(w) for w in weights}
        for clips in _chunks(x.shape[0], batch_size):
            loss = F.cross_entropy(body(x[clips]), labels[clips], reduction="sum") / x.shape[0]
            for w, g in zip(weights, torch.autograd.grad(loss, weights)):
                grads[id(w)] += g
        with torch.no_grad():
            out = torch.empty(n, dtype=torch.float64)
            for k in range(n):
                out[k] = -sum(float((w[idx] * grads[id(w)][idx]).sum()) for w, idx in _neuron_weights(module, k))
        return out


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""

    def ranks(v: torch.Tensor) -> torch.Tensor:
        v = v.double().flatten()
        order = v.argsort()
        r = torch.empty_like(v)
        r[order] = torch.arange(v.numel(), dtype=torch.float64)
        for value in v.unique():  # ties share their mean rank
            tied = v == value
            if int(tied.sum()) > 1:
                r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum()) / denom if denom > 0 else float("nan")


# --------------------------------------------------------------------------- zones
def assign_zones(clc: torch.Tensor, blc: torch.Tensor, t_clc: float = 0.0, t_blc: float = 0.0) -> list[str]:
    """One of clean / backdoor / hybrid / redundant per neuron."""
    if clc.shape != blc.shape:
        raise ConfigError(f"CLC and BLC differ in shape: {tuple(clc.shape)} vs {tuple(blc.shape)}")
    out = []
    for c, b in zip(clc.tolist(), blc.tolist()):
        if c > t_clc and b > t_blc:
            out.append("hybrid")
        elif c > t_clc:
            out.append("clean")
        elif b > t_blc:
            out.append("backdoor")
        else:
            out.append("redundant")
    return out


@dataclass
class ZoneAnalysis:
    """CLC/BLC and zones of one layer."""

    layer: str
    clc: torch.Tensor
    blc: torch.Tensor
    zones: list[str]
    method: str

    def counts(self) -> dict[str, int]:
        return {z: self.zones.count(z) for z in ZONES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "method": self.method,
            "clc": self.clc.tolist(),
            "blc": self.blc.tolist(),
            "zones": self.zones,
            "counts": self.counts(),
        }


def analyse_layer(
    model: nn.Module,
    layer: str,
    clean: tuple[torch.Tensor, torch.Tensor],
    backdoor: tuple[torch.Tensor, torch.Tensor],
    *,
    method: str = "exact",
    t_clc: float = 0.0,
    t_blc: float = 0.0,
    batch_size: int = 64,
    neurons_per_pass: int | None = None,
) -> ZoneAnalysis:
    """CLC on ``clean`` and BLC on ``backdoor`` (each ``(waves, labels)``) for every neuron of ``layer``
    (the sets are moved to the model's device: a model fine-tuned on CUDA is analysed there)."""
    device = next(model.parameters()).device
    clean = (clean[0].to(device), clean[1].to(device))
    backdoor = (backdoor[0].to(device), backdoor[1].to(device))
    if method == "exact":

        def run(w, y):
            return exact_loss_changes(model, layer, w, y, neurons_per_pass=neurons_per_pass, batch_size=batch_size)
    elif method == "first-order":

        def run(w, y):
            return first_order_loss_changes(model, layer, w, y, batch_size=batch_size)
    elif method == "looped":

        def run(w, y):
            return looped_loss_changes(model, layer, w, y, batch_size=batch_size)
    else:
        raise ConfigError(f"method must be exact, first-order or looped, got {method!r}")
    clc, blc = run(*clean), run(*backdoor)
    return ZoneAnalysis(layer, clc, blc, assign_zones(clc, blc, t_clc, t_blc), method)
