"""Difference representations for the end-to-end classifiers.

- RNN: consecutive differences (dt, dm); a window of ``w`` differences slides with stride ``s``;
  each step is the vector [w dt, w dm] (w=4, s=2 as published).
- CNN: the first ``n`` observations (500) as two sequences [0, dt...] and [0, dm...], zero-padded.
- Context (either network, optional): per light curve, its mean magnitude and log10 of its mean
  error, which the differences cannot carry (in one galaxy, brightness is luminosity; the error
  follows brightness). Scaled inside the model by training-set means and standard deviations and
  joined to the dense head's input, so streaming updates stay O(new points): running sums suffice.
- Period (either network, optional): log10 of the best period in days and its normalised peak power,
  from the periodogram the ``pv1`` views use (``views.cached_periods``, computed without labels),
  joined to the head after the context. Differences sampled days apart cannot show a period of hours
  (aliasing); the periodogram can. It needs the whole light curve, so such an RNN does not stream.
- Fold (RNN, optional): the light curve folded at twice that period, as the ``pv1`` fold view, read
  by a second recurrent stack whose last state joins the head (same streaming restriction).
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


def context_input(table: pa.Table, context: bool = True, period: bool = False) -> np.ndarray:
    """[rows, 2 context + 2 period] float32: each light curve's mean magnitude and log10 of its mean
    error (``context``), then log10 of its best period in days and that peak's power (``period``)."""
    parts = []
    if context:
        m, off = S.flat(table, S.MAG)
        rows = S.row_index(off)
        sums = [
            np.bincount(rows, v.astype(np.float64), table.num_rows)
            for v in (m, S.flat(table, S.ERR)[0])
        ]
        parts.append(context_from_sums(*sums, np.diff(off)))
    if period:
        parts.append(period_values(table))
    return np.concatenate(parts, 1) if parts else np.zeros((table.num_rows, 0), np.float32)


PERIOD_COLUMN = "_starcurve_period"  # [log10 P, power] per row, attached by ``with_period``


def period_values(table: pa.Table) -> np.ndarray:
    """[rows, 2] float32: log10 of the best period in days and its peak power; from the column
    ``with_period`` attached when there is one (training: the period of each whole light curve
    stays with its random crops), else from the periodogram of the pv1 views."""
    if PERIOD_COLUMN in table.column_names:
        col = table.column(PERIOD_COLUMN).combine_chunks()
        return col.values.to_numpy(zero_copy_only=False).reshape(-1, 2).astype(np.float32)
    from starcurve.data.views import cached_periods

    return cached_periods(table).context()


def with_period(table: pa.Table, values: np.ndarray | None = None) -> pa.Table:
    """``table`` with its rows' ``period_values`` (or the given [rows, 2] ``values``) as a column,
    computed once, so that the copies and crops training makes of a row keep its period."""
    v = period_values(table) if values is None else np.asarray(values, np.float32)
    col = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(v).ravel()), 2)
    if PERIOD_COLUMN in table.column_names:
        table = table.drop_columns([PERIOD_COLUMN])
    return table.append_column(PERIOD_COLUMN, col)


def fold_input(table: pa.Table, n: int) -> tuple[np.ndarray, np.ndarray]:
    """[rows, n, 2] float32: each light curve folded at twice its best period (``period_values``),
    as ``views.fold_windows`` folds it for ``pv1`` (at most ``n`` points evenly spread over the light
    curve, sorted by phase from the primary minimum): [phase, magnitude minus the mean]; zero-padded.
    And the number of points per row."""
    from starcurve.data.views import fold_windows

    freq = 10.0 ** -period_values(table)[:, 0].astype(np.float64)
    w = fold_windows(table, freq, mult=2, n=n)
    x = np.stack([w.time, w.mag], -1) * w.mask[..., None]
    return x.astype(np.float32), w.mask.sum(1)


def needs_period(cfg) -> bool:
    """Whether a model config reads the period (the ``period`` input, or the ``fold`` made with it)."""
    return bool(getattr(cfg, "period", False) or getattr(cfg, "fold", 0))


def context_width(cfg) -> int:
    """Numbers a model config's head reads beside the network (``context``: 2, ``period``: 2)."""
    return 2 * bool(cfg.context) + 2 * bool(getattr(cfg, "period", False))


def model_context(cfg, table: pa.Table) -> np.ndarray:
    """``context_input`` with the parts a model config asks for."""
    return context_input(table, cfg.context, getattr(cfg, "period", False))


def context_from_sums(sum_mag, sum_err, n_obs) -> np.ndarray:
    """The context of light curves from sums of their magnitudes and errors (also what a streamed
    RNN state keeps)."""
    n = np.maximum(np.asarray(n_obs, np.float64), 1)
    mean_err = np.maximum(np.asarray(sum_err, np.float64) / n, 1e-6)
    return np.stack([np.asarray(sum_mag, np.float64) / n, np.log10(mean_err)], -1).astype(
        np.float32
    )


def context_stats(
    table: pa.Table, context: bool = True, period: bool = False
) -> tuple[list[float], list[float]]:
    """Means and standard deviations of the context over a (training) table, for scaling."""
    c = context_input(table, context, period).astype(np.float64)
    std = c.std(0)
    return c.mean(0).tolist(), np.where(std > 0, std, 1.0).tolist()


def scaled_context(context, cfg, like, kind: str):
    """A model's context input [B, context_width] in training-set units (``cfg.context_mean``,
    ``context_std``), on the device and dtype of the tensor ``like``; a clear error if it is missing."""
    if context is None or context.shape[-1] != context_width(cfg):
        raise StarcurveError(
            f"this {kind} takes a context input of {context_width(cfg)} numbers per light curve "
            "(config context / period): pass context (the model's inputs() builds it)"
        )
    if not len(cfg.context_mean) == len(cfg.context_std) == context_width(cfg):
        raise StarcurveError(
            f"this {kind}'s config has {len(cfg.context_mean)} / {len(cfg.context_std)} context "
            f"means / stds for {context_width(cfg)} context numbers (training sets them)"
        )
    c = context.to(like.device, like.dtype)
    return (c - c.new_tensor(cfg.context_mean)) / c.new_tensor(cfg.context_std)


def scaled_fold(fold, cfg, kind: str):
    """A model's folded input ``fold`` [B, n, 2] ([phase, magnitude]) with magnitudes in training-set
    units (``cfg.dm_scale``); a clear error if it is missing or not ``cfg.fold`` points long."""
    if fold is None or tuple(fold.shape[1:]) != (cfg.fold, 2):
        raise StarcurveError(
            f"this {kind} reads {cfg.fold} folded points (config fold): pass fold (the model's "
            "inputs() builds it)"
        )
    return fold * fold.new_tensor([1.0, 1.0 / cfg.dm_scale])
