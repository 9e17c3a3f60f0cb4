"""Encoder input: windows of N observations with a validity mask, per-window zero-mean.

``mode="consecutive"`` covers every observation with non-overlapping windows; a trailing remainder
is replaced by the last N observations (as FS-1 and Astromer do). ``mode="random"`` draws one window
per light curve at a random start, for training. All of it is one vectorised gather.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from starcurve.data import schema as S

BATCH = (
    64  # windows per forward pass of the encoder (every pass has this shape: Model.window_vectors)
)
PAD_BUCKET = 16  # a window is padded to the next multiple of this many steps


@dataclass
class Windows:
    """A batch of windows. Arrays are [windows, n]; ``row`` maps each window to its table row."""

    time: np.ndarray  # float32, days, minus the window's mean time
    mag: np.ndarray  # float32, minus the window's mean magnitude
    err: np.ndarray  # float32
    mask: np.ndarray  # bool, True on real observations
    row: np.ndarray  # int64
    time_mean: np.ndarray  # float64 [windows]
    mag_mean: np.ndarray  # float64 [windows]

    def __len__(self) -> int:
        return len(self.row)


def window_starts(offsets: np.ndarray, n: int, mode: str = "consecutive", rng=None):
    """Start index (into the flat arrays), length and row of every window."""
    lens = np.diff(offsets)
    if mode == "consecutive":
        per_row = np.maximum(-(-lens // n), 1)
        row = np.repeat(np.arange(len(lens)), per_row)
        k = np.arange(len(row)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        last = offsets[:-1] + np.maximum(lens - n, 0)
        start = np.minimum(offsets[:-1][row] + k * n, last[row])
    elif mode == "random":
        rng = rng if rng is not None else np.random.default_rng()
        row = np.arange(len(lens))
        start = offsets[:-1] + (rng.random(len(lens)) * (np.maximum(lens - n, 0) + 1)).astype(
            np.int64
        )
    else:
        raise ValueError(f"mode must be 'consecutive' or 'random', got {mode!r}")
    return start, np.minimum(lens[row], n), row


def windows(
    table: pa.Table, n: int = 200, *, mode: str = "consecutive", rng=None, normalise: bool = True
) -> Windows:
    """Cut a clean table into windows of ``n`` observations (see module docstring)."""
    t, off = S.flat(table, S.TIME)
    m = S.flat(table, S.MAG)[0]
    e = S.flat(table, S.ERR)[0]
    start, count, row = window_starts(off, n, mode, rng)
    tw, mask = S.padded(t, start, count, n, np.float64)
    mw, _ = S.padded(m, start, count, n, np.float64)
    ew, _ = S.padded(e, start, count, n, np.float32)
    denom = np.maximum(count, 1)
    t_mean = tw.sum(1) / denom
    m_mean = mw.sum(1) / denom
    if normalise:
        tw = np.where(mask, tw - t_mean[:, None], 0.0)
        mw = np.where(mask, mw - m_mean[:, None], 0.0)
    with np.errstate(over="ignore"):  # a time beyond float32 becomes inf: the encoder skips it
        return Windows(tw.astype(np.float32), mw.astype(np.float32), ew, mask, row, t_mean, m_mean)


def length_batches(lengths: np.ndarray, batch_size: int, bucket: int = 0) -> list[np.ndarray]:
    """Row indices in batches of similar length (sorted, stable): the one rule of batched inference,
    so that padding is trimmed per batch (the RNN, the CNN, the encoder and its heads). With
    ``bucket``, a batch never mixes rows of different length buckets (``ceil(length / bucket)``)."""
    order = np.argsort(lengths, kind="stable")
    parts = [order]
    if bucket:
        key = -(-np.asarray(lengths)[order] // bucket)
        parts = np.split(order, np.flatnonzero(np.diff(key)) + 1)
    return [p[i : i + batch_size] for p in parts for i in range(0, len(p), batch_size)]
