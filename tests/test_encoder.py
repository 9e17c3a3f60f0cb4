"""The encoder: exact Astromer shapes, no leak of hidden values, padding, model folders, embeddings."""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from starcurve.data import schema as S
from starcurve.data.io import write_parquet
from starcurve.errors import StarcurveError
from starcurve.models import hub
from starcurve.models.encoder import EncoderConfig, TimeEncoding, build, get_config
from starcurve.models.estimators import Embedder, EncoderClassifier
from starcurve.models.folder import load
from starcurve.train.heads import fit_classifier
from starcurve.train.pretrain import probe_masks

TINY = {"window": 32, "d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 16}


def tiny(kind: str = "sc1") -> EncoderConfig:
    """A small version of a named config (same design, few parameters)."""
    d = get_config(kind).to_dict()
    d.update(TINY, name=f"tiny-{kind}")
    return EncoderConfig.from_dict(d)


def window_batch(b=3, t=200, seed=0, valid=None):
    g = torch.Generator().manual_seed(seed)
    time = torch.sort(torch.rand(b, t, generator=g) * 800 - 400, 1).values
    mag = torch.randn(b, t, generator=g) * 0.3
    err = torch.rand(b, t, generator=g) * 0.05 + 0.01
    mask = torch.ones(b, t, dtype=torch.bool)
    if valid is not None:
        mask[:, valid:] = False
    return time, mag, err, mask


def test_parameter_counts_match_the_papers():
    a1, a2 = build("a1"), build("a2")
    assert a1.encoder_parameters() == 660_736
    assert sum(p.numel() for p in a1.parameters()) == 661_505
    assert a2.encoder_parameters() == 3_952_640
    assert sum(p.numel() for p in a2.parameters()) == 3_953_410


def test_astromer_time_encoding_is_exactly_as_published():
    enc = TimeEncoding(get_config("a1"))
    t = torch.tensor([0.0, 1.5, -37.25, 812.0])
    got = enc(t).double()
    i = np.arange(256)
    angle = t.double().numpy()[:, None] / 10000 ** (2 * i / 256)
    want = np.where(i % 2 == 0, np.sin(angle), np.cos(angle))
    np.testing.assert_allclose(got.numpy(), want, atol=2e-4)  # float32 angles of ~800 rad


def test_sc1_time_encoding_spans_short_and_long_periods():
    enc = TimeEncoding(get_config("sc1"))
    periods = 2 * math.pi / enc.freq[::2]
    assert periods.min() == pytest.approx(0.02, rel=1e-3)
    assert periods.max() == pytest.approx(5000, rel=1e-3)


@pytest.mark.parametrize("kind", ["a1", "a2", "sc1"])
def test_hidden_magnitudes_do_not_leak(kind):
    model = build(tiny(kind)).eval()  # the same design as the named config, fewer parameters
    time, mag, err, mask = window_batch(b=2, t=200, valid=150)
    _, _, hidden = probe_masks(mag, mask, torch.Generator().manual_seed(1))
    assert hidden.sum() > 0
    mag2 = torch.where(hidden, mag + 5 * torch.randn_like(mag), mag)
    err2 = torch.where(hidden, err * 7, err)  # sc1 reads errors: hidden ones must not count either
    with torch.no_grad():
        p1, s1 = model(time, mag, mask, err, hidden)
        p2, s2 = model(time, mag2, mask, err2, hidden)
        st1 = model.encode(time, mag, mask, err, hidden)
        st2 = model.encode(time, mag2, mask, err2, hidden)
    assert torch.equal(p1, p2) and torch.equal(s1, s2)
    assert all(torch.equal(a, b) for a, b in zip(st1, st2))


@pytest.mark.parametrize("kind", ["a1", "a2", "sc1"])
def test_padding_does_not_change_the_valid_part(kind):
    model = build(tiny(kind)).eval()
    time, mag, err, mask = window_batch(b=2, t=32, valid=20)
    garbage = ~mask
    time2 = torch.where(garbage, torch.randn_like(time) * 1e3, time)
    mag2 = torch.where(garbage, torch.randn_like(mag) * 10, mag)
    with torch.no_grad():
        full = model.window_vectors(time2, mag2, mask, err, layers="weighted")
        short = model.window_vectors(
            time[:, :20], mag[:, :20], mask[:, :20], err[:, :20], layers="weighted"
        )
        pred_full = model(time2, mag2, mask, err)[0][:, :20]
        pred_short = model(time[:, :20], mag[:, :20], mask[:, :20], err[:, :20])[0]
    torch.testing.assert_close(full, short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pred_full, pred_short, atol=1e-5, rtol=1e-5)


def test_probe_masks_have_the_published_proportions():
    mag = torch.randn(4, 200)
    mask = torch.ones(4, 200, dtype=torch.bool)
    mask[3, 120:] = False
    mag_in, probed, hidden = probe_masks(mag, mask, torch.Generator().manual_seed(0))
    assert probed[:3].sum(1).tolist() == [100] * 3
    assert hidden[:3].sum(1).tolist() == [64] * 3  # 32% of the window
    changed = (mag_in != mag) & probed
    assert changed[:3].sum(1).max() <= 16  # 20% of the 80 not kept get a random value
    assert not (probed & ~mask).any() and probed[3].sum() == 60
    assert not torch.equal(mag_in, mag)  # some values were replaced...
    assert torch.isin(mag_in[changed], mag).all()  # ...by magnitudes of the same window set


def test_save_load_round_trip_is_identical(tmp_path):
    model = build(tiny("sc1"), seed=3).eval()
    hub.save_model(model, tmp_path / "m")
    loaded = hub.load_model(tmp_path / "m")
    time, mag, err, mask = window_batch(t=32, valid=25)
    with torch.no_grad():
        assert torch.equal(
            model.window_vectors(time, mag, mask, err),
            loaded.encoder.window_vectors(time, mag, mask, err),
        )
        assert torch.equal(model(time, mag, mask, err)[0], loaded.encoder(time, mag, mask, err)[0])


def test_damaged_or_mismatched_folder_gives_a_clear_error(tmp_path):
    model = build(tiny("a1"))
    folder = hub.save_model(model, tmp_path / "m")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(StarcurveError, match="corrupted weights"):
        hub.load_model(folder)
    (folder / "model.safetensors").write_bytes(weights)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["config"]["d_model"] = 32
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(StarcurveError, match="do not match"):
        hub.load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(StarcurveError, match="corrupted or unreadable model config"):
        hub.load_model(folder)
    with pytest.raises(StarcurveError, match="not a model folder"):
        hub.load_model(tmp_path / "nothing")


def test_load_model_without_path_uses_the_shipped_folder(tmp_path, monkeypatch):
    from starcurve.models import folder

    monkeypatch.setattr(folder, "DEFAULT_MODEL", tmp_path / "default")
    with pytest.raises(StarcurveError, match="no pretrained model ships"):
        hub.load_model()
    hub.save_model(build(tiny("a1")), tmp_path / "default")
    assert hub.load_model().config.name == "tiny-a1"


def test_embed_table_is_the_mean_of_window_vectors(toy_table):
    model = hub.Model(build(tiny("sc1"), seed=1))
    emb = model.embed_table(toy_table)
    assert emb.shape == (10, 16) and np.isfinite(emb).all()
    # the last light curve (300 points, window 32) by hand: 10 consecutive windows
    one = toy_table.slice(9, 1)
    from starcurve.data.windows import windows

    w = windows(one, 32)
    vec = model.window_vectors(w)
    np.testing.assert_allclose(emb[9], vec.mean(0), atol=1e-5)
    # batching and sorting by length do not change the result
    np.testing.assert_allclose(model.embed_table(toy_table, batch_size=3), emb, atol=1e-5)


def test_embed_api_cli_and_sklearn_agree(toy_table, tmp_path):
    folder = hub.save_model(build(tiny("a2"), seed=2), tmp_path / "m")
    model = hub.load_model(folder)
    bad = pa.table(
        {
            S.ID: ["bad"],
            S.BAND: ["V"],
            S.TIME: [[1.0, 2.0]],
            S.MAG: [[np.nan, np.nan]],
            S.ERR: [[0.1, 0.1]],
        }
    )
    cols = [S.ID, S.BAND, S.TIME, S.MAG, S.ERR]
    table = pa.concat_tables([toy_table.select(cols), S.validate(bad)])
    out = model.embed(table, layers="weighted")
    assert out.column_names == ["object_id", "band", "embedding"]
    assert out.num_rows == 10 and len(model.last_report.removed) == 1  # the bad one is reported
    write_parquet(table, tmp_path / "in.parquet")
    res = CliRunner().invoke(
        hub.embed_cmd,
        [
            "--model",
            str(folder),
            "--input",
            str(tmp_path / "in.parquet"),
            "--output",
            str(tmp_path / "e.parquet"),
            "--layers",
            "weighted",
            "--chunk-rows",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    cli = pq.read_table(tmp_path / "e.parquet")
    assert cli.column("object_id").to_pylist() == out.column("object_id").to_pylist()
    np.testing.assert_allclose(
        np.array(cli.column("embedding").to_pylist()),
        np.array(out.column("embedding").to_pylist()),
        atol=1e-5,
    )
    assert not (tmp_path / "e.parquet.parts").exists()
    emb = Embedder(model, layers="weighted").fit().transform(table)
    assert emb.shape == (11, 16) and np.isnan(emb[10]).all()
    pipe = make_pipeline(Embedder(model), LogisticRegression(max_iter=200))
    labels = toy_table.column("label").to_pylist()
    pipe.fit(toy_table, labels)
    assert len(pipe.predict(toy_table)) == 10


def test_embed_cli_resumes_from_part_files(toy_table, tmp_path, monkeypatch, capsys):
    from conftest import run_cli

    folder = hub.save_model(build(tiny("a1")), tmp_path / "m")
    write_parquet(toy_table, tmp_path / "in.parquet")
    args = [
        "embed",
        "--model",
        folder,
        "--input",
        tmp_path / "in.parquet",
        "--output",
        tmp_path / "e.parquet",
        "--chunk-rows",
        "4",
        "--workers",
        "0",
    ]
    assert run_cli(args, capsys)[0] == 0
    first = pq.read_table(tmp_path / "e.parquet")
    # an interrupted run leaves part files: a finished part is reused, not recomputed
    (tmp_path / "e.parquet").unlink()
    calls, real = [], hub.embed_partition

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2 and interrupt:
            raise KeyboardInterrupt
        return real(*a, **k)

    interrupt = True

    monkeypatch.setattr(hub, "embed_partition", interrupted)
    assert run_cli(args, capsys)[0] == 130
    assert sorted(p.name for p in (tmp_path / "e.parquet.parts").glob("part-*")) == [
        "part-00000.json",
        "part-00000.parquet",
    ]
    calls.clear()
    interrupt = False
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert len(calls) == 2 and "2/3 partitions computed now" in out  # 10 rows: 4 + 4 + 2
    assert pq.read_table(tmp_path / "e.parquet").equals(first)


def test_config_from_json_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({**TINY, "name": "mine", "norm": "pre", "residual": "add"}))
    assert get_config(f).d_model == 16
    f.write_text(json.dumps({"d_modle": 3}))
    with pytest.raises(StarcurveError, match="unknown field"):
        get_config(f)
    with pytest.raises(StarcurveError):
        get_config("a3")


def test_classifier_heads_frozen_and_whole_network(tmp_path):
    from starcurve.data.io import from_arrays
    from starcurve.models import heads

    rng = np.random.default_rng(0)
    times, mags, labels = [], [], []
    for i in range(40):
        n = int(rng.integers(20, 80))
        t = np.sort(rng.uniform(0, 200, n))
        variable = i % 2 == 1
        signal = 0.5 * np.sin(2 * np.pi * t / 3) if variable else 0.05 * rng.normal(size=n)
        times.append(t)
        mags.append(signal + rng.normal(0, 0.02, n))
        labels.append("var" if variable else "const")
    table = from_arrays(times, mags, [np.full(len(t), 0.02) for t in times], labels=labels)
    enc = build(tiny("sc1"), seed=0)
    pool = heads.WeightedPooling(3)
    assert torch.allclose(torch.softmax(pool.logits, 0), torch.full((3,), 1 / 3))  # uniform start
    mlp = heads.mlp(16, 2)
    assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [1024, 512, 256, 2]
    before = enc.inp.weight.clone()
    clf = fit_classifier(
        enc,
        table.slice(0, 30),
        labels[:30],
        out_dir=tmp_path / "c",
        head_steps=60,
        full_steps=10,
        eval_every=10,
    )
    assert not torch.equal(before, clf.encoder.inp.weight)  # the whole network was trained
    proba = clf.predict_proba(table.slice(30))
    pred = np.array(clf.classes)[proba.argmax(1)]
    assert proba.shape == (10, 2) and np.allclose(proba.sum(1), 1)
    assert (pred == np.array(labels[30:])).mean() >= 0.8  # amplitude alone separates these
    est = EncoderClassifier()
    est.net_ = clf
    est.save(tmp_path / "saved")
    again = load(tmp_path / "saved")
    assert isinstance(again, EncoderClassifier) and again.classes_ == ["const", "var"]
    np.testing.assert_allclose(again.predict_proba(table.slice(30)), proba, atol=1e-6)
    (tmp_path / "saved" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(StarcurveError, match="corrupted weights"):
        load(tmp_path / "saved")


def test_bf16_switch_runs_the_encoder_in_bfloat16_and_the_cli_passes_it(toy_table, tmp_path):
    folder = hub.save_model(build(tiny("sc1"), seed=3), tmp_path / "m")
    model = hub.load_model(folder)
    fp32 = model.embed_table(toy_table)
    hub.use_bf16(True)  # (conftest turns it off after every test)
    assert hub.bf16_enabled()
    bf16 = model.embed_table(toy_table)
    hub.use_bf16(False)
    assert np.isfinite(bf16).all() and not np.array_equal(bf16, fp32)  # it did run in bfloat16
    np.testing.assert_allclose(bf16, fp32, atol=0.1 * np.abs(fp32).max())  # and stays close
    np.testing.assert_array_equal(model.embed_table(toy_table), fp32)  # off again: float32
    write_parquet(toy_table, tmp_path / "in.parquet")
    args = ["--model", str(folder), "--input", str(tmp_path / "in.parquet"), "--workers", "0"]
    res = CliRunner().invoke(
        hub.embed_cmd, [*args, "--output", str(tmp_path / "e.parquet"), "--bf16"]
    )
    assert res.exit_code == 0, res.output
    got = np.array(pq.read_table(tmp_path / "e.parquet").column("embedding").to_pylist())
    np.testing.assert_allclose(got, bf16, atol=1e-6)
