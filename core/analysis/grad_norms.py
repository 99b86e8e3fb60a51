"""Per-neuron gradient norms: one number per conv output channel, linear unit or LSTM hidden unit.

A neuron's gradient norm is the L2 norm of the gradient of every parameter that belongs to it
(its weight row or filter and its bias; for an LSTM unit the four gate rows of the input and
recurrent weights and both biases). Backdoor neurons show large norms on clean data, which is
what GN-FT's penalty suppresses. The norms are read from gradients that already exist (the
``.grad`` of a step, or GN-FT's g1), so watching them costs no extra backward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from core.models import analysable_layers

__all__ = ["layer_grad_norms", "mean_grad_norms", "neuron_grad_norms"]

GradOf = Callable[[torch.Tensor], "torch.Tensor | None"]


def _rows(grad: torch.Tensor | None, n: int, ord: int, groups: int = 1) -> torch.Tensor | None:
    """Sum of |g| (ord 1) or g² (ord 2) per neuron of a ``[groups*n, ...]`` gradient (groups = LSTM gates)."""
    if grad is None:
        return None
    g = grad.detach().float().reshape(groups, n, -1)
    return (g.abs() if ord == 1 else g.pow(2)).sum(dim=(0, 2))


def _finish(parts: list[torch.Tensor | None], ord: int) -> torch.Tensor | None:
    found = [p for p in parts if p is not None]
    if not found:
        return None
    total = torch.stack(found).sum(0)
    return total if ord == 1 else total.sqrt()


def layer_grad_norms(
    module: nn.Module, grad_of: GradOf | None = None, *, ord: int = 2, include_bias: bool = True
) -> torch.Tensor | None:
    """The per-neuron gradient norms ``[neurons]`` of one Conv2d, Linear or LSTM layer (None: no gradient).

    ``ord`` 2 (L2, the default) or 1 (L1, the TSBD/authors' figure); ``include_bias=False``
    takes the weights alone, as the authors' Figure 2 code does.
    """
    if ord not in (1, 2):
        raise ValueError(f"ord must be 1 or 2, got {ord}")
    grad_of = grad_of or (lambda p: p.grad)
    if isinstance(module, nn.LSTM):
        h, blocks = module.hidden_size, []
        kinds = ("weight_ih", "weight_hh", *(("bias_ih", "bias_hh") if module.bias and include_bias else ()))
        for layer in range(module.num_layers):
            for suffix in ("", "_reverse")[: 2 if module.bidirectional else 1]:
                sums = [_rows(grad_of(getattr(module, f"{k}_l{layer}{suffix}")), h, ord, 4) for k in kinds]
                found = [x for x in sums if x is not None]
                blocks.append(torch.stack(found).sum(0) if found else None)
        if all(b is None for b in blocks):
            return None
        ref = next(b for b in blocks if b is not None)
        total = torch.cat([torch.zeros_like(ref) if b is None else b for b in blocks])
        return total if ord == 1 else total.sqrt()
    weight = getattr(module, "weight", None)
    if weight is None:
        return None
    n = weight.shape[0]
    parts = [_rows(grad_of(weight), n, ord)]
    if include_bias and getattr(module, "bias", None) is not None:
        parts.append(_rows(grad_of(module.bias), n, ord))
    return _finish(parts, ord)


def mean_grad_norms(
    model: nn.Module,
    waves: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 256,
    max_batches: int | None = None,
    ord: int = 2,
    include_bias: bool = True,
    layers: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-neuron gradient norms of the clean loss, averaged over batches (Figure 2's measurement).

    The model is in eval mode (BatchNorm uses its running statistics, no dropout), so the
    figure describes the model as it is, not one perturbed by batch statistics; it is left
    unchanged (gradients are cleared afterwards).
    """
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    wanted = dict(analysable_layers(model))
    if layers:
        missing = [n for n in layers if n not in wanted]
        if missing:
            raise ValueError(f"no analysable layer(s) {', '.join(missing)}; have {', '.join(wanted)}")
        wanted = {n: wanted[n] for n in layers}
    try:
        for start in range(0, waves.shape[0], batch_size):
            if max_batches is not None and count >= max_batches:
                break
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(waves[start : start + batch_size]), labels[start : start + batch_size]).backward()
            for name, module in wanted.items():
                norms = layer_grad_norms(module, ord=ord, include_bias=include_bias)
                if norms is not None:
                    sums[name] = sums.get(name, 0) + norms
            count += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return {name: total / max(1, count) for name, total in sums.items()}


def neuron_grad_norms(model: nn.Module, grad_of: GradOf | None = None) -> dict[str, torch.Tensor]:
    """``{layer name: norms [neurons]}`` for every analysable layer that has a gradient.

    ``grad_of(parameter)`` gives the gradient to read (default: ``parameter.grad``), so a
    defense can report the norms of g1 after it has replaced ``.grad`` with its mixed gradient.
    """
    out = {}
    for name, module in analysable_layers(model):
        norms = layer_grad_norms(module, grad_of)
        if norms is not None:
            out[name] = norms
    return out
