"""Augmentation of light curves for training, usable by every model.

Every function takes a clean table (sorted, finite, see ``starcurve.data.clean``) and returns a new
table; all of them are vectorised gathers over the flat arrays + offsets (no loop per light curve).

Options (``AugmentConfig``):

- ``balance`` (default on): minority classes of the training set are replicated towards ``target``
  objects per class (default: ``target_factor`` (1) times the size of the largest class), with at
  most ``max_copies`` (5) extra copies of any object. ``target_factor=6`` gives every object of every
  class 5 copies: plain data augmentation for small training sets. Each copy (the published recipe for the CNN):
  1. keeps every observation or every second one (chosen at random per copy);
  2. drops ``d`` leading observations, ``d`` uniform in ``0..D`` with
     ``D = max(L' - n, max_drop)`` (``L'``: points left after step 1), so a long light curve can give
     any ``n``-point stretch; ``d`` never leaves fewer than ``min_keep`` points;
  3. keeps the next ``n`` (500) observations.
  A copy is therefore a subset of the original's points: sorted, finite, inside its time span.
  Copies get the id ``<object_id>#aug<k>``.
- ``noise`` (default 0 = off): per batch, every magnitude gets Gaussian noise with standard deviation
  ``noise * mag_err`` (its own photometric error).
- ``time_shift`` (default 0 = off): per batch, all times of a light curve move by one random offset,
  uniform in ``[-time_shift, +time_shift]`` days. The difference-based models (RNN, CNN) do not see
  it (differences are unchanged); it is for models that read absolute times.

``crop`` (a random contiguous stretch of at most ``n`` points, from the core ``window_starts``) is the
fourth tool; the RNN uses it to train on short stretches of long light curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from starcurve.data import schema as S
from starcurve.data.windows import window_starts


@dataclass
class AugmentConfig:
    balance: bool = True
    target: int | None = None  # objects per class after balancing; None: see target_factor
    target_factor: float = 1.0  # without target: this times the largest class (6: 5 copies of all)
    max_copies: int = 5  # extra copies per object, at most
    n: int = 500  # observations kept per copy
    max_drop: int = 10  # leading points a copy may drop even when it is shorter than n
    min_keep: int = 20  # a copy never keeps fewer points than this (unless the original has fewer)
    noise: float = 0.0  # per-batch Gaussian noise in units of mag_err (0: off)
    time_shift: float = 0.0  # per-batch random time offset in days, uniform in [-s, s] (0: off)


def gather(
    table: pa.Table, rows: np.ndarray, start: np.ndarray, step: np.ndarray, count: np.ndarray
) -> pa.Table:
    """New table: for each i, ``count[i]`` points of row ``rows[i]`` from local index ``start[i]``
    every ``step[i]`` points. One gather over the flat arrays."""
    t, off = S.flat(table, S.TIME)
    m = S.flat(table, S.MAG)[0]
    e = S.flat(table, S.ERR)[0]
    rows = np.asarray(rows, np.int64)
    count = np.asarray(count, np.int64)
    new_off = np.concatenate([[0], np.cumsum(count)])
    k = np.arange(new_off[-1]) - np.repeat(new_off[:-1], count)
    idx = np.repeat(off[:-1][rows] + np.asarray(start, np.int64), count)
    idx += np.repeat(np.broadcast_to(np.asarray(step, np.int64), rows.shape), count) * k
    out = table.take(pa.array(rows, pa.int64()))
    return S.with_lists(out, new_off, time=t[idx], mag=m[idx], mag_err=e[idx])


def copies_per_object(
    labels: np.ndarray, target: int | None, max_copies: int, rng: np.random.Generator
) -> np.ndarray:
    """How many extra copies each object gets so that each class approaches ``target`` objects."""
    labels = np.asarray(labels)
    classes, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    target = int(counts.max()) if target is None else int(target)
    out = np.zeros(len(labels), np.int64)
    for k in range(len(classes)):  # loop over classes, not light curves
        idx = np.flatnonzero(inv == k)
        need = max(target - counts[k], 0)
        q, r = divmod(need, counts[k])
        c = np.full(len(idx), q, np.int64)
        c[rng.permutation(len(idx))[:r]] += 1
        out[idx] = np.minimum(c, max_copies)
    return out


def make_copies(
    table: pa.Table, labels: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[pa.Table, np.ndarray]:
    """The augmented copies of minority-class objects (not the originals) and their labels."""
    labels = np.asarray(labels)
    target = cfg.target
    if target is None and len(labels):
        target = round(cfg.target_factor * np.unique(labels, return_counts=True)[1].max())
    ncopy = copies_per_object(labels, target, cfg.max_copies, rng)
    rows = np.repeat(np.arange(table.num_rows), ncopy)
    lens = S.lengths(table)[rows]
    step = rng.integers(1, 3, len(rows))  # 1: every point, 2: every second point
    kept = (lens + step - 1) // step
    hi = np.clip(np.maximum(kept - cfg.n, cfg.max_drop), 0, np.maximum(kept - cfg.min_keep, 0))
    drop = (rng.random(len(rows)) * (hi + 1)).astype(np.int64)
    count = np.minimum(kept - drop, cfg.n)
    out = gather(table, rows, drop * step, step, count)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(ncopy) - ncopy, ncopy) + 1
    suffix = pa.array(np.char.add("#aug", k.astype(str)).tolist(), pa.string())
    ids = pc.binary_join_element_wise(out.column(S.ID), suffix, "")
    out = out.set_column(out.schema.get_field_index(S.ID), S.ID, ids)
    return out, labels[rows]


def balance(
    table: pa.Table, labels: np.ndarray, cfg: AugmentConfig | None = None, rng=None
) -> tuple[pa.Table, np.ndarray]:
    """Originals plus augmented copies of the minority classes (see module docstring)."""
    cfg = cfg or AugmentConfig()
    rng = rng if rng is not None else np.random.default_rng()
    extra, extra_labels = make_copies(table, labels, cfg, rng)
    if extra.num_rows == 0:
        return table, np.asarray(labels)
    both = pa.concat_tables([table, extra.cast(table.schema)])
    return both, np.concatenate([np.asarray(labels), extra_labels])


def crop(table: pa.Table, n: int, rng: np.random.Generator) -> pa.Table:
    """A random contiguous stretch of at most ``n`` observations of every light curve."""
    off = S.flat(table, S.TIME)[1]
    if table.num_rows == 0 or np.diff(off).max() <= n:
        return table
    start, count, row = window_starts(off, n, "random", rng)
    return gather(table, row, start - off[:-1][row], 1, count)


def add_noise(table: pa.Table, scale: float, rng: np.random.Generator) -> pa.Table:
    """Magnitudes plus Gaussian noise of ``scale`` times each point's own error."""
    m, off = S.flat(table, S.MAG)
    e = S.flat(table, S.ERR)[0]
    noisy = m.astype(np.float64) + scale * e * rng.standard_normal(len(m))
    return S.with_lists(table, off, mag=noisy.astype(np.float32))


def shift_time(table: pa.Table, max_shift: float, rng: np.random.Generator) -> pa.Table:
    """All times of each light curve moved by one offset, uniform in [-max_shift, max_shift] days."""
    t, off = S.flat(table, S.TIME)
    shift = rng.uniform(-max_shift, max_shift, table.num_rows)
    return S.with_lists(table, off, time=t + np.repeat(shift, np.diff(off)))


def batch_augment(table: pa.Table, cfg: AugmentConfig, rng: np.random.Generator) -> pa.Table:
    """The per-batch augmentations that are switched on in ``cfg`` (noise, time shift)."""
    if cfg.noise > 0:
        table = add_noise(table, cfg.noise, rng)
    if cfg.time_shift > 0:
        table = shift_time(table, cfg.time_shift, rng)
    return table
