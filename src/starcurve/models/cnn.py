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

Optional inputs (``deltas``): ``context`` and ``period`` join the head; ``fold`` = n reads at most n
points of the light curve folded at twice its best period ([phase, mag / dm_scale], sorted by phase,
``deltas.fold_input``) with a second convolution stack of the same shape (its own weights), flattened
and joined to the head beside the difference convolutions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from starcurve.data.deltas import (
    PERIOD_COLUMN,
    cnn_input,
    context_width,
    fold_input,
    model_context,
    needs_period,
    scaled_context,
    scaled_fold,
    with_period,
)
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
    # folded points read by a second convolution stack (``deltas.fold_input``); 0: none
    fold: int = 0
    context_mean: list[float] = field(default_factory=lambda: [0.0, 0.0])  # set by training
    context_std: list[float] = field(default_factory=lambda: [1.0, 1.0])


class CNNClassifier(nn.Module):
    kind = "cnn"

    def __init__(self, cfg: CNNConfig):
        super().__init__()
        if not cfg.classes:
            raise StarcurveError("CNNConfig.classes is empty: give the class names")
        self.cfg = cfg
        if cfg.fold < 0:
            raise StarcurveError(
                f"fold must be 0 (none) or the folded points to read, got {cfg.fold}"
            )
        width = 2 * cfg.filters2 * self._conv_len(cfg.n, "n")
        self.conv = self._stack(1)
        if cfg.fold:
            width += cfg.filters2 * self._conv_len(cfg.fold, "fold")
            self.fold_conv = self._stack(2)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(cfg.dropout),
            nn.Linear(width + context_width(cfg), cfg.dense),
            nn.Tanh(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dense, len(cfg.classes)),
        )

    def _conv_len(self, n: int, name: str) -> int:
        """Length after the two convolutions of a sequence of ``n``; a clear error if too short."""
        k, s = self.cfg.kernel, self.cfg.stride
        out = ((n - k) // s + 1 - k) // s + 1
        if n < k or out < 1:
            raise StarcurveError(f"{name}={n} is too short for two convolutions of kernel {k}")
        return out

    def _stack(self, channels: int) -> nn.Sequential:
        cfg = self.cfg
        return nn.Sequential(
            nn.Conv1d(channels, cfg.filters1, cfg.kernel, cfg.stride),
            nn.ReLU(),
            nn.Conv1d(cfg.filters1, cfg.filters2, cfg.kernel, cfg.stride),
            nn.ReLU() if cfg.relu2 else nn.Identity(),
        )

    def inputs(self, table: pa.Table) -> dict[str, torch.Tensor]:
        """Model input of a clean table: x [B, 2, n] and the number of observations used."""
        if needs_period(self.cfg) and PERIOD_COLUMN not in table.column_names:
            table = with_period(table)  # one periodogram per light curve for both inputs
        x, lens = cnn_input(table, self.cfg.n)
        out = {"x": torch.from_numpy(x), "lengths": torch.from_numpy(lens.astype(np.int64))}
        if context_width(self.cfg):  # of the whole light curve, not only of its first n points
            out["context"] = torch.from_numpy(model_context(self.cfg, table))
        if self.cfg.fold:
            out["fold"] = torch.from_numpy(fold_input(table, self.cfg.fold)[0])
        return out

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        fold: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits [B, C]. ``lengths`` is unused: padding is zeros, as published. A model with
        ``config.context`` / ``period`` joins the scaled ``context`` [B, k] to the flattened
        convolutions; one with ``config.fold`` the flattened convolutions of ``fold`` [B, n, 2]."""
        b = x.shape[0]
        dt = torch.log1p(x[:, 0].clamp(min=0)) / self.cfg.dt_scale
        dm = x[:, 1] / self.cfg.dm_scale
        # the same convolutions (shared weights) on both sequences, in one call
        z = self.conv(torch.cat([dt, dm], 0)[:, None, :])
        z = torch.cat([z[:b], z[b:]], dim=1).flatten(1)
        if self.cfg.fold:
            f = scaled_fold(fold, self.cfg, "CNN").transpose(1, 2)
            z = torch.cat([z, self.fold_conv(f).flatten(1)], 1)
        if not context_width(self.cfg):
            return self.head(z)
        c = scaled_context(context, self.cfg, z, "CNN")
        return self.head[2:](torch.cat([self.head[:2](z), c], 1))  # no dropout on the context
