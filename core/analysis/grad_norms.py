"""Per-neuron gradient norms: one number per conv output channel, linear unit or LSTM hidden unit.

A neuron's gradient norm is the L2 norm of the gradient of every parameter that belongs to it
(its weight row or filter and its bias; for an LSTM unit the four gate rows of the input and
recurrent weights and both biases). Backdoor neurons show large norms on clean data, which is
what GN-FT's penalty suppresses. The norms are read from gradients that already exist (the
``.grad`` of a step, or GN-FT's g1), so watching them costs no extra backward pass.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from core.models import analysable_layers

__all__ = ["layer_grad_norms", "neuron_grad_norms"]

GradOf = Callable[[torch.Tensor], "torch.Tensor | None"]


def _rows_sq(grad: torch.Tensor | None, n: int, groups: int = 1) -> torch.Tensor | None:
    """Squared norm per neuron of a ``[groups*n, ...]`` gradient (groups = LSTM gates)."""
    if grad is None:
        return None
    return grad.detach().float().reshape(groups, n, -1).pow(2).sum(dim=(0, 2))


def layer_grad_norms(module: nn.Module, grad_of: GradOf | None = None) -> torch.Tensor | None:
    """The per-neuron gradient norms ``[neurons]`` of one Conv2d, Linear or LSTM layer (None: no gradient)."""
    grad_of = grad_of or (lambda p: p.grad)
    if isinstance(module, nn.LSTM):
        h, parts = module.hidden_size, []
        for layer in range(module.num_layers):
            for suffix in ("", "_reverse")[: 2 if module.bidirectional else 1]:
                sq = [_rows_sq(grad_of(getattr(module, f"{kind}_l{layer}{suffix}")), h, 4)
                      for kind in ("weight_ih", "weight_hh", *(("bias_ih", "bias_hh") if module.bias else ()))]
                sq = [s for s in sq if s is not None]
                parts.append(torch.stack(sq).sum(0) if sq else None)
        if all(p is None for p in parts):
            return None
        ref = next(p for p in parts if p is not None)
        return torch.cat([torch.zeros_like(ref) if p is None else p for p in parts]).sqrt()
    weight = getattr(module, "weight", None)
    if weight is None:
        return None
    n = weight.shape[0]
    sq = [_rows_sq(grad_of(weight), n)]
    if getattr(module, "bias", None) is not None:
        sq.append(_rows_sq(grad_of(module.bias), n))
    sq = [s for s in sq if s is not None]
    return torch.stack(sq).sum(0).sqrt() if sq else None


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
