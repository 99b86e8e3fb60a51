"""Tests of the architecture registry (core.models): shapes, gradients, determinism, naming, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core import models
from core.errors import ConfigError
from core.features import FrontEnd, FrontEndConfig

NAMES = models.list_models()

OTHER_FRONT_ENDS = {
    "44k1": FrontEndConfig(sample_rate=44100, n_fft=1103, hop_length=441),  # 100 x 40 (Ultrasonic)
    "13mfcc": FrontEndConfig(n_coeffs=13, n_fft=2048, hop_length=512),  # 32 x 13 (FlowMur)
    "logmel80": FrontEndConfig(kind="logmel", n_mels=80),  # 101 x 80
}
SMALL_FRONT_END = OTHER_FRONT_ENDS["13mfcc"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tensors are small, and on a busy 2-core machine spinning
    OpenMP workers make the module many times slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _waves(batch: int, config: FrontEndConfig | None = None, seed: int = 0) -> torch.Tensor:
    config = config or FrontEndConfig()
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, config.num_samples, generator=gen)


def _tone_batch(config: FrontEndConfig, n_classes: int = 4, per_class: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable clips: one tone per class (random phase and level) in light noise."""
    gen = torch.Generator().manual_seed(1234)
    t = torch.arange(config.num_samples) / config.sample_rate
    freqs = [300.0, 700.0, 1500.0, 3100.0][:n_classes]
    waves, labels = [], []
    for label, freq in enumerate(freqs):
        for _ in range(per_class):
            phase = 2 * math.pi * torch.rand(1, generator=gen)
            level = 0.2 + 0.3 * torch.rand(1, generator=gen)
            noise = 0.02 * torch.randn(config.num_samples, generator=gen)
            waves.append(level * torch.sin(2 * math.pi * freq * t + phase) + noise)
            labels.append(label)
    return torch.stack(waves), torch.tensor(labels)


@pytest.mark.parametrize("name", NAMES)
def test_builds_with_default_front_end_and_outputs_logits(name: str) -> None:
    model = models.build(name, 5)
    assert isinstance(model, nn.Sequential)
    assert isinstance(model[0], FrontEnd)
    assert [n for n, _ in model.named_children()] == ["front_end", "classifier"]
    assert model[0].output_shape() == (1, 101, 40)
    assert not any(isinstance(m, (nn.Softmax, nn.LogSoftmax)) for m in model.modules())
    model.eval()
    with torch.no_grad():
        logits = model(_waves(3))
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()
    assert model.architecture == name
    assert model.arch_args == dict(models.ARCHITECTURES[name].defaults)


@pytest.mark.parametrize("fe_name", list(OTHER_FRONT_ENDS))
@pytest.mark.parametrize("name", NAMES)
def test_builds_and_runs_for_other_front_ends(name: str, fe_name: str) -> None:
    config = OTHER_FRONT_ENDS[fe_name]
    model = models.build(name, 3, config).eval()
    with torch.no_grad():
        logits = model(_waves(2, config))
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()


def test_front_end_given_as_dict_or_module() -> None:
    config = OTHER_FRONT_ENDS["13mfcc"]
    from_dict = models.build("smallcnn", 4, config.to_dict())
    assert from_dict[0].config == config
    fe = FrontEnd(config)
    assert models.build("resnet", 4, fe)[0] is fe


def test_flatten_sizes_match_the_authors_for_the_default_front_end() -> None:
    assert models.build("smallcnn", 10)[1].fc1.in_features == 3072
    assert models.build("resnet", 10)[1].fc.in_features == 384
    assert models.build("largecnn", 10)[1].fc1.in_features == 12288
    # FlowMur's 32 x 13 input: the authors' 224 / 64 / 768.
    assert models.build("smallcnn", 10, SMALL_FRONT_END)[1].fc1.in_features == 224
    assert models.build("resnet", 10, SMALL_FRONT_END)[1].fc.in_features == 64
    assert models.build("largecnn", 10, SMALL_FRONT_END)[1].fc1.in_features == 768


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_finite_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = models.build(name, 4).train()
    logits = model(_waves(4))
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_deterministic(name: str) -> None:
    model = models.build(name, 4, SMALL_FRONT_END).eval()
    x = _waves(3, SMALL_FRONT_END)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adam_steps_reduce_the_loss(name: str) -> None:
    torch.manual_seed(0)
    waves, labels = _tone_batch(SMALL_FRONT_END, per_class=2)
    model = models.build(name, 4, SMALL_FRONT_END).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def loss_now() -> float:
        torch.manual_seed(7)  # same dropout masks for the before/after measurement
        with torch.no_grad():
            return nn.functional.cross_entropy(model(waves), labels).item()

    before = loss_now()
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(waves), labels).backward()
        optimizer.step()
    after = loss_now()
    assert after < 0.85 * before, f"{name}: loss {before:.3f} -> {after:.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_analysable_layers_are_named_modules_in_forward_order(name: str) -> None:
    model = models.build(name, 4, SMALL_FRONT_END)
    layers = models.analysable_layers(model)
    named = dict(model.named_modules())
    assert layers, "no analysable layers"
    for lname, layer in layers:
        assert lname.startswith("classifier.")
        assert named[lname] is layer
        assert isinstance(layer, (nn.Conv2d, nn.Linear, nn.LSTM))
    expected = {id(m) for m in model[1].modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.LSTM))}
    assert {id(m) for _, m in layers} == expected
    called: list[str] = []
    handles = [layer.register_forward_hook(lambda *_, n=lname: called.append(n)) for lname, layer in layers]
    try:
        with torch.no_grad():
            model.eval()(_waves(1, SMALL_FRONT_END))
    finally:
        for h in handles:
            h.remove()
    assert called == [n for n, _ in layers]
    assert layers[-1][0] == "classifier.fc"
    assert models.analysable_layers(model[1])[0][0] == layers[0][0].removeprefix("classifier.")


def test_resnet_layer_names_are_stable() -> None:
    names = [n for n, _ in models.analysable_layers(models.build("resnet", 10))]
    assert "classifier.conv1" in names
    assert "classifier.layer3.1.conv2" in names
    assert "classifier.layer2.0.downsample.0" in names
    assert names[-2:] == ["classifier.head_conv", "classifier.fc"]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_weights(name: str) -> None:
    torch.manual_seed(3)
    a = models.build(name, 4, SMALL_FRONT_END).state_dict()
    torch.manual_seed(3)
    b = models.build(name, 4, SMALL_FRONT_END).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(4)
    c = models.build(name, 4, SMALL_FRONT_END).state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_unknown_architecture_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        models.build("transformer", 10)
    for name in NAMES:
        assert name in str(info.value)
    with pytest.raises(ConfigError):
        models.describe("transformer")


def test_unknown_arch_arg_is_named() -> None:
    with pytest.raises(ConfigError, match="depth"):
        models.build("resnet", 10, depth=4)


def test_bad_arch_arg_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="hidden"):
        models.build("rnn", 10, hidden="big")
    with pytest.raises(ConfigError, match="hidden"):
        models.build("rnn", 10, hidden=0)
    with pytest.raises(ConfigError, match="n_classes"):
        models.build("smallcnn", 1)


def test_arch_args_override_the_defaults() -> None:
    model = models.build("rnn", 4, SMALL_FRONT_END, hidden=32, num_layers=2)
    assert model[1].lstm.hidden_size == 32 and model[1].lstm.num_layers == 2
    assert model.arch_args == {"input_norm": True, "hidden": 32, "num_layers": 2, "readout": "mean"}
    plain = models.build("smallcnn", 4, SMALL_FRONT_END, input_norm=False)
    assert isinstance(plain[1].input_norm, nn.Identity)
    assert plain(_waves(2, SMALL_FRONT_END)).shape == (2, 4)


@pytest.mark.parametrize("name", ["smallcnn", "largecnn", "smalllstm", "resnet"])
def test_too_small_input_is_a_config_error(name: str) -> None:
    tiny = FrontEndConfig(n_coeffs=3, n_mels=20, num_samples=800, n_fft=256, hop_length=128)  # 7 x 3
    with pytest.raises(ConfigError, match="too small"):
        models.build(name, 4, tiny)


def test_registry_metadata() -> None:
    assert NAMES == ["smallcnn", "largecnn", "smalllstm", "lstm_attention", "rnn", "resnet"]
    for name in NAMES:
        spec = models.ARCHITECTURES[name]
        assert spec.name == name and spec.description and "\n" not in spec.description
        assert models.describe(name).startswith(name + ":")
    assert models.ARCHITECTURES["rnn"].defaults["hidden"] == 256


@pytest.mark.parametrize("name", ["rnn", "smalllstm"])
def test_recurrent_readout_choice(name: str) -> None:
    x = _waves(2, SMALL_FRONT_END)
    torch.manual_seed(0)
    mean = models.build(name, 4, SMALL_FRONT_END).eval()
    torch.manual_seed(0)
    last = models.build(name, 4, SMALL_FRONT_END, readout="last").eval()
    assert mean.arch_args["readout"] == "mean" and last.arch_args["readout"] == "last"
    with torch.no_grad():
        assert not torch.allclose(mean(x), last(x))  # same weights, different read-out
    with pytest.raises(ConfigError, match="readout must be 'last' or 'mean'"):
        models.build(name, 4, SMALL_FRONT_END, readout="max")


@pytest.mark.parametrize("name", ["smalllstm", "lstm_attention", "rnn"])
def test_lstm_forget_gate_bias_starts_at_one(name: str) -> None:
    lstms = [m for m in models.build(name, 4, SMALL_FRONT_END).modules() if isinstance(m, nn.LSTM)]
    assert lstms
    for lstm in lstms:
        h = lstm.hidden_size
        for pname, param in lstm.named_parameters():
            if pname.startswith("bias_ih"):
                assert torch.all(param[h : 2 * h] == 1.0)
            elif pname.startswith("bias_hh"):
                assert torch.all(param[h : 2 * h] == 0.0)


@pytest.mark.parametrize("name", ["smalllstm", "lstm_attention", "rnn"])
def test_recurrent_models_give_input_gradients_in_eval_mode(name: str) -> None:
    """The scan and the analysis differentiate a model in eval mode (on CUDA through run_lstm's
    non-cuDNN path); the gradient must reach the input and equal the plain LSTM's."""
    torch.manual_seed(0)
    model = models.build(name, 4, SMALL_FRONT_END).eval()
    x = _waves(2, SMALL_FRONT_END).requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
