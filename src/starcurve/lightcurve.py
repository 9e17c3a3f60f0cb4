"""One object's light curve to look at: plot, periodogram, fold, the encoder's reconstruction.

``light_curve(source, object_id)`` builds a :class:`LightCurve` (one object, one or several bands)
from anything ``starcurve.read`` accepts (a table row of the nested Arrow table, a Parquet or text
file, a pandas DataFrame, ``(time, mag, mag_err)`` arrays) or from a ``lightkurve.LightCurve`` or an
astropy ``TimeSeries`` (optional: converted only when given one). The points are cleaned with the
core ``clean`` (what it drops is in ``.report``).

- ``.periodogram()``: the Lomb-Scargle power of each band on the grid of the period-aware views
  (``data/views.py``: 0..20 cycles/day), computed by the feature baseline's ``lomb_scargle``; the
  best period is the views' refined peak (``views.periods``), the one the ``pv1`` encoder uses.
- ``.fold(period=None, multiple=1)``: folded at ``multiple x period`` (default: the best period of
  the band with the highest peak) by ``views.fold_windows``, so phase 0 is the brightest phase
  (``multiple=1``) or the faintest (``multiple=2``, the primary eclipse of a binary whose
  periodogram peak is half its orbital period).
- ``.reconstruct(model)``: the masked-observation prediction of the encoder, as in pretraining: the
  points of each window are hidden in three interleaved passes (every third point; a third of the
  window hidden, as the 32% of pretraining) and each hidden magnitude is predicted from the visible
  rest, so every observation gets one prediction it did not see.

Plots follow the habits of the field: magnitudes increase downward (inverted y axis), time in days
(a round offset subtracted and named in the label), error bars on every point, phase over two cycles.
``starcurve plot`` draws the four panels (light curve, periodogram, folds at P and 2P) in one PNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from starcurve.cli import OUTPUT_FILE, band_option, columns_option, input_option, output_option
from starcurve.data import schema as S
from starcurve.data.clean import CleanReport, clean
from starcurve.data.io import DEFAULT_ZERO_POINT, flux_to_mag, from_arrays, read
from starcurve.errors import StarcurveError

RECON_PASSES = 3  # every point hidden once; a third of each window hidden per pass
DAY_FORMATS = ("jd", "mjd", "bkjd", "btjd")  # astropy Time formats that count days
COLORS = {"V": "tab:green", "B": "tab:blue", "R": "tab:red", "I": "darkred", "G": "tab:olive"}


# ----------------------------------------------------------------------------- building one


class LightCurve:
    """The clean points of one object, one row per band (the nested table's layout)."""

    def __init__(self, table: pa.Table, report: CleanReport | None = None):
        ids = pc.unique(table.column(S.ID)).to_pylist()
        if len(ids) != 1:
            raise StarcurveError(f"a LightCurve holds one object; got {len(ids)}: {ids[:3]}")
        self.table, self.report = table, report
        self.object_id: str = ids[0]
        self.bands: list[str] = table.column(S.BAND).to_pylist()
        self.label = table.column(S.LABEL)[0].as_py() if S.LABEL in table.column_names else None

    def __repr__(self) -> str:
        n = S.lengths(self.table).tolist()
        return f"LightCurve({self.object_id!r}, bands={self.bands}, points={n})"

    def __len__(self) -> int:
        return int(S.lengths(self.table).sum())

    def arrays(self, band: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time [d], mag, mag_err) of one band (default: the first)."""
        i = self.bands.index(band) if band is not None else 0
        row = self.table.slice(i, 1)
        return tuple(S.flat(row, c)[0].astype(np.float64) for c in S.LIST_COLUMNS)

    def periodogram(self) -> Periodogram:
        """Lomb-Scargle power of every band and its best period (see the module docstring)."""
        from starcurve.data.views import F_MAX, N_FREQ, periods
        from starcurve.models.forest import lomb_scargle

        df = F_MAX / (N_FREQ - 1)
        p = periods(self.table)
        power = lomb_scargle(self.table, df, N_FREQ)
        return Periodogram(np.arange(N_FREQ) * df, power, 1.0 / p.freq, p.power, self.bands)

    def best_period(self) -> float:
        """Period (days) of the highest periodogram peak over the bands."""
        pg = self.periodogram()
        return float(pg.period[pg.best])

    def fold(self, period: float | None = None, multiple: int = 1) -> FoldedLightCurve:
        """Every band folded at ``multiple * period`` days (``period``: the best one if None)."""
        from starcurve.data.views import fold_windows

        if period is None:
            period = self.best_period()
        if not (np.isfinite(period) and period > 0):
            raise StarcurveError(f"period must be a positive number of days, got {period}")
        n = int(S.lengths(self.table).max())
        # fold_windows carries each point's error along with it; carrying point numbers in that
        # column instead gives the permutation, so predictions and errors fold with their points
        t_off = S.flat(self.table, S.TIME)[1]
        number = S.with_lists(self.table, t_off, mag_err=np.arange(t_off[-1], dtype=np.float32))
        freq = np.full(self.table.num_rows, 1.0 / period)
        w = fold_windows(number, freq, multiple, n=n)
        index = [w.err[i][w.mask[i]].astype(np.int64) - t_off[i] for i in range(len(w))]
        return FoldedLightCurve(
            self, period * multiple, [w.time[i][w.mask[i]] for i in range(len(w))], index
        )

    def reconstruct(self, model=None, batch_size: int = 64) -> Reconstruction:
        """The encoder's masked-observation prediction of every point (``model``: a loaded model,
        a model folder, or None for the shipped model)."""
        from starcurve.models.hub import Model, load_model

        model = model if isinstance(model, Model) else load_model(model)
        pred = masked_predictions(model, self.table, batch_size)
        return Reconstruction(self, pred, str(model.path or model.config.name))

    def plot(self, ax=None, *, recon: Reconstruction | None = None, title: bool = True):
        """Magnitude against time with error bars, every band; ``recon`` overlays predictions."""
        ax = ax or _axes()
        t0 = _time_offset(S.flat(self.table, S.TIME)[0])
        for i, b in enumerate(self.bands):
            t, m, e = self.arrays(b)
            _points(ax, t - t0, m, e, b, len(self.bands) > 1)
            if recon is not None:
                _predictions(ax, t - t0, recon.pred[i], i == 0)
        ax.set_xlabel(f"time − {t0:.0f} [d]" if t0 else "time [d]")
        _mag_axis(ax, self.bands)
        return _finish(ax, self._title() if title else None)

    def _title(self) -> str:
        label = f" ({self.label})" if self.label else ""
        return f"{self.object_id}{label}, {len(self)} points"

    def overview(self, *, period: float | None = None, recon: Reconstruction | None = None):
        """The four panels of ``starcurve plot`` in one figure: light curve, periodogram, folded at
        the period and at twice it. Returns the matplotlib figure."""
        from starcurve.eval.report import pyplot

        pg = self.periodogram()
        period = float(pg.period[pg.best]) if period is None else period
        fig, axes = pyplot().subplots(2, 2, figsize=(10, 6.4))
        self.plot(axes[0, 0], recon=recon, title=False)
        pg.plot(axes[0, 1], mark=period)
        for ax, k in ((axes[1, 0], 1), (axes[1, 1], 2)):
            self.fold(period, k).plot(ax, recon=recon)
        head = self._title()
        if recon is not None:
            head += (
                f"; masked prediction RMSE {recon.rmse:.3f} mag (band mean: {recon.baseline:.3f})"
            )
        fig.suptitle(head, fontsize=10)
        fig.tight_layout()
        return fig


def light_curve(
    source,
    object_id: str | None = None,
    *,
    band: str | None = None,
    columns=None,
    flux: bool = False,
    zero_point: float = DEFAULT_ZERO_POINT,
) -> LightCurve:
    """One object's ``LightCurve`` from a table, file, DataFrame, arrays, ``lightkurve.LightCurve``
    or astropy ``TimeSeries`` (see the module docstring). ``object_id`` is needed when the source
    holds several objects; ``band`` keeps only these bands (comma-separated). ``columns``, ``flux``,
    ``zero_point``: as ``starcurve.read`` (for a TimeSeries, ``columns`` names its magnitude or flux
    columns)."""
    if _is_timeseries(source):
        table = read(from_timeseries(source, columns=columns, zero_point=zero_point), band=band)
    else:
        table = read(source, columns=columns, band=band, flux=flux, zero_point=zero_point)
    if band is not None and table.num_rows == 0:
        raise StarcurveError(f"no light curve in band {band!r} in {_name(source)}")
    curves = light_curves(table, None if object_id is None else [object_id], _name(source))
    return next(iter(curves.values()))


def light_curves(table: pa.Table, ids=None, what: str = "the input") -> dict[str, LightCurve]:
    """``LightCurve`` of each object ``ids`` (None: the one object of a one-object table) of a
    table as ``read`` gives it, keyed by id; a clear error for an unknown id or an empty curve."""
    have = pc.unique(table.column(S.ID)).to_pylist()
    if ids is None:
        if len(have) != 1:
            raise StarcurveError(f"{what} holds {len(have)} objects; name one (e.g. {have[:3]})")
        ids = have
    ids = [str(i) for i in ids]
    missing = sorted(set(ids) - set(have))
    if missing:
        raise StarcurveError(
            f"object(s) {missing[:3]} not in {what} ({len(have)} objects, e.g. {have[:3]})"
        )
    good, report = clean(table.filter(pc.is_in(table.column(S.ID), pa.array(ids))))
    out = {}
    for i in ids:
        rows = good.filter(pc.equal(good.column(S.ID), i))
        if rows.num_rows == 0:
            why = [f"{k}: {v}" for k, v in report.removed.items() if k.startswith(f"{i}/")]
            raise StarcurveError(f"object {i!r} has no usable point ({'; '.join(why[:2])})")
        out[i] = LightCurve(rows, report)
    return out


def _name(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else "the input"


def _is_timeseries(source) -> bool:
    mod = type(source).__module__
    return mod.startswith(("lightkurve", "astropy")) and hasattr(source, "time")


def from_timeseries(ts, *, columns=None, zero_point: float = DEFAULT_ZERO_POINT) -> pa.Table:
    """The nested table of a ``lightkurve.LightCurve`` or astropy ``TimeSeries`` (one row).

    Time: the ``Time`` column's own value when its format counts days (jd, mjd, bkjd, btjd), else
    MJD. Values: a ``mag`` column (unit mag) is used as it is; otherwise the ``flux`` column is
    turned into magnitudes as ``read(flux=True)`` does: a flux density (Jy-like unit) through
    microjansky and the AB zero point 23.9, any other flux (e-/s, relative) with ``zero_point``
    (an instrumental magnitude). ``columns`` maps ``mag``/``mag_err`` to other column names.
    """
    import astropy.units as u

    cols = dict(columns or {})
    names = list(ts.colnames)
    value = cols.get(S.MAG) or next((c for c in ("mag", "flux") if c in names), None)
    if value is None or value not in names:
        raise StarcurveError(
            f"the time series has no {value or 'mag or flux'} column; columns: "
            f"{names}. Name it with columns={{'mag': NAME, 'mag_err': NAME}}"
        )
    err = cols.get(S.ERR) or f"{value}_err"
    if err not in names:
        raise StarcurveError(f"the time series has no error column {err!r}; columns: {names}")
    t = ts.time
    time = np.asarray(t.value if t.format in DAY_FORMATS else t.mjd, np.float64)
    v, e = ts[value], ts[err]
    unit = getattr(v, "unit", None)
    is_mag = unit is not None and (unit == u.mag or isinstance(unit, u.MagUnit))
    meta = getattr(ts, "meta", {}) or {}
    oid = str(meta.get("OBJECT") or meta.get("LABEL") or meta.get("TARGETID") or "lc0")
    band = str(cols.get(S.BAND) or meta.get("FILTER") or meta.get("MISSION") or "unknown")
    if is_mag or (unit is None and value == "mag"):
        return from_arrays([time], [_values(v)], [_values(e)], ids=[oid], band=band)
    zp = zero_point
    if unit is not None and unit.is_equivalent(u.Jy):
        v, e, zp = v.to(u.uJy), e.to(u.uJy), DEFAULT_ZERO_POINT
    return flux_to_mag(from_arrays([time], [_values(v)], [_values(e)], ids=[oid], band=band), zp)


def _values(col) -> np.ndarray:
    """A column's numbers as float64; masked entries become NaN (cleaning drops and counts them)."""
    x = getattr(col, "value", col)
    return np.ma.filled(np.ma.asarray(x, dtype=np.float64), np.nan)


# ----------------------------------------------------------------------------- what it shows


@dataclass
class Periodogram:
    """Lomb-Scargle power of each band on one frequency grid, and each band's best period."""

    frequency: np.ndarray  # cycles/day, [n_freq]
    power: np.ndarray  # [bands, n_freq], normalised by the variance (classical LS)
    period: np.ndarray  # days, best period of each band (refined peak)
    peak: np.ndarray  # power of that peak, [bands]
    bands: list[str]

    @property
    def best(self) -> int:
        """The band with the highest peak."""
        return int(np.argmax(self.peak))

    def plot(self, ax=None, *, mark: float | None = None):
        """Power against period (log axis, days); the best (or ``mark``ed) period is drawn."""
        ax = ax or _axes()
        f = self.frequency[1:]
        for i, b in enumerate(self.bands):
            ax.plot(1.0 / f, self.power[i, 1:], lw=0.6, color=_color(b, i), label=f"band {b}")
        mark = float(self.period[self.best]) if mark is None else mark
        ax.axvline(mark, color="k", ls="--", lw=0.8, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlim(1.0 / f[-1], min(1.0 / f[0], 1e4))
        ax.set_xlabel("period [d]")
        ax.set_ylabel("Lomb-Scargle power (/ variance)")
        return _finish(ax, f"periodogram: P = {_days(mark)}")


@dataclass
class FoldedLightCurve:
    """Every band of a light curve folded at ``period`` days: phases in [0, 1) per band."""

    source: LightCurve
    period: float
    phase: list[np.ndarray]  # per band, sorted
    index: list[np.ndarray]  # per band, each phase's point in the band's time order

    def arrays(self, band: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(phase, mag, mag_err) of one band (default: the first), in phase order."""
        i = self.source.bands.index(band) if band is not None else 0
        _, m, e = self.source.arrays(self.source.bands[i])
        return self.phase[i].astype(np.float64), m[self.index[i]], e[self.index[i]]

    def plot(self, ax=None, *, recon: Reconstruction | None = None, cycles: int = 2):
        """Magnitude against phase over ``cycles`` cycles, error bars, inverted magnitude axis."""
        ax = ax or _axes()
        bands = self.source.bands
        for i, b in enumerate(bands):
            ph, m, e = self.arrays(b)
            reps = np.concatenate([ph + k for k in range(cycles)])
            _points(ax, reps, np.tile(m, cycles), np.tile(e, cycles), b, len(bands) > 1)
            if recon is not None:
                _predictions(ax, reps, np.tile(recon.pred[i][self.index[i]], cycles), i == 0)
        ax.set_xlim(0, cycles)
        ax.set_xlabel(f"phase (P = {_days(self.period)})")
        _mag_axis(ax, bands)
        return _finish(ax, f"folded at {_days(self.period)}")


@dataclass
class Reconstruction:
    """The encoder's prediction of every point while it was hidden (``pred`` per band)."""

    source: LightCurve
    pred: list[np.ndarray]  # per band, aligned with the band's points in time order
    model: str

    def _resid(self, baseline: bool) -> np.ndarray:
        parts = []
        for i, b in enumerate(self.source.bands):
            _, m, _ = self.source.arrays(b)
            parts.append(m - (np.mean(m) if baseline else self.pred[i]))
        return np.concatenate(parts)

    @property
    def rmse(self) -> float:
        """RMSE (mag) of the predictions of the hidden points."""
        return float(np.sqrt(np.mean(self._resid(False) ** 2)))

    @property
    def baseline(self) -> float:
        """RMSE (mag) of predicting each band's mean magnitude instead (the score to beat)."""
        return float(np.sqrt(np.mean(self._resid(True) ** 2)))

    def plot(self, ax=None):
        """The data with the predictions over them, against time."""
        ax = self.source.plot(ax, recon=self)
        ax.set_title(
            f"{self.source.object_id}: masked prediction, RMSE {self.rmse:.3f} mag "
            f"(band mean {self.baseline:.3f})",
            fontsize=9,
        )
        return ax


def masked_predictions(model, table: pa.Table, batch_size: int = 64) -> list[np.ndarray]:
    """Per row of a clean table, the encoder's prediction of each point from the other points of
    its windows with that point hidden (``RECON_PASSES`` interleaved passes; a point in two windows,
    the last window of a long light curve, gets the mean of its two predictions)."""
    import torch

    from starcurve.data.windows import window_starts, windows

    cfg = model.config
    w = windows(table, cfg.window, mode="consecutive")
    start = window_starts(S.flat(table, S.TIME)[1], cfg.window, "consecutive")[0]
    ctx = band = None
    if cfg.multiview:  # the raw view of a period-aware model also takes the period and the band
        from starcurve.data.views import band_index, cached_periods

        ctx = cached_periods(table).context()[w.row]
        band = band_index(table, cfg.bands)[w.row]
    n_pts = int(S.lengths(table).sum())
    sums, counts = np.zeros(n_pts), np.zeros(n_pts)
    pos = np.arange(w.mask.shape[1])
    enc = model.encoder
    dev = next(enc.parameters()).device
    tensor = lambda a, idx: torch.from_numpy(np.ascontiguousarray(a[idx])).to(dev)
    with torch.inference_mode():
        for s in range(0, len(w), batch_size):
            idx = np.arange(s, min(s + batch_size, len(w)))
            for k in range(RECON_PASSES):
                hidden = w.mask[idx] & (pos % RECON_PASSES == k)[None, :]
                extra = {} if ctx is None else {"ctx": tensor(ctx, idx), "band": tensor(band, idx)}
                pred, _ = enc(
                    tensor(w.time, idx),
                    tensor(w.mag, idx),
                    tensor(w.mask, idx),
                    tensor(w.err, idx),
                    torch.from_numpy(hidden).to(dev),
                    **extra,
                )
                mag = pred.float().cpu().numpy() + w.mag_mean[idx][:, None]
                r, c = np.nonzero(hidden)
                flat = start[idx][r] + c
                np.add.at(sums, flat, mag[r, c])
                np.add.at(counts, flat, 1)
    pred = sums / np.maximum(counts, 1)
    off = S.flat(table, S.TIME)[1]
    return [pred[off[i] : off[i + 1]] for i in range(table.num_rows)]


# ----------------------------------------------------------------------------- drawing helpers


def _axes():
    from starcurve.eval.report import pyplot

    return pyplot().subplots(figsize=(7, 4))[1]


def _color(band: str, i: int) -> str:
    return COLORS.get(band, f"C{i}")


def _points(ax, x, m, e, band: str, legend: bool) -> None:
    """Points with error bars; many points get smaller markers so the shape stays visible."""
    i = 0 if not legend else len(ax.lines)
    ms = 2.5 if len(x) < 500 else 1.5
    ax.errorbar(
        x,
        m,
        yerr=e,
        fmt="o",
        ms=ms,
        lw=0.4,
        elinewidth=0.4,
        alpha=0.7,
        color=_color(band, i),
        ecolor="0.6",
        label=f"band {band}" if legend else None,
    )


def _mag_axis(ax, bands: list[str]) -> None:
    ax.set_ylabel(f"magnitude ({', '.join(bands)}) [mag]")
    if not ax.yaxis_inverted():
        ax.invert_yaxis()  # brighter is up


def _predictions(ax, x, pred, first: bool) -> None:
    ax.plot(
        x, pred, "x", ms=3, color="black", alpha=0.6, label="masked prediction" if first else None
    )


def _finish(ax, title: str | None):
    """The panel's title and legend (when something is labelled); returns the axes."""
    if title:
        ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", markerscale=2)
    return ax


def _time_offset(t: np.ndarray) -> float:
    """A round number of days to subtract (e.g. 2450000 from a JD) so the axis stays readable."""
    if len(t) == 0 or np.nanmin(t) < 1e4:
        return 0.0
    return float(math.floor(np.nanmin(t) / 1000.0) * 1000.0)


def _days(p: float) -> str:
    return f"{p:.5g} d"


def contact_sheet(
    curves: list[LightCurve], titles: list[str], path, *, cols: int = 5, dpi: int = 64
) -> Path:
    """Small light-curve panels (magnitude against time, inverted) in a grid, written as a PNG."""
    from starcurve.eval.report import pyplot, save_figure

    if not curves:
        raise StarcurveError("no light curve to draw on the contact sheet")
    rows = -(-len(curves) // cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False)
    for ax, lc, title in zip(axes.flat, curves, titles):
        t0 = _time_offset(S.flat(lc.table, S.TIME)[0])
        for i, b in enumerate(lc.bands):
            t, m, e = lc.arrays(b)
            ax.errorbar(
                t - t0,
                m,
                yerr=e,
                fmt="o",
                ms=1,
                lw=0.3,
                elinewidth=0.3,
                alpha=0.7,
                color=_color(b, i),
                ecolor="0.7",
            )
        ax.invert_yaxis()
        ax.set_title(title, fontsize=6)
        ax.tick_params(labelsize=5)
        ax.set_xlabel(f"time − {t0:.0f} [d]" if t0 else "time [d]", fontsize=5)
        ax.set_ylabel("mag", fontsize=5)
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path, dpi)


# ----------------------------------------------------------------------------- the command


@click.command("plot")
@input_option()
@click.option(
    "--object", "object_id", default=None, help="Object id (needed if the input holds several)."
)
@output_option(OUTPUT_FILE, "The figure (PNG).")
@band_option
@columns_option
@click.option("--flux", is_flag=True, help="The mag/mag_err columns hold fluxes (converted).")
@click.option(
    "--period", type=float, default=None, help="Fold at this period in days [default: the best]."
)
@click.option(
    "--model",
    "model_dir",
    default=None,
    help="Overlay the encoder's masked predictions: a model folder, or 'default' for the "
    "shipped model.",
)
@click.option("--dpi", default=100, show_default=True, type=int, help="PNG resolution.")
def plot_cmd(input_path, object_id, output, band, columns, flux, period, model_dir, dpi) -> None:
    """Plot one object: light curve, periodogram, folded at the best period and at twice it."""
    from starcurve.eval.report import save_figure

    lc = light_curve(input_path, object_id, band=band, columns=columns, flux=flux)
    recon = None
    if model_dir is not None:
        recon = lc.reconstruct(None if model_dir == "default" else model_dir)
    if period is not None and not (math.isfinite(period) and period > 0):
        raise StarcurveError(f"--period must be a positive number of days, got {period}")
    save_figure(lc.overview(period=period, recon=recon), output, dpi)
    pg_note = f"; masked-prediction RMSE {recon.rmse:.3f} mag" if recon else ""
    click.echo(
        f"wrote {output}: {lc.object_id}, bands {','.join(lc.bands)}, {len(lc)} points{pg_note}"
    )
