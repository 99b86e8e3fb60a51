"""Recurrent classifiers: ``smalllstm``, ``lstm_attention`` and ``rnn`` (paper notes, section 3).

All take features ``[B, C, frames, coeffs]`` and return raw logits ``[B, n_classes]``.
Each starts with ``input_norm`` (a per-coefficient BatchNorm, see ``CoefficientNorm``),
which is not in the authors' code: LSTMs fed raw MFCCs (coefficient 0 in the hundreds)
saturate their gates and train poorly with Adam at lr 1e-3. Every LSTM's forget-gate
bias starts at 1 (``init_forget_bias``), also not in the authors' code: in a zero-padded
1 s clip the word comes long before the last time step. ``smalllstm`` and ``rnn`` average
the LSTM outputs over time by default (``readout="mean"``); ``readout="last"`` is the
authors' FC on the last step (see ``init_forget_bias`` for measured accuracies).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from core.models.cnn import SmallConvStem
from core.models.layers import check_input_shape, init_forget_bias, make_input_norm, probe_shape, run_lstm

__all__ = ["SmallLSTM", "LSTMAttention", "RNN"]


def _sequence(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, F]`` -> ``[B, T, C*F]`` (time-major sequence for ``batch_first`` LSTMs)."""
    b, c, t, f = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, t, c * f)


def _readout(arch: str, value: str) -> str:
    if value not in ("last", "mean"):
        raise ConfigError(f"{arch}: readout must be 'last' or 'mean', got {value!r}")
    return value


def _read(out: torch.Tensor, readout: str) -> torch.Tensor:
    """``[B, T, H]`` LSTM outputs -> ``[B, H]``: the last step, or the mean over time."""
    return out[:, -1] if readout == "last" else out.mean(dim=1)


def _positive(arch: str, name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{arch}: {name} must be a positive integer, got {value!r}")
    return value


class SmallLSTM(SmallConvStem):
    """``smalllstm``: smallcnn's three conv blocks, a sequence over time, LSTM(2 layers), FC.

    The conv maps ``[B, 32, T', F']`` become ``[B, T', 32*F']``. The authors' unused
    ``fc1`` and trailing Softmax are left out, so every parameter gets a gradient.
    ``readout="mean"`` (default) averages the LSTM outputs over time; ``"last"`` takes the
    last step as the authors do, which learns slowly when clips end in padded silence.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        n_classes: int,
        *,
        input_norm: bool = True,
        hidden: int = 128,
        num_layers: int = 2,
        readout: str = "mean",
    ) -> None:
        super().__init__()
        ch, _, coeffs = check_input_shape(input_shape, "smalllstm")
        self.readout = _readout("smalllstm", readout)
        self._build_stem(ch, coeffs, input_norm)
        shape = probe_shape(self, lambda x: _sequence(self.stem(x)), input_shape, "smalllstm")
        self.lstm = init_forget_bias(
            nn.LSTM(
                shape[2],
                _positive("smalllstm", "hidden", hidden),
                _positive("smalllstm", "num_layers", num_layers),
                batch_first=True,
            )
        )
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = run_lstm(self.lstm, _sequence(self.stem(x)))
        return self.fc(_read(out, self.readout))


class LSTMAttention(nn.Module):
    """``lstm_attention``: conv front, two BiLSTMs, dot-product attention over time, three dense layers.

    After de Andrade et al. (2018): Conv(C->10, (5,1), same), ReLU, BN; Conv(10->1, (5,1),
    same), ReLU, BN; BiLSTM(coeffs -> hidden x 2); BiLSTM(2*hidden -> hidden x 2). The
    query is a Dense layer on the last time step; scores are the dot products of the query
    with every step, softmaxed over time; the context is the score-weighted sum of the
    steps. Then Dense(2*hidden->64), ReLU, Dropout 0.5, Dense(64->32), ReLU, output Dense.
    Unlike the authors' code (which softmaxes over the feature axis and then applies a
    Dense over time, tying the model to one frame count), the attention is over time,
    so any frame count works.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        n_classes: int,
        *,
        input_norm: bool = True,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        ch, _, coeffs = check_input_shape(input_shape, "lstm_attention")
        hidden = _positive("lstm_attention", "hidden", hidden)
        self.input_norm = make_input_norm(input_norm, coeffs)
        self.conv1 = nn.Conv2d(ch, 10, kernel_size=(5, 1), padding=(2, 0))
        self.bn1 = nn.BatchNorm2d(10)
        self.conv2 = nn.Conv2d(10, 1, kernel_size=(5, 1), padding=(2, 0))
        self.bn2 = nn.BatchNorm2d(1)
        self.lstm1 = init_forget_bias(nn.LSTM(coeffs, hidden, batch_first=True, bidirectional=True))
        self.lstm2 = init_forget_bias(nn.LSTM(2 * hidden, hidden, batch_first=True, bidirectional=True))
        self.query = nn.Linear(2 * hidden, 2 * hidden)
        self.fc1 = nn.Linear(2 * hidden, 64)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(64, 32)
        self.fc = nn.Linear(32, n_classes)
        probe_shape(self, self.forward, input_shape, "lstm_attention")

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features -> (context ``[B, 2*hidden]``, attention weights over time ``[B, T]``)."""
        x = self.input_norm(x)
        x = self.bn1(F.relu(self.conv1(x)))
        x = self.bn2(F.relu(self.conv2(x)))
        seq = run_lstm(self.lstm1, _sequence(x))
        seq = run_lstm(self.lstm2, seq)  # [B, T, 2*hidden]
        query = self.query(seq[:, -1])  # [B, 2*hidden]
        weights = torch.softmax(torch.bmm(seq, query.unsqueeze(2)).squeeze(2), dim=1)  # [B, T]
        context = torch.bmm(weights.unsqueeze(1), seq).squeeze(1)  # [B, 2*hidden]
        return context, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context, _ = self.attention(x)
        x = self.dropout(F.relu(self.fc1(context)))
        x = F.relu(self.fc2(x))
        return self.fc(x)


class RNN(nn.Module):
    """``rnn``: LSTM(coeffs -> hidden, 3 layers) over the frames, then FC; no convs.

    The authors use ``hidden`` = 768; the default here is 256 (about 9x fewer
    multiply-adds per step, so it trains in reasonable time on a CPU); pass
    ``hidden=768`` to match the authors. ``readout="mean"`` (default) averages the outputs
    over time; the authors' ``"last"`` (FC on the last step) stayed near chance on FSDD
    (10 % after 8 epochs; 23 % after 6 with the forget-gate bias), its last frames being
    the zero padding after the word.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        n_classes: int,
        *,
        input_norm: bool = True,
        hidden: int = 256,
        num_layers: int = 3,
        readout: str = "mean",
    ) -> None:
        super().__init__()
        ch, _, coeffs = check_input_shape(input_shape, "rnn")
        self.readout = _readout("rnn", readout)
        self.input_norm = make_input_norm(input_norm, coeffs)
        self.lstm = init_forget_bias(
            nn.LSTM(
                ch * coeffs,
                _positive("rnn", "hidden", hidden),
                _positive("rnn", "num_layers", num_layers),
                batch_first=True,
            )
        )
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = run_lstm(self.lstm, _sequence(self.input_norm(x)))
        return self.fc(_read(out, self.readout))
