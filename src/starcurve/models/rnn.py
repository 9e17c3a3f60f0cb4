"""Recurrent classifier over time and magnitude differences (the published "RNN on deltas").

Input (from the core ``starcurve.data.deltas.rnn_input`` on a clean table): consecutive differences
(dt, dm); a window of ``w`` = 4 differences slides with stride 2; each step is [4 dt, 4 dm].
Scaling, inside the model so that every path sees it: ``dt -> log1p(dt) / dt_scale`` and
``dm -> dm / dm_scale`` with the two scales measured on the training set and stored in config.json.

Network: stacked GRU (or LSTM); the top layer's hidden state at each light curve's last valid
step is gathered (padding comes after it and the recurrence is causal, so padding cannot change
it); dense ReLU + dropout; linear to class logits (softmax at prediction). Light curves with fewer than ``min_obs`` (20) observations are
not classified.

Streaming: ``init_state()`` / ``update(state, new_obs)`` carry the hidden state plus the few
differences not yet consumed by a window, so adding k observations costs O(k) and gives the same
probabilities as a full recomputation on the whole light curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from starcurve.data.clean import clean
from starcurve.data.deltas import rnn_input
from starcurve.data.io import from_arrays
from starcurve.errors import StarcurveError


@dataclass
class RNNConfig:
    classes: list[str] = field(default_factory=list)
    w: int = 4  # differences per step
    stride: int = 2  # differences between step starts
    cell: str = "gru"  # or "lstm"
    hidden: int = 64
    layers: int = 2
    dense: int = 64
    dropout: float = 0.25
    min_obs: int = 20  # shorter light curves are not classified
    dt_scale: float = 1.0  # training-set RMS of log1p(dt)
    dm_scale: float = 1.0  # training-set RMS of dm
    train_max_obs: int = 400  # training uses random stretches of at most this many points (0: all)


@dataclass
class RNNState:
    """Streaming state of one light curve after ``n_obs`` clean observations."""

    n_obs: int = 0
    last_t: float | None = None
    last_m: float | None = None
    pending: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # unconsumed (dt, dm)
    hidden: object = None  # GRU: tensor [layers, 1, H]; LSTM: (h, c); None before the first step
    proba: np.ndarray | None = None  # class probabilities, None while n_obs < min_obs


class RNNClassifier(nn.Module):
    kind = "rnn"

    def __init__(self, cfg: RNNConfig):
        super().__init__()
        if not cfg.classes:
            raise StarcurveError("RNNConfig.classes is empty: give the class names")
        if cfg.cell not in ("gru", "lstm"):
            raise StarcurveError(f"cell must be 'gru' or 'lstm', got {cfg.cell!r}")
        self.cfg = cfg
        rnn_cls = nn.GRU if cfg.cell == "gru" else nn.LSTM
        drop = cfg.dropout if cfg.layers > 1 else 0.0
        self.rnn = rnn_cls(2 * cfg.w, cfg.hidden, cfg.layers, batch_first=True, dropout=drop)
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.dense),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dense, len(cfg.classes)),
        )

    def inputs(self, table: pa.Table) -> dict[str, torch.Tensor]:
        """Model input of a clean table: x [B, T, 2w] (zero-padded) and the valid steps per row."""
        x, steps = rnn_input(table, self.cfg.w, self.cfg.stride)
        return {"x": torch.from_numpy(x), "lengths": torch.from_numpy(steps.astype(np.int64))}

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        w = self.cfg.w
        dt = torch.log1p(x[..., :w].clamp(min=0)) / self.cfg.dt_scale
        return torch.cat([dt, x[..., w:] / self.cfg.dm_scale], dim=-1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits [B, C] from the top layer's hidden state at each row's last valid step.

        The recurrence is causal and padding comes after the valid steps, so gathering the output
        at ``lengths - 1`` ignores the padding exactly. (On CPU this is 3-6x faster than
        ``pack_padded_sequence``; batches of similar lengths keep the wasted padded work small.)
        """
        out, _ = self.rnn(self.scale(x))
        last = (lengths.to(out.device).clamp(min=1) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return self.head(out.gather(1, last)[:, 0])

    # --- streaming -------------------------------------------------------------------------
    def init_state(self) -> RNNState:
        """The state of a light curve with no observations yet."""
        return RNNState()

    @torch.no_grad()
    def update(self, state: RNNState, new_obs) -> RNNState:
        """Add observations ``(t, m)`` or ``(t, m, err)`` (all later than the last one) in O(k).

        They are cleaned exactly like the full light curve (the core ``clean``: non-finite, sentinel
        and bad-error points dropped, sorted, a repeated time stamp keeps the first point), so the
        result equals a full recomputation. Missing errors count as 1.
        """
        t, m = np.asarray(new_obs[0], float), np.asarray(new_obs[1], float)
        e = np.asarray(new_obs[2], float) if len(new_obs) > 2 else np.ones_like(t)
        if not (len(t) == len(m) == len(e)):
            raise StarcurveError("update: time, mag and error arrays differ in length")
        new, _ = clean(from_arrays([t], [m], [e]), min_obs=1)  # new points: any number
        t = new.column("time")[0].values.to_numpy() if new.num_rows else np.zeros(0)
        m = new.column("mag")[0].values.to_numpy() if new.num_rows else np.zeros(0, np.float32)
        if state.last_t is not None and len(t):
            if t[0] < state.last_t:
                raise StarcurveError(
                    "update: new observations are earlier than the last one; recompute the whole "
                    "light curve instead of streaming"
                )
            keep = t != state.last_t  # a repeated time stamp keeps the earlier point, as clean does
            t, m = t[keep], m[keep]
        if len(t) == 0:
            return state
        m = m.astype(np.float64)  # the core differences float32 magnitudes in float64
        tt = np.concatenate([[state.last_t], t]) if state.last_t is not None else t
        mm = np.concatenate([[state.last_m], m]) if state.last_m is not None else m
        pending = np.concatenate([state.pending, np.stack([np.diff(tt), np.diff(mm)], 1)])
        w, s = self.cfg.w, self.cfg.stride
        k = (len(pending) - w) // s + 1 if len(pending) >= w else 0
        hidden = state.hidden
        if k:
            idx = np.arange(k)[:, None] * s + np.arange(w)[None, :]
            steps = np.concatenate([pending[idx, 0], pending[idx, 1]], axis=1).astype(np.float32)
            was_training = self.training
            self.eval()
            _, hidden = self.rnn(self.scale(torch.from_numpy(steps)[None]), hidden)
            self.train(was_training)
            pending = pending[k * s :]
        n_obs = state.n_obs + len(t)
        proba = state.proba
        if hidden is not None and n_obs >= self.cfg.min_obs:
            h = hidden[0] if isinstance(hidden, tuple) else hidden
            was_training = self.training
            self.eval()
            proba = torch.softmax(self.head(h[-1]), -1)[0].numpy()
            self.train(was_training)
        return replace(
            state,
            n_obs=n_obs,
            last_t=float(t[-1]),
            last_m=float(m[-1]),
            pending=pending,
            hidden=hidden,
            proba=proba,
        )
