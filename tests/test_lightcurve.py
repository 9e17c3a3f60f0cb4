"""One object's light curve: every input kind, periodogram, fold, reconstruction, plots, `starcurve plot`."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import run_cli as run
from conftest import tiny_config

from starcurve import StarcurveError, write_parquet
from starcurve.data.io import from_arrays
from starcurve.eval.report import pyplot
from starcurve.lightcurve import LightCurve, contact_sheet, light_curve, light_curves
from starcurve.models import hub
from starcurve.models.encoder import EncoderConfig, build, get_config

PERIOD = 0.61


def sine(n=150, period=PERIOD, seed=0, t0=2452000.0):
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.uniform(0, 900, n))
    m = 12 + 0.4 * np.cos(2 * np.pi * t / period) + rng.normal(0, 0.02, n)
    return t, m, np.full(n, 0.02)


@pytest.fixture(scope="module")
def table():
    """Three objects; obj1 has two bands (B: every second point)."""
    (t0, m0, e0), (t1, m1, e1) = sine(seed=0), sine(seed=1)
    a = from_arrays(
        [t0, t1, t0[:40]],
        [m0, m1, m0[:40]],
        [e0, e1, e0[:40]],
        ids=["obj0", "obj1", "obj2"],
        band="V",
        labels=["RRab", "RRab", "EB"],
    )
    b = from_arrays([t1[::2]], [m1[::2] + 0.3], [e1[::2]], ids=["obj1"], band="B", labels=["RRab"])
    return pa.concat_tables([a, b])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    cfg = tiny_config()
    return hub.save_model(build(cfg, seed=0), tmp_path_factory.mktemp("m") / "tiny")


# ----------------------------------------------------------------------------- input kinds


def test_from_table_row_one_band_and_several(table):
    lc = light_curve(table, "obj0")
    assert lc.bands == ["V"] and len(lc) == 150 and lc.label == "RRab"
    multi = light_curve(table, "obj1")
    assert sorted(multi.bands) == ["B", "V"] and len(multi) == 150 + 75
    assert light_curve(table, "obj1", band="B").bands == ["B"]
    assert sorted(light_curve(table, "obj1", band="B,V").bands) == ["B", "V"]


def test_from_file_dataframe_and_arrays_give_the_same_points(table, tmp_path):
    t, m, e = sine()
    write_parquet(table, tmp_path / "lcs.parquet")
    pd.DataFrame({"mjd": t, "m": m, "e": e}).to_csv(tmp_path / "star.csv", index=False)
    long = pd.DataFrame({"object_id": "obj0", "band": "V", "time": t, "mag": m, "mag_err": e})
    kinds = [
        light_curve(tmp_path / "lcs.parquet", "obj0"),
        light_curve(tmp_path / "star.csv"),  # a text file: the file name is the id
        light_curve(long),  # a long DataFrame
        light_curve((t, m, e)),  # arrays
    ]
    assert [k.object_id for k in kinds] == ["obj0", "star", "obj0", "lc0"]
    for k in kinds:
        got = k.arrays()
        assert np.allclose(got[0], t) and np.allclose(got[1], m, atol=1e-5)


def test_from_astropy_timeseries_in_flux_and_in_magnitudes():
    u = pytest.importorskip("astropy.units")
    from astropy.time import Time
    from astropy.timeseries import TimeSeries

    t, m, e = sine()
    flux = 10 ** (-0.4 * (m - 23.9)) * u.uJy  # AB magnitudes m
    ts = TimeSeries(
        time=Time(t, format="jd"),
        data={"flux": flux.to(u.mJy), "flux_err": (flux * e / 1.0857).to(u.mJy)},
    )
    lc = light_curve(ts)
    assert np.allclose(lc.arrays()[0], t) and np.allclose(lc.arrays()[1], m, atol=1e-4)
    assert np.allclose(lc.arrays()[2], e, atol=1e-4)
    ts2 = TimeSeries(time=Time(t - 2400000.5, format="mjd"), data={"V": m * u.mag, "eV": e * u.mag})
    lc2 = light_curve(ts2, columns={"mag": "V", "mag_err": "eV", "band": "V"})
    assert lc2.bands == ["V"] and np.allclose(lc2.arrays()[1], m, atol=1e-5)
    with pytest.raises(StarcurveError, match="no mag or flux column"):
        light_curve(TimeSeries(time=Time(t, format="jd"), data={"x": m}))


def test_from_lightkurve():
    lk = pytest.importorskip("lightkurve")
    t, m, e = sine()
    flux = 10 ** (-0.4 * (m - 12))  # relative flux, no unit: an instrumental magnitude
    lc = light_curve(
        lk.LightCurve(
            time=t - 2454833,
            flux=flux,
            flux_err=flux * e / 1.0857,
            meta={"OBJECT": "KIC 1", "MISSION": "Kepler"},
        ),
        zero_point=12,
    )
    assert lc.object_id == "KIC 1" and lc.bands == ["Kepler"]
    assert np.allclose(lc.arrays()[1], m, atol=1e-4)


def test_bad_inputs_are_one_clear_error(table):
    with pytest.raises(StarcurveError, match="holds 3 objects; name one"):
        light_curve(table)
    with pytest.raises(StarcurveError, match=r"object\(s\) \['nope'\] not in"):
        light_curve(table, "nope")
    t, m, e = sine(n=5)
    with pytest.raises(StarcurveError, match="no usable point"):
        light_curve((t, m * np.nan, e))
    with pytest.raises(StarcurveError, match="one object"):
        LightCurve(table)


# ----------------------------------------------------------------------------- what it shows


def test_periodogram_finds_the_period_and_fold_keeps_points_with_their_values(table):
    lc = light_curve(table, "obj1")  # two bands, one period
    pg = lc.periodogram()
    assert pg.power.shape[0] == 2 and abs(lc.best_period() - PERIOD) < 1e-3
    f = lc.fold()
    assert abs(f.period - PERIOD) < 1e-3
    for b in lc.bands:
        ph, m, _e = f.arrays(b)
        t, m0, _ = lc.arrays(b)
        assert len(ph) == len(t) and ph.min() >= 0 and ph.max() < 1 and np.all(np.diff(ph) >= 0)
        expected = np.mod((t - t[0]) / f.period, 1.0)  # up to the alignment shift
        shift = np.mod(expected[f.index[lc.bands.index(b)]] - ph, 1.0)
        assert np.ptp(np.mod(shift + 0.5, 1.0)) < 1e-4
        assert np.allclose(m, m0[f.index[lc.bands.index(b)]])
    assert abs(lc.fold(multiple=2).period - 2 * PERIOD) < 2e-3
    assert lc.fold(period=3.0).period == 3.0
    with pytest.raises(StarcurveError, match="positive"):
        lc.fold(period=-1)


def test_reconstruction_predicts_each_point_without_seeing_it(table, tiny_model):
    lc = light_curve(table, "obj0")
    r = lc.reconstruct(tiny_model)
    assert len(r.pred[0]) == len(lc) and np.isfinite(r.pred[0]).all()
    assert np.isfinite(r.rmse) and np.isfinite(r.baseline)
    # a point's prediction must not depend on its own magnitude (it is hidden when predicted)
    t, m, e = lc.arrays()
    m2 = m.copy()
    m2[37] += 3.0
    r2 = light_curve((t, m2, e)).reconstruct(tiny_model)
    assert abs(r2.pred[0][37] - r.pred[0][37]) < 1e-3
    assert abs(r2.pred[0][41] - r.pred[0][41]) > 1e-4  # a point that saw it (another pass) changes


def test_reconstruction_with_a_period_aware_model(table):
    d = get_config("pv1").to_dict()
    d.update(window=64, fold_window=32, d_model=16, n_layers=1, n_heads=2, d_ff=16, name="t-pv1")
    model = hub.Model(build(EncoderConfig.from_dict(d)))
    r = light_curve(table, "obj1").reconstruct(model)
    assert [len(p) for p in r.pred] == [75, 150] or [len(p) for p in r.pred] == [150, 75]
    assert all(np.isfinite(p).all() for p in r.pred)


def _saved(ax, path):
    ax.figure.savefig(path)
    pyplot().close(ax.figure)
    assert path.stat().st_size > 1000


def test_plots_have_the_documented_axes(table, tiny_model, tmp_path):
    lc = light_curve(table, "obj1")
    ax = lc.plot()
    assert ax.yaxis_inverted() and ax.get_xlabel() == "time − 2452000 [d]"
    assert "[mag]" in ax.get_ylabel() and len(ax.containers) == 2  # error bars, one per band
    _saved(ax, tmp_path / "lc.png")
    ax = lc.periodogram().plot()
    assert (
        ax.get_xscale() == "log"
        and ax.get_xlabel() == "period [d]"
        and "P = 0.61" in ax.get_title()
    )
    _saved(ax, tmp_path / "pg.png")
    ax = lc.fold().plot()
    assert ax.yaxis_inverted() and ax.get_xlim() == (0.0, 2.0)
    assert ax.get_xlabel().startswith("phase (P = 0.61") and len(ax.containers) == 2
    _saved(ax, tmp_path / "fold.png")
    r = light_curve(table, "obj0").reconstruct(tiny_model)
    ax = r.plot()
    assert ax.yaxis_inverted() and "masked prediction" in ax.get_legend_handles_labels()[1]
    _saved(ax, tmp_path / "recon.png")
    fig = lc.overview(recon=lc.reconstruct(tiny_model))
    assert len(fig.axes) == 4 and all(a.yaxis_inverted() for i, a in enumerate(fig.axes) if i != 1)
    pyplot().close(fig)
    curves = light_curves(table, ["obj0", "obj1", "obj2"])
    path = contact_sheet(list(curves.values()), ["a", "b", "c"], tmp_path / "sheet.png")
    assert path.stat().st_size > 1000


def test_plot_command(table, tiny_model, tmp_path, capsys):
    write_parquet(table, tmp_path / "lcs.parquet")
    code, out, _ = run(
        [
            "plot",
            "--input",
            tmp_path / "lcs.parquet",
            "--object",
            "obj1",
            "--output",
            tmp_path / "fig.png",
            "--model",
            tiny_model,
        ],
        capsys,
    )
    assert code == 0 and "masked-prediction RMSE" in out
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run(
        [
            "plot",
            "--input",
            tmp_path / "lcs.parquet",
            "--object",
            "obj0",
            "--period",
            "1.22",
            "--output",
            tmp_path / "fig2.png",
        ],
        capsys,
    )
    assert code == 0 and (tmp_path / "fig2.png").exists()
    for args, msg in [
        (["--object", "nope"], "not in"),
        ([], "holds 3 objects"),
        (["--object", "obj0", "--period", "nan"], "--period must be a positive"),
        (["--object", "obj0", "--band", "R"], "no light curve in band 'R'"),
    ]:
        code, out, err = run(
            ["plot", "--input", tmp_path / "lcs.parquet", "--output", tmp_path / "bad.png", *args],
            capsys,
        )
        assert code == 2 and err.startswith("error: ") and msg in err and err.count("\n") == 1
    assert not (tmp_path / "bad.png").exists()
    code, _, err = run(
        ["plot", "--input", tmp_path / "none.parquet", "--output", tmp_path / "x.png"], capsys
    )
    assert code == 2 and "no such file" in err
