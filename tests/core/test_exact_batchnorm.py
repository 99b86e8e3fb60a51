"""BatchNorm is exact in the layout the training loop uses on a CPU (channels_last): issue 30."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core.loop import Loop
from core.models import build
from core.models.batchnorm import use_exact_batchnorm


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).norm() / b.norm())


def _bn_pass(x0: torch.Tensor, g0: torch.Tensor, dtype: torch.dtype, layout: torch.memory_format, exact: bool):
    bn = nn.BatchNorm2d(x0.shape[1]).to(dtype).train()
    exact_bn = use_exact_batchnorm(bn) if exact else None
    x = x0.to(dtype).contiguous(memory_format=layout).detach().requires_grad_()
    out = bn(x)
    out.backward(g0.to(dtype).contiguous(memory_format=layout))
    if exact_bn is not None:
        exact_bn.remove()
        assert type(bn) is nn.BatchNorm2d  # handed back as it was
    figures = {
        "output": out,
        "input grad": x.grad,
        "weight grad": bn.weight.grad,
        "bias grad": bn.bias.grad,
        "running mean": bn.running_mean,
        "running var": bn.running_var,
    }
    return {k: v.detach().double() for k, v in figures.items()}, out


def test_one_batchnorm_in_channels_last_is_exact_with_the_exact_kernel_and_not_without():
    torch.manual_seed(0)
    x0 = 3 + 0.5 * torch.randn(64, 16, 101, 40, dtype=torch.float64)  # an offset, as after a conv
    g0 = torch.randn_like(x0)
    reference, _ = _bn_pass(x0, g0, torch.float64, torch.contiguous_format, False)
    exact, out = _bn_pass(x0, g0, torch.float32, torch.channels_last, True)
    plain, _ = _bn_pass(x0, g0, torch.float32, torch.channels_last, False)
    assert out.is_contiguous(memory_format=torch.channels_last)  # the next conv keeps its layout
    for key, value in reference.items():
        assert _rel(exact[key], value) < 1e-6, key
    assert _rel(plain["output"], reference["output"]) > 1e-5  # what it is for (PyTorch's kernel)


def _one_loop_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layout: str):
    """One step of the product's training loop on ``model`` (no update): gradients and running stats."""
    model = copy.deepcopy(model).train()
    for m in model.modules():  # dropout draws differ between dtypes; it is not what is measured
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    grads: dict[str, torch.Tensor] = {}

    def step(module: nn.Module, rows: torch.Tensor) -> float:
        loss = nn.functional.cross_entropy(module(x[rows]), y[rows])
        loss.backward()
        grads.update({n: p.grad.double() for n, p in module.named_parameters()})
        return float(loss.detach())

    Loop(
        "probe",
        model,
        step,
        len(y),
        epochs=1,
        batch_size=len(y),
        device=torch.device("cpu"),
        order=torch.Generator().manual_seed(0),
        layout=layout,
    ).run()
    stats = {n: b.double() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))}
    return grads, stats


@pytest.mark.parametrize("name", ["smallcnn", "resnet"])
def test_a_training_step_keeps_running_statistics_exact_in_the_cpu_layout(name):
    """The loop's CPU layout (channels_last) against a float64 reference: the running statistics saved in
    checkpoints are as exact as the contiguous float32 layout gives (SmallCNN: within 1e-5; ResNet's
    deeper stack sits at the float32 floor of 1e-5 in both layouts)."""
    torch.manual_seed(0)
    model = build(name, 10)
    with torch.no_grad():
        x = model.front_end(0.1 * torch.randn(48, 16000))
    y = torch.arange(48) % 10
    ref_grads, ref_stats = _one_loop_step(model.classifier.double(), x.double(), y, "contiguous")
    grads, stats = _one_loop_step(model.classifier.float(), x, y, "channels_last")
    contiguous_grads, contiguous_stats = _one_loop_step(model.classifier.float(), x, y, "contiguous")
    worst = max(_rel(stats[k], ref_stats[k]) for k in ref_stats)
    floor = max(_rel(contiguous_stats[k], ref_stats[k]) for k in ref_stats)
    assert worst <= 1.1 * floor + 1e-7, (worst, floor)
    assert worst < (1e-5 if name == "smallcnn" else 2e-5)
    if name == "smallcnn":  # (a ReLU net's gradient flips where an activation is within rounding of 0: ResNet)
        ignored = {n for n in ref_grads if n.startswith("conv") and n.endswith(".bias")}  # 0 in theory: BN follows
        # within 1e-5 of float64, or no further than the contiguous float32 layout: on some CPUs a max-pool
        # near-tie before conv2 resolves the other way in float32 whatever the layout (AMD EPYC: 3e-3 in
        # input_norm and conv1 in both layouts)
        for k in ref_grads:
            if k not in ignored:
                error, contiguous = _rel(grads[k], ref_grads[k]), _rel(contiguous_grads[k], ref_grads[k])
                assert error < max(1e-5, 1.1 * contiguous), (k, error, contiguous)


@pytest.mark.parametrize(
    ("shape", "momentum", "affine"),
    [((8, 5, 7, 3), 0.1, True), ((3, 4, 1, 9), None, True), ((6, 3, 5, 5), 0.3, False)],
)
def test_the_exact_kernel_matches_float64_in_every_batchnorm_setting(shape, momentum, affine):
    """Odd shapes, the cumulative average (momentum None) and no affine parameters: output, input
    gradient, running statistics and the step counter as PyTorch's float64 kernel gives them."""
    torch.manual_seed(1)
    x0 = 2 + torch.randn(*shape, dtype=torch.float64)
    g0 = torch.randn_like(x0)
    runs = {}
    for exact in (False, True):
        bn = nn.BatchNorm2d(shape[1], momentum=momentum, affine=affine).train()
        if exact:
            use_exact_batchnorm(bn)
        else:
            bn.double()
        for _ in range(2):  # the running statistics after two steps
            x = x0.to(bn.running_mean.dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
            out = bn(x)
            assert ("Exact" in type(out.grad_fn).__name__) == exact  # the kernel that ran
            out.backward(g0.to(x.dtype).contiguous(memory_format=torch.channels_last))
        runs[exact] = (out, x.grad, bn.running_mean, bn.running_var, bn.num_batches_tracked)
    for got, want in zip(runs[True], runs[False]):
        assert _rel(got.detach(), want.detach().double()) < 1e-6
    assert int(runs[True][4]) == 2


def test_the_exact_batchnorm_is_the_same_module_to_everything_else():
    """Swapped in place: the same parameters and state dict, copies keep working, eval mode and the
    contiguous layout run PyTorch's kernel bit for bit, and ``remove`` restores the class."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    keys = list(net.state_dict())
    plain = copy.deepcopy(net)
    restore = use_exact_batchnorm(net)
    assert isinstance(net[1], nn.BatchNorm2d) and type(net[1]) is not nn.BatchNorm2d
    assert list(net.state_dict()) == keys
    x = torch.randn(5, 1, 9, 9)
    assert torch.equal(net(x), plain(x))  # contiguous input: PyTorch's own kernel
    net.eval(), plain.eval()
    xl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(net.to(memory_format=torch.channels_last)(xl), plain.to(memory_format=torch.channels_last)(xl))
    twin = copy.deepcopy(net).train()
    assert twin(xl).is_contiguous(memory_format=torch.channels_last)
    restore.remove()
    assert type(net[1]) is nn.BatchNorm2d


def _with_running_statistics(model: nn.Module) -> nn.Module:
    """``model`` with BatchNorm statistics and affines far from the identity a fresh one holds."""
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
    return model


def test_folding_batchnorm_keeps_outputs_and_input_gradients_and_leaves_the_model_alone():
    from core.models import split_front_end
    from core.models.batchnorm import fold_batchnorm

    torch.manual_seed(0)
    _, body = split_front_end(build("resnet", 5))
    body = _with_running_statistics(body).eval()
    before = {k: v.clone() for k, v in body.state_dict().items()}
    folded = fold_batchnorm(body)
    norms = [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 1  # every conv's BatchNorm folded; the input norm (no layer before it) stays
    assert all(torch.equal(v, before[k]) for k, v in body.state_dict().items())  # a copy was folded
    x = torch.randn(6, 1, 101, 40)
    grads = []
    for net in (body, folded):
        xi = x.clone().requires_grad_()
        out = net(xi)
        grads.append((out.detach(), torch.autograd.grad(out.logsumexp(1).sum(), xi)[0]))
    (ref, ref_grad), (out, out_grad) = grads
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4) and not torch.equal(out, ref)  # rounding only
    assert _rel(out_grad, ref_grad.double()) < 1e-4
    # nothing to fold: a model in training, a recurrent model fx cannot trace, a model with no conv + BN
    assert fold_batchnorm(body.train()) is body
    _, lstm = split_front_end(build("smalllstm", 5))
    assert fold_batchnorm(lstm.eval()) is lstm
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    assert fold_batchnorm(plain) is plain
