"""Augmentation: copies stay sorted, finite, inside the original span; class balancing counts."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from starcurve.data import schema as S
from starcurve.data.augment import (
    AugmentConfig,
    add_noise,
    balance,
    copies_per_object,
    crop,
    make_copies,
    shift_time,
)
from starcurve.data.io import from_arrays


def _table(lengths, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    times = [np.cumsum(rng.uniform(0.01, 5.0, n)) + rng.uniform(-1e3, 1e3) for n in lengths]
    mags = [rng.normal(15, 0.3, n) for n in lengths]
    errs = [rng.uniform(0.01, 0.1, n) for n in lengths]
    return from_arrays(
        times, mags, errs, ids=[f"o{i}" for i in range(len(lengths))], band="V", labels=labels
    )


def _rows(table):
    t, off = S.flat(table, S.TIME)
    return np.split(t, off[1:-1])


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 80), min_size=1, max_size=12),
    classes=st.lists(st.sampled_from("ABC"), min_size=12, max_size=12),
    n=st.integers(3, 40),
    seed=st.integers(0, 10_000),
)
def test_copies_are_sorted_finite_subsets_inside_span(lengths, classes, n, seed):
    labels = np.array(classes[: len(lengths)])
    table = _table(lengths, seed)
    cfg = AugmentConfig(n=n, max_drop=3, min_keep=2, max_copies=5)
    rng = np.random.default_rng(seed)
    copies, copy_labels = make_copies(table, labels, cfg, rng)
    orig = dict(zip(table.column(S.ID).to_pylist(), _rows(table)))
    orig_labels = dict(zip(table.column(S.ID).to_pylist(), labels))
    ids = copies.column(S.ID).to_pylist()
    mags = S.flat(copies, S.MAG)[0]
    assert np.isfinite(mags).all() and np.isfinite(S.flat(copies, S.ERR)[0]).all()
    for cid, t, lab in zip(ids, _rows(copies), copy_labels):
        src, _, k = cid.rpartition("#aug")
        assert 1 <= int(k) <= cfg.max_copies
        assert orig_labels[src] == lab
        o = orig[src]
        assert np.isfinite(t).all() and np.all(np.diff(t) > 0)  # sorted, no repeats
        assert len(t) >= 1 and t[0] >= o[0] and t[-1] <= o[-1]  # inside the original span
        assert len(t) <= n and len(t) >= min(cfg.min_keep, len(o[::2]), n)
        pos = np.searchsorted(o, t)
        assert np.array_equal(o[pos], t)  # a subset of the original points
        assert len(np.unique(np.diff(pos))) <= 1 and (len(t) < 2 or np.diff(pos)[0] in (1, 2))


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(1, 30), min_size=2, max_size=4), target=st.integers(1, 100))
def test_balancing_reaches_target_or_five_copies(counts, target):
    labels = np.repeat(np.arange(len(counts)), counts).astype(str)
    c = copies_per_object(labels, target, 5, np.random.default_rng(0))
    assert c.min() >= 0 and c.max() <= 5
    for k, n in enumerate(counts):
        got = n + c[labels == str(k)].sum()
        assert got == max(n, min(target, 6 * n))


def test_balance_keeps_originals_and_equalises_classes():
    table = _table([50] * 40, labels=["A"] * 30 + ["B"] * 10)
    labels = np.array(table.column(S.LABEL).to_pylist())
    out, out_labels = balance(table, labels, AugmentConfig(n=30), np.random.default_rng(1))
    assert (
        out.num_rows == 60 and (out_labels == "A").sum() == 30 and (out_labels == "B").sum() == 30
    )
    assert out.slice(0, 40).column(S.ID).equals(table.column(S.ID))
    assert S.lengths(out)[40:].max() <= 30


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=8), n=st.integers(1, 30))
def test_crop_is_a_contiguous_stretch(lengths, n):
    table = _table(lengths)
    out = crop(table, n, np.random.default_rng(0))
    for o, t in zip(_rows(table), _rows(out)):
        assert len(t) == min(len(o), n)
        i = np.searchsorted(o, t[0])
        assert np.array_equal(o[i : i + len(t)], t)


def test_noise_follows_the_errors_and_shift_keeps_differences():
    table = _table([2000, 3000])
    rng = np.random.default_rng(0)
    noisy = add_noise(table, 1.0, rng)
    m0, m1, e = S.flat(table, S.MAG)[0], S.flat(noisy, S.MAG)[0], S.flat(table, S.ERR)[0]
    z = (m1.astype(float) - m0) / e
    assert np.isfinite(m1).all() and abs(z.std() - 1) < 0.05 and abs(z.mean()) < 0.05
    assert S.flat(noisy, S.TIME)[0].tolist() == S.flat(table, S.TIME)[0].tolist()
    shifted = shift_time(table, 100.0, rng)
    for a, b in zip(_rows(table), _rows(shifted)):
        assert np.allclose(np.diff(a), np.diff(b)) and abs(b[0] - a[0]) <= 100
        assert np.all(np.diff(b) > 0)
