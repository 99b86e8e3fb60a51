"""Neuron-level analysis of a classifier: per-neuron gradient norms and CLC/BLC zones."""

from core.analysis.grad_norms import layer_grad_norms, mean_grad_norms, neuron_grad_norms

__all__ = ["layer_grad_norms", "mean_grad_norms", "neuron_grad_norms"]
