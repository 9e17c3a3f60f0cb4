"""Windows, RNN and CNN inputs: vectorised, padded with explicit masks, checked against a loop."""

import numpy as np
import pytest

from starcurve.data import schema as S
from starcurve.data.deltas import cnn_input, rnn_input, rnn_steps
from starcurve.data.io import from_arrays
from starcurve.data.windows import windows


def test_consecutive_windows_cover_every_point_with_last_window_at_the_end(toy_table):
    w = windows(toy_table, 100, normalise=False)
    lens = S.lengths(toy_table)
    assert np.bincount(w.row).tolist() == [max(-(-n // 100), 1) for n in lens]
    t, off = S.flat(toy_table, S.TIME)
    for r, n in enumerate(lens):
        mine = np.flatnonzero(w.row == r)
        got = np.concatenate([w.time[i][w.mask[i]] for i in mine])
        assert set(np.round(got, 3)) == set(np.round(t[off[r] : off[r + 1]].astype(np.float32), 3))
        if n >= 100:
            assert w.mask[mine].all()
            last = w.time[mine[-1]]
            assert last[-1] == np.float32(t[off[r + 1] - 1])  # trailing remainder = last 100


def test_window_normalisation_and_mask(toy_table):
    w = windows(toy_table, 200)
    for arr in (w.time, w.mag):
        s = (arr * w.mask).sum(1) / w.mask.sum(1)
        assert np.abs(s).max() < 1e-3
        assert (arr[~w.mask] == 0).all()


def test_random_windows_are_contiguous_and_valid(toy_table):
    rng = np.random.default_rng(0)
    w = windows(toy_table, 30, mode="random", rng=rng, normalise=False)
    assert len(w) == toy_table.num_rows and w.mask.all()
    assert (np.diff(w.time, axis=1) > 0).all()


def test_rnn_input_matches_a_plain_loop(toy_table):
    x, steps = rnn_input(toy_table, w=4, stride=2)
    t, off = S.flat(toy_table, S.TIME)
    m = S.flat(toy_table, S.MAG)[0].astype(float)
    for r in range(toy_table.num_rows):
        dt, dm = np.diff(t[off[r] : off[r + 1]]), np.diff(m[off[r] : off[r + 1]])
        n = (len(dt) - 4) // 2 + 1
        assert steps[r] == n
        ref = np.stack(
            [np.concatenate([dt[j * 2 : j * 2 + 4], dm[j * 2 : j * 2 + 4]]) for j in range(n)]
        )
        np.testing.assert_allclose(x[r, :n], ref, rtol=1e-5, atol=1e-5)
        assert (x[r, n:] == 0).all()
    assert rnn_steps(np.array([1, 4, 5, 6, 7])).tolist() == [0, 0, 1, 1, 2]


def test_cnn_input_leading_zero_and_padding():
    t = from_arrays(
        [[0.0, 1.0, 3.0], np.arange(600.0)],
        [[10.0, 11.0, 9.0], np.zeros(600)],
        [[0.1] * 3, np.ones(600)],
    )
    x, lens = cnn_input(t, 500)
    assert x.shape == (2, 2, 500) and lens.tolist() == [3, 500]
    assert x[0, 0, :4].tolist() == [0, 1, 2, 0] and x[0, 1, :4].tolist() == [0, 1, -2, 0]
    assert (x[1, 0, 1:] == 1).all()


@pytest.mark.parametrize("n", [1, 7])
def test_short_light_curves(n):
    t = from_arrays([np.arange(float(n))], [np.zeros(n)], [np.ones(n)])
    w = windows(t, 200)
    assert w.mask.sum() == n
    _x, steps = rnn_input(t)
    assert steps.tolist() == [max((n - 1 - 4) // 2 + 1, 0) if n - 1 >= 4 else 0]
