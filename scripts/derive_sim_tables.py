"""Derive the simulator's small committed tables from the real data in ``../shared/data``.

    python scripts/derive_sim_tables.py                 # tables -> src/starcurve/resources/sim/
    python scripts/derive_sim_tables.py --figures       # also calibration figures -> docs/figures/

Outputs (package data, together well under 1 MB):
- ``pulsators.csv``: per class (RRab, RRc, Cep_F, Cep_1O, T2Cep, DSCT) up to ``--rows`` whole rows
  (P, A_I, R21, phi21, R31, phi31) sampled from the OGLE-III catalogue, so the joint distribution is kept;
- ``lpv.csv``: Mira, SRV, OSARG rows (P_1, A_1, P_2, A_2, P_3, A_3) from the OGLE-III LPV catalogue;
- ``surveys.json``: cadence and noise of each survey. asas, eros, macho and ogle are measured here on
  the real files (observation counts, active spans, season lengths, time-gap shape, position of the
  observations in the night, magnitudes, error versus magnitude, noise scale and outlier rate from
  pairs of points taken less than 0.1 d apart); gaia, ztf and lsst are built from documented public
  facts (see ``documented_surveys``) and marked so.

No light curve, and no row of a real light-curve file, is written: only per-object summary numbers
(counts, spans) of a random sample of objects, and quantiles. The ASAS objects in the FS-1 test split of
``asas_acvs`` are excluded from the calibration, because the realism benchmark tests on them.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.optimize import least_squares

from starcurve.data import clean as C
from starcurve.data import io
from starcurve.data import schema as S

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "src" / "starcurve" / "resources" / "sim"
YEAR = 365.25
SEASON_GAP = 60.0  # a gap longer than this (days) starts a new observing season
GAP_LEVELS = np.unique(
    np.concatenate(
        [
            [0.0, 0.0005, 0.001, 0.002, 0.005],
            np.linspace(0.01, 0.99, 99),
            [0.995, 0.998, 0.999, 0.9995, 1.0],
        ]
    )
)

PULSATORS = {  # class -> (OGLE-III Type, Subtypes or None for all)
    "RRab": ("RRLyr", ["RRab"]),
    "RRc": ("RRLyr", ["RRc"]),
    "Cep_F": ("Cep", ["F"]),
    "Cep_1O": ("Cep", ["1"]),
    "T2Cep": ("T2Cep", ["BLHer", "WVir", "RVTau"]),
    "DSCT": ("DSCT", None),
}
LPVS = {"Mira": "Mira", "SRV": "SRV", "OSARG": "OSARG"}


# --------------------------------------------------------------------------- OGLE-III tables
def ogle3_tables(data: Path, out: Path, rows: int, rng: np.random.Generator) -> dict:
    """Sample whole catalogue rows per class (keeps P, amplitude and shape jointly)."""
    cat = pq.read_table(data / "ogle3_catalog.parquet").to_pandas()
    info = {}
    parts = []
    for cls, (typ, subs) in PULSATORS.items():
        d = cat[(cat.Type == typ) & (cat.Subtype.isin(subs) if subs else True)].copy()
        if typ == "DSCT":
            # In this file the DSCT rows have R21 and phi21 swapped (the R21 column spans 0..2pi,
            # phi21 0..0.85) and no third harmonic: swap back, R31 = 0.
            d["R21_1"], d["phi21_1"] = d["phi21_1"].to_numpy(), d["R21_1"].to_numpy()
            d["R31_1"], d["phi31_1"] = 0.0, 0.0
        cols = ["P_1", "A_1", "R21_1", "phi21_1", "R31_1", "phi31_1"]
        d = d[cols].dropna()
        d = d[(d.P_1 > 0) & (d.A_1 > 0) & (d.R21_1 < 1) & (d.R31_1 < 1)]
        n_all = len(d)
        d = d.iloc[rng.permutation(len(d))[:rows]]
        d.columns = ["P", "A_I", "R21", "phi21", "R31", "phi31"]
        d.insert(0, "class", cls)
        parts.append(d)
        info[cls] = {"catalogue_rows_usable": int(n_all), "rows_kept": len(d)}
    pd.concat(parts).to_csv(out / "pulsators.csv", index=False, float_format="%.5g")

    parts = []
    for cls, sub in LPVS.items():
        d = cat[(cat.Type == "LPV") & (cat.Subtype == sub)]
        d = d[["P_1", "A_1", "P_2", "A_2", "P_3", "A_3"]]
        d = d[d.P_1.notna() & d.A_1.notna() & (d.P_1 > 0)].fillna(0.0)
        n_all = len(d)
        d = d.iloc[rng.permutation(len(d))[:rows]].copy()
        d.columns = ["P1", "A1_I", "P2", "A2_I", "P3", "A3_I"]
        d.insert(0, "class", cls)
        parts.append(d)
        info[cls] = {"catalogue_rows_usable": int(n_all), "rows_kept": len(d)}
    pd.concat(parts).to_csv(out / "lpv.csv", index=False, float_format="%.5g")
    return info


# --------------------------------------------------------------------------- FS-1 test split
def fs1_test_ids(path: Path, band: str) -> set[str]:
    """The FS-1 test objects of a labeled file (BENCHMARK.md rule 3), to keep them out."""
    try:  # the project's implementation
        from starcurve.eval.fewshot import test_object_ids

        return test_object_ids(path, band)
    except ImportError:  # the same rule, for a checkout without the benchmark module
        table = io.read(path, band=band)
        ids = np.asarray(table.column(S.ID).to_pylist())
        labels = np.asarray(table.column(S.LABEL).to_pylist(), dtype=object)
        test = set()
        for lab in sorted({x for x in labels if x is not None}):
            cls = np.sort(ids[labels == lab])
            if len(cls) >= 30:
                perm = np.random.default_rng(1234).permutation(len(cls))
                test.update(cls[perm[: math.ceil(0.3 * len(cls))]])
        return test


# --------------------------------------------------------------------------- survey calibration
def load(data: Path, name: str, band: str, exclude_test: bool = False):
    t = io.read(data / f"{name}.parquet", band=band)
    if exclude_test:
        test = fs1_test_ids(data / f"{name}.parquet", band)
        t = t.filter(pc.invert(pc.is_in(t.column(S.ID), value_set=pa.array(sorted(test)))))
    t, rep = C.clean(t, max_err=5.0, min_obs=2)
    return t, rep


def per_object(table) -> dict[str, np.ndarray]:
    """Flat arrays and per-object cadence summaries."""
    t, off = S.flat(table, S.TIME)
    m = S.flat(table, S.MAG)[0].astype(float)
    e = S.flat(table, S.ERR)[0].astype(float)
    r = S.row_index(off)
    n = np.diff(off)
    dt = np.diff(t)
    same = np.diff(r) == 0
    gap, grow = dt[same], r[1:][same]
    season = gap > SEASON_GAP
    active = np.bincount(grow[~season], gap[~season], minlength=len(n))
    n_seasons = 1 + np.bincount(grow[season], minlength=len(n))
    in_gaps = np.bincount(grow[~season], minlength=len(n))
    mean_gap = np.where(in_gaps > 0, active / np.maximum(in_gaps, 1), np.nan)
    return {
        "t": t,
        "m": m,
        "e": e,
        "r": r,
        "n": n,
        "gap": gap,
        "grow": grow,
        "season": season,
        "active": active,
        "n_seasons": n_seasons,
        "mean_gap": mean_gap,
        "first": t[off[:-1]],
        "span": t[off[1:] - 1] - t[off[:-1]],
        "median_mag": np.array(pd.Series(m).groupby(r).median().reindex(range(len(n))).to_numpy()),
    }


def err_model_fit(m: np.ndarray, e: np.ndarray, m0: float) -> dict:
    """Fit err^2 = a^2 + b x + c x^2, x = 10^(0.4 (m - m0)), to binned median errors."""
    edges = np.arange(np.floor(np.percentile(m, 0.5) * 4) / 4, np.percentile(m, 99.5) + 0.25, 0.25)
    idx = np.digitize(m, edges)
    mids, med, lo, hi = [], [], [], []
    for k in np.unique(idx):
        sel = idx == k
        if sel.sum() < 100 or k == 0 or k == len(edges):
            continue
        mids.append(m[sel].mean())
        q = np.percentile(e[sel], [16, 50, 84])
        lo.append(q[0]), med.append(q[1]), hi.append(q[2])
    mids, med, lo, hi = map(np.asarray, (mids, med, lo, hi))
    fit = _fit_err_form(mids, med, m0)
    return {
        **fit,
        "sigma_ln": float(np.median((np.log(hi) - np.log(lo)) / 2)),
        "min": float(np.percentile(e, 0.1)),
        "max": float(np.percentile(e, 99.9)),
    }


def pair_noise(o: dict, err: dict, max_dt: float = 0.1, rows_ok: np.ndarray | None = None) -> dict:
    """The real photometric scatter versus magnitude, and outliers, from pairs of points of the same
    object taken less than ``max_dt`` apart (intrinsic change negligible for the objects used).

    - ``noise``: single-point robust scatter (1.4826 MAD of the pair differences / sqrt 2) in 0.5-mag
      bins, fitted with the error form ``sqrt(a^2 + b x + c x^2)``; it can differ from the quoted
      errors (ASAS quotes a flat frame quality while the real scatter grows with magnitude);
    - ``outlier``: per-object rate (half the fraction of an object's pairs that differ by more than
      5 sigma; quantiles over objects with >= 20 pairs), size of those differences in sigma
      (quantiles), and the fraction of outliers that are fainter than the object's median.
    """
    same = np.diff(o["r"]) == 0
    k = same & (np.diff(o["t"]) < max_dt)
    if rows_ok is not None:
        k &= rows_ok[o["r"][1:]]
    i = np.flatnonzero(k)
    dm = o["m"][i + 1] - o["m"][i]
    mm = 0.5 * (o["m"][i] + o["m"][i + 1])
    edges = np.arange(np.floor(np.percentile(mm, 0.5)), np.percentile(mm, 99.5) + 0.5, 0.5)
    idx = np.digitize(mm, edges)
    mids, sig = [], []
    for j in range(1, len(edges)):
        sel = idx == j
        if sel.sum() >= 100:
            d = dm[sel]
            mids.append(mm[sel].mean())
            sig.append(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))
    mids, sig = np.array(mids), np.array(sig)
    m0 = float(np.median(mm))
    if len(mids) >= 3:
        noise = _fit_err_form(mids, sig, m0)
    else:  # too few bins for a curve: the quoted errors' shape, scaled to the measured level
        k = float(np.median(sig / _err_form(err, mids)))
        noise = {
            "a": err["a"] * k,
            "b": err["b"] * k**2,
            "c": err["c"] * k**2,
            "m0": err["m0"],
            "scaled_quoted_error_by": k,
        }
    sig_pt = _err_form(noise, mm)
    z = np.abs(dm) / (np.sqrt(2) * sig_pt)
    big = z > 5
    rows = o["r"][i + 1]
    cnt = np.bincount(rows, minlength=len(o["n"]))
    nbig = np.bincount(rows, big, minlength=len(o["n"]))
    rate = nbig[cnt >= 20] / cnt[cnt >= 20] / 2
    med = pd.Series(o["m"]).groupby(o["r"]).median().to_numpy()
    a, b = i[big], i[big] + 1
    da, db = o["m"][a] - med[o["r"][a]], o["m"][b] - med[o["r"][b]]
    dev = np.where(np.abs(da) > np.abs(db), da, db)
    # quantiles 0, 0.05, ..., 0.95 and, for the top, the 99th percentile (not the maximum)
    levels = np.append(np.linspace(0, 0.95, 20), 0.99)
    return {
        "noise": noise,
        "outlier": {
            "rate_q": np.round(np.quantile(rate, levels), 5).tolist(),
            "size_q": np.round(np.quantile(np.sqrt(2) * z[big], levels), 3).tolist(),
            "fainter": round(float(np.mean(dev > 0)), 3),
            "pairs": len(i),
            "objects": int((cnt >= 20).sum()),
            "max_dt": max_dt,
        },
        "noise_bins": {"mag": np.round(mids, 3).tolist(), "sigma": np.round(sig, 5).tolist()},
    }


def _err_form(p: dict, m: np.ndarray) -> np.ndarray:
    x = 10 ** (0.4 * (m - p["m0"]))
    return np.sqrt(p["a"] ** 2 + p["b"] * x + p["c"] * x**2)


def _fit_err_form(m: np.ndarray, e: np.ndarray, m0: float) -> dict:
    """Least squares in ln of ``sqrt(a^2 + b x + c x^2)``, x = 10^(0.4 (m - m0)), a, b, c >= 0."""
    x = 10 ** (0.4 * (m - m0))

    def resid(p):
        a, b, c = np.exp(np.clip(p, -60, 20))
        return 0.5 * np.log(a**2 + b * x + c * x**2) - np.log(e)

    p = least_squares(resid, np.log([np.min(e), np.median(e) ** 2, 1e-6])).x
    a, b, c = np.exp(np.clip(p, -60, 20))
    return {
        "a": float(a),
        "b": float(b),
        "c": float(c),
        "m0": m0,
        "fit_rms_ln": float(np.sqrt(np.mean(resid(p) ** 2))),
    }


def calibrate(
    name: str,
    o: dict,
    band: str,
    t0: float,
    night: bool,
    quantum: float,
    noise: dict,
    rng: np.random.Generator,
    source: str,
    n_rows: int = 400,
) -> dict:
    """Summaries of one survey's real light curves (see module docstring)."""
    ok = (o["n"] >= 2) & np.isfinite(o["mean_gap"]) & (o["active"] > 0)
    idx = np.flatnonzero(ok)
    season_len = season_length(o["span"], o["active"])
    pick = rng.choice(idx, size=min(n_rows, len(idx)), replace=False)
    rows = np.column_stack(
        [
            o["n"][pick],
            o["active"][pick],
            np.maximum(season_len[pick], 1.0),
            o["first"][pick] - o["first"].min(),
        ]
    )
    # gaps in days, pooled over objects of similar mean gap (nightly cadences keep their 1-day
    # quantum this way; the simulator then rescales each object's gaps to its active time)
    n_bins = int(np.clip(len(idx) // 30, 1, 8))
    edges = np.quantile(o["mean_gap"][idx], np.linspace(0, 1, n_bins + 1)[1:-1])
    ingap = ~o["season"] & ok[o["grow"]]
    gbin = np.searchsorted(edges, o["mean_gap"][o["grow"][ingap]])
    gaps = o["gap"][ingap]
    gap_q = [np.quantile(gaps[gbin == k], GAP_LEVELS) for k in range(n_bins)]
    night_d = None
    if night:
        frac = o["t"] % 1.0
        ang = np.angle(np.mean(np.exp(2j * np.pi * frac)))
        phase = (ang / (2 * np.pi)) % 1.0
        dev = (frac - phase + 0.5) % 1.0 - 0.5
        width = float(np.percentile(dev, 99) - np.percentile(dev, 1))
        night_d = {"phase": float(phase), "width": min(width, 0.95)}
    m0 = float(np.median(o["m"]))
    return {
        "band": band,
        "source": source,
        "calibrated": True,
        "t0": t0,
        "rows_columns": ["n_obs", "active_days", "season_days", "start_offset"],
        "rows": np.round(rows, 3).tolist(),
        "gap_levels": GAP_LEVELS.round(6).tolist(),
        "gap_edges": np.round(edges, 5).tolist(),
        "gap_q": np.round(gap_q, 5).tolist(),
        "night": night_d,
        "mag_q": np.round(np.quantile(o["median_mag"][ok], np.linspace(0, 1, 101)), 4).tolist(),
        "err": {**err_model_fit(o["m"], o["e"], m0), "quantum": quantum},
        **noise,
        "limit": {"mag": float(np.percentile(o["m"], 99.9)), "sigma": 0.15},
        "stats": {
            "objects": len(o["n"]),
            "n_obs_median": float(np.median(o["n"])),
            "span_median": float(np.median(o["span"])),
            "gap_median": float(np.median(o["gap"])),
        },
    }


AMP = {  # amplitude in the survey band relative to OGLE I (pulsators, LPVs); approximate ratios
    "V": {"pulsator": 1.6, "lpv": 2.5},
    "R": {"pulsator": 1.25, "lpv": 1.6},
    "I": {"pulsator": 1.0, "lpv": 1.0},
    "G": {"pulsator": 1.3, "lpv": 1.7},
    "r": {"pulsator": 1.35, "lpv": 1.9},
}


def synth_gap_q(times: list[np.ndarray]) -> list:
    """One bin of gap quantiles (days) from synthetic time sequences."""
    return [np.quantile(np.concatenate([np.diff(t) for t in times if len(t) > 2]), GAP_LEVELS)]


def season_length(span: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Season length L such that active time A spread over seasons of L days, one per year, spans
    the observed span S: S = A Y / L - (Y - L), i.e. L^2 - (S + Y) L + A Y = 0 (smaller root)."""
    b = span + YEAR
    disc = b**2 - 4 * active * YEAR
    with np.errstate(invalid="ignore"):
        L = np.where(disc > 0, (b - np.sqrt(np.maximum(disc, 0))) / 2, YEAR)
    return np.clip(L, 1.0, YEAR)


def documented_surveys(rng: np.random.Generator) -> dict:
    """Gaia-, ZTF- and LSST-like cadences from public facts (not calibrated on data here).

    Gaia DR3 epoch photometry: 34 months (2014-07-25 .. 2017-05-28, 1038 d), no seasons; transits come
    in pairs 106.5 min apart (the two fields of view) repeated after the 6 h spin, groups weeks apart;
    median about 40 G-band field-of-view transits per source (range ~15 to >200 with ecliptic latitude);
    per-transit G uncertainty ~1 mmag at G=13-15, ~3 mmag at 17, ~10 mmag at 19, ~25 mmag at 20.
    ZTF: public survey, r band, ~2-3 night cadence, seasons of ~8 months, ~5 years of data releases,
    5-sigma depth r ~ 20.6 in 30 s, repeatability floor ~0.015 mag, saturation ~12.5-13 mag.
    LSST (Ivezic et al. 2019, Table 1 and Eq. 4-5): 10 years, ~184 r visits in the WFD survey, visits in
    pairs ~30 min apart, seasons ~6 months, single-visit 5-sigma depth r = 24.16,
    sigma_rand^2 = (0.04 - gamma) x + gamma x^2 with x = 10^(0.4 (m - m5)), gamma_r = 0.039,
    sigma_sys = 0.005.
    """
    out = {}
    # Gaia: synthesise clumped transit sequences, keep their gap shape
    seqs = []
    for _ in range(400):
        n_groups = rng.integers(8, 25)
        starts = np.sort(rng.uniform(0, 1038, n_groups))
        ts = []
        for s in starts:
            for k in range(rng.integers(1, 4)):  # consecutive 6 h spins
                base = s + 0.25 * k
                ts += [base] if rng.random() < 0.3 else [base, base + 106.5 / 1440]
        seqs.append(np.sort(np.array(ts)))
    n_gaia = np.clip(np.round(rng.lognormal(np.log(40), 0.45, 400)), 12, 250)
    out["gaia"] = {
        "band": "G",
        "source": "documented (Gaia DR3 epoch photometry facts; see docs)",
        "calibrated": False,
        "t0": 1666.4,  # BJD - 2455197.5 (Gaia time), start of DR3
        "rows": np.column_stack(
            [n_gaia, np.full(400, 1038.0), np.full(400, YEAR), np.zeros(400)]
        ).tolist(),
        "gap_q": np.round(synth_gap_q(seqs), 5).tolist(),
        "night": None,
        "mag_dist": {"kind": "power", "lo": 12.0, "hi": 20.7, "slope": 0.3},
        "err": _err_from_points(
            [13, 15, 17, 19, 20, 20.7],
            [0.001, 0.0012, 0.003, 0.01, 0.025, 0.045],
            m0=17.0,
            quantum=0.0001,
        ),
        **_documented_noise(0.002),
        "limit": {"mag": 20.9, "sigma": 0.15},
    }

    # ZTF and LSST: nightly cadences; gap shape from synthetic sequences
    def nightly(n_nights, every, pair_frac, pair_dt, loss):
        seqs = []
        for _ in range(300):
            nights = np.cumsum(rng.choice(every, size=n_nights))
            nights = nights[rng.random(len(nights)) > loss].astype(float)
            extra = nights[rng.random(len(nights)) < pair_frac] + pair_dt
            seqs.append(np.sort(np.concatenate([nights, extra])))
        return synth_gap_q(seqs)

    n_ztf = np.clip(np.round(rng.lognormal(np.log(350), 0.5, 400)), 40, 1500)
    out["ztf"] = {
        "band": "r",
        "source": "documented (ZTF public survey facts; see docs)",
        "calibrated": False,
        "t0": 58194.0,  # MJD, March 2018
        "rows": np.column_stack(
            [n_ztf, np.full(400, 5 * 240.0), np.full(400, 240.0), rng.uniform(0, 60, 400)]
        ).tolist(),
        "gap_q": np.round(nightly(300, [1, 2, 2, 3, 3, 4], 0.15, 0.03, 0.25), 5).tolist(),
        "night": {"phase": 0.83, "width": 0.3},  # Palomar, UT-8 -> local midnight at JD frac ~0.83
        "mag_dist": {"kind": "power", "lo": 13.0, "hi": 20.8, "slope": 0.3},
        "err": _err_lsst(m5=20.6, gamma=0.039, sys=0.015, quantum=0.0001),
        **_documented_noise(0.005),
        "limit": {"mag": 20.8, "sigma": 0.2},
    }
    n_lsst = np.clip(np.round(rng.normal(184, 25, 400)), 60, 300)
    out["lsst"] = {
        "band": "r",
        "source": "documented (Ivezic et al. 2019, WFD baseline; see docs)",
        "calibrated": False,
        "t0": 60980.0,  # MJD, late 2025
        "rows": np.column_stack(
            [n_lsst, np.full(400, 10 * 180.0), np.full(400, 180.0), rng.uniform(0, 100, 400)]
        ).tolist(),
        "gap_q": np.round(nightly(120, [2, 3, 4, 5, 7, 10, 14], 0.45, 0.023, 0.2), 5).tolist(),
        "night": {"phase": 0.69, "width": 0.3},  # Cerro Pachon, UT-4.7h
        "mag_dist": {"kind": "power", "lo": 16.5, "hi": 24.3, "slope": 0.3},
        "err": _err_lsst(m5=24.16, gamma=0.039, sys=0.005, quantum=0.0001),
        **_documented_noise(0.002),
        "limit": {"mag": 24.5, "sigma": 0.2},
    }
    for v in out.values():
        v["gap_levels"] = GAP_LEVELS.round(6).tolist()
        v["gap_edges"] = []
        v["rows_columns"] = ["n_obs", "active_days", "season_days", "start_offset"]
    return out


def _documented_noise(rate: float) -> dict:
    """Scatter = quoted error (filled in from 'err' by the caller); a fixed outlier rate."""
    levels = np.linspace(0, 1, 21)
    return {
        "noise": None,
        "outlier": {
            "rate_q": [rate] * 21,
            "size_q": np.round(5 + 10 * levels, 3).tolist(),
            "fainter": 0.7,
        },
    }


def _err_lsst(m5: float, gamma: float, sys: float, quantum: float) -> dict:
    """The LSST error model written in the simulator's form err^2 = a^2 + b x + c x^2."""
    return {
        "a": sys,
        "b": 0.04 - gamma,
        "c": gamma,
        "m0": m5,
        "sigma_ln": 0.05,
        "min": sys,
        "max": 1.0,
        "quantum": quantum,
    }


def _err_from_points(mags, errs, m0: float, quantum: float) -> dict:
    mags, errs = np.asarray(mags, float), np.asarray(errs, float)
    x = 10 ** (0.4 * (mags - m0))
    p = least_squares(
        lambda p: (
            0.5 * np.log(np.exp(2 * p[0]) + np.exp(p[1]) * x + np.exp(p[2]) * x**2) - np.log(errs)
        ),
        np.log([errs.min(), 1e-5, 1e-6]),
    ).x
    return {
        "a": float(np.exp(p[0])),
        "b": float(np.exp(p[1])),
        "c": float(np.exp(p[2])),
        "m0": m0,
        "sigma_ln": 0.1,
        "min": float(errs.min()),
        "max": 0.5,
        "quantum": quantum,
    }


EROS_LABELS = {  # eros_lmc label -> simulator classes
    "RR_Lyrae": ["RRab", "RRc"],
    "Cepheid": ["Cep_F", "Cep_1O"],
    "EB": ["EB_detached", "EB_semidetached", "EB_contact"],
    "Mira": ["Mira"],
}


def class_mags(o: dict, labels: np.ndarray, mapping: dict | None = None) -> dict:
    """Quantiles of the per-object median magnitude of each labeled class (selection effects:
    in ASAS the RR Lyrae stars are fainter than the detached binaries, for example)."""
    out = {}
    for lab in sorted({x for x in labels if x is not None}):
        sel = labels == lab
        if sel.sum() < 30:
            continue
        q = np.round(np.quantile(o["median_mag"][sel], np.linspace(0, 1, 101)), 3).tolist()
        for cls in (mapping or {lab: [lab]}).get(lab, []):
            out[cls] = q
    return out


def _err(o: dict) -> dict:
    return err_model_fit(o["m"], o["e"], float(np.median(o["m"])))


def calibrated_surveys(data: Path, rng: np.random.Generator) -> dict:
    out = {}
    # ASAS: cadence from the asas_acvs pool (FS-1 test objects excluded), errors from both files
    acvs, _ = load(data, "asas_acvs", "V", exclude_test=True)
    unl, _ = load(data, "asas3_unlabeled", "V")
    oa, ou = per_object(acvs), per_object(unl)
    # noise from slow variables only (Mira, detached binaries: no change within 0.1 d, except in
    # eclipse); pairs of fast ones (RR Lyrae, delta Scuti, contact binaries) include real variation
    slow = np.isin(
        np.asarray(acvs.column(S.LABEL).to_pylist(), dtype=object), ["Mira", "EB_detached"]
    )
    asas = calibrate(
        "asas",
        oa,
        "V",
        2451868.5,
        True,
        0.001,
        pair_noise(oa, _err(oa), rows_ok=slow),
        rng,
        "calibrated: asas_acvs V pool (cadence; noise from Mira and EB_detached pairs) + "
        "asas3_unlabeled V (errors)",
    )
    m = np.concatenate([oa["m"], ou["m"]])
    e = np.concatenate([oa["e"], ou["e"]])
    asas["err"] = {**err_model_fit(m, e, float(np.median(m))), "quantum": 0.001}
    from starcurve.data.simulate import CLASSES

    labels = np.asarray(acvs.column(S.LABEL).to_pylist(), dtype=object)
    asas["class_mag_q"] = {k: v for k, v in class_mags(oa, labels).items() if k in CLASSES}
    out["asas"] = asas
    # EROS: no pairs < 0.5 d; use pairs < 1.5 d of Miras (P > 100 d: no intrinsic change in a day)
    eros, _ = load(data, "eros_lmc", "R")
    oe = per_object(eros)
    lab = np.asarray(eros.column(S.LABEL).to_pylist(), dtype=object)
    out["eros"] = calibrate(
        "eros",
        oe,
        "R",
        290.3,
        True,
        0.01,
        pair_noise(oe, _err(oe), max_dt=1.5, rows_ok=lab == "Mira"),
        rng,
        "calibrated: eros_lmc R (noise from Mira pairs < 1.5 d apart)",
    )
    out["eros"]["class_mag_q"] = class_mags(oe, lab, EROS_LABELS)
    macho, _ = load(data, "macho_sample", "R")  # cleaning drops the -99 sentinels
    om = per_object(macho)
    # RR Lyrae change within 0.1 d: MACHO noise from the slow and the unlabeled stars only
    mlab = np.asarray(macho.column(S.LABEL).to_pylist(), dtype=object)
    slow_macho = np.isin(mlab, ["LPV_WoodA", "LPV_WoodB", "Cep_F", "EB", None])
    out["macho"] = calibrate(
        "macho",
        om,
        "R",
        48823.5,
        True,
        0.001,
        pair_noise(om, _err(om), rows_ok=slow_macho),
        rng,
        "calibrated: macho_sample R after cleaning (instrumental magnitudes)",
    )
    ogle, _ = load(data, "ogle2_microlensing", "I")
    oo = per_object(ogle)
    out["ogle"] = calibrate(
        "ogle",
        oo,
        "I",
        533.8,
        True,
        0.001,
        pair_noise(oo, _err(oo)),
        rng,
        "calibrated: ogle2_microlensing I",
    )
    return out


# --------------------------------------------------------------------------- figures
REAL_SETS = {  # survey -> (files, band, classes to simulate for the comparison)
    "asas": (
        ["asas_acvs"],
        "V",
        ["RRab", "RRc", "DSCT", "EB_contact", "EB_detached", "EB_semidetached", "Mira"],
    ),
    "eros": (["eros_lmc"], "R", ["RRab", "RRc", "Cep_F", "Cep_1O", "EB_detached", "Mira"]),
    "macho": (["macho_sample"], "R", None),
    "ogle": (["ogle2_microlensing"], "I", ["microlensing"]),
}


def _summary(o: dict) -> dict:
    """Numbers shown next to the calibration plots (real vs simulated)."""
    return {
        "objects": len(o["n"]),
        "n_obs_p10_50_90": np.percentile(o["n"], [10, 50, 90]).round(1).tolist(),
        "span_median_d": round(float(np.median(o["span"])), 1),
        "gap_p10_50_90_d": np.percentile(o["gap"], [10, 50, 90]).round(3).tolist(),
        "gap_frac_below_0.1d": round(float(np.mean(o["gap"] < 0.1)), 4),
        "gap_frac_above_60d": round(float(np.mean(o["gap"] > 60)), 4),
        "mag_p1_50_99": np.percentile(o["m"], [1, 50, 99]).round(2).tolist(),
        "err_p10_50_90": np.percentile(o["e"], [10, 50, 90]).round(4).tolist(),
    }


def _err_curve(o: dict, edges: np.ndarray):
    idx = np.digitize(o["m"], edges)
    mids, q = [], []
    for k in range(1, len(edges)):
        sel = idx == k
        if sel.sum() >= 50:
            mids.append(0.5 * (edges[k - 1] + edges[k]))
            q.append(np.percentile(o["e"][sel], [16, 50, 84]))
    return np.array(mids), np.array(q).reshape(-1, 3)


def make_figures(data: Path, out: Path) -> dict:
    """Calibration plots (simulated vs real) per calibrated survey, the documented surveys, a gallery."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from starcurve.data.simulate import classes as all_classes
    from starcurve.data.simulate import simulate

    out.mkdir(parents=True, exist_ok=True)
    numbers = {}
    for survey, (files, band, cls) in REAL_SETS.items():
        reals = {}
        for f in files:
            t, _ = load(data, f, band, exclude_test=(f == "asas_acvs"))
            reals[f] = per_object(t)
        if survey == "asas":
            t, _ = load(data, "asas3_unlabeled", "V")
            reals["asas3_unlabeled"] = per_object(t)
        n_sim = min(3000, max(len(o["n"]) for o in reals.values()) * 4)
        sim, _ = C.clean(simulate(survey, n_sim, cls, seed=0), max_err=5.0, min_obs=2)
        so = per_object(sim)
        numbers[survey] = {"simulated": _summary(so), **{k: _summary(v) for k, v in reals.items()}}
        fig, ax = plt.subplots(1, 5, figsize=(21, 3.8))
        styles = [("simulated", so, "C3")] + [
            (k, v, f"C{i}") for i, (k, v) in enumerate(reals.items())
        ]
        nmax = max(np.percentile(v["n"], 99.5) for _, v, _ in styles)
        for label, o, c in styles:
            kw = {"density": True, "histtype": "step", "color": c, "lw": 1.5, "label": label}
            ax[0].hist(o["n"], bins=np.linspace(0, nmax, 40), **kw)
            ax[1].hist(np.log10(np.maximum(o["gap"], 1e-4)), bins=np.linspace(-4, 3, 60), **kw)
            ax[3].hist(o["m"], bins=60, **kw)
        lo, hi = np.percentile(np.concatenate([v["m"] for _, v, _ in styles]), [0.5, 99.5])
        edges = np.linspace(lo, hi, 25)
        for label, o, c in styles:
            mids, q = _err_curve(o, edges)
            ax[2].plot(mids, q[:, 1], color=c, lw=1.5, label=label)
            ax[2].fill_between(mids, q[:, 0], q[:, 2], color=c, alpha=0.15)
        ax[0].set_xlabel("observations per light curve")
        ax[1].set_xlabel("log10 time gap between consecutive points [d]")
        ax[2].set_xlabel(f"{band} magnitude")
        ax[2].set_ylabel("mag_err: median, 16-84%")
        ax[2].set_yscale("log")
        ax[3].set_xlabel(f"{band} magnitude of the points")
        # real scatter vs magnitude: pairs of points close in time (constant simulated stars)
        cfg = json.loads((OUT / "surveys.json").read_text())["surveys"][survey]
        real_bins = cfg["noise_bins"]
        max_dt = cfg["outlier"]["max_dt"]
        const, _ = C.clean(simulate(survey, 2048, ["constant"], seed=1), min_obs=2)
        sim_bins = pair_noise(per_object(const), cfg["err"], max_dt=max_dt)["noise_bins"]
        ax[4].plot(real_bins["mag"], real_bins["sigma"], "o-", color="C0", label="real")
        ax[4].plot(sim_bins["mag"], sim_bins["sigma"], "s-", color="C3", label="simulated")
        ax[4].set_yscale("log")
        ax[4].set_xlabel(f"{band} magnitude")
        ax[4].set_ylabel(f"scatter of pairs < {max_dt} d apart")
        ax[4].legend(fontsize=8)
        numbers[survey]["pair_scatter"] = {"real": real_bins, "simulated_constant": sim_bins}
        ax[0].legend(fontsize=8)
        fig.suptitle(f"simulator calibration: '{survey}' (simulated, {n_sim} light curves) vs real")
        fig.tight_layout()
        fig.savefig(out / f"sim_calibration_{survey}.png", dpi=80)
        plt.close(fig)

    # documented surveys: what the simulator makes (no real file to compare with)
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    for i, survey in enumerate(["gaia", "ztf", "lsst"]):
        sim, _ = C.clean(simulate(survey, 2000, seed=0), min_obs=2)
        so = per_object(sim)
        numbers[survey] = {"simulated": _summary(so)}
        kw = {"density": True, "histtype": "step", "color": f"C{i}", "lw": 1.5, "label": survey}
        ax[0].hist(so["n"], bins=50, **kw)
        ax[1].hist(np.log10(np.maximum(so["gap"], 1e-4)), bins=np.linspace(-4, 3, 60), **kw)
        mids, q = _err_curve(so, np.linspace(*np.percentile(so["m"], [0.5, 99.5]), 25))
        ax[2].plot(mids, q[:, 1], color=f"C{i}", label=survey)
        ax[2].fill_between(mids, q[:, 0], q[:, 2], color=f"C{i}", alpha=0.15)
    ax[0].set_xlabel("observations per light curve")
    ax[1].set_xlabel("log10 time gap [d]")
    ax[2].set_xlabel("magnitude (G for gaia, r for ztf/lsst)")
    ax[2].set_ylabel("mag_err")
    ax[2].set_yscale("log")
    ax[0].legend()
    fig.suptitle("documented (not calibrated) cadences and errors: gaia, ztf, lsst")
    fig.tight_layout()
    fig.savefig(out / "sim_documented_surveys.png", dpi=80)
    plt.close(fig)

    # gallery: one light curve per class, ASAS-like cadence, folded with the true period when periodic
    names = all_classes()
    table = simulate("asas", 40 * len(names), seed=11, truth=True)
    lab = np.asarray(table.column(S.LABEL).to_pylist())
    per = table.column("period").to_numpy()
    t, off = S.flat(table, S.TIME)
    m = S.flat(table, S.MAG)[0]
    ncol = 4
    fig, axs = plt.subplots(-(-len(names) // ncol), ncol, figsize=(16, 13))
    for ax, name in zip(axs.ravel(), names, strict=False):
        cand = np.flatnonzero(lab == name)
        j = cand[np.argmax(np.diff(off)[cand])]  # the best-sampled example
        tt, mm = t[off[j] : off[j + 1]], m[off[j] : off[j + 1]]
        if np.isfinite(per[j]) and per[j] < 100:
            ph = (tt / per[j]) % 1.0
            ax.plot(np.concatenate([ph, ph + 1]), np.concatenate([mm, mm]), ".", ms=2)
            ax.set_xlabel(f"phase (P = {per[j]:.4g} d)")
        else:
            ax.plot(tt - tt[0], mm, ".", ms=2)
            ax.set_xlabel("days" + (f" (P = {per[j]:.0f} d)" if np.isfinite(per[j]) else ""))
        ax.invert_yaxis()
        ax.set_title(f"{name} ({len(tt)} points)")
    for ax in axs.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle("simulated light curves, survey 'asas' (V), one per class, seed 11")
    fig.tight_layout()
    fig.savefig(out / "sim_gallery.png", dpi=70)
    plt.close(fig)
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "sim_calibration.json").write_text(json.dumps(numbers, indent=1))
    return numbers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--rows", type=int, default=1500, help="catalogue rows kept per class")
    ap.add_argument("--figures", action="store_true", help="also write docs/figures/sim_*.png")
    ap.add_argument("--skip-tables", action="store_true", help="only the figures")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.skip_tables:
        rng = np.random.default_rng(0)
        info = ogle3_tables(args.data, args.out, args.rows, rng)
        surveys = calibrated_surveys(args.data, rng)
        surveys.update(documented_surveys(rng))
        for name, s in surveys.items():
            s["amp"] = AMP[s["band"]]
            if s["noise"] is None:  # documented surveys: the scatter is the quoted error
                s["noise"] = {k: s["err"][k] for k in ("a", "b", "c", "m0")}
        meta = {
            "derived_by": "scripts/derive_sim_tables.py",
            "catalogue_rows": info,
            "season_gap_days": SEASON_GAP,
        }
        (args.out / "surveys.json").write_text(
            json.dumps({"meta": meta, "surveys": surveys}, separators=(",", ":"))
        )
        for name, s in surveys.items():
            print(
                name,
                s["band"],
                s.get("stats", ""),
                "err",
                {k: round(v, 5) for k, v in s["err"].items()},
                "noise",
                {k: round(v, 5) for k, v in s["noise"].items()},
                "out",
                s["outlier"],
            )
    if args.figures:
        make_figures(args.data, ROOT / "docs" / "figures")


if __name__ == "__main__":
    main()
