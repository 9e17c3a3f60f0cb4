"""Tests of the light-curve simulator (starcurve.data.simulate) and `starcurve simulate`."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from starcurve.cli import main
from starcurve.data import schema as S
from starcurve.data.io import read
from starcurve.data.simulate import (
    ASAS_CLASSES,
    BLOCK,
    classes,
    simulate,
    simulate_range,
    surveys,
    write_shards,
)
from starcurve.errors import StarcurveError

REAL_COLUMNS = [
    "object_id",
    "survey",
    "band",
    "label",
    "label_source",
    "split",
    "time",
    "mag",
    "mag_err",
]


def _flat(table):
    t, off = S.flat(table, S.TIME)
    return t, S.flat(table, S.MAG)[0], S.flat(table, S.ERR)[0], off


def test_same_seed_same_table_other_seed_differs():
    a = simulate("asas", 50, seed=7)
    b = simulate("asas", 50, seed=7)
    c = simulate("asas", 50, seed=8)
    assert a.equals(b)
    assert not a.column(S.MAG).equals(c.column(S.MAG))


def test_schema_matches_real_files(shared_data):
    sim = simulate("ogle", 20, seed=0)
    real = pq.read_schema(shared_data / "ogle2_microlensing.parquet")
    assert sim.schema.names == real.names == REAL_COLUMNS
    for name in REAL_COLUMNS:
        assert sim.schema.field(name).type == real.field(name).type, name


def test_schema_without_shared_data():
    sim = simulate("gaia", 5, seed=0)
    assert sim.schema.names == REAL_COLUMNS
    S.validate(sim)
    assert read(sim).num_rows == 5  # the reader takes it like a real file


@pytest.mark.parametrize("survey", surveys())
def test_every_class_in_every_survey(survey):
    table = simulate(survey, 300, seed=1)  # ~20 of each class: all present (random draw)
    labels = np.asarray(table.column(S.LABEL).to_pylist())
    assert set(labels) == set(classes())
    t, m, e, off = _flat(table)
    rows = S.row_index(off)
    assert np.isfinite(t).all() and np.isfinite(m).all() and np.isfinite(e).all()
    assert (e > 0).all()
    assert ((np.diff(t) > 0) | (np.diff(rows) != 0)).all(), "times not strictly increasing"
    assert (np.diff(off) >= 3).all()

    # variables scatter more than constant stars (robust scatter: outliers do not count)
    def mad(x):
        return np.median(np.abs(x - np.median(x)))

    scatter = {
        c: np.median([mad(m[off[i] : off[i + 1]]) for i in np.flatnonzero(labels == c)])
        for c in ("constant", "RRab", "EB_contact", "Mira")
    }
    assert scatter["constant"] < min(scatter["RRab"], scatter["EB_contact"], scatter["Mira"])


def test_one_class_only():
    for cls in classes():
        assert set(simulate("gaia", 3, [cls], seed=2).column(S.LABEL).to_pylist()) == {cls}


def test_counts_and_band_follow_survey():
    for survey, band, lo, hi in [
        ("asas", "V", 250, 650),
        ("eros", "R", 90, 130),
        ("ogle", "I", 140, 240),
        ("lsst", "r", 140, 230),
    ]:
        table = simulate(survey, 300, seed=0)
        assert set(table.column(S.BAND).to_pylist()) == {band}
        med = np.median(S.lengths(table))
        assert lo < med < hi, (survey, med)


def test_fixed_n_obs_and_mag_range():
    table = simulate("ztf", 40, ["constant"], seed=0, n_obs=123, mag_range=(15, 16))
    assert (S.lengths(table) == 123).all()
    m = S.flat(table, S.MAG)[0]
    assert 14.5 < np.median(m) < 16.5


@pytest.mark.parametrize("cls", ["RRab", "RRc", "Cep_F", "DSCT", "EB_contact"])
def test_periods_recovered(cls):
    """A 2-harmonic periodogram (EBs: best at P/2 or P) finds the true period of a few examples."""
    from scipy.signal import lombscargle

    table = simulate("ogle", 3, [cls], seed=4, n_obs=300, mag_range=(14, 15), truth=True)
    t, m, _, off = _flat(table)
    true = table.column("period").to_numpy()
    for i in range(3):
        tt, mm = t[off[i] : off[i + 1]], m[off[i] : off[i + 1]].astype(float)
        # around the true frequency f (and 2f for EBs), +-10%: includes 1-day aliases of DSCT
        rel = np.linspace(0.9, 1.1, 2001)
        freqs = (np.concatenate([rel, 2 * rel]) if cls.startswith("EB") else rel) / true[i]
        power = lombscargle(tt, mm - mm.mean(), 2 * np.pi * freqs)
        ratio = freqs[np.argmax(power)] * true[i]  # 1: the period; 2 for EBs (two minima per orbit)
        ok = abs(ratio - 1) < 0.002 or (cls.startswith("EB") and abs(ratio - 2) < 0.004)
        assert ok, (cls, ratio, true[i])


def test_mira_amplitude_large_in_v_osarg_tiny():
    mira = simulate("asas", 30, ["Mira"], seed=0, mag_range=(7, 8))
    osarg = simulate("asas", 30, ["OSARG"], seed=0, mag_range=(7, 8))

    def ptp(table):
        _, m, _, off = _flat(table)
        return np.array(
            [
                np.percentile(m[a:b], 95) - np.percentile(m[a:b], 5)
                for a, b in itertools.pairwise(off)
            ]
        )

    assert np.median(ptp(mira)) > 2.0
    assert np.median(ptp(osarg)) < 0.4


def test_ranges_and_shards_equal_one_call(tmp_path):
    n = BLOCK + 300
    whole = simulate("eros", n, ASAS_CLASSES, seed=3)
    parts = pa.concat_tables(
        [simulate_range("eros", a, b, ASAS_CLASSES, 3) for a, b in [(0, 10), (10, 700), (700, n)]]
    )
    assert parts.equals(whole)
    paths = write_shards(
        tmp_path / "out", "eros", n, ASAS_CLASSES, 3, shard_size=500, progress=False
    )
    assert [p.name for p in paths] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert read(tmp_path / "out").equals(whole)


def test_shards_resume_and_refuse_other_settings(tmp_path):
    out = tmp_path / "s"
    paths = write_shards(out, "gaia", 30, seed=1, shard_size=10, progress=False)
    stamp = paths[0].stat().st_mtime_ns
    paths[2].write_bytes(b"truncated")  # a broken shard is rewritten, complete ones are kept
    write_shards(out, "gaia", 30, seed=1, shard_size=10, progress=False)
    assert paths[0].stat().st_mtime_ns == stamp
    assert pq.read_table(paths[2]).num_rows == 10
    with pytest.raises(StarcurveError, match="other settings"):
        write_shards(out, "gaia", 30, seed=2, shard_size=10, progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"survey": "kepler", "n": 3}, "unknown survey 'kepler'; choose one of: asas"),
        (
            {"survey": "asas", "n": 3, "classes": ["RRab", "Blazar"]},
            r"unknown class\(es\) \['Blazar'\]",
        ),
        ({"survey": "asas", "n": -1}, "n must be an integer >= 0"),
        ({"survey": "asas", "n": 2.5}, "n must be an integer >= 0"),
        ({"survey": "asas", "n": "many"}, "n must be an integer >= 0"),
        ({"survey": "asas", "n": True}, "n must be an integer"),
        ({"survey": "asas", "n": 3, "seed": -4}, "seed must be an integer >= 0"),
        ({"survey": "asas", "n": 3, "n_obs": 0}, "n_obs must be an integer >= 1"),
        ({"survey": "asas", "n": 3, "mag_range": (14, 12)}, "bright < faint"),
        ({"survey": "asas", "n": 3, "mag_range": (12, float("nan"))}, "bright < faint"),
        ({"survey": "asas", "n": 3, "classes": []}, "no class given"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, match):
    with pytest.raises(StarcurveError, match=match):
        simulate(**kwargs)


def test_zero_objects_and_case_insensitive_names():
    empty = simulate("ASAS", 0)
    assert empty.num_rows == 0 and empty.schema.names == REAL_COLUMNS
    assert set(simulate("asas", 3, ["rrab"]).column(S.LABEL).to_pylist()) == {"RRab"}


def test_cli_writes_file_and_shards(tmp_path, capsys):
    out = tmp_path / "sim.parquet"
    args = [
        "simulate",
        "--survey",
        "ogle",
        "--objects",
        "25",
        "--classes",
        "RRab,Mira",
        "--seed",
        "5",
    ]
    main([*args, "--output", str(out)])
    table = pq.read_table(out)
    assert table.equals(simulate("ogle", 25, ["RRab", "Mira"], seed=5))
    main([*args, "--output", str(tmp_path / "sh"), "--shard-size", "10"])
    assert read(tmp_path / "sh").equals(table)
    assert "wrote 25 light curves" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, match",
    [
        (["--survey", "hubble", "--objects", "3"], "unknown survey"),
        (["--survey", "asas", "--objects", "-3"], "--objects must be an integer >= 0"),
        (["--survey", "asas", "--objects", "1.5"], "--objects must be an integer"),
        (["--survey", "asas", "--objects", "3", "--classes", "RRab,foo"], "unknown class"),
        (["--survey", "asas", "--objects", "3", "--shard-size", "0"], "--shard-size must be"),
        (["--survey", "asas"], "missing --objects"),
    ],
)
def test_cli_bad_input_exit_2(tmp_path, capsys, args, match):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", *args, "--output", str(tmp_path / "x")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and "Traceback" not in err


def test_scatter_follows_calibration():
    """Constant stars: the scatter of close pairs matches the real scatter stored in the tables."""
    from starcurve.data.simulate import _resources

    cfg = _resources()[0]["asas"]
    table = simulate("asas", 800, ["constant"], seed=3)
    t, m, _, off = _flat(table)
    rows = S.row_index(off)
    close = (np.diff(rows) == 0) & (np.diff(t) < 0.1)
    dm, mm = np.diff(m)[close], 0.5 * (m[1:] + m[:-1])[close]
    real = dict(zip(cfg["noise_bins"]["mag"], cfg["noise_bins"]["sigma"], strict=True))
    for lo, hi in [(9.5, 10.5), (11.5, 12.5), (12.5, 13.5)]:
        d = dm[(mm > lo) & (mm < hi)]
        sim = 1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2)
        ref = np.interp((lo + hi) / 2, list(real), list(real.values()))
        assert 0.7 < sim / ref < 1.4, (lo, sim, ref)
    assert sim > 3 * 0.0126  # faint stars are much noisier than bright ones, as in ASAS


def test_magnitudes_bounded():
    from starcurve.data.simulate import _resources

    for survey in ("asas", "macho", "lsst"):
        m = S.flat(simulate(survey, 600, seed=5), S.MAG)[0]
        lim = _resources()[0][survey]["limit"]
        assert m.max() <= lim["mag"] + 3 * lim["sigma"] + 1e-3
        assert np.median(m) - m.min() < 15
