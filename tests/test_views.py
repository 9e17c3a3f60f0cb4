"""Period-aware views (periodogram, best period, folds) and the multi-view pv1 encoder."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from starcurve.data import schema as S
from starcurve.data.io import from_arrays
from starcurve.data.views import band_index, cached_periods, fold_windows, periods
from starcurve.errors import StarcurveError
from starcurve.eval import fewshot as fs
from starcurve.models import hub
from starcurve.models.encoder import EncoderConfig, build, get_config
from starcurve.models.forest import light_curve_available, side_by_side
from starcurve.train.pretrain import multiview_loss, probe_masks, view_batches

TRUE_PERIODS = [0.31, 0.57, 2.7, 13.0, 95.0]


def periodic_table(n=200, span=2600.0, seed=0, band="V", ids=None, periods_=TRUE_PERIODS):
    """Sparse, seasonal sines (ASAS-like spans), one per period; the faintest point at phase 0.5."""
    rng = np.random.default_rng(seed)
    times, mags, errs = [], [], []
    for p in periods_:
        t = np.sort(rng.uniform(0, span, n))
        times.append(t)
        mags.append(12 + 0.4 * np.cos(2 * np.pi * t / p) + rng.normal(0, 0.02, n))
        errs.append(np.full(n, 0.02))
    ids = ids or [f"s{i}" for i in range(len(periods_))]
    return from_arrays(times, mags, errs, ids=ids, band=band)


BACKENDS = ["numpy"] + (["light-curve"] if light_curve_available() else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_best_period_is_found_and_refined(backend):
    table = periodic_table()
    p = periods(table, backend=backend)
    got = 1 / p.freq
    np.testing.assert_allclose(got, TRUE_PERIODS, rtol=2e-4)
    # refined well enough that folding over 2,600 days drifts by less than 0.05 cycles
    drift = np.abs(p.freq - 1 / np.array(TRUE_PERIODS)) * 2600
    assert drift.max() < 0.05
    assert (p.power > 0.8).all() and (p.power <= 1).all()
    assert p.bins.shape == (5, 64) and np.allclose(p.bins.max(1), 1.0, atol=1e-6)
    # the peak bin sits at the true frequency on the log grid
    edges = np.logspace(-3, np.log10(20), 65)
    want = np.searchsorted(edges, 1 / np.array(TRUE_PERIODS)) - 1
    assert np.all(np.abs(p.bins.argmax(1) - want) <= 1)


def test_noise_has_low_power_and_short_curves_get_a_safe_period():
    rng = np.random.default_rng(1)
    t = [np.sort(rng.uniform(0, 500, 150)), np.array([1.0, 2.0])]
    m = [12 + rng.normal(0, 0.05, 150), np.array([12.0, 12.1])]
    table = from_arrays(
        t, m, [np.full(150, 0.05), np.full(2, 0.05)], ids=["noise", "two"], band="V"
    )
    p = periods(table, backend="numpy")
    assert p.power[0] < 0.3
    assert np.isfinite(p.freq).all() and p.power[1] == 0.0


def test_fold_keeps_evenly_spread_points_and_aligns_the_brightest_phase():
    table = periodic_table(n=230)
    p = periods(table, backend="numpy")
    w = fold_windows(table, p.freq, 1, n=100)
    assert np.array_equal(w.row, np.arange(5)) and (w.mask.sum(1) == 100).all()
    short = fold_windows(table, p.freq, 1, n=300)
    assert (short.mask.sum(1) == 230).all()  # a short light curve keeps every point
    ph = w.time[w.mask]
    assert ph.min() >= 0 and ph.max() < 1
    assert all((np.diff(w.time[i, w.mask[i]]) >= 0).all() for i in range(len(w)))  # sorted
    # brightest (lowest magnitude) points lie at phase ~0 for a cosine folded at its period
    bright = (w.mag < -0.3) & w.mask
    d = np.minimum(w.time[bright], 1 - w.time[bright])
    assert np.median(d) < 0.08
    # at twice the period, phase 0 is the faintest phase and the curve shows two cycles
    w2 = fold_windows(table, p.freq, 2, n=100)
    faint = (w2.mag > 0.3) & w2.mask
    d2 = np.minimum(w2.time[faint] % 0.5, 0.5 - w2.time[faint] % 0.5)
    assert np.median(d2) < 0.08


def test_random_fold_subsets_for_training():
    table = periodic_table(n=230)
    p = periods(table, backend="numpy")
    a = fold_windows(table, p.freq, 2, n=100, rng=np.random.default_rng(0))
    b = fold_windows(table, p.freq, 2, n=100, rng=np.random.default_rng(1))
    assert np.array_equal(a.row, np.arange(5)) and (a.mask.sum(1) == 100).all()
    assert not np.array_equal(a.mag, b.mag)


def test_several_fold_windows_per_long_light_curve_share_no_point():
    # rows of 450, 230 and 80 points: 4, 2 and 1 windows of (at most) 100 points with max_windows=4
    table = pa.concat_tables(
        [periodic_table(n=n, periods_=[2.7], ids=[f"n{n}"]) for n in (450, 230, 80)]
    )
    p = periods(table, backend="numpy")
    one = fold_windows(table, p.freq, 1, n=100)
    w = fold_windows(table, p.freq, 1, n=100, max_windows=4)
    assert w.row.tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert w.mask.sum(1).tolist() == [100, 100, 100, 100, 100, 100, 80]
    assert np.array_equal(w.mag[-1], one.mag[-1])  # a short row is unchanged
    # each window of the 450-point row holds a different set of its points (errors number them)
    t, m = (S.flat(table.slice(0, 1), c)[0] for c in (S.TIME, S.MAG))
    numbered = from_arrays([t], [m], [0.01 + 1e-4 * np.arange(450)], ids=["n450"], band="V")
    w1 = fold_windows(numbered, p.freq[:1], 1, n=100, max_windows=4)
    seen = [set(np.round((w1.err[i, w1.mask[i]] - 0.01) / 1e-4).astype(int)) for i in range(4)]
    assert sum(map(len, seen)) == 400 and len(set().union(*seen)) == 400
    bright = (w.mag[:4] < -0.3) & w.mask[:4]
    assert np.median(np.minimum(w.time[:4][bright], 1 - w.time[:4][bright])) < 0.08


def test_periods_cache_is_keyed_by_content(tmp_path):
    table = periodic_table(n=80)
    a = cached_periods(table, tmp_path, backend="numpy")
    assert len(list(tmp_path.glob("periods-*.npz"))) == 1
    b = cached_periods(table, tmp_path, backend="numpy")
    np.testing.assert_array_equal(a.bins, b.bins)
    cached_periods(periodic_table(n=80, seed=5), tmp_path, backend="numpy")
    assert len(list(tmp_path.glob("periods-*.npz"))) == 2


def tiny_pv1(**kw) -> EncoderConfig:
    d = get_config("pv1").to_dict()
    d.update(
        window=64, fold_window=32, d_model=16, n_layers=2, n_heads=2, d_ff=16, name="tiny-pv1", **kw
    )
    return EncoderConfig.from_dict(d)


def test_pv1_hidden_magnitudes_do_not_leak_in_any_sequence_view():
    model = build(tiny_pv1()).eval()
    g = torch.Generator().manual_seed(0)
    time = torch.rand(2, 40, generator=g).sort(1).values
    mag, err = torch.randn(2, 40, generator=g), torch.full((2, 40), 0.05)
    mask = torch.ones(2, 40, dtype=torch.bool)
    ctx, band = torch.tensor([[0.3, 0.9], [1.5, 0.2]]), torch.tensor([1, 3])
    _, _, hidden = probe_masks(mag, mask, g)
    mag2 = torch.where(hidden, mag + 5, mag)
    for view in ("raw", "fold1", "fold2"):
        with torch.no_grad():
            a = model(time, mag, mask, err, hidden, view=view, ctx=ctx, band=band, states=True)
            b = model(time, mag2, mask, err, hidden, view=view, ctx=ctx, band=band, states=True)
        assert torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[2], b[2]))


def test_pv1_pretraining_learns_and_layer_weights_are_learned():
    table = periodic_table(n=120, periods_=[0.3 + 0.37 * i for i in range(24)])
    cfg = tiny_pv1(contrast=1.0)  # the cross-view objective (pv1 itself uses masked reconstruction)
    p = periods(table, backend="numpy")
    torch.manual_seed(0)
    model = build(cfg)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    batches = view_batches(table, p, cfg, 16, seed=0)
    first = None
    for step in range(40):
        loss, m = multiview_loss(model, next(batches))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else (float(m["recon"]), float(m["nce"]))
    assert float(m["recon"]) < first[0] and float(m["nce"]) < first[1]
    assert not torch.allclose(model.layer_logits, torch.zeros_like(model.layer_logits))


def test_pv1_embeddings_per_row_and_per_object(tmp_path):
    cfg = tiny_pv1()
    model = hub.Model(build(cfg))
    r = periodic_table(n=90, band="R", ids=[f"o{i}" for i in range(5)])
    b = periodic_table(n=60, band="B", seed=3, ids=[f"o{i}" for i in range(5)])
    both = pa.concat_tables([r, b])
    x = model.embed_table(r)
    assert x.shape == (5, model.dim) and np.isfinite(x).all()
    ids, xo = model.embed_objects(both)
    assert list(ids) == [f"o{i}" for i in range(5)] and xo.shape == (5, model.dim)
    assert not np.allclose(xo, x)  # B adds information (and its band embedding)
    _, xr = model.embed_objects(r)
    np.testing.assert_allclose(xr, x, atol=1e-6)  # one band: the same as per row
    assert list(band_index(both, cfg.bands)[[0, 5]]) == [
        cfg.bands.index("R") + 1,
        cfg.bands.index("B") + 1,
    ]
    hub.save_model(model.encoder, tmp_path / "m")
    again = hub.load_model(tmp_path / "m")
    np.testing.assert_allclose(again.embed_table(r), x, atol=1e-6)


def test_fs1_band_all_gives_one_vector_per_object_from_every_band(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for band, n in (("R", 50), ("B", 40)):
        times, mags, labels = [], [], []
        for i in range(80):
            t = np.sort(np.random.default_rng(i).uniform(0, 300, n))
            amp = 0.1 if i % 2 else 0.6
            times.append(t)
            mags.append(12 + amp * np.sin(t) + rng.normal(0, 0.02, n))
            labels.append("A" if i % 2 else "B")
        ids = [f"x{i:03d}" for i in range(80)]
        rows.append(
            from_arrays(times, mags, [np.full(n, 0.02)] * 80, ids=ids, band=band, labels=labels)
        )
    table = pa.concat_tables(rows)
    data = fs.prepare(table, "all")
    assert data.table.num_rows == 80 and data.multi.num_rows == 160
    seen = {}

    class NPoints:  # a per-row "feature": the number of points (R 50, B 40), bands side by side
        per_object = True

        def fit(self):
            return self

        def describe(self, table):
            return "n_points", {}

        def vectors(self, t):
            seen["rows"] = t.num_rows
            return side_by_side(t, S.lengths(t).astype(float)[:, None])

    X, _ = fs._vectors(NPoints(), data, fs.Context(out=tmp_path, progress=False))
    assert seen == {"rows": 160}
    np.testing.assert_array_equal(X, np.tile([40.0, 50.0], (80, 1)))  # bands sorted: B, R


def test_template_readout_adds_the_predicted_folded_curve_and_keeps_the_rest():
    table = periodic_table(n=90)
    plain = hub.Model(build(tiny_pv1(template=0)))
    with_t = hub.Model(build(tiny_pv1(template=8)))  # same seed: the same weights
    x, xt = plain.embed_table(table), with_t.embed_table(table)
    assert xt.shape == (5, 16 * 4 + 2 * 8) == (5, with_t.dim)
    d = 16  # raw | fold1 + 8 | fold2 + 8 | pgram
    np.testing.assert_allclose(xt[:, :d], x[:, :d], atol=1e-6)
    np.testing.assert_allclose(xt[:, d : 2 * d], x[:, d : 2 * d], atol=1e-6)
    assert np.isfinite(xt).all() and xt[:, 2 * d : 2 * d + 8].std() > 0


def test_period_readout_adds_the_spreads_the_period_and_its_power():
    table = periodic_table(n=90)  # amplitude 0.4: a spread of 0.4 / sqrt(2) magnitudes
    plain = hub.Model(build(tiny_pv1(template=0, readout_period=False)))
    with_p = hub.Model(build(tiny_pv1(template=0, readout_period=True)))
    x, xp = plain.embed_table(table), with_p.embed_table(table)
    d = 16  # raw + spread | fold1 + spread | fold2 + spread | pgram + (log10 P, power)
    assert xp.shape == (5, 4 * d + 3 + 2) == (5, with_p.dim)
    np.testing.assert_allclose(xp[:, :d], x[:, :d], atol=1e-6)
    np.testing.assert_allclose(
        xp[:, [d, 2 * d + 1, 3 * d + 2]], np.log10(0.4 / np.sqrt(2)), atol=0.1
    )
    np.testing.assert_allclose(xp[:, -2], np.log10(TRUE_PERIODS), atol=0.01)
    assert (xp[:, -1] > 0.5).all()


def test_hybrid_methods_join_embeddings_and_features(monkeypatch, tmp_path):
    table = periodic_table(n=60, periods_=[0.3 + 0.1 * i for i in range(4)])
    data = fs.FS1Data(
        table,
        np.array([f"s{i}" for i in range(4)]),
        np.array(list("AABB")),
        ["A", "B"],
        {},
        np.array([0, 1, 0, 1], bool),
        {},
        notes={},
    )

    class Fixed:  # a transformer giving constant vectors of ``dim`` columns, named ``name``
        per_object = False

        def __init__(self, name, dim, value):
            self.name, self.dim, self.value = name, dim, value

        def fit(self):
            return self

        def describe(self, table):
            return self.name, {"model": "m"}

        def vectors(self, t):
            return np.full((t.num_rows, self.dim), self.value)

    monkeypatch.setattr(fs, "embedder", lambda ctx: Fixed("embed", 3, 1.0))
    monkeypatch.setattr(fs, "features", lambda ctx: Fixed("forest", 2, 0.0))
    for name in ("hybrid", "hybrid-forest", "hybrid-stack"):
        (tmp_path / name).mkdir()
        X, info, _ = fs._method_vectors(fs.METHODS[name], data, fs.Context(out=tmp_path / name))
        assert X.shape == (4, 5) and info["embedding_dims"] == 3
    assert fs.METHODS["hybrid-forest"].probe == "forest"
    assert (
        fs.method_label("hybrid-forest", {"embed": {"model": "m"}}) == "hybrid (m) + random forest"
    )


def test_stacked_probe_reads_the_embedding_through_out_of_fold_probabilities():
    """hybrid-stack: the forest sees the features plus the MLP's class probabilities. Here only the
    embedding separates the classes (the features are noise), so the stack must learn them from
    the probability columns."""
    rng = np.random.default_rng(0)

    def objects(n_per_class):  # 16 embedding columns (5 per class shifted), 4 noise features
        y = np.repeat(np.array(["A", "B", "C"]), n_per_class)
        shift = np.zeros((len(y), 16))
        for k, c in enumerate("ABC"):
            shift[y == c, 5 * k : 5 * k + 5] = 3.0
        return np.hstack([rng.normal(size=(len(y), 16)) + shift, rng.normal(size=(len(y), 4))]), y

    X, y = objects(20)
    probe = fs.make_probe("stack", 0, embedding_dims=16).fit(X, y)
    assert list(probe.classes_) == ["A", "B", "C"]
    Xt, yt = objects(10)
    assert (probe.predict(Xt) == yt).mean() > 0.9
    np.testing.assert_allclose(probe.predict_proba(Xt).sum(1), 1.0)
    # the forest's inputs: 4 features + 3 probabilities, not the 16 embedding columns
    assert probe.forest_.pipeline_[-1].n_features_in_ == 7
    with pytest.raises(StarcurveError, match="at least 2 training objects"):
        fs.make_probe("stack", 0, embedding_dims=16).fit(X[:41], y[:41])
