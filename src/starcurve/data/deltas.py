"""Difference representations for the end-to-end classifiers.

- RNN: consecutive differences (dt, dm); a window of ``w`` differences slides with stride ``s``;
  each step is the vector [w dt, w dm] (w=4, s=2 as published).
- CNN: the first ``n`` observations (500) as two sequences [0, dt...] and [0, dm...], zero-padded.
- Context (either network, optional): per light curve, its mean magnitude and log10 of its mean
  error, which the differences cannot carry (in one galaxy, brightness is luminosity; the error
  follows brightness). Scaled inside the model by training-set means and standard deviations and
  joined to the dense head's input, so streaming updates stay O(new points): running sums suffice.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from starcurve.data import schema as S
from starcurve.errors import StarcurveError


def _diffs(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat dt and dm within each light curve, and their offsets (one fewer per row)."""
    t, off = S.flat(table, S.TIME)
    m = S.flat(table, S.MAG)[0].astype(np.float64)
    lens = np.diff(off)
    inner = np.ones(len(t), bool)
    inner[off[:-1][lens > 0]] = False  # the first point of a row has no predecessor
    dt = np.diff(t, prepend=0.0)[inner]
    dm = np.diff(m, prepend=0.0)[inner]
    doff = np.concatenate([[0], np.cumsum(np.maximum(lens - 1, 0))])
    return dt, dm, doff


def rnn_steps(n_obs: np.ndarray, w: int = 4, stride: int = 2) -> np.ndarray:
    """Number of RNN steps for light curves of ``n_obs`` observations."""
    nd = np.asarray(n_obs) - 1
    return np.where(nd >= w, (nd - w) // stride + 1, 0)


def rnn_input(
    table: pa.Table, w: int = 4, stride: int = 2, max_steps: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """[rows, steps, 2w] float32 (zero-padded) and the number of valid steps per row."""
    dt, dm, doff = _diffs(table)
    steps = rnn_steps(np.diff(S.flat(table, S.TIME)[1]), w, stride)
    if max_steps is not None:
        steps = np.minimum(steps, max_steps)
    T = int(max(steps.max(initial=0), 1))
    j = np.arange(T)[None, :, None] * stride + np.arange(w)[None, None, :]
    idx = doff[:-1, None, None] + j
    valid = np.arange(T)[None, :] < steps[:, None]
    idx = np.where(valid[:, :, None], idx, 0)
    x = np.concatenate(
        [dt[idx] if len(dt) else np.zeros(idx.shape), dm[idx] if len(dm) else np.zeros(idx.shape)],
        axis=2,
    )
    x[~valid] = 0
    return x.astype(np.float32), steps


def cnn_input(table: pa.Table, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """[rows, 2, n] float32: channel 0 = [0, dt...], channel 1 = [0, dm...]; and the lengths used.

    Only the first ``n`` points of each light curve are read, so the cost does not grow with its length.
    """
    t, off = S.flat(table, S.TIME)
    lens = np.minimum(np.diff(off), n)
    T, mask = S.padded(t, off[:-1], lens, n, np.float64)
    M, _ = S.padded(S.flat(table, S.MAG)[0], off[:-1], lens, n, np.float64)
    x = np.zeros((len(lens), 2, n), np.float32)
    valid = mask[:, 1:]  # difference j needs points j and j + 1
    x[:, 0, 1:] = np.where(valid, np.diff(T, axis=1), 0.0)
    x[:, 1, 1:] = np.where(valid, np.diff(M, axis=1), 0.0)
    return x, lens


def context_input(table: pa.Table) -> np.ndarray:
    """[rows, 2] float32: each light curve's mean magnitude and log10 of its mean error."""
    m, off = S.flat(table, S.MAG)
    rows = S.row_index(off)
    sums = [
        np.bincount(rows, v.astype(np.float64), table.num_rows)
        for v in (m, S.flat(table, S.ERR)[0])
    ]
    return context_from_sums(*sums, np.diff(off))


def context_from_sums(sum_mag, sum_err, n_obs) -> np.ndarray:
    """The context of light curves from sums of their magnitudes and errors (also what a streamed
    RNN state keeps)."""
    n = np.maximum(np.asarray(n_obs, np.float64), 1)
    mean_err = np.maximum(np.asarray(sum_err, np.float64) / n, 1e-6)
    return np.stack([np.asarray(sum_mag, np.float64) / n, np.log10(mean_err)], -1).astype(
        np.float32
    )


def context_stats(table: pa.Table) -> tuple[list[float], list[float]]:
    """Means and standard deviations of the context over a (training) table, for scaling."""
    c = context_input(table).astype(np.float64)
    std = c.std(0)
    return c.mean(0).tolist(), np.where(std > 0, std, 1.0).tolist()


def scaled_context(context, cfg, like, kind: str):
    """A model's context input [B, 2] in training-set units (``cfg.context_mean``, ``context_std``),
    on the device and dtype of the tensor ``like``; a clear error if it is missing."""
    if context is None:
        raise StarcurveError(f"this {kind} takes a context input (config context): pass context")
    c = context.to(like.device, like.dtype)
    return (c - c.new_tensor(cfg.context_mean)) / c.new_tensor(cfg.context_std)
