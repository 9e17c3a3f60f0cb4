"""Realistic synthetic light curves: physically grounded classes observed with survey cadences.

``simulate(survey, n, classes=None, seed=0)`` returns the project's nested table (one row per object,
same columns as the real files) with labels. ``starcurve simulate`` writes it to Parquet, in shards for
large ``n``. See ``docs/simulator.md`` for the models, the calibration and measured numbers.

How it stays fast: objects are made in fixed blocks of ``BLOCK`` objects, and inside a block every step
works on flat arrays of all points at once (ragged layout: values + offsets, as in ``schema``), with the
objects ordered by class so each class model runs once on one contiguous slice. No Python loop runs per
light curve; the only loops are over classes, harmonics and, for the damped random walk, over chunks of
32 point positions. Blocks run in parallel threads (numpy releases the GIL in its array loops).

How it stays reproducible: block ``k`` is generated from ``SeedSequence([seed, k])`` alone, so object
``i`` depends only on (survey, classes, seed, i, n_obs, mag_range): ``simulate(n=10)`` is the first 10
objects of ``simulate(n=1000)``, and shards of any size give the same objects as one call.
"""

from __future__ import annotations

import functools
import io as _io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import click
import numpy as np
import pyarrow as pa

from starcurve.cli import OUTPUT_ANY, output_option, seed_option
from starcurve.data import schema as S
from starcurve.errors import StarcurveError

BLOCK = 1024
WORKERS = min(4, os.cpu_count() or 1)  # threads over blocks; results do not depend on it
YEAR = 365.25
SURVEY_NAMES = {
    "asas": "ASAS-3-sim",
    "macho": "MACHO-sim",
    "ogle": "OGLE-II-sim",
    "eros": "EROS-1-sim",
    "gaia": "Gaia-sim",
    "ztf": "ZTF-sim",
    "lsst": "LSST-sim",
}
# class -> model family
CLASSES = {
    "RRab": "fourier",
    "RRc": "fourier",
    "Cep_F": "fourier",
    "Cep_1O": "fourier",
    "T2Cep": "fourier",
    "DSCT": "fourier",
    "EB_detached": "eb",
    "EB_semidetached": "eb",
    "EB_contact": "eb",
    "Mira": "lpv",
    "SRV": "lpv",
    "OSARG": "lpv",
    "constant": "constant",
    "QSO": "drw",
    "microlensing": "microlensing",
}
# classes shared with the labels of asas_acvs (used by the realism benchmark)
ASAS_CLASSES = ["RRab", "RRc", "DSCT", "EB_contact", "EB_detached", "EB_semidetached", "Mira"]
LABEL_SOURCE = "starcurve.simulate"


# --------------------------------------------------------------------------- resources
@functools.lru_cache(maxsize=1)
def _resources() -> tuple[dict, dict, dict]:
    """Survey calibrations and per-class catalogue rows (package data, derived by a script)."""
    base = resources.files("starcurve") / "resources" / "sim"
    surveys = json.loads((base / "surveys.json").read_text())["surveys"]
    puls = np.genfromtxt(
        _io.StringIO((base / "pulsators.csv").read_text()),
        delimiter=",",
        names=True,
        dtype=None,
        encoding="utf-8",
    )
    lpv = np.genfromtxt(
        _io.StringIO((base / "lpv.csv").read_text()),
        delimiter=",",
        names=True,
        dtype=None,
        encoding="utf-8",
    )
    ptab = {
        c: np.column_stack([puls[k][puls["class"] == c] for k in puls.dtype.names[1:]])
        for c in np.unique(puls["class"])
    }
    ltab = {
        c: np.column_stack([lpv[k][lpv["class"] == c] for k in lpv.dtype.names[1:]])
        for c in np.unique(lpv["class"])
    }
    for name, s in surveys.items():
        s["rows"] = np.asarray(s["rows"], float)
        s["gap_levels"] = np.asarray(s["gap_levels"], float)
        s["gap_q"] = np.asarray(s["gap_q"], float).reshape(-1, len(s["gap_levels"]))
        s["gap_edges"] = np.asarray(s["gap_edges"], float)
        s["name"] = name
    return surveys, ptab, ltab


def surveys() -> list[str]:
    """Names of the simulated surveys."""
    return list(SURVEY_NAMES)


def classes() -> list[str]:
    """Names of the simulated classes."""
    return list(CLASSES)


# --------------------------------------------------------------------------- checks
def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, str)):
        raise StarcurveError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise StarcurveError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if not math.isfinite(f) or f != int(f) or f < minimum:
        raise StarcurveError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(f)


def _check_survey(survey: str) -> dict:
    name = str(survey).lower()
    if name not in SURVEY_NAMES:
        raise StarcurveError(f"unknown survey '{survey}'; choose one of: {', '.join(SURVEY_NAMES)}")
    return _resources()[0][name]


def _check_classes(names) -> list[str]:
    if names is None:
        return list(CLASSES)
    if isinstance(names, str):
        names = [c for c in names.split(",") if c.strip()]
    lower = {c.lower(): c for c in CLASSES}
    out, bad = [], []
    for c in names:
        key = str(c).strip().lower()
        (out.append(lower[key]) if key in lower else bad.append(str(c)))
    if bad:
        raise StarcurveError(f"unknown class(es) {bad}; choose from: {', '.join(CLASSES)}")
    if not out:
        raise StarcurveError(f"no class given; choose from: {', '.join(CLASSES)}")
    return list(dict.fromkeys(out))


def _check_mag_range(mag_range) -> tuple[float, float] | None:
    if mag_range is None:
        return None
    try:
        lo, hi = (float(x) for x in mag_range)
    except (TypeError, ValueError):
        raise StarcurveError(
            f"mag_range must be two numbers (bright, faint), got {mag_range!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise StarcurveError(f"mag_range must satisfy bright < faint (finite), got {mag_range!r}")
    return lo, hi


# --------------------------------------------------------------------------- public API
def simulate(
    survey: str,
    n: int,
    classes: list[str] | str | None = None,
    seed: int = 0,
    *,
    n_obs: int | None = None,
    mag_range: tuple[float, float] | None = None,
    truth: bool = False,
) -> pa.Table:
    """``n`` labeled light curves of ``survey``; classes drawn uniformly from ``classes`` (default all).

    ``n_obs`` fixes the number of observations per light curve (before faint points below the survey
    limit are dropped); by default it follows the survey's calibrated distribution. ``mag_range``
    replaces the survey's distribution of mean magnitudes by a uniform one. ``truth=True`` adds a
    ``period`` column (days; the main period; NaN for aperiodic classes). Same arguments, same table.
    """
    n = _check_int(n, "n", 0)
    return simulate_range(
        survey, 0, n, classes, seed, n_obs=n_obs, mag_range=mag_range, truth=truth
    )


def simulate_range(
    survey: str,
    start: int,
    stop: int,
    classes: list[str] | str | None = None,
    seed: int = 0,
    *,
    n_obs: int | None = None,
    mag_range: tuple[float, float] | None = None,
    truth: bool = False,
) -> pa.Table:
    """Objects ``start .. stop-1`` of the sequence that ``simulate`` would return (for shards)."""
    cfg = _check_survey(survey)
    cls = _check_classes(classes)
    seed = _check_int(seed, "seed", 0)
    start, stop = _check_int(start, "start", 0), _check_int(stop, "stop", 0)
    if stop < start:
        raise StarcurveError(f"stop ({stop}) must be >= start ({start})")
    n_obs = None if n_obs is None else _check_int(n_obs, "n_obs", 1)
    mag_range = _check_mag_range(mag_range)
    blocks = range(start // BLOCK, -(-stop // BLOCK))

    def one(b: int) -> dict:
        blk = _block(cfg, cls, seed, b, n_obs, mag_range)
        return _slice(blk, max(start - b * BLOCK, 0), min(stop - b * BLOCK, BLOCK))

    workers = min(WORKERS, len(blocks))
    if workers > 1:  # numpy releases the GIL in its array loops: blocks run in parallel threads
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(one, blocks))
    else:
        parts = [one(b) for b in blocks]
    return _to_table(cfg, cls, seed, start, parts, truth)


# --------------------------------------------------------------------------- one block
F32 = np.float32
# standard-normal deviates by table lookup on 16 random bits: ~3x cheaper than rng.standard_normal,
# and the 65,536 quantiles are plenty for photometric noise (outliers are added separately)
_NORMAL = (
    __import__("scipy.special", fromlist=["ndtri"])
    .ndtri((np.arange(65536) + 0.5) / 65536)
    .astype(F32)
)


def _normal(rng: np.random.Generator, size: int) -> np.ndarray:
    return _NORMAL[rng.integers(0, 65536, size, dtype=np.uint16)]


@functools.lru_cache(maxsize=16)
def _gap_table(name: str) -> np.ndarray:
    """The survey's inverse CDFs of the time gap (days), one per bin of objects' mean gap, on 4096
    uniform levels each, flattened: a lookup instead of a search per point."""
    cfg = _resources()[0][name]
    u = (np.arange(4096) + 0.5) / 4096
    return np.concatenate([np.interp(u, cfg["gap_levels"], q) for q in cfg["gap_q"]]).astype(F32)


def _ragged_cumsum(x: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each row (x[row start] included)."""
    c = np.cumsum(x, dtype=np.float64)  # float64: the sum runs over the whole block
    before = np.concatenate([[0.0], c])[off[:-1]]
    return (c - np.repeat(before, np.diff(off))).astype(x.dtype, copy=False)


def _block(cfg: dict, cls_names: list[str], seed: int, block: int, n_obs, mag_range) -> dict:
    """Make BLOCK objects; returns flat arrays (in object order) and per-object class indices.

    Per-object parameters reach the points with ``np.repeat(v, counts)`` (cheaper than a gather);
    shapes and noise are computed in float32, the returned times in float64.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, block]))
    b = BLOCK
    cls = rng.integers(len(cls_names), size=b)

    # --- cadence: counts, gaps with the survey's shape, seasons, nights
    rows = cfg["rows"][rng.integers(len(cfg["rows"]), size=b)]
    jitter = np.exp(rng.normal(0, 0.03, b))
    n_row = np.maximum(np.round(rows[:, 0] * jitter), 2).astype(np.int64)
    n = n_row if n_obs is None else np.full(b, n_obs, np.int64)
    active = rows[:, 1] * jitter
    gap_bin = np.searchsorted(cfg["gap_edges"], active / (n_row - 1))
    # a whole number of seasons (as in the data: a survey runs for whole observing seasons)
    n_seasons = np.maximum(np.round(active / rows[:, 2]), 1)
    season = np.clip(active / n_seasons, 1.0, YEAR)
    start = cfg["t0"] + rows[:, 3] + rng.uniform(0, 30, b)
    off = np.concatenate([[0], np.cumsum(n)])
    rep = functools.partial(np.repeat, repeats=n)
    r = rep(np.arange(b))
    u = rng.integers(0, 4096, off[-1], dtype=np.uint16)
    gaps = _gap_table(cfg["name"])[rep(gap_bin * 4096) + u]
    gaps[off[:-1]] = 0.0
    # Stretch the long gaps (weather, technical losses) so each object fills its active time;
    # gaps up to 1.5 d (same night, next night) keep their size, so nightly cadences keep their quantum.
    long = gaps > 1.5
    s_long = np.bincount(r, gaps * long, minlength=b)
    s_short = np.bincount(r, gaps, minlength=b) - s_long
    scale = np.where(s_long > 0, (active - s_short) / np.where(s_long > 0, s_long, 1.0), 1.0)
    gaps = np.where(long, gaps * rep(np.clip(scale, 0.2, 5.0).astype(F32)), gaps)
    a = _ragged_cumsum(gaps.astype(np.float64), off)  # float64 times: no merged close points
    k = np.minimum(np.floor(a / rep(season)), rep(n_seasons - 1))
    t = a + k * rep(YEAR - season)  # observing seasons of length L, one per year
    if cfg["night"]:
        t = _nights(t, off, start, cfg["night"]["phase"], cfg["night"]["width"], rep, rng)
    t_rel = t.astype(F32)

    # --- base magnitudes
    if mag_range is not None:
        base = rng.uniform(*mag_range, b)
    elif "mag_q" in cfg:  # the survey's magnitudes; per class where the survey has labels
        u = rng.random(b)
        base = np.interp(u, np.linspace(0, 1, len(cfg["mag_q"])), cfg["mag_q"])
        for ci, name in enumerate(cls_names):
            q = cfg.get("class_mag_q", {}).get(name)
            if q is not None:
                sel = cls == ci
                base[sel] = np.interp(u[sel], np.linspace(0, 1, len(q)), q)
    else:  # number counts rising towards faint: p(m) ~ 10^(slope m)
        d = cfg["mag_dist"]
        kk = d["slope"] * np.log(10)
        lo, hi = np.exp(kk * d["lo"]), np.exp(kk * d["hi"])
        base = np.log(lo + rng.random(b) * (hi - lo)) / kk

    # --- signal: objects sorted by class -> one contiguous slice per class
    order = np.argsort(cls, kind="stable")
    n_s = n[order]
    off_s = np.concatenate([[0], np.cumsum(n_s)])
    t_s = t_rel[_ragged_take(off, order, n_s)]
    dm = np.zeros(off_s[-1], F32)
    period = np.full(b, np.nan)
    bounds = np.searchsorted(cls[order], np.arange(len(cls_names) + 1))
    for ci, name in enumerate(cls_names):
        o0, o1 = bounds[ci], bounds[ci + 1]
        if o1 > o0:
            p0, p1 = off_s[o0], off_s[o1]
            dm[p0:p1], period[o0:o1] = _signal(name, t_s[p0:p1], off_s[o0 : o1 + 1] - p0, cfg, rng)
    inv = np.empty(b, np.int64)
    inv[order] = np.arange(b)
    m_true = dm[_ragged_take(off_s, inv, n)] + rep(base.astype(F32))  # back to object order

    # --- quoted errors, real scatter, outliers, faint limit
    e, nz = cfg["err"], cfg["noise"]
    ln10 = F32(0.4 * np.log(10))
    quality = np.exp(F32(e["sigma_ln"]) * _normal(rng, len(m_true)))  # per-point frame quality
    m_lim = np.minimum(m_true, F32(cfg["limit"]["mag"]))  # fainter points are lost anyway
    err = _err_form(e, m_lim, ln10) * quality
    q = F32(e["quantum"])
    err = np.maximum(np.round(np.clip(err, F32(e["min"]), F32(e["max"])) / q) * q, q)
    # the real scatter has its own magnitude dependence (measured on pairs of points), and is
    # larger where the quoted error says the frame was worse
    sigma = _err_form(nz, m_lim, ln10) * quality
    mag = m_true + sigma * _normal(rng, len(m_true))
    o = cfg["outlier"]
    levels = np.linspace(0, 1, len(o["rate_q"]))
    rate = np.interp(rng.random(b), levels, o["rate_q"])  # outlier rates differ between objects
    k_out = rng.binomial(n, rate)
    hit = np.repeat(off[:-1], k_out) + (rng.random(k_out.sum()) * np.repeat(n, k_out)).astype(
        np.int64
    )
    # sizes in units of the scatter (as measured), at most 3 mag (near the faint limit)
    size = np.minimum(np.interp(rng.random(len(hit)), levels, o["size_q"]) * sigma[hit], 3.0)
    sign = np.where(rng.random(len(hit)) < o["fainter"], 1.0, -1.0)  # mostly fainter: clouds
    mag[hit] += (sign * size).astype(F32)
    lim = cfg["limit"]
    npt = len(mag)
    cand = np.flatnonzero(mag > F32(lim["mag"] - 5 * lim["sigma"]))
    drop = cand[mag[cand] > lim["mag"] + lim["sigma"] * rng.standard_normal(len(cand))]
    if len(drop):  # faint points are lost, but every light curve keeps its first 3 points
        first3 = drop - off[r[drop]] < 3
        mag[drop[first3]] = np.minimum(mag[drop[first3]], F32(lim["mag"] + 3 * lim["sigma"]))
        drop = drop[~first3]
    time = t + rep(start)
    if len(drop):
        keep = np.ones(npt, bool)
        keep[drop] = False
        time, mag, err = time[keep], mag[keep], err[keep]
        off = np.concatenate([[0], np.cumsum(np.bincount(r[keep], minlength=b))])
    return {"cls": cls, "period": period[inv], "off": off, "time": time, "mag": mag, "err": err}


def _nights(t, off, start, phase: float, width: float, rep, rng) -> np.ndarray:
    """Move each night's observations into the survey's night window (centre ``phase`` as a
    fraction of the day, ``width`` days), keeping the gaps between points of the same night.

    Without this the summed gaps drift through the day and the 1-day aliases of real ground-based
    data disappear. The order of points is kept (a night's points are squeezed, if needed, to stay
    within 0.98 (1 - width) days).
    """
    c = rep((start - phase + 0.5) % 1.0)  # night centres at y = integer + 0.5
    y = t + c
    day = np.floor(y)
    first = np.ones(len(t), bool)
    first[1:] = day[1:] != day[:-1]
    first[off[:-1]] = True
    night = np.cumsum(first) - 1
    idx = np.flatnonzero(first)
    pos = 0.5 + width * (rng.random(len(idx)) - 0.5)
    within = y - y[idx][night]
    # a night's points must fit before the next night's window: squeeze the long ones
    span = within[np.append(idx[1:], len(t)) - 1]
    squeeze = np.minimum(1.0, 0.98 * (1 - width) / np.maximum(span, 1e-9))
    return day + pos[night] + within * squeeze[night] - c


def _err_form(p: dict, m: np.ndarray, ln10) -> np.ndarray:
    """sqrt(a^2 + b x + c x^2), x = 10^(0.4 (m - m0)), in float32."""
    x = np.exp(ln10 * (m - F32(p["m0"])))
    return np.sqrt(F32(p["a"] ** 2) + x * (F32(p["b"]) + F32(p["c"]) * x))


def _ragged_take(off: np.ndarray, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Flat indices that gather whole rows ``rows`` (in that order) of a ragged layout."""
    new_off = np.concatenate([[0], np.cumsum(counts)])
    return np.arange(new_off[-1]) + np.repeat(off[rows] - new_off[:-1], counts)


def _slice(blk: dict, lo: int, hi: int) -> dict:
    off = blk["off"]
    p0, p1 = off[lo], off[hi]
    return {
        "cls": blk["cls"][lo:hi],
        "period": blk["period"][lo:hi],
        "off": off[lo : hi + 1] - p0,
        **{k: blk[k][p0:p1] for k in ("time", "mag", "err")},
    }


def _to_table(
    cfg: dict, cls_names: list[str], seed: int, start: int, parts: list[dict], truth: bool
) -> pa.Table:
    cls = np.concatenate([p["cls"] for p in parts]) if parts else np.zeros(0, np.int64)
    n = len(cls)
    counts = np.concatenate([np.diff(p["off"]) for p in parts]) if parts else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    cat = lambda k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)
    prefix = f"sim-{cfg['name']}-s{seed}-"
    table = pa.table(
        {
            S.ID: pa.array([f"{prefix}{i:09d}" for i in range(start, start + n)], pa.string()),
            S.SURVEY: pa.array([SURVEY_NAMES[cfg["name"]]] * n, pa.string()),
            S.BAND: pa.array([cfg["band"]] * n, pa.string()),
            S.LABEL: pa.array(np.asarray(cls_names, dtype=object)[cls] if n else [], pa.string()),
            "label_source": pa.array([LABEL_SOURCE] * n, pa.string()),
            S.SPLIT: pa.nulls(n, pa.string()),
        }
    )
    table = S.with_lists(table, offsets, time=cat("time"), mag=cat("mag"), mag_err=cat("err"))
    if truth:
        table = table.append_column("period", pa.array(cat("period"), pa.float64()))
    return table


# --------------------------------------------------------------------------- class models
def _signal(name: str, t: np.ndarray, off: np.ndarray, cfg: dict, rng) -> tuple:
    """Magnitude change (positive = fainter) of one class for a ragged slice of objects, and each
    object's (main) period in days (NaN for aperiodic classes).

    ``t`` is float32 time since each object's first epoch; parameters are per object.
    """
    family = CLASSES[name]
    counts = np.diff(off)
    rep = functools.partial(np.repeat, repeats=counts)
    b = len(counts)
    if family == "fourier":
        return _fourier(_resources()[1][name], t, rep, b, cfg["amp"]["pulsator"], rng)
    if family == "eb":
        return _eclipsing(name, t, rep, b, rng)
    if family == "lpv":
        return _lpv(name, _resources()[2][name], t, off, rep, b, cfg["amp"]["lpv"], rng)
    none = np.full(b, np.nan)
    if family == "drw":
        return _drw(t, off, b, rng), none
    if family == "microlensing":
        return _microlensing(t, off, rep, b, rng), none
    return np.zeros(len(t), F32), none


def _phase(t: np.ndarray, period: np.ndarray, rep, rng) -> np.ndarray:
    """Phase in [0, 1) with a random zero point per object (float32)."""
    x = t * rep((1.0 / period).astype(F32)) + rep(rng.random(len(period)).astype(F32))
    return x - np.floor(x)


def _fourier(tab, t, rep, b, amp_factor, rng) -> np.ndarray:
    """OGLE Fourier series m = sum_k a_k cos(2 pi k x + phi_k), with phi_k1 = phi_k - k phi_1.

    Whole catalogue rows (P, A_I, R21, phi21, R31, phi31) are drawn, with small jitter, so period,
    amplitude and shape stay jointly distributed. Harmonics 4 and 5 continue the R and phi sequences
    geometrically/linearly (as for a sawtooth), which sharpens the rise of RRab and Cepheids.
    The peak-to-peak amplitude is the catalogue's I amplitude times the band's ratio.
    """
    p = tab[rng.integers(len(tab), size=b)]
    period = p[:, 0] * np.exp(rng.normal(0, 0.002, b))
    amp = p[:, 1] * amp_factor * np.exp(rng.normal(0, 0.05, b))
    r21 = p[:, 2] * np.exp(rng.normal(0, 0.05, b))
    r31 = p[:, 4] * np.exp(rng.normal(0, 0.05, b))
    f21 = p[:, 3] + rng.normal(0, 0.05, b)
    f31 = p[:, 5] + rng.normal(0, 0.05, b)
    rho = np.clip(np.divide(r31, r21, out=np.zeros(b), where=r21 > 0), 0, 0.7)
    amps = np.column_stack([np.ones(b), r21, r31, r31 * rho, r31 * rho**2])
    phis = np.column_stack([np.zeros(b), f21, f31, 2 * f31 - f21, 3 * f31 - 2 * f21])
    ca, sa = (
        amps * np.cos(phis),
        -amps * np.sin(phis),
    )  # a cos(k th + phi) = ca cos k th + sa sin k th
    grid = 2 * np.pi * np.linspace(0, 1, 128, endpoint=False)
    shape = _series(list(ca.T[:, :, None]), list(sa.T[:, :, None]), np.cos(grid), np.sin(grid))
    norm = amp / np.ptp(shape, axis=1)
    th = F32(2 * np.pi) * _phase(t, period, rep, rng)
    ca = [rep((c * norm).astype(F32)) for c in ca.T]
    sa = [rep((c * norm).astype(F32)) for c in sa.T]
    return _series(ca, sa, np.cos(th), np.sin(th)), period


def _series(ca: list, sa: list, c1, s1) -> np.ndarray:
    """sum_k ca[k] cos((k+1) th) + sa[k] sin((k+1) th) from cos th and sin th (Chebyshev
    recursion: one cos and one sin in all, whatever the number of harmonics)."""
    ck, sk = c1, s1
    out = ca[0] * ck + sa[0] * sk
    c_prev, s_prev = np.ones_like(c1), np.zeros_like(s1)
    for k in range(1, len(ca)):
        ck, c_prev = 2 * c1 * ck - c_prev, ck
        sk, s_prev = 2 * c1 * sk - s_prev, sk
        out = out + ca[k] * ck + sa[k] * sk
    return out


# literature-style ranges: period (lognormal median, sigma, clip low, clip high), radii / a, mass
# ratio q, surface-brightness ratio J, impact parameter b, ellipsoidal alpha, eccentric phase shift
EB_FIELDS = ("p", "r1", "q", "J", "b", "alpha", "ecc")
EB_PARAMS = {
    name: dict(zip(EB_FIELDS, row))
    for name, row in {
        "EB_contact": (
            (0.37, 0.25, 0.22, 1.2),
            (0.38, 0.48),
            (0.1, 1.0),
            (0.8, 1.0),
            (0.0, 0.9),
            2.0,
            0.0,
        ),
        "EB_semidetached": (
            (1.0, 0.6, 0.3, 15.0),
            (0.25, 0.4),
            (0.2, 0.7),
            (0.1, 0.6),
            (0.0, 0.9),
            1.5,
            0.0,
        ),
        "EB_detached": (
            (2.5, 0.8, 0.4, 100.0),
            (0.1, 0.35),
            (0.5, 1.0),
            (0.2, 1.0),
            (0.0, 0.95),
            1.5,
            0.015,
        ),
    }.items()
}


def _eclipsing(name: str, t, rep, b, rng) -> np.ndarray:
    """Two limb-darkened spheres on a circular (detached: slightly eccentric) orbit plus ellipsoidal
    variation. Radii are in units of the separation; the secondary has surface brightness J.
    """
    par = EB_PARAMS[name]
    med, sig, lo, hi = par["p"]
    period = np.clip(med * np.exp(sig * rng.standard_normal(b)), lo, hi)
    q = rng.uniform(*par["q"], b)
    if name == "EB_detached":  # wider spread of radii, log-uniform
        r1 = np.exp(rng.uniform(np.log(par["r1"][0]), np.log(par["r1"][1]), b))
        r2 = r1 * rng.uniform(0.5, 1.0, b)
    elif name == "EB_semidetached":  # the secondary fills its Roche lobe
        r1 = rng.uniform(*par["r1"], b)
        r2 = 0.38 * q**0.2 * rng.uniform(0.9, 1.0, b)
    else:  # contact: lobe radii scale roughly as q^0.46 (Eggleton)
        r1 = rng.uniform(*par["r1"], b)
        r2 = r1 * q**0.46
    J = rng.uniform(*par["J"], b)
    cos_i = rng.uniform(*par["b"], b) * (r1 + r2)
    shift = par["ecc"] * rng.standard_normal(b)  # secondary eclipse off phase 0.5
    ph = _phase(t, period, rep, rng)
    th = F32(2 * np.pi) * ph
    ct = np.cos(th)
    front2 = ct > 0  # star 2 in front: primary eclipse (phase 0)
    L1, L2 = np.pi * r1**2, J * np.pi * r2**2
    sin2i = 1 - cos_i**2
    e1 = (par["alpha"] * sin2i * q * r1**3 / (L1 + L2) * L1).astype(F32)
    e2 = (par["alpha"] * sin2i / q * r2**3 / (L1 + L2) * L2).astype(F32)
    flux = 1 - rep(e1 + e2) * (2 * ct * ct - 1)  # ellipsoidal, cos(2 th); normalised to L1 + L2
    # eclipses only where the discs can overlap: |sin th| < r1 + r2
    idx = np.flatnonzero(np.abs(np.sin(th)) < rep((r1 + r2).astype(F32)))
    if len(idx):
        obj = rep(np.arange(b))[idx]
        r1, r2, J, cos_i, shift, L = (v.astype(F32) for v in (r1, r2, J, cos_i, shift, L1 + L2))
        f2 = front2[idx]
        the = np.where(f2, th[idx], th[idx] - F32(2 * np.pi) * shift[obj].astype(F32))
        d = np.sqrt(np.sin(the) ** 2 + (cos_i[obj] * np.cos(the)) ** 2)
        Re = np.where(f2, r1[obj], r2[obj])  # eclipsed
        Rf = np.where(f2, r2[obj], r1[obj])  # in front
        area = _overlap(d, Re, Rf)
        u = 0.6  # linear limb darkening at the overlap's approximate centre; 1 when fully covered
        rho = np.clip(d * Re / (Re**2 + Rf**2), 0, 1)
        ld = np.where(
            d <= Rf - Re, F32(1), (1 - F32(u) * (1 - np.sqrt(1 - rho**2))) / F32(1 - u / 3)
        )
        surf = np.where(f2, F32(1), J[obj])
        flux[idx] -= surf * area * ld / L[obj]
    return F32(-2.5) * np.log10(np.maximum(flux, F32(1e-4))), period


def _overlap(d, R, r) -> np.ndarray:
    """Area of overlap of two discs of radii R and r at centre distance d (vectorised)."""
    d = np.maximum(d, F32(1e-12))
    with np.errstate(invalid="ignore", divide="ignore"):
        c1 = np.clip((d**2 + r**2 - R**2) / (2 * d * r), -1, 1)
        c2 = np.clip((d**2 + R**2 - r**2) / (2 * d * R), -1, 1)
        k = (-d + r + R) * (d + r - R) * (d - r + R) * (d + r + R)
        lens = r**2 * np.arccos(c1) + R**2 * np.arccos(c2) - 0.5 * np.sqrt(np.maximum(k, 0))
    full = F32(np.pi) * np.minimum(R, r) ** 2
    return np.where(d >= R + r, F32(0), np.where(d <= np.abs(R - r), full, lens))


LPV_PARAMS = {  # phase random walk (cycles per sqrt(cycle)), amplitude modulation, Mira asymmetry
    "Mira": {"walk": 0.02, "amod": 0.15, "h2": 0.15, "trend": 0.15},
    "SRV": {"walk": 0.08, "amod": 0.35, "h2": 0.05, "trend": 0.1},
    "OSARG": {"walk": 0.15, "amod": 0.5, "h2": 0.0, "trend": 0.02},
}


def _lpv(name, tab, t, off, rep, b, amp_factor, rng) -> np.ndarray:
    """Quasi-periodic pulsation: up to 3 OGLE-III periods with amplitudes, a random walk in phase
    (period jitter), slow amplitude modulation and, for Miras, an asymmetric (fast-rise) shape.
    Mira amplitudes are at least 1 mag in I (>= 2.5 mag in V); SRV amplitudes below that.
    """
    par = LPV_PARAMS[name]
    p = tab[rng.integers(len(tab), size=b)]
    per = p[:, [0, 2, 4]] * np.exp(rng.normal(0, 0.01, (b, 3)))
    amp = p[:, [1, 3, 5]] * np.exp(rng.normal(0, 0.05, (b, 3)))
    if name == "Mira":
        amp[:, 0] = np.maximum(amp[:, 0], 1.0)
    elif name == "SRV":
        amp[:, 0] = np.minimum(amp[:, 0], 0.95)
    amp = np.where(p[:, [0, 2, 4]] > 0, amp * amp_factor, 0.0)
    per = np.where(per > 0, per, 1.0)
    dt = np.diff(t, prepend=t[:1])
    dt[off[:-1]] = 0.0
    step = _normal(rng, len(t)) * np.sqrt(dt * rep((1 / per[:, 0]).astype(F32)))
    walk = _ragged_cumsum(step, off) * F32(par["walk"])
    x = F32(2 * np.pi) * (_phase(t, per[:, 0], rep, rng) + walk)
    mod = F32(2 * np.pi) * _phase(t, per[:, 0] * rng.uniform(5, 20, b), rep, rng)
    amod = 1 + F32(par["amod"]) * np.sin(mod)
    main = np.cos(x) + F32(par["h2"]) * np.cos(2 * x + F32(0.5 * np.pi))  # fast rise, slow decline
    out = rep((0.5 * amp[:, 0] / (1 + par["h2"])).astype(F32)) * amod * main
    for k in (1, 2):
        if (amp[:, k] > 0).any():
            out += rep((0.5 * amp[:, k]).astype(F32)) * np.cos(
                F32(2 * np.pi) * _phase(t, per[:, k], rep, rng)
            )
    trend = F32(2 * np.pi) * _phase(t, rng.uniform(1500, 6000, b), rep, rng)
    return out + F32(par["trend"] * amp_factor) * np.sin(trend), per[:, 0]


def _drw(t, off, b, rng, chunk: int = 32) -> np.ndarray:
    """Quasar damped random walk (Ornstein-Uhlenbeck): tau ~ 200 d, SF_inf ~ 0.2 mag (MacLeod+10).

    Exact on irregular times: x_j = rho_j x_(j-1) + sigma sqrt(1 - rho_j^2) eps_j with
    rho_j = exp(-dt_j / tau). The recursion is solved in closed form inside chunks of ``chunk`` point
    positions (x_k = sum_(i<=k) exp(L_k - L_i) w_i + exp(L_k) x_prev, L the running sum of ln rho),
    vectorised over objects; only the chunks are looped over.
    """
    tau = np.exp(rng.normal(np.log(200), 0.6, b))
    sigma = np.exp(rng.normal(np.log(0.2), 0.4, b)) / np.sqrt(2)
    counts = np.diff(off)
    nmax = int(counts.max()) if b else 0
    tp, mask = S.padded(t, off[:-1], counts, nmax, dtype=np.float64)
    eps = rng.standard_normal((b, nmax))
    log_rho = -np.maximum(np.diff(tp, axis=1, prepend=tp[:, :1]), 0) / tau[:, None]
    w = sigma[:, None] * np.sqrt(-np.expm1(2 * log_rho)) * eps
    w[:, 0] = sigma * eps[:, 0]  # the first point: drawn from the stationary distribution
    x = np.empty((b, nmax))
    prev = np.zeros(b)
    lower = np.tril(np.ones((chunk, chunk), bool))
    for c0 in range(0, nmax, chunk):
        L = np.cumsum(log_rho[:, c0 : c0 + chunk], axis=1)
        k = L.shape[1]
        D = np.where(lower[:k, :k], L[:, :, None] - L[:, None, :], -np.inf)
        x[:, c0 : c0 + k] = np.einsum("bkj,bj->bk", np.exp(D), w[:, c0 : c0 + k])
        x[:, c0 : c0 + k] += np.exp(L) * prev[:, None]
        prev = x[:, c0 + k - 1]
    return x[mask].astype(F32)


def _microlensing(t, off, rep, b, rng) -> np.ndarray:
    """Point-source point-lens (Paczynski) event with blending, peak inside the observed span."""
    first, last = t[off[:-1]], t[np.maximum(off[1:] - 1, 0)]
    t0 = first + rng.random(b) * (last - first)
    te = np.clip(np.exp(rng.normal(np.log(25), 0.7, b)), 3, 300)
    u0 = rng.uniform(0.01, 0.8, b)
    fs = rng.uniform(0.2, 1.0, b)
    u2 = rep((u0**2).astype(F32)) + ((t - rep(t0.astype(F32))) * rep((1 / te).astype(F32))) ** 2
    amp = (u2 + 2) / np.sqrt(u2 * (u2 + 4))
    f = rep(fs.astype(F32))
    return F32(-2.5) * np.log10(f * amp + 1 - f)


# --------------------------------------------------------------------------- sharded writing
def write_shards(
    out: str | Path,
    survey: str,
    n: int,
    classes=None,
    seed: int = 0,
    shard_size: int = 100_000,
    *,
    n_obs: int | None = None,
    mag_range=None,
    progress: bool = True,
) -> list[Path]:
    """Write ``out/part-00000.parquet`` ...; shards already complete are skipped (resumable)."""
    from tqdm import tqdm

    from starcurve.data.io import write_parquet

    n = _check_int(n, "n", 0)
    shard_size = _check_int(shard_size, "shard_size", 1)
    _check_survey(survey)
    cls = _check_classes(classes)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StarcurveError(f"{out} is a file; give a folder for sharded output")
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "survey": str(survey).lower(),
        "n": n,
        "classes": cls,
        "seed": int(seed),
        "shard_size": shard_size,
        "n_obs": n_obs,
        "mag_range": list(mag_range) if mag_range else None,
    }
    meta = out / "simulate.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old != settings:
            raise StarcurveError(
                f"{out} holds shards written with other settings ({old}); "
                "use another --output or delete it"
            )
    else:
        meta.write_text(json.dumps(settings, indent=1))
    paths = []
    n_shards = -(-n // shard_size)
    with tqdm(total=n, unit="lc", desc=f"simulate {survey}", disable=not progress) as bar:
        for k in range(n_shards):
            lo, hi = k * shard_size, min((k + 1) * shard_size, n)
            path = out / f"part-{k:05d}.parquet"
            if not _complete(path, hi - lo):
                table = simulate_range(survey, lo, hi, cls, seed, n_obs=n_obs, mag_range=mag_range)
                write_parquet(table, path)
            paths.append(path)
            bar.update(hi - lo)
    return paths


def _complete(path: Path, rows: int) -> bool:
    from starcurve.data.io import parquet_rows

    try:
        return path.exists() and parquet_rows(path) == rows
    except StarcurveError:  # a truncated or corrupt shard is simply rewritten
        return False


SINGLE_FILE_MAX = 200_000


@click.command("simulate")
@click.option("--survey", default=None, help=f"One of: {', '.join(SURVEY_NAMES)}.")
@click.option("--objects", default=None, help="Number of light curves (objects).")
@click.option("--classes", default=None, help="Comma-separated classes (default: all).")
@seed_option()
@output_option(OUTPUT_ANY, "Output .parquet file, or folder.", required=False)
@click.option(
    "--shard-size",
    default=None,
    help="Write OUTPUT/part-NNNNN.parquet shards of K objects "
    f"(default: one file up to {SINGLE_FILE_MAX:,} objects, else shards of 100,000).",
)
@click.option("--n-obs", default=None, help="Fixed number of observations per light curve.")
@click.option("--list", "list_", is_flag=True, help="List surveys and classes, then exit.")
def simulate_cmd(survey, objects, classes, seed, output, shard_size, n_obs, list_) -> None:
    """Write simulated, labeled survey light curves (same Parquet schema as the real files).

    Same seed, same objects: shards of any size hold the same objects as one file.
    """
    from starcurve.data.io import write_parquet

    if list_:
        click.echo(f"surveys: {', '.join(SURVEY_NAMES)}\nclasses: {', '.join(CLASSES)}")
        return
    given = (("--survey", survey), ("--objects", objects), ("--output", output))
    missing = [o for o, v in given if v is None]
    if missing:
        raise StarcurveError(f"missing {', '.join(missing)} (see starcurve simulate --help)")
    n = _check_int(objects, "--objects", 0)
    n_obs = None if n_obs is None else _check_int(n_obs, "--n-obs", 1)
    _check_survey(survey)
    cls = _check_classes(classes)
    if shard_size is None and n <= SINGLE_FILE_MAX and not Path(output).is_dir():
        table = simulate(survey, n, cls, seed, n_obs=n_obs)
        write_parquet(table, output)
        click.echo(f"wrote {table.num_rows} light curves to {output}")
        return
    size = 100_000 if shard_size is None else _check_int(shard_size, "--shard-size", 1)
    paths = write_shards(output, survey, n, cls, seed, size, n_obs=n_obs)
    click.echo(f"wrote {n} light curves in {len(paths)} shard(s) to {output}")
