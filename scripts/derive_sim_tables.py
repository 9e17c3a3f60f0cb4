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
    np.concatenate([[0.0, 0.0005, 0.001, 0.002, 0.005], np.linspace(0.01, 0.99, 99),
                    [0.995, 0.998, 0.999, 0.9995, 1.0]])
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
        info[cls] = {"catalogue_rows_usable": int(n_all), "rows_kept": int(len(d))}
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
        info[cls] = {"catalogue_rows_usable": int(n_all), "rows_kept": int(len(d))}
    pd.concat(parts).to_csv(out / "lpv.csv", index=False, float_format="%.5g")
    return info


# --------------------------------------------------------------------------- FS-1 test split
def fs1_test_ids(table) -> set[str]:
    """The FS-1 test objects of a labeled table (BENCHMARK.md rule 3), to keep them out."""
    try:  # use the project's implementation when it exists
        from starcurve.eval import fewshot  # noqa: F401

        if hasattr(fewshot, "test_ids"):
            return set(fewshot.test_ids(table))
    except ImportError:
        pass
    ids = np.asarray(table.column(S.ID).to_pylist())
    labels = np.asarray(table.column(S.LABEL).to_pylist(), dtype=object)
    test = set()
    for lab in sorted({x for x in labels if x is not None}):
        cls = np.sort(ids[labels == lab])
        if len(cls) < 30:
            continue
        perm = np.random.default_rng(1234).permutation(len(cls))
        test.update(cls[perm[: math.ceil(0.3 * len(cls))]])
    return test


# --------------------------------------------------------------------------- survey calibration
def load(data: Path, name: str, band: str, exclude_test: bool = False):
    t = io.read(data / f"{name}.parquet", band=band)
    if exclude_test:
        test = fs1_test_ids(t)
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
    return dict(
        t=t, m=m, e=e, r=r, n=n, gap=gap, grow=grow, season=season, active=active,
        n_seasons=n_seasons, mean_gap=mean_gap, first=t[off[:-1]],
        span=t[off[1:] - 1] - t[off[:-1]], median_mag=np.array(
            pd.Series(m).groupby(r).median().reindex(range(len(n))).to_numpy()),
    )


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
    x = 10 ** (0.4 * (mids - m0))

    def resid(p):
        a, b, c = np.exp(p)
        return 0.5 * np.log(a**2 + b * x + c * x**2) - np.log(med)

    p = least_squares(resid, np.log([np.min(med), np.median(med) ** 2, 1e-6]), method="lm").x
    a, b, c = np.exp(p)
    sigma_ln = float(np.median((np.log(hi) - np.log(lo)) / 2))
    return {
        "a": float(a), "b": float(b), "c": float(c), "m0": float(m0), "sigma_ln": sigma_ln,
        "min": float(np.percentile(e, 0.1)), "max": float(np.percentile(e, 99.9)),
        "fit_rms_ln": float(np.sqrt(np.mean(resid(p) ** 2))),
    }


def pair_noise(o: dict, max_dt: float = 0.1, rows_ok: np.ndarray | None = None) -> dict:
    """Noise scale (real scatter / quoted error) and outlier rate from near-simultaneous pairs."""
    same = np.diff(o["r"]) == 0
    dt = np.diff(o["t"])
    k = same & (dt < max_dt)
    if rows_ok is not None:
        k &= rows_ok[o["r"][1:]]
    dm = np.diff(o["m"])[k]
    sig = np.hypot(o["e"][:-1], o["e"][1:])[k]
    z = dm / sig
    scale = float(1.4826 * np.median(np.abs(z - np.median(z))))
    big = np.abs(z) > 5 * scale
    # a pair is an outlier pair if either point is one: p_pair ~ 2 p_point
    return {
        "noise_scale": scale,
        "outlier": {
            "p": float(big.mean() / 2),
            "scale": float(np.median(np.abs(dm[big]))) if big.any() else 0.3,
            "pairs": int(k.sum()),
            "max_dt": max_dt,
        },
    }


def calibrate(name: str, o: dict, band: str, t0: float, night: bool, quantum: float,
              noise: dict, rng: np.random.Generator, source: str, n_rows: int = 400) -> dict:
    """Summaries of one survey's real light curves (see module docstring)."""
    ok = (o["n"] >= 2) & np.isfinite(o["mean_gap"])
    idx = np.flatnonzero(ok)
    season_len = np.minimum(o["active"] / o["n_seasons"], YEAR)
    pick = rng.choice(idx, size=min(n_rows, len(idx)), replace=False)
    rows = np.column_stack([
        o["n"][pick], o["active"][pick], np.maximum(season_len[pick], 1.0),
        o["first"][pick] - o["first"].min(),
    ])
    ingap = ~o["season"] & ok[o["grow"]]
    shape = o["gap"][ingap] / o["mean_gap"][o["grow"][ingap]]
    gap_q = np.quantile(shape, GAP_LEVELS)
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
        "gap_q": np.round(gap_q, 5).tolist(),
        "night": night_d,
        "mag_q": np.round(np.quantile(o["median_mag"][ok], np.linspace(0, 1, 101)), 4).tolist(),
        "err": {**err_model_fit(o["m"], o["e"], m0), "quantum": quantum},
        **noise,
        "limit": {"mag": float(np.percentile(o["m"], 99.9)), "sigma": 0.15},
        "stats": {
            "objects": int(len(o["n"])),
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


def synth_gap_q(times: list[np.ndarray]) -> np.ndarray:
    shape = np.concatenate([np.diff(t) / np.mean(np.diff(t)) for t in times if len(t) > 2])
    return np.quantile(shape, GAP_LEVELS)


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
        "band": "G", "source": "documented (Gaia DR3 epoch photometry facts; see docs)",
        "calibrated": False, "t0": 1666.4,  # BJD - 2455197.5 (Gaia time), start of DR3
        "rows": np.column_stack([n_gaia, np.full(400, 1038.0), np.full(400, YEAR),
                                 np.zeros(400)]).tolist(),
        "gap_q": np.round(synth_gap_q(seqs), 5).tolist(),
        "night": None,
        "mag_dist": {"kind": "power", "lo": 12.0, "hi": 20.7, "slope": 0.3},
        "err": _err_from_points([13, 15, 17, 19, 20, 20.7], [0.001, 0.0012, 0.003, 0.01, 0.025, 0.045],
                                m0=17.0, quantum=0.0001),
        "noise_scale": 1.0, "outlier": {"p": 0.002, "scale": 0.3},
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
        "band": "r", "source": "documented (ZTF public survey facts; see docs)", "calibrated": False,
        "t0": 58194.0,  # MJD, March 2018
        "rows": np.column_stack([n_ztf, np.full(400, 5 * 240.0), np.full(400, 240.0),
                                 rng.uniform(0, 60, 400)]).tolist(),
        "gap_q": np.round(nightly(300, [1, 2, 2, 3, 3, 4], 0.15, 0.03, 0.25), 5).tolist(),
        "night": {"phase": 0.83, "width": 0.3},  # Palomar, UT-8 -> local midnight at JD frac ~0.83
        "mag_dist": {"kind": "power", "lo": 13.0, "hi": 20.8, "slope": 0.3},
        "err": _err_lsst(m5=20.6, gamma=0.039, sys=0.015, quantum=0.0001),
        "noise_scale": 1.0, "outlier": {"p": 0.005, "scale": 0.3},
        "limit": {"mag": 20.8, "sigma": 0.2},
    }
    n_lsst = np.clip(np.round(rng.normal(184, 25, 400)), 60, 300)
    out["lsst"] = {
        "band": "r", "source": "documented (Ivezic et al. 2019, WFD baseline; see docs)",
        "calibrated": False, "t0": 60980.0,  # MJD, late 2025
        "rows": np.column_stack([n_lsst, np.full(400, 10 * 180.0), np.full(400, 180.0),
                                 rng.uniform(0, 100, 400)]).tolist(),
        "gap_q": np.round(nightly(120, [2, 3, 4, 5, 7, 10, 14], 0.45, 0.023, 0.2), 5).tolist(),
        "night": {"phase": 0.69, "width": 0.3},  # Cerro Pachon, UT-4.7h
        "mag_dist": {"kind": "power", "lo": 16.5, "hi": 24.3, "slope": 0.3},
        "err": _err_lsst(m5=24.16, gamma=0.039, sys=0.005, quantum=0.0001),
        "noise_scale": 1.0, "outlier": {"p": 0.002, "scale": 0.3},
        "limit": {"mag": 24.5, "sigma": 0.2},
    }
    for v in out.values():
        v["gap_levels"] = GAP_LEVELS.round(6).tolist()
        v["rows_columns"] = ["n_obs", "active_days", "season_days", "start_offset"]
    return out


def _err_lsst(m5: float, gamma: float, sys: float, quantum: float) -> dict:
    """The LSST error model written in the simulator's form err^2 = a^2 + b x + c x^2."""
    return {"a": sys, "b": 0.04 - gamma, "c": gamma, "m0": m5, "sigma_ln": 0.05,
            "min": sys, "max": 1.0, "quantum": quantum}


def _err_from_points(mags, errs, m0: float, quantum: float) -> dict:
    mags, errs = np.asarray(mags, float), np.asarray(errs, float)
    x = 10 ** (0.4 * (mags - m0))
    p = least_squares(lambda p: 0.5 * np.log(np.exp(2 * p[0]) + np.exp(p[1]) * x
                                             + np.exp(p[2]) * x**2) - np.log(errs),
                      np.log([errs.min(), 1e-5, 1e-6])).x
    return {"a": float(np.exp(p[0])), "b": float(np.exp(p[1])), "c": float(np.exp(p[2])),
            "m0": m0, "sigma_ln": 0.1, "min": float(errs.min()), "max": 0.5, "quantum": quantum}


def calibrated_surveys(data: Path, rng: np.random.Generator) -> dict:
    out = {}
    # ASAS: cadence from the asas_acvs pool (FS-1 test objects excluded), errors from both files
    acvs, _ = load(data, "asas_acvs", "V", exclude_test=True)
    unl, _ = load(data, "asas3_unlabeled", "V")
    oa, ou = per_object(acvs), per_object(unl)
    asas = calibrate("asas", oa, "V", 2451868.5, True, 0.001, pair_noise(oa), rng,
                     "calibrated: asas_acvs V pool (cadence, noise) + asas3_unlabeled V (errors)")
    m = np.concatenate([oa["m"], ou["m"]])
    e = np.concatenate([oa["e"], ou["e"]])
    asas["err"] = {**err_model_fit(m, e, float(np.median(m))), "quantum": 0.001}
    out["asas"] = asas
    # EROS: no pairs < 0.5 d; use pairs < 1.5 d of Miras (P > 100 d: no intrinsic change in a day)
    eros, _ = load(data, "eros_lmc", "R")
    oe = per_object(eros)
    lab = np.asarray(eros.column(S.LABEL).to_pylist(), dtype=object)
    out["eros"] = calibrate("eros", oe, "R", 290.3, True, 0.01,
                            pair_noise(oe, max_dt=1.5, rows_ok=lab == "Mira"), rng,
                            "calibrated: eros_lmc R (noise from Mira pairs < 1.5 d apart)")
    macho, _ = load(data, "macho_sample", "R")  # cleaning drops the -99 sentinels
    om = per_object(macho)
    out["macho"] = calibrate("macho", om, "R", 48823.5, True, 0.001, pair_noise(om), rng,
                             "calibrated: macho_sample R after cleaning (instrumental magnitudes)")
    ogle, _ = load(data, "ogle2_microlensing", "I")
    oo = per_object(ogle)
    out["ogle"] = calibrate("ogle", oo, "I", 533.8, True, 0.001, pair_noise(oo), rng,
                            "calibrated: ogle2_microlensing I")
    return out


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
        meta = {"derived_by": "scripts/derive_sim_tables.py", "catalogue_rows": info,
                "season_gap_days": SEASON_GAP}
        (args.out / "surveys.json").write_text(
            json.dumps({"meta": meta, "surveys": surveys}, separators=(",", ":")))
        for name, s in surveys.items():
            print(name, s["band"], s.get("stats", ""), "err", {k: round(v, 5) for k, v in
                  s["err"].items()}, "k", round(s["noise_scale"], 3), "out", s["outlier"])
    if args.figures:
        from sim_figures import make_figures  # noqa: PLC0415  (scripts/ is on sys.path)

        make_figures(args.data, ROOT / "docs" / "figures")


if __name__ == "__main__":
    main()
