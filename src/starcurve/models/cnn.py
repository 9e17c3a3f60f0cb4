"""Convolutional classifier over time and magnitude differences (the published multi-survey CNN).

Input (from the core ``starcurve.data.deltas.cnn_input`` on a clean table): the first ``n`` = 500
observations as two sequences [0, dt...] and [0, dm...], zero-padded. Scaling inside the model:
``dt -> log1p(dt) / dt_scale`` and ``dm -> dm / dm_scale`` (training-set scales stored in config.json);
both map 0 to 0, so the leading zero and the zero padding keep their meaning.

Network: one Conv1D stack (64 filters, kernel 42, stride 2, ReLU; 32 filters, kernel 42, stride 2,
ReLU) applied with shared weights to the dt and the dm sequence; the two outputs are concatenated,
flattened, dropout 0.5, dense 128 tanh, dropout 0.5, linear to class logits (softmax at prediction).
The second ReLU follows the authors' code (both Conv1D layers use ``activation='relu'``);
``relu2=False`` drops it. Light curves with fewer than ``min_obs`` observations are not classified.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from starcurve.data.deltas import cnn_input, context_width, model_context, scaled_context
from starcurve.errors import StarcurveError


@dataclass
class CNNConfig:
    classes: list[str] = field(default_factory=list)
    n: int = 500  # observations used (the first n)
    filters1: int = 64
    filters2: int = 32
    kernel: int = 42
    stride: int = 2
    relu2: bool = True
    dense: int = 128
    dropout: float = 0.5
    min_obs: int = 20
    dt_scale: float = 1.0  # training-set RMS of log1p(dt)
    dm_scale: float = 1.0  # training-set RMS of dm
    train_max_obs: int = 0  # unused by the CNN (it always reads the first n points)
    # context input (``deltas.context_input``: mean magnitude, log10 mean error) joined to the head
    context: bool = False
    period: bool = False  # log10 best period and peak power (``deltas.context_input``), after it
    context_mean: list[float] = field(default_factory=lambda: [0.0, 0.0])  # set by training
    context_std: list[float] = field(default_factory=lambda: [1.0, 1.0])


class CNNClassifier(nn.Module):
    kind = "cnn"

    def __init__(self, cfg: CNNConfig):
        super().__init__()
        if not cfg.classes:
            raise StarcurveError("CNNConfig.classes is empty: give the class names")
        self.cfg = cfg
        conv_len = (cfg.n - cfg.kernel) // cfg.stride + 1
        conv_len = (conv_len - cfg.kernel) // cfg.stride + 1
        if conv_len < 1:
            raise StarcurveError(
                f"n={cfg.n} is too short for two convolutions of kernel {cfg.kernel}"
            )
        self.conv = nn.Sequential(
            nn.Conv1d(1, cfg.filters1, cfg.kernel, cfg.stride),
            nn.ReLU(),
            nn.Conv1d(cfg.filters1, cfg.filters2, cfg.kernel, cfg.stride),
            nn.ReLU() if cfg.relu2 else nn.Identity(),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(cfg.dropout),
            nn.Linear(2 * cfg.filters2 * conv_len + context_width(cfg), cfg.dense),
            nn.Tanh(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dense, len(cfg.classes)),
        )

    def inputs(self, table: pa.Table) -> dict[str, torch.Tensor]:
        """Model input of a clean table: x [B, 2, n] and the number of observations used."""
        x, lens = cnn_input(table, self.cfg.n)
        out = {"x": torch.from_numpy(x), "lengths": torch.from_numpy(lens.astype(np.int64))}
        if context_width(self.cfg):  # of the whole light curve, not only of its first n points
            out["context"] = torch.from_numpy(model_context(self.cfg, table))
        return out

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits [B, C]. ``lengths`` is unused: padding is zeros, as published. A model with
        ``config.context`` / ``period`` joins the scaled ``context`` [B, k] to the flattened convolutions."""
        b = x.shape[0]
        dt = torch.log1p(x[:, 0].clamp(min=0)) / self.cfg.dt_scale
        dm = x[:, 1] / self.cfg.dm_scale
        # the same convolutions (shared weights) on both sequences, in one call
        z = self.conv(torch.cat([dt, dm], 0)[:, None, :])
        z = torch.cat([z[:b], z[b:]], dim=1)
        if not context_width(self.cfg):
            return self.head(z)
        c = scaled_context(context, self.cfg, z, "CNN")
        return self.head[2:](torch.cat([self.head[:2](z), c], 1))  # no dropout on the context
