"""Feature extraction (light-curve and numpy back-ends) and the imputing random forest."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from starcurve.data.clean import clean
from starcurve.data.io import from_arrays
from starcurve.errors import StarcurveError
from starcurve.models import forest

needs_lc = pytest.mark.skipif(
    not forest.light_curve_available(), reason="light-curve not installed"
)


def sines(periods, n=200, span=300.0, seed=0, noise=0.02):
    """Seasonal (nightly, 8-month seasons) sampling: the cadence where default grids fail."""
    rng = np.random.default_rng(seed)
    times, mags = [], []
    for p in periods:
        nights = rng.choice(np.arange(span)[(np.arange(span) % 365) < 240], n, replace=False)
        t = np.sort(nights + rng.uniform(-0.1, 0.1, n))
        times.append(t)
        mags.append(12 + 0.4 * np.sin(2 * np.pi * t / p) + rng.normal(0, noise, n))
    return from_arrays(times, mags, [np.full(n, noise)] * len(periods), band="V")


def test_numpy_features_are_finite_and_recover_a_known_period():
    periods = [0.37, 0.1234, 3.3, 45.0]
    X, names = forest.numpy_features(sines(periods), n_freq=2**15)
    assert X.shape == (4, 35) and len(names) == 35
    assert np.isfinite(X).all()
    best = X[:, names.index("periodogram_period_0")]
    df = forest.F_MAX / (2**15 - 1)  # the grid step: the frequency must be within one step
    np.testing.assert_array_less(np.abs(1 / best - 1 / np.array(periods)), df)
    assert (X[:, names.index("periodogram_period_s_to_n_0")] > 5).all()


@needs_lc
def test_light_curve_backend_reaches_high_frequencies():
    # 0.1234 d = 8.1 cycles/day: far beyond light-curve's default grid on nightly sampling
    periods = [0.37, 0.1234, 3.3]
    X, names = forest.extract_features(sines(periods), backend="light-curve")
    assert X.shape == (3, 35)
    assert names == forest.light_curve_extractor().names
    np.testing.assert_allclose(X[:, names.index("periodogram_period_0")], periods, rtol=0.01)


@needs_lc
def test_numpy_statistics_match_light_curve():
    table = sines([0.5, 2.0, 7.0, 30.0], seed=3, noise=0.1)
    A, names = forest.extract_features(table, backend="light-curve")
    B, names_np = forest.numpy_features(table, n_freq=2**15)
    assert names_np == names
    stats = [i for i, n in enumerate(names) if not n.startswith("periodogram")]
    np.testing.assert_allclose(B[:, stats], A[:, stats], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("light-curve", marks=needs_lc)])
def test_short_light_curves_give_nan_not_errors(backend):
    good = sines([0.8])
    t = [np.array([1.0]), np.array([1.0, 2.0]), *good.column("time").to_pylist()]
    m = [np.array([12.0]), np.array([12.0, 12.5]), *good.column("mag").to_pylist()]
    e = [np.array([0.1]), np.array([0.1, 0.1]), *good.column("mag_err").to_pylist()]
    table = from_arrays(t, m, e, band="V")
    kw = {"n_freq": 2**15} if backend == "numpy" else {}
    fn = forest.numpy_features if backend == "numpy" else forest.extract_features
    X, names = fn(table, **kw) if backend == "numpy" else fn(table, backend=backend)
    assert np.isnan(X[0]).any() and np.isnan(X[1]).any()
    assert np.isfinite(X[2]).all()  # a good light curve keeps all its features
    assert abs(X[2, names.index("periodogram_period_0")] - 0.8) < 0.01


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=12), min_size=1,
                max_size=5))  # fmt: skip
def test_numpy_features_never_raise_on_odd_light_curves(mag_lists):
    times = [np.arange(len(m), dtype=float) * 0.3 for m in mag_lists]
    table, _ = clean(
        from_arrays(times, mag_lists, [np.full(len(m), 0.1) for m in mag_lists]), min_obs=1
    )
    X, names = forest.numpy_features(table, n_freq=2**10)
    assert X.shape == (len(mag_lists), len(names))
    # a constant light curve has no spread: scale-free statistics are NaN, never an exception
    flat = [i for i, m in enumerate(mag_lists) if len(set(m)) == 1 and len(m) > 1]
    assert all(np.isnan(X[i, names.index("skew")]) for i in flat)


def test_forest_imputes_with_training_medians():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.where(X[:, 0] > 0, "a", "b")
    X[::5, 1] = np.nan
    X[1, 2] = np.inf
    model = forest.FeatureForest(n_estimators=20, random_state=0, n_jobs=1).fit(X, y)
    imputer = model.pipeline_[0]
    assert clone(model).get_params() == model.get_params()  # a scikit-learn estimator
    finite = np.where(np.isfinite(X), X, np.nan)
    np.testing.assert_allclose(imputer.statistics_, np.nanmedian(finite, axis=0))
    test = np.array([[1.0, np.nan, np.nan], [-1.0, np.inf, 0.0]])
    assert list(model.predict(test)) == ["a", "b"]


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(StarcurveError, match="unknown feature backend"):
        forest.extract_features(sines([1.0]), backend="fortran")
