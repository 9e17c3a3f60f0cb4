"""Cleaning: a pure, vectorised function of the nested table that reports everything it drops.

Order of the steps (each counted under its own reason):
1. ``nonfinite``: time, mag or error is NaN or infinite;
2. ``sentinel``: a magnitude equal to a survey's missing-value code (MACHO -99, ASAS 29.999, 99.999);
3. ``bad_error``: error <= 0 (or above ``max_err`` when given);
4. ``implausible``: a magnitude or an error no survey can give (``Plausible``: by default a magnitude
   outside [-30, 40] or an error above 10 mag; ``plausible=None`` turns the check off). Such a value
   (a 1e30 from a broken conversion, an error code) would reach the models as a finite number and
   come out as NaN; it is dropped here, counted, like every other reason;
5. sort by time (stable, so equal times keep their source order);
6. ``duplicate_time``: repeated time stamps, dropped (keep the first) or merged
   (``duplicates="mean"``: inverse-variance mean magnitude, combined error);
7. ``sigma_clip``: optional, points further than k robust sigmas (1.4826 MAD) from the median;
8. whole objects with fewer than ``min_obs`` points left are removed (``too_few_obs``).

The policy: every command and estimator cleans its input once, on entry, with this function and
the one default ``MIN_OBS`` (10 points; ``--min-obs`` changes it); the code after the entry takes
clean tables and never cleans again. ``CleanReport.kept`` maps the clean rows back to the input
rows, so that answers stay aligned with the input. FS-1 alone uses ``min_obs=1``, the rule that
BENCHMARK.md fixes (an object is dropped only when no point is left); a model may need more points
than the floor (the RNN and CNN: 20), and says so as a skip reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from starcurve.data import schema as S

MIN_OBS = 10  # the documented floor: light curves with fewer points after cleaning are left out
SENTINEL_MAGS = (-99.0, 29.999, 99.999)
REASONS = (
    "nonfinite", "sentinel", "bad_error", "implausible", "duplicate_time", "sigma_clip", "too_few_obs"
)  # fmt: skip


@dataclass(frozen=True)
class Plausible:
    """The values a survey can give; points outside are dropped as ``implausible``.

    Magnitudes: -30 (brighter than the Sun; instrumental magnitudes such as MACHO's run from -10 to 0)
    to 40 (fainter than any survey's depth, even for a flux of 0.001 nJy with the 31.4 zero point).
    Errors: at most 10 mag (a point known to no better than a factor 10^4 in flux).
    """

    mag_min: float = -30.0
    mag_max: float = 40.0
    err_max: float = 10.0


PLAUSIBLE = Plausible()


@dataclass
class CleanReport:
    """What cleaning removed: points and affected objects per reason, and the objects removed."""

    objects_in: int = 0
    objects_out: int = 0
    points_in: int = 0
    points_out: int = 0
    points: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # "object_id/band" -> reason
    kept: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )  # input row of each output row

    def to_dict(self) -> dict:
        return {
            "objects_in": self.objects_in,
            "objects_out": self.objects_out,
            "points_in": self.points_in,
            "points_out": self.points_out,
            "points_dropped": dict(self.points),
            "objects_affected": dict(self.objects),
            "objects_removed": len(self.removed),
            "removed_examples": dict(list(self.removed.items())[:20]),
        }

    def skip_nonfinite(self, table: pa.Table, values: np.ndarray, what: str) -> np.ndarray:
        """Rows of the clean ``table`` whose model ``values`` are all finite; the others are recorded
        as removed, with the reason ``what`` (so a NaN output is a skip with a reason, never an answer).
        """
        values = np.asarray(values, np.float64)
        ok = np.isfinite(values if values.ndim == 2 else values[:, None]).all(1)
        ids, bands = table.column(S.ID).to_pylist(), table.column(S.BAND).to_pylist()
        for i in np.flatnonzero(~ok):
            self.removed[f"{ids[i]}/{bands[i]}"] = what
        self.objects_out -= int((~ok).sum())
        return ok

    def __str__(self) -> str:
        parts = [
            f"{k}: {v} points in {self.objects.get(k, 0)} LCs" for k, v in self.points.items() if v
        ]
        kept = f"kept {self.objects_out}/{self.objects_in} LCs, {self.points_out}/{self.points_in} points"
        gone = f"; removed {len(self.removed)} LCs" if self.removed else ""
        return kept + gone + ("; dropped " + ", ".join(parts) if parts else "")


def clean(
    table: pa.Table,
    *,
    min_obs: int = MIN_OBS,
    duplicates: str = "drop",
    sigma_clip: float | None = None,
    max_err: float | None = None,
    sentinels: tuple[float, ...] = SENTINEL_MAGS,
    plausible: Plausible | None = PLAUSIBLE,
) -> tuple[pa.Table, CleanReport]:
    """Return the clean table and a report; nothing is dropped without being counted."""
    if duplicates not in ("drop", "mean"):
        raise ValueError("duplicates must be 'drop' or 'mean'")
    t, off = S.flat(table, S.TIME)
    m = S.flat(table, S.MAG)[0].astype(np.float64)
    e = S.flat(table, S.ERR)[0].astype(np.float64)
    t = t.astype(np.float64)
    rows = S.row_index(off)
    n = table.num_rows
    rep = CleanReport(objects_in=n, points_in=len(t))
    keep = np.ones(len(t), bool)

    def drop(reason: str, bad: np.ndarray) -> None:
        bad = bad & keep
        rep.points[reason] = int(bad.sum())
        rep.objects[reason] = int(np.unique(rows[bad]).size)
        keep[bad] = False

    with np.errstate(invalid="ignore"):
        drop("nonfinite", ~(np.isfinite(t) & np.isfinite(m) & np.isfinite(e)))
        drop("sentinel", np.isin(np.round(m, 3), np.round(sentinels, 3)))
        drop("bad_error", (e <= 0) | ((e > max_err) if max_err is not None else False))
        if plausible is not None:
            p = plausible
            drop("implausible", (m < p.mag_min) | (m > p.mag_max) | (e > p.err_max))

    idx = np.flatnonzero(keep)
    idx = idx[np.lexsort((t[idx], rows[idx]))]
    t, m, e, rows = t[idx], m[idx], e[idx], rows[idx]
    dup = np.zeros(len(t), bool)
    dup[1:] = (rows[1:] == rows[:-1]) & (t[1:] == t[:-1])
    rep.points["duplicate_time"] = int(dup.sum())
    rep.objects["duplicate_time"] = int(np.unique(rows[dup]).size)
    if dup.any() and duplicates == "mean":
        group = np.cumsum(~dup) - 1
        w = 1.0 / e**2
        wsum = np.bincount(group, w)
        m = np.bincount(group, w * m) / wsum
        e = 1.0 / np.sqrt(wsum)
        t, rows = t[~dup], rows[~dup]
    else:
        t, m, e, rows = t[~dup], m[~dup], e[~dup], rows[~dup]

    if sigma_clip is not None:
        out = _outliers(m, rows, n, sigma_clip)
        rep.points["sigma_clip"] = int(out.sum())
        rep.objects["sigma_clip"] = int(np.unique(rows[out]).size)
        t, m, e, rows = t[~out], m[~out], e[~out], rows[~out]

    counts = np.bincount(rows, minlength=n)
    good = counts >= max(min_obs, 1)
    if not good.all():
        ids = table.column(S.ID).to_pylist()
        bands = table.column(S.BAND).to_pylist()
        for i in np.flatnonzero(~good):
            why = "no valid points" if counts[i] == 0 else f"too_few_obs ({counts[i]} < {min_obs})"
            rep.removed[f"{ids[i]}/{bands[i]}"] = why
    sel = good[rows]
    rep.points["too_few_obs"] = int((~sel).sum())
    rep.objects["too_few_obs"] = int((~good).sum())
    t, m, e = t[sel], m[sel], e[sel]
    offsets = np.concatenate([[0], np.cumsum(counts[good])])
    out_table = S.with_lists(table.filter(pa.array(good)), offsets, time=t, mag=m, mag_err=e)
    rep.objects_out, rep.points_out = out_table.num_rows, len(t)
    rep.kept = np.flatnonzero(good)
    return out_table, rep


def _outliers(m: np.ndarray, rows: np.ndarray, n: int, k: float) -> np.ndarray:
    """Points more than k robust sigmas from their light curve's median (rows sorted ascending)."""
    med = _group_median(m, rows, n)
    dev = np.abs(m - med[rows])
    mad = _group_median(dev, rows, n) * 1.4826
    with np.errstate(invalid="ignore"):
        return (mad[rows] > 0) & (dev > k * mad[rows])


def _group_median(x: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Median of x within each row, vectorised (sort by (row, x), pick the middle)."""
    order = np.lexsort((x, rows))
    xs = x[order]
    counts = np.bincount(rows, minlength=n)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lo = start + np.maximum(counts - 1, 0) // 2
    hi = start + counts // 2
    med = np.full(n, np.nan)
    has = counts > 0
    med[has] = 0.5 * (xs[lo[has]] + xs[np.minimum(hi[has], len(xs) - 1)])
    return med
