"""The feature baseline: per-object statistics and periodogram peaks, then a random forest.

Two feature back-ends compute one row of features per light curve of a clean table:

- ``"light-curve"``: the SNAD ``light-curve`` package (Rust, GPL-3.0, an optional extra imported
  only here) with exactly the feature list of ``BENCHMARK.md`` (35 numbers), including a fast
  Lomb-Scargle periodogram on an explicit linear grid from 0 to 20 cycles/day with 2^18 + 1
  frequencies. The library's default grid derives its top frequency from the mean sampling
  interval, which on seasonal cadences stops below about 1 cycle/day and misses RR Lyrae, contact
  binaries and delta Scuti stars.
- ``"numpy"``: a fallback in numpy only, with the same kinds of statistics and a floating-mean
  Lomb-Scargle periodogram computed for a whole batch of light curves at once with the
  Press & Rybicki (1989) extirpolation + FFT method, on a linear grid up to 20 cycles/day.

Both are vectorised over light curves (flat arrays + offsets, or Arrow lists handed to Rust), never
a Python loop per object. Non-finite feature values are returned as NaN; :class:`FeatureForest`
fills them with the training-set medians before its scikit-learn random forest.
"""

from __future__ import annotations

import importlib.util
from math import factorial

import numpy as np
import pyarrow as pa
import scipy.fft
from sklearn.base import BaseEstimator, ClassifierMixin
from tqdm.auto import tqdm

from starcurve.data import schema as S
from starcurve.errors import StarcurveError

F_MAX = 20.0  # cycles per day: the top of every periodogram grid here
N_FREQ_LC = 2**18 + 1  # light-curve's fast periodogram needs linspace(0, max, 2^k + 1)
N_PEAKS = 3


def light_curve_available() -> bool:
    return importlib.util.find_spec("light_curve") is not None


def extract_features(
    table: pa.Table, *, backend: str = "auto", progress: bool = False, n_jobs: int = -1
) -> tuple[np.ndarray, list[str]]:
    """Features of every row of a clean table: ``(X [rows, features] float64, names)``.

    ``backend`` is ``"light-curve"``, ``"numpy"`` or ``"auto"`` (light-curve when installed).
    Values that cannot be computed (e.g. too few points) are NaN.
    """
    if backend == "auto":
        backend = "light-curve" if light_curve_available() else "numpy"
    if backend == "light-curve":
        if not light_curve_available():
            raise StarcurveError(
                "the light-curve package is not installed: pip install 'starcurve[features]' "
                "(GPL-3.0), or use the numpy feature backend"
            )
        X, names = _light_curve_features(table, progress, n_jobs)
    elif backend == "numpy":
        X, names = numpy_features(table, progress=progress)
    else:
        raise StarcurveError(f"unknown feature backend '{backend}': use auto, light-curve or numpy")
    X = np.asarray(X, dtype=np.float64)
    X[~np.isfinite(X)] = np.nan
    return X, names


def feature_names(backend: str) -> list[str]:
    """The names of the features ``extract_features`` gives with ``backend``."""
    return list(light_curve_extractor().names) if backend == "light-curve" else list(NUMPY_NAMES)


def side_by_side(table: pa.Table, X: np.ndarray) -> np.ndarray:
    """Per-row vectors -> one row per object (first-appearance order), its bands' vectors side by
    side (bands sorted; a band the object lacks is NaN)."""
    ids = np.asarray(table.column(S.ID).to_pylist(), dtype=str)
    bands = np.asarray(table.column(S.BAND).to_pylist(), dtype=str)
    uniq, first, inv = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first)] = np.arange(len(uniq))
    names_b = sorted(set(bands))
    out = np.full((len(uniq), len(names_b) * X.shape[1]), np.nan)
    for k, b in enumerate(names_b):
        sel = bands == b
        out[rank[inv[sel]], k * X.shape[1] : (k + 1) * X.shape[1]] = X[sel]
    return out


# ----------------------------------------------------------------------------- light-curve


def light_curve_extractor():
    """The ``light_curve.Extractor`` of BENCHMARK.md (35 features)."""
    import light_curve as lc

    # light-curve takes angular frequencies (radians per day)
    freqs = np.linspace(0.0, 2 * np.pi * F_MAX, N_FREQ_LC)
    return lc.Extractor(
        lc.Amplitude(),
        lc.BeyondNStd(1),
        lc.BeyondNStd(2),
        lc.Cusum(),
        lc.Eta(),
        lc.EtaE(),
        lc.InterPercentileRange(0.02),
        lc.InterPercentileRange(0.10),
        lc.InterPercentileRange(0.25),
        lc.Kurtosis(),
        lc.LinearFit(),
        lc.LinearTrend(),
        lc.MagnitudePercentageRatio(0.4, 0.05),
        lc.MagnitudePercentageRatio(0.2, 0.05),
        lc.MaximumSlope(),
        lc.Mean(),
        lc.MedianAbsoluteDeviation(),
        lc.MedianBufferRangePercentage(0.1),
        lc.MedianBufferRangePercentage(0.2),
        lc.PercentAmplitude(),
        lc.ReducedChi2(),
        lc.Skew(),
        lc.StandardDeviation(),
        lc.StetsonK(),
        lc.WeightedMean(),
        lc.Periodogram(peaks=N_PEAKS, fast=True, freqs=freqs),
    )


def _arrow_light_curves(table: pa.Table) -> pa.ListArray:
    """The table's light curves as one Arrow ``List<Struct<t, m, sigma>>`` (float64), no copy loop."""
    t, off = S.flat(table, S.TIME)
    m = S.flat(table, S.MAG)[0].astype(np.float64)
    e = S.flat(table, S.ERR)[0].astype(np.float64)
    points = pa.StructArray.from_arrays(
        [pa.array(t.astype(np.float64)), pa.array(m), pa.array(e)], names=["t", "m", "sigma"]
    )
    return pa.ListArray.from_arrays(pa.array(off.astype(np.int32)), points)


def _light_curve_features(table: pa.Table, progress: bool, n_jobs: int):
    ext = light_curve_extractor()
    names = list(ext.names)
    lcs = _arrow_light_curves(table)
    fields = {"t": "t", "m": "m", "sigma": "sigma"}
    # Chunks only drive the progress bar; each chunk is one parallel Rust call.
    chunk = 256
    out = np.full((len(lcs), len(names)), np.nan)
    with tqdm(total=len(lcs), desc="features", unit="LC", disable=not progress) as bar:
        for a in range(0, len(lcs), chunk):
            part = lcs.slice(a, chunk)
            out[a : a + len(part)] = ext.many(
                part,
                arrow_fields=fields,
                fill_value=np.nan,
                sorted=True,
                check=False,
                n_jobs=n_jobs,
            )
            bar.update(len(part))
    return out, names


# ----------------------------------------------------------------------------- numpy fallback


class _Groups:
    """Flat points of many light curves with per-row reductions (rows must be non-empty)."""

    def __init__(self, table: pa.Table):
        self.t, self.off = S.flat(table, S.TIME)
        self.t = self.t.astype(np.float64)
        self.m = S.flat(table, S.MAG)[0].astype(np.float64)
        self.e = S.flat(table, S.ERR)[0].astype(np.float64)
        self.B = len(self.off) - 1
        self.n = np.diff(self.off).astype(np.float64)
        self.rows = S.row_index(self.off)
        self.start = self.off[:-1]
        # consecutive pairs inside one light curve
        self.pair = np.flatnonzero(self.rows[1:] == self.rows[:-1])

    def sum(self, x: np.ndarray) -> np.ndarray:
        return np.bincount(self.rows, x, minlength=self.B)

    def max(self, x: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(x, self.start) if len(x) else np.zeros(0)

    def min(self, x: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(x, self.start) if len(x) else np.zeros(0)

    def quantiles(self, x: np.ndarray, qs) -> list[np.ndarray]:
        """Quantiles of x within each row, interpolated as light-curve does (numpy "hazen")."""
        xs = x[np.lexsort((x, self.rows))]
        out = []
        for q in qs:
            pos = self.start + np.clip(q * self.n - 0.5, 0, self.n - 1)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, self.start + self.n.astype(np.int64) - 1)
            out.append(xs[lo] + (pos - lo) * (xs[hi] - xs[lo]))
        return out

    def pair_sum(self, x: np.ndarray) -> np.ndarray:
        return np.bincount(self.rows[self.pair], x, minlength=self.B)


def numpy_features(
    table: pa.Table, *, progress: bool = False, n_freq: int = 2**17, batch: int = 16
) -> tuple[np.ndarray, list[str]]:
    """Statistics and periodogram peaks in numpy (no light-curve package needed)."""
    g = _Groups(table)
    if g.B == 0:
        return np.zeros((0, len(NUMPY_NAMES))), list(NUMPY_NAMES)
    if (g.n == 0).any():
        raise StarcurveError("numpy features need a clean table (every light curve non-empty)")
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = _numpy_statistics(g)
    peaks = ls_peaks(table, n_freq=n_freq, batch=batch, progress=progress)
    return np.column_stack(stats + [peaks]), list(NUMPY_NAMES)


_STAT_NAMES = [
    "amplitude", "beyond_1_std", "beyond_2_std", "cusum", "eta", "eta_e",
    "inter_percentile_range_2", "inter_percentile_range_10", "inter_percentile_range_25",
    "kurtosis", "linear_fit_slope", "linear_fit_slope_sigma", "linear_fit_reduced_chi2",
    "linear_trend", "linear_trend_sigma", "linear_trend_noise",
    "magnitude_percentage_ratio_40_5", "magnitude_percentage_ratio_20_5", "maximum_slope",
    "mean", "median_absolute_deviation", "median_buffer_range_percentage_10",
    "median_buffer_range_percentage_20", "percent_amplitude", "chi2", "skew",
    "standard_deviation", "stetson_K", "weighted_mean",
]  # fmt: skip
NUMPY_NAMES = _STAT_NAMES + [
    f"periodogram_period{s}_{k}" for k in range(N_PEAKS) for s in ("", "_s_to_n")
]


def _numpy_statistics(g: _Groups) -> list[np.ndarray]:
    """The statistics of ``_STAT_NAMES``, in that order, as in light-curve's definitions."""
    n, r, m, t, e = g.n, g.rows, g.m, g.t, g.e
    mean = g.sum(m) / n
    d = m - mean[r]
    var = g.sum(d**2) / (n - 1)
    std = np.sqrt(var)
    w = 1.0 / e**2
    wmean = g.sum(w * m) / g.sum(w)
    mmax, mmin = g.max(m), g.min(m)
    amplitude = 0.5 * (mmax - mmin)
    beyond1 = g.sum((np.abs(d) > std[r]).astype(float)) / n
    beyond2 = g.sum((np.abs(d) > 2 * std[r]).astype(float)) / n
    # cusum: range of the cumulative sum of standardised deviations
    # (one cumsum over all points: rows whose std is 0 or NaN add zeros, so they cannot
    # spoil the rows after them, and get NaN at the end)
    x = d / (n * std)[r]
    cs = np.cumsum(np.where(np.isfinite(x), x, 0.0))
    cs -= np.concatenate([[0.0], cs])[g.start][r]
    cusum = np.where(std > 0, g.max(cs) - g.min(cs), np.nan)
    # eta (von Neumann) and its time-aware version
    i = g.pair
    dm, dt = m[i + 1] - m[i], t[i + 1] - t[i]
    eta = g.pair_sum(dm**2) / ((n - 1) * var)
    span = g.max(t) - g.min(t)
    eta_e = g.pair_sum((dm / dt) ** 2) * span**2 / ((n - 1) ** 3 * var)
    max_slope = np.zeros(g.B)
    np.maximum.at(max_slope, r[i], np.abs(dm / dt))
    qs = (0.02, 0.05, 0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.75, 0.8, 0.9, 0.95, 0.98)
    q = dict(zip(qs, g.quantiles(m, qs)))
    median = q[0.5]
    mad = g.quantiles(np.abs(m - median[r]), [0.5])[0]
    skew = n / ((n - 1) * (n - 2)) * g.sum(d**3) / std**3
    kurt = (n * (n + 1) / ((n - 1) * (n - 2) * (n - 3)) * g.sum(d**4) / var**2
            - 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))  # fmt: skip
    # ordinary least-squares trend and the error-weighted linear fit
    tm = t - (g.sum(t) / n)[r]
    stt = g.sum(tm**2)
    slope = g.sum(tm * d) / stt
    resid = d - slope[r] * tm
    noise = np.sqrt(g.sum(resid**2) / (n - 2))
    slope_sigma = noise / np.sqrt(stt)
    sw, swt, swm = g.sum(w), g.sum(w * t), g.sum(w * m)
    tw = t - (swt / sw)[r]
    wslope = g.sum(w * tw * (m - (swm / sw)[r])) / g.sum(w * tw**2)
    wresid = m - (swm / sw)[r] - wslope[r] * tw
    wchi2 = g.sum(w * wresid**2) / (n - 2)
    wslope_sigma = 1.0 / np.sqrt(g.sum(w * tw**2))
    near = lambda f: g.sum((np.abs(m - median[r]) < (f * amplitude)[r]).astype(float)) / n
    percent_amp = np.maximum(mmax - median, median - mmin)
    chi2 = g.sum(w * (m - wmean[r]) ** 2) / (n - 1)
    delta = np.sqrt(n / (n - 1))[r] * (m - wmean[r]) / e
    stetson_k = (g.sum(np.abs(delta)) / n) / np.sqrt(g.sum(delta**2) / n)
    spread = q[0.95] - q[0.05]
    return [
        amplitude, beyond1, beyond2, cusum, eta, eta_e,
        q[0.98] - q[0.02], q[0.9] - q[0.1], q[0.75] - q[0.25],
        kurt, wslope, wslope_sigma, wchi2, slope, slope_sigma, noise,
        (q[0.6] - q[0.4]) / spread, (q[0.8] - q[0.2]) / spread, max_slope,
        mean, mad, near(0.1), near(0.2), percent_amp, chi2, skew, std, stetson_k, wmean,
    ]  # fmt: skip


def _bitceil(n: int) -> int:
    return 1 << int(np.ceil(np.log2(n)))


def _extirpolate(x: np.ndarray, y: np.ndarray, rows: np.ndarray, B: int, N: int, M: int = 4):
    """Spread weights y at fractional grid positions x (per row) onto B regular grids of N cells.

    Lagrange extirpolation (Press & Rybicki 1989): the M nearest cells receive weights such that
    sums of smooth functions over the grid match the sums over the original points.
    """
    base = rows.astype(np.int64) * N
    exact = x == np.round(x)  # the Lagrange weights below would divide by zero there
    idx = [base[exact] + np.round(x[exact]).astype(np.int64) % N]
    val = [y[exact]]
    x, y, base = x[~exact], y[~exact], base[~exact]
    ilo = np.clip(np.floor(x - M // 2).astype(np.int64), 0, N - M)
    num = y * np.prod(x - ilo - np.arange(M)[:, None], axis=0)
    den = float(factorial(M - 1))
    for j in range(M):  # M (4) passes over all points, not a loop per light curve
        if j > 0:
            den *= j / (j - M)
        ind = ilo + (M - 1 - j)
        idx.append(base + ind)
        val.append(num / (den * (x - ind)))
    out = np.bincount(np.concatenate(idx), np.concatenate(val), minlength=B * N)
    return out.reshape(B, N)


def _trig_sums(dt, h, rows, B, df, n_freq, n_fft):
    """C_k = sum h cos(2 pi k df dt), S_k = sum h sin(...), k < n_freq, per row, via one rfft."""
    grid = _extirpolate((dt * n_fft * df) % n_fft, h, rows, B, n_fft)
    f = scipy.fft.rfft(grid, axis=1)[:, :n_freq]
    return f.real, -f.imag


def lomb_scargle(table: pa.Table, freqs_df: float, n_freq: int) -> np.ndarray:
    """Lomb-Scargle power ([rows, n_freq]) at frequencies ``k * freqs_df``, k = 0..n_freq-1
    (cycles per time unit), for every row at once.

    The classical periodogram of the mean-subtracted magnitudes with equal weights (errors are not
    used), as light-curve's ``Periodogram`` computes it, normalised by the variance. The
    trigonometric sums come from Press & Rybicki's extirpolation onto an FFT grid.
    """
    g = _Groups(table)
    dt = g.t - g.t[g.start][g.rows]  # the periodogram is shift invariant: start each row at 0
    y = g.m - (g.sum(g.m) / g.n)[g.rows]
    n_fft = _bitceil(5 * n_freq)
    Ch, Sh = _trig_sums(dt, y, g.rows, g.B, freqs_df, n_freq, n_fft)
    C2, S2 = _trig_sums(dt, np.ones_like(y), g.rows, g.B, 2 * freqs_df, n_freq, n_fft)
    n = g.n[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        # tau shifts the time origin so that the sine and cosine terms decouple
        hyp = np.hypot(C2, S2)
        c2w = C2 / hyp
        cw = np.sqrt(0.5 * (1 + c2w))
        sw = np.sign(S2) * np.sqrt(0.5 * (1 - c2w))
        YC = Ch * cw + Sh * sw
        YS = Sh * cw - Ch * sw
        CC = 0.5 * (n + hyp)
        SS = 0.5 * (n - hyp)
        power = 0.5 * (YC**2 / CC + YS**2 / SS) / (g.sum(y**2)[:, None] / (n - 1))
    power[:, 0] = 0.0  # frequency 0 is the mean, not a period
    return np.nan_to_num(power, nan=0.0, posinf=0.0, neginf=0.0)


def ls_peaks(
    table: pa.Table, *, n_freq: int = 2**17, f_max: float = F_MAX, n_peaks: int = N_PEAKS,
    batch: int = 16, progress: bool = False,
) -> np.ndarray:  # fmt: skip
    """Period (days) and signal-to-noise of the ``n_peaks`` highest periodogram peaks per row.

    Grid: ``n_freq`` frequencies from 0 to ``f_max`` cycles/day, the same for every light curve.
    Signal-to-noise is (peak power - mean power) / std of power, as light-curve defines it.
    Light curves with fewer than 3 points give NaN. Rows are processed in batches of ``batch``
    (memory ~ batch x 8 x 5 n_freq bytes).
    """
    df = f_max / (n_freq - 1)
    out = np.full((table.num_rows, 2 * n_peaks), np.nan)
    bar = tqdm(total=table.num_rows, desc="periodogram", unit="LC", disable=not progress)
    for a in range(0, table.num_rows, batch):
        part = table.slice(a, batch)
        bar.update(part.num_rows)
        p = lomb_scargle(part, df, n_freq)
        peak = np.zeros_like(p, dtype=bool)
        peak[:, 1:-1] = (p[:, 1:-1] > p[:, :-2]) & (p[:, 1:-1] >= p[:, 2:])
        score = np.where(peak, p, -np.inf)
        top = np.argsort(-score, axis=1)[:, :n_peaks]
        val = np.take_along_axis(score, top, axis=1)
        snr = (val - p.mean(1, keepdims=True)) / p.std(1, keepdims=True)
        with np.errstate(divide="ignore"):
            period = 1.0 / (top * df)
        ok = np.isfinite(val) & (S.lengths(part)[:, None] >= 3)
        out[a : a + len(p), 0::2] = np.where(ok, period, np.nan)
        out[a : a + len(p), 1::2] = np.where(ok, snr, np.nan)
    bar.close()
    return out


# ----------------------------------------------------------------------------- the forest


class FeatureForest(ClassifierMixin, BaseEstimator):
    """Median imputation (training-set medians; infinities count as missing) + a scikit-learn
    ``RandomForestClassifier``: the FS-1 probe on feature vectors, a scikit-learn estimator."""

    def __init__(self, n_estimators: int = 500, random_state: int = 0, n_jobs: int = -1):
        self.n_estimators, self.random_state, self.n_jobs = n_estimators, random_state, n_jobs

    def fit(self, X: np.ndarray, y) -> FeatureForest:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        self.pipeline_ = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            RandomForestClassifier(n_estimators=self.n_estimators, random_state=self.random_state,
                                   n_jobs=self.n_jobs),
        )  # fmt: skip
        self.pipeline_.fit(_finite(X), y)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict(_finite(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict_proba(_finite(X))


def _finite(X: np.ndarray) -> np.ndarray:
    """Infinities become NaN so that the imputer fills them too."""
    X = np.array(X, dtype=np.float64)
    X[~np.isfinite(X)] = np.nan
    return X
