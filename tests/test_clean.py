"""Cleaning: always sorted, finite, self-consistent, and every drop is counted."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starcurve import clean
from starcurve.data import schema as S
from starcurve.data.clean import Plausible
from starcurve.data.io import from_arrays

odd_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -1.0, -99.0, 29.999, 1.0, 1.0]),
)
light_curve = st.lists(st.tuples(odd_float, odd_float, odd_float), min_size=0, max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(light_curve, min_size=1, max_size=6),
    st.integers(1, 5),
    st.sampled_from(["drop", "mean"]),
    st.sampled_from([None, 3.0]),
)
def test_clean_output_is_sorted_finite_and_consistent(lcs, min_obs, dup, clip):
    table = from_arrays(
        [[p[0] for p in lc] for lc in lcs],
        [[p[1] for p in lc] for lc in lcs],
        [[p[2] for p in lc] for lc in lcs],
    )
    out, rep = clean(table, min_obs=min_obs, duplicates=dup, sigma_clip=clip)
    t, off = S.flat(out, S.TIME)
    m, e = S.flat(out, S.MAG)[0], S.flat(out, S.ERR)[0]
    lens = np.diff(off)
    assert np.isfinite(t).all() and np.isfinite(m).all() and np.isfinite(e).all()
    assert (e > 0).all() and (lens >= min_obs).all()
    rows = S.row_index(off)
    same = rows[1:] == rows[:-1]
    assert (np.diff(t)[same] > 0).all()  # strictly increasing: sorted, no duplicate times
    assert rep.points_in == sum(len(lc) for lc in lcs) and rep.points_out == len(t)
    assert rep.points_in - rep.points_out == sum(rep.points.values())
    assert rep.objects_in - rep.objects_out == len(rep.removed) == rep.objects["too_few_obs"]
    assert set(out.column(S.ID).to_pylist()) <= set(table.column(S.ID).to_pylist())


def test_unsorted_duplicates_and_bad_errors_counted():
    t = from_arrays(
        [[3.0, 1.0, 2.0, 2.0, 5.0, 6.0]],
        [[13, 11, 12, 12.5, np.nan, 10]],
        [[0.1, 0.1, 0.1, 0.1, 0.1, -0.1]],
    )
    out, rep = clean(t, min_obs=1)
    assert S.flat(out, S.TIME)[0].tolist() == [1.0, 2.0, 3.0]
    assert S.flat(out, S.MAG)[0].tolist() == [11, 12, 13]  # first of the duplicate pair kept
    assert rep.points == {
        "nonfinite": 1,
        "sentinel": 0,
        "bad_error": 1,
        "implausible": 0,
        "duplicate_time": 1,
        "too_few_obs": 0,
    }


def test_duplicate_repair_is_inverse_variance_mean():
    t = from_arrays([[1.0, 1.0, 2.0]], [[10.0, 12.0, 11.0]], [[0.1, 0.2, 0.1]])
    out, _ = clean(t, duplicates="mean", min_obs=1)
    m, e = S.flat(out, S.MAG)[0], S.flat(out, S.ERR)[0]
    w = np.array([100.0, 25.0])
    assert m[0] == np.float32((w * [10, 12]).sum() / w.sum())
    assert e[0] == np.float32(1 / np.sqrt(w.sum()))


def test_empty_and_one_point_light_curves_are_reported_and_others_kept():
    t = from_arrays(
        [[], [1.0], [1.0, 2.0, 3.0]],
        [[], [1.0], [1, 2, 3]],
        [[], [0.1], [0.1] * 3],
        ids=["e", "one", "ok"],
    )
    out, rep = clean(t, min_obs=2)
    assert out.column(S.ID).to_pylist() == ["ok"]
    assert set(rep.removed) == {"e/unknown", "one/unknown"}
    assert "removed 2" in str(rep)


def test_sigma_clip_removes_the_outlier_only():
    rng = np.random.default_rng(1)
    m = rng.normal(12, 0.05, 200)
    m[50] = 18.0
    t = from_arrays([np.arange(200.0)], [m], [np.full(200, 0.05)])
    out, rep = clean(t, sigma_clip=5, min_obs=1)
    assert rep.points["sigma_clip"] == 1 and S.lengths(out)[0] == 199


def test_implausible_magnitudes_and_errors_are_dropped_and_counted():
    t = from_arrays(
        [np.arange(6.0)], [[12, 1e30, 12.1, 12.2, -45.0, 12.3]], [[0.1, 0.1, 0.1, 50.0, 0.1, 0.1]]
    )
    out, rep = clean(t, min_obs=1)
    assert rep.points["implausible"] == 3 and rep.objects["implausible"] == 1
    assert S.flat(out, S.MAG)[0].tolist() == pytest.approx([12, 12.1, 12.3])
    assert "implausible: 3 points" in str(rep)
    kept, rep = clean(
        t, min_obs=1, plausible=Plausible(mag_min=-50, mag_max=1e31, err_max=100)
    )  # configurable
    assert rep.points["implausible"] == 0 and S.lengths(kept)[0] == 6


def test_clean_real_asas(shared_data):
    from starcurve import read

    _out, rep = clean(read(shared_data / "asas_acvs.parquet"), min_obs=10)
    assert rep.objects_in == 13909 and rep.points["duplicate_time"] == 0  # README: no shared times
    assert len(rep.removed) == 5  # README: 5 light curves have fewer than 10 points
