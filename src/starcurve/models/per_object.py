"""One answer per object from the answers per band (``classify`` and ``predict``).

The rule: an object's class probabilities (and any other per-band figure, such as the OOD score)
are the mean over its bands, each band weighted by its number of points after cleaning; the class is
then the most probable one. A band without an answer (too short, or a non-finite model output) has
no weight; an object none of whose bands has an answer has none either (NaN). More points give a
better-measured light curve, so the better-sampled band counts more; with one band this is that
band's answer. ``--per-band`` gives the rows per band instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PerObject:
    first: np.ndarray  # the row of each object's first band (objects in order of first appearance)
    bands: list[str]  # the bands that answered, joined with "," (all of them if none answered)
    n_obs: np.ndarray  # points in those bands
    values: np.ndarray  # [objects, k] point-weighted means over the answering bands (NaN if none)
    rows: np.ndarray  # for each input row, its object (index into the arrays above)


def per_object(ids, bands, n_obs, values) -> PerObject:
    """Combine per-band rows (``ids``, ``bands``, ``n_obs`` [rows], ``values`` [rows, k]) by object."""
    ids = np.asarray(ids, dtype=str)
    n_obs = np.asarray(n_obs, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    values = values if values.ndim == 2 else values[:, None]
    _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    rows, first, n = rank[inv], np.sort(first), len(first)
    ok = np.isfinite(values).all(1) & (n_obs > 0)
    weight = np.where(ok, n_obs, 0).astype(np.float64)
    sums = np.zeros((n, values.shape[1]))
    np.add.at(sums, rows, weight[:, None] * np.where(ok[:, None], values, 0.0))
    total = np.bincount(rows, weight, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / total[:, None]
    answered = np.bincount(rows, ok, minlength=n) > 0
    use = ok | ~answered[rows]
    names: list[set] = [set() for _ in range(n)]
    for i in np.flatnonzero(use):
        names[rows[i]].add(str(bands[i]))
    used_obs = np.bincount(rows, np.where(use, n_obs, 0), minlength=n).astype(np.int64)
    return PerObject(first, [",".join(sorted(b)) for b in names], used_obs, means, rows)
