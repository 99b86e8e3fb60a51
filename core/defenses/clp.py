"""CLP, Channel Lipschitzness-based Pruning (Zheng et al., ECCV 2022): data-free.

A backdoor channel reacts very strongly to a small trigger: its upper bound on the channel
Lipschitz constant (UCLC) stands out. For every Conv2d channel, UCLC is the spectral norm of
its filter ``[in, kh·kw]`` times the gain ``|γ|/σ`` of the BatchNorm that follows the conv
(if any). Channels whose UCLC exceeds the layer's mean + ``u``·std are pruned: their filter,
bias and BatchNorm affine are zeroed, so the checkpoint keeps its architecture. No clean data
is needed; ``epochs > 0`` adds plain fine-tuning afterwards with the pruned channels held at zero.
Models without convolutions (``rnn``, ``lstm_attention``) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.defenses.finetune import FineTune, FineTuneConfig
from core.errors import ConfigError
from core.models import analysable_layers
from core.options import option, override

__all__ = ["CLPConfig", "CLP", "channel_lipschitz"]


@dataclass
class CLPConfig(FineTuneConfig):
    """``u``: how many standard deviations above the layer's mean UCLC a channel is pruned."""

    u: float = option(
        3.0,
        label="u, Lipschitz threshold (std)",
        primary=True,
        range="(0, inf)",
        range_text="positive",
        help="CLP: prune channels whose Lipschitz upper bound is u standard deviations above the layer mean",
    )
    epochs: int = override(FineTuneConfig, "epochs", 0)


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every analysable Conv2d with the BatchNorm2d that normalises its channels, if one follows it."""
    modules = list(model.named_modules())
    convs = {name for name, m in analysable_layers(model) if isinstance(m, nn.Conv2d)}
    pairs = []
    for i, (name, module) in enumerate(modules):
        if name not in convs:
            continue
        bn = None
        for _, nxt in modules[i + 1 :]:
            if isinstance(nxt, (nn.Conv2d, nn.Linear, nn.LSTM)):
                break
            if isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == module.out_channels:
                bn = nxt
                break
        pairs.append((name, module, bn))
    return pairs


@torch.no_grad()
def channel_lipschitz(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> torch.Tensor:
    """UCLC of each output channel: ``[out_channels]``."""
    w = conv.weight.detach().float()
    norms = torch.linalg.matrix_norm(w.reshape(w.shape[0], w.shape[1], -1), ord=2)
    if bn is not None and bn.running_var is not None:
        gain = (bn.weight.detach().abs() if bn.weight is not None else 1.0) / torch.sqrt(bn.running_var + bn.eps)
        norms = norms * gain
    return norms


class CLP(FineTune):
    name = "clp"
    Config = CLPConfig
    needs_data = False

    def __init__(self, config: CLPConfig | None = None) -> None:
        super().__init__(config)
        self.pruned: dict[str, list[int]] = {}
        self._zeroed: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._channels = 0

    def prepare(self, model: nn.Module, waves: torch.Tensor, labels: torch.Tensor) -> None:
        c: CLPConfig = self.config  # type: ignore[assignment]
        pairs = _conv_bn_pairs(model)
        if not pairs:
            raise ConfigError("CLP prunes convolution channels, and this model has no Conv2d layer")
        self.pruned, self._zeroed, self._channels = {}, [], 0
        for name, conv, bn in pairs:
            lips = channel_lipschitz(conv, bn)
            self._channels += lips.numel()
            threshold = lips.mean() + c.u * lips.std()
            idx = (lips > threshold).nonzero().flatten()
            if idx.numel() == 0:
                continue
            self.pruned[name] = idx.tolist()
            for t in (conv.weight, conv.bias, *((bn.weight, bn.bias) if bn is not None else ())):
                if t is not None:
                    self._zeroed.append((t, idx.to(t.device)))
        self._apply_masks()

    @torch.no_grad()
    def _apply_masks(self) -> None:
        for tensor, idx in self._zeroed:
            tensor.index_fill_(0, idx, 0.0)

    def details(self) -> dict[str, Any]:
        return {
            "pruned_channels": self.pruned,
            "pruned_total": sum(len(v) for v in self.pruned.values()),
            "conv_channels": self._channels,
        }

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        loss = super().train_step(model, x, y, optimizer)
        self._apply_masks()
        return loss
