"""The shipped-classifier head: set-valued labels, OOD flag, storage without pickle, the CLI."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import tiny_config

from starcurve import StarcurveError, write_parquet
from starcurve.cli import main
from starcurve.data.io import from_arrays
from starcurve.data.views import log10_false_alarm, periods
from starcurve.models import classify as C
from starcurve.models.encoder import Encoder
from starcurve.models.estimators import TaxonomyClassifier
from starcurve.models.folder import load
from starcurve.models.hub import Model, load_model, save_model
from starcurve.train.heads import fit_head

TINY = tiny_config(window=200)


def round_trip(state: dict, folder, encoder=None) -> dict:
    """Save a head (with a tiny encoder) as a classifier folder and load it back: its state."""
    model = encoder or Model(Encoder(TINY))
    TaxonomyClassifier().with_state(model, state, {"note": "test"}).save(folder)
    return load(folder).state_


def clusters(rng, n=60, dim=16):
    centres = {c: rng.normal(0, 4, dim) for c in ("RRab", "RRc", "Cepheid", "LPV")}
    X, y = [], []
    for c, mu in centres.items():
        X.append(mu + rng.normal(0, 1, (n, dim)))
        y += [c] * n
    return np.vstack(X).astype(np.float32), np.array(y), centres


def test_head_learns_fine_classes_from_mixed_fine_and_coarse_labels():
    rng = np.random.default_rng(0)
    X, y, _ = clusters(rng)
    labels = y.copy().astype(object)
    labels[(y == "RRab") & (rng.random(len(y)) < 0.5)] = "RR_Lyrae"  # coarse: RRab or RRc
    labels[(y == "LPV")] = "Mira"
    state = fit_head(X, list(labels), epochs=200)
    prob, ood = C.head_scores(state, X)
    pred = np.array(C.FINE)[prob.argmax(1)]
    assert (pred == y).mean() > 0.95
    assert (ood > 1).mean() <= 0.05  # the 99th-percentile threshold, on the training objects


def test_far_away_points_are_flagged_out_of_distribution():
    rng = np.random.default_rng(1)
    X, y, _ = clusters(rng)
    state = fit_head(X, list(y), epochs=50)
    far = rng.normal(0, 1, (20, X.shape[1])).astype(np.float32) + 40
    assert (C.head_scores(state, far)[1] > 1).all()


def test_a_gap_inside_a_two_mode_class_is_flagged():
    """A class made of two separate groups: its mean lies in empty space, and a light curve there is
    unlike every training object (a distance-to-class-mean score would call it typical)."""
    rng = np.random.default_rng(3)
    X, y, _ = clusters(rng)
    rrab = X[y == "RRab"]
    X[y == "RRab"] = rrab + np.where(np.arange(len(rrab))[:, None] % 2 == 0, 12.0, -12.0)
    state = fit_head(X, ["Mira" if c == "LPV" else c for c in y], epochs=20)
    gap = X[y == "RRab"].mean(0) + rng.normal(0, 1, (20, X.shape[1])).astype(np.float32)
    assert (C.head_scores(state, gap)[1] > 1).mean() >= 0.9
    assert (C.head_scores(state, X)[1] > 1).mean() <= 0.05


def test_a_light_curve_without_a_significant_period_is_flagged(tmp_path):
    """Constant stars embed among the low-amplitude variables; the periodogram test catches them."""
    rng = np.random.default_rng(4)
    t = [np.sort(rng.uniform(0, 2000, 300)) for _ in range(6)]
    mags = [12 + 0.3 * np.sin(2 * np.pi * x / 0.71) + rng.normal(0, 0.02, 300) for x in t[:3]]
    mags += [12 + rng.normal(0, 0.02, 300) for _ in t[3:]]
    table = from_arrays(t, mags, [np.full(300, 0.02)] * 6, ids=[f"s{i}" for i in range(6)])
    log_fap = log10_false_alarm(table, periods(table, backend="numpy"))
    assert (log_fap[:3] < -20).all() and (log_fap[3:] > -2).all()  # sines vs white noise
    X, y, _ = clusters(rng)
    fap_train = rng.uniform(-60, -5, len(X))  # training variables: significant periods
    state = fit_head(X, ["Mira" if c == "LPV" else c for c in y], epochs=20, log_fap=fap_train)
    assert (C.head_scores(state, X, fap_train)[1] > 1).mean() <= 0.05
    _, ood = C.head_scores(
        state, X[:6], log_fap
    )  # typical embeddings, but the last three are noise
    assert (ood[3:] > 1).all() and (ood[:3] <= 1).sum() >= 2
    assert round_trip(state, tmp_path)["fap_threshold"] == pytest.approx(state["fap_threshold"])
    with pytest.raises(StarcurveError, match="log_fap"):
        C.head_scores(state, X)


def test_outlier_exposure_flags_what_it_was_shown_and_little_else(tmp_path):
    """Non-variables sit close to a training class (as constants sit among low-amplitude variables),
    too close for the distance test; shown at training time (outlier exposure), new draws of them
    are flagged, and the training objects stay near the 99th-percentile rate."""
    rng = np.random.default_rng(5)
    X, y, centres = clusters(rng)
    labels = ["Mira" if c == "LPV" else c for c in y]
    shift = np.zeros(X.shape[1], np.float32)
    shift[0] = 2.5  # off the RRab cluster by 2.5 of its standard deviations, along one axis

    def draw(n):
        return (centres["RRab"] + rng.normal(0, 1, (n, X.shape[1])) + shift).astype(np.float32)

    out, fresh = draw(200), draw(40)
    plain = fit_head(X, labels, epochs=20)
    exposed = fit_head(X, labels, epochs=20, outliers=out)
    assert (C.head_scores(plain, fresh)[1] > 1).mean() <= 0.5  # distances alone miss most of them
    assert (C.head_scores(exposed, fresh)[1] > 1).mean() >= 0.7
    assert (C.head_scores(exposed, X)[1] > 1).mean() <= 0.05
    back = round_trip(exposed, tmp_path)
    np.testing.assert_allclose(
        C.head_scores(back, fresh)[1], C.head_scores(exposed, fresh)[1], rtol=1e-5
    )


def test_unusable_labels_give_a_clear_error():
    with pytest.raises(StarcurveError, match="taxonomy"):
        fit_head(np.zeros((20, 4), np.float32), ["BCEP"] * 20)


def test_head_round_trip_and_corruption(tmp_path):
    rng = np.random.default_rng(2)
    X, y, _ = clusters(rng)
    state = fit_head(X, list(y), epochs=20)
    back = round_trip(state, tmp_path)
    for a, b in zip(C.head_scores(state, X), C.head_scores(back, X)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    (tmp_path / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(StarcurveError, match="corrupted"):
        load(tmp_path)


def test_classify_cli_end_to_end(tmp_path, capsys):
    from starcurve.data.simulate import simulate

    torch.manual_seed(0)
    folder = save_model(Encoder(TINY), tmp_path / "m")
    sim = simulate("asas", 120, ["RRab", "Mira"], seed=0)
    model = load_model(folder)
    state = fit_head(model.embed_table(sim), sim.column("label").to_pylist(), epochs=100)
    round_trip(state, tmp_path / "clf", model)
    data = sim.slice(0, 20)
    write_parquet(data, tmp_path / "in.parquet")
    main(
        [
            "predict",
            "--input",
            str(tmp_path / "in.parquet"),
            "--output",
            str(tmp_path / "out.parquet"),
            "--model",
            str(tmp_path / "clf"),
        ]
    )
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.num_rows == 20
    assert {
        "object_id",
        "class",
        "probability",
        "ood_score",
        "is_ood",
        "prob_RRab",
        "prob_LPV",
        "skip_reason",
    } <= set(out.column_names)
    p = np.stack([out.column(f"prob_{c}").to_numpy() for c in C.FINE], 1)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert "20 classified" in capsys.readouterr().out
