"""The one training loop: epochs of shuffled batches, one step function, events and callbacks.

Training a model (:mod:`core.training`) and every fine-tuning defense (:class:`core.defenses.Defense`)
run through :class:`Loop`. The loop owns what both need the same way: the conv layout of the
trained module (channels_last on a CPU) and back, ``torch.compile``, autocast, the per-step
learning rate, cancellation (the observer's ``should_stop``, polled before every step) and the
:class:`~core.events.StepInfo` events. What watches or steers a run is a :class:`Callback`:
evaluation schedules, early stopping, progress bars, gradient-norm snapshots, as in Lightning's
callbacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from core.errors import Diverged
from core.events import Cancelled, NullObserver, Observer, StepInfo
from core.models.batchnorm import use_exact_batchnorm
from core.runtime import autocast, memory_format

__all__ = ["Callback", "Loop", "StepFn"]

#: ``step(module, rows) -> loss``: one optimisation step on the batch of row indices ``rows`` ([B] long,
#: on the device); ``module`` is the trained module (compiled when asked).
StepFn = Callable[[nn.Module, torch.Tensor], float]


class Callback:
    """Hooks the loop calls at fixed points; every hook defaults to nothing.

    ``on_step`` runs before the observer hears of the step, so a callback may add to the
    :class:`StepInfo` (gradient norms). Setting ``loop.stop = True`` ends the run after the hook.
    """

    def on_epoch_start(self, loop: Loop, epoch: int) -> None:
        pass

    def on_step(self, loop: Loop, info: StepInfo) -> None:
        pass

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        pass

    def on_end(self, loop: Loop) -> None:
        """Called once however the run ends (finished, stopped, cancelled or failed)."""


class Loop:
    """Run ``epochs`` passes of ``step`` over ``n_rows`` rows in seeded random batches.

    ``module`` is the part that trains (the classifier after the front end): it is laid out in
    ``layout`` ("auto": channels_last on a CPU, see :func:`core.runtime.memory_format`) for the run, its
    BatchNorms kept exact in channels_last (:func:`core.models.batchnorm.use_exact_batchnorm`), and
    handed back contiguous.
    ``lr_at(step, steps_per_epoch)`` sets every parameter group's lr of ``optimizer`` before each
    step (None: leave it). ``train_mode()`` puts the model in training mode at each epoch start.
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        step: StepFn,
        n_rows: int,
        *,
        epochs: int,
        batch_size: int,
        device: torch.device,
        order: torch.Generator,
        amp: str = "none",
        compile: bool = False,
        layout: str = "auto",
        optimizer: torch.optim.Optimizer | None = None,
        lr_at: Callable[[int, int], float] | None = None,
        train_mode: Callable[[], object] | None = None,
        observer: Observer | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.name, self.module, self.step_fn, self.n_rows = name, module, step, n_rows
        self.epochs, self.batch_size, self.device, self.order = epochs, batch_size, device, order
        self.amp, self.compile, self.layout = amp, compile, layout
        self.optimizer, self.lr_at = optimizer, lr_at
        self.train_mode = train_mode or module.train
        self.observer = observer or NullObserver()
        self.callbacks = list(callbacks)
        self.steps_per_epoch = math.ceil(n_rows / batch_size) if n_rows else 0
        self.total_steps = self.steps_per_epoch * epochs
        self.step = 0
        self.epoch = 0
        self.batch_rows = 0  # clips in the current step's batch
        self.stop = False

    def batches(self) -> Iterable[torch.Tensor]:
        """One epoch's row indices in batches: a fresh permutation from the seeded ``order`` generator."""
        perm = torch.randperm(self.n_rows, generator=self.order).to(self.device)
        for start in range(0, perm.numel(), self.batch_size):
            yield perm[start : start + self.batch_size]

    def run(self) -> None:
        """Train until ``epochs`` are done or a callback sets ``stop``; raises :class:`Cancelled` when the
        observer asks to stop and :class:`core.errors.Diverged` at the first step whose loss is NaN or
        infinite. The module is contiguous again afterwards in every case."""
        layout = memory_format(self.layout, self.device)
        self.module.to(memory_format=layout)
        exact = use_exact_batchnorm(self.module) if layout == torch.channels_last else None
        stepped = torch.compile(self.module) if self.compile else self.module  # shares the parameters
        try:
            for epoch in range(1, self.epochs + 1):
                self.epoch = epoch
                self.train_mode()
                self._each("on_epoch_start", epoch)
                for rows in self.batches():
                    if self.observer.should_stop():
                        raise Cancelled()
                    self.batch_rows = int(rows.numel())
                    lr = self._set_lr()
                    with autocast(self.device, self.amp):
                        loss = self.step_fn(stepped, rows)
                    self.step += 1
                    if not math.isfinite(loss):  # every later step would be NaN too: stop now, say why
                        raise Diverged(
                            f"{self.name}: the loss became {'NaN' if math.isnan(loss) else 'infinite'} at epoch "
                            f"{epoch} (step {self.step} of {self.total_steps}): the run diverged and was stopped, "
                            "nothing of it kept; its steps are too large for this model (lower the learning rate, "
                            "lr; for gnft also r)"
                        )
                    info = StepInfo(self.name, epoch, self.step, self.total_steps, loss, lr)
                    self._each("on_step", info)
                    self.observer.on_step(info)
                self._each("on_epoch_end", epoch)
                if self.stop:
                    break
        finally:
            if exact is not None:
                exact.remove()
            self.module.to(memory_format=torch.contiguous_format)
            self._each("on_end")

    def _set_lr(self) -> float | None:
        if self.optimizer is None:
            return None
        if self.lr_at is None:
            return self.optimizer.param_groups[0]["lr"]
        lr = self.lr_at(self.step, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _each(self, hook: str, *args: object) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)
