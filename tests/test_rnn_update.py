"""New observations through the public API (issue 14): RNN state files, NetworkClassifier.update and
``starcurve predict --state``, equal to a plain predict on the whole light curves."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import run_cli

from starcurve.data.io import from_arrays, write_parquet
from starcurve.errors import StarcurveError
from starcurve.models.estimators import NetworkClassifier
from starcurve.models.folder import load
from starcurve.models.rnn import (
    RNNClassifier,
    RNNConfig,
    load_state,
    save_state,
    state_file_name,
)
from starcurve.train import supervised as sup

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = {"hidden": 8, "layers": 2, "dense": 8, "dropout": 0.0}


def rnn_folder(path, seed=0, **options):
    torch.manual_seed(seed)
    est = NetworkClassifier("rnn")
    est.net_ = sup.build("rnn", classes=["a", "b", "c"], dt_scale=1.3, dm_scale=0.2,
                         **{**TINY, **options}).eval()  # fmt: skip
    est.save(path)
    return path


def light_curves(seed=0):
    """Objects in two bands, of 15 to 160 points (some below the RNN's 20), with a repeated time
    stamp and a non-finite point: each cut into three chunks of new observations."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate([15, 24, 61, 160, 90, 33]):
        for band in ("R", "V") if i % 2 else ("R",):
            t = np.cumsum(rng.exponential(1.0, n)) + 1000
            m = 15 + 0.4 * np.sin(t / (1 + i)) + 0.02 * rng.standard_normal(n)
            e = np.full(n, 0.02)
            if n > 50:
                t[n // 3] = t[n // 3 - 1]  # a repeated time stamp across the first chunk boundary
                m[n // 2] = np.nan  # cleaning drops it
            rows.append((f"star {i}/x", band, t, m, e))
    return rows


def table_of(rows, part=None):
    """The whole light curves (part None) or chunk ``part`` (0, 1, 2) of each."""
    cols = [], [], [], [], []
    for oid, band, t, m, e in rows:
        cut = [0, len(t) // 3, 2 * len(t) // 3, len(t)]
        sel = slice(None) if part is None else slice(cut[part], cut[part + 1])
        for c, v in zip(cols, (oid, band, t[sel], m[sel], e[sel])):
            c.append(v)
    tables = [from_arrays([t], [m], [e], ids=[i], band=b) for i, b, t, m, e in zip(*cols)]
    return pa.concat_tables(tables)


def same_answers(a: pa.Table, b: pa.Table) -> None:
    assert a.column("object_id").to_pylist() == b.column("object_id").to_pylist()
    for name in ("band", "n_obs", "class", "skip_reason"):
        assert a.column(name).to_pylist() == b.column(name).to_pylist(), name
    for c in ("a", "b", "c"):
        x = a.column(f"prob_{c}").to_numpy(zero_copy_only=False)
        y = b.column(f"prob_{c}").to_numpy(zero_copy_only=False)
        assert np.array_equal(np.isnan(x), np.isnan(y))
        assert np.allclose(x[~np.isnan(x)], y[~np.isnan(y)], atol=1e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_state_file_round_trips_and_continues_bit_for_bit(tmp_path, cell):
    torch.manual_seed(0)
    net = RNNClassifier(RNNConfig(classes=["a", "b"], cell=cell, **TINY)).eval()
    rng = np.random.default_rng(1)
    t, m = np.cumsum(rng.exponential(1.0, 80)), 15 + rng.standard_normal(80)
    state = net.update(net.init_state(), (t[:47], m[:47]))
    save_state(state, tmp_path / "s.safetensors", {"model": "x"})
    back, doc = load_state(tmp_path / "s.safetensors")
    assert doc["model"] == "x" and doc["n_obs"] == 47
    assert (back.n_obs, back.last_t, back.last_m) == (state.n_obs, state.last_t, state.last_m)
    assert np.array_equal(back.pending, state.pending) and np.array_equal(back.proba, state.proba)
    a = net.update(state, (t[47:], m[47:]))
    b = net.update(back, (t[47:], m[47:]))
    assert np.array_equal(a.proba, b.proba)
    empty = net.init_state()
    save_state(empty, tmp_path / "e.safetensors")
    assert load_state(tmp_path / "e.safetensors")[0].hidden is None
    (tmp_path / "bad.safetensors").write_bytes(b"not a state")
    with pytest.raises(StarcurveError, match="not a readable RNN state file"):
        load_state(tmp_path / "bad.safetensors")


def test_state_file_names_are_safe_and_distinct():
    names = {state_file_name(i, b) for i, b in [("a/b", "R"), ("a_b", "R"), ("../../x", "R"),
                                                  ("ü ñ", "V"), ("x" * 500, "R"), ("a/b", "V")]}  # fmt: skip
    assert len(names) == 6
    for name in names:
        sub, file = name.split("/")
        assert (
            len(sub) == 2 and ".." not in name and len(file) < 100 and file.endswith(".safetensors")
        )


def test_predict_state_in_three_chunks_equals_one_plain_predict(tmp_path, capsys):
    model = rnn_folder(tmp_path / "rnn")
    rows = light_curves()
    whole = write_parquet(table_of(rows), tmp_path / "whole.parquet")
    chunks = [write_parquet(table_of(rows, k), tmp_path / f"chunk{k}.parquet") for k in range(3)]
    states = tmp_path / "states"
    for per_band in ([], ["--per-band"]):
        out = tmp_path / f"plain{len(per_band)}.parquet"
        code, _, err = run_cli(["predict", "--model", model, "--input", whole, "--output", out,
                                "--workers", "0", *per_band], capsys)  # fmt: skip
        assert code == 0, err
    for k, chunk in enumerate(chunks):
        args = ["predict", "--model", model, "--input", chunk, "--output",
                tmp_path / f"upd{k}.parquet", "--state", states, "--per-band"]  # fmt: skip
        if k == 1:  # a new process: the states come back from disk
            env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
            res = subprocess.run([sys.executable, "-m", "starcurve.cli", *map(str, args)],
                                 check=False, env=env, capture_output=True, text=True)  # fmt: skip
            assert res.returncode == 0, res.stderr
        else:
            code, out, err = run_cli(args, capsys)
            assert code == 0, err
    plain = pq.read_table(tmp_path / "plain1.parquet")
    same_answers(pq.read_table(tmp_path / "upd2.parquet"), plain)
    reasons = plain.column("skip_reason").to_pylist()
    assert reasons.count(None) == len(reasons) - 1 and "15 < 20" in str(reasons)
    # the bands combined per object, as plain predict does (weighted by all points so far)
    final = tmp_path / "final.parquet"
    states2 = tmp_path / "states_obj"
    for k, chunk in enumerate(chunks):
        code, _, err = run_cli(["predict", "--model", model, "--input", chunk, "--output", final,
                                "--state", states2], capsys)  # fmt: skip
        assert code == 0, err
    same_answers(pq.read_table(final), pq.read_table(tmp_path / "plain0.parquet"))
    n_files = sum(1 for _ in states.rglob("*.safetensors"))
    assert n_files == len(rows) and (states / "store.json").is_file()


@pytest.mark.parametrize(
    "options", [{"cell": "lstm"}, {"context": True, "context_mean": [15.0, -1.7]}]
)
def test_the_python_api_updates_per_row(tmp_path, options):
    est = load(rnn_folder(tmp_path / "rnn", **options))
    rows = light_curves(seed=2)
    for k in range(3):
        ans = est.update(table_of(rows, k), tmp_path / "s")
    full = est.answers(table_of(rows))
    assert np.allclose(ans.proba, full.proba, atol=1e-5, equal_nan=True)
    assert ans.reasons == full.reasons
    # a row with no valid new point keeps its stored answer
    t, m, e = [np.array([5000.0])], [np.array([np.nan])], [np.array([0.02])]
    again = est.update(from_arrays(t, m, e, ids=[rows[3][0]], band=rows[3][1]), tmp_path / "s")
    assert np.allclose(again.proba[0], full.proba[3], atol=1e-5)


def test_misuse_is_one_line(tmp_path, capsys):
    model = rnn_folder(tmp_path / "rnn")
    rows = light_curves()
    chunk = write_parquet(table_of(rows, 1), tmp_path / "c1.parquet")
    early = write_parquet(table_of(rows, 0), tmp_path / "c0.parquet")
    states = tmp_path / "states"
    base = ["predict", "--input", chunk, "--output", tmp_path / "o.parquet", "--state", states]
    assert run_cli(base + ["--model", model], capsys)[0] == 0
    before = {p: p.read_bytes() for p in states.rglob("*.safetensors")}
    code, _, err = run_cli(["predict", "--model", model, "--input", early, "--output",
                            tmp_path / "o.parquet", "--state", states], capsys)  # fmt: skip
    assert code == 2 and "earlier than the last one" in err and "no state was written" in err
    assert len(err.strip().splitlines()) == 1
    assert before == {p: p.read_bytes() for p in states.rglob("*.safetensors")}
    other = rnn_folder(tmp_path / "other", seed=1)  # the same config, other weights
    code, _, err = run_cli(base + ["--model", other], capsys)
    assert code == 2 and "written by another model" in err and len(err.strip().splitlines()) == 1
    cnn = NetworkClassifier("cnn")
    torch.manual_seed(0)
    cnn.net_ = sup.build("cnn", classes=["a", "b"], n=64, filters1=4, filters2=4, kernel=6,
                         dense=8).eval()  # fmt: skip
    cnn.save(tmp_path / "cnn")
    code, _, err = run_cli(base[:-1] + [tmp_path / "s_cnn", "--model", tmp_path / "cnn"], capsys)
    assert code == 2 and "RNN feature" in err and not (tmp_path / "s_cnn").exists()
    with pytest.raises(StarcurveError, match="RNN feature"):
        load(tmp_path / "cnn").update(table_of(rows), tmp_path / "s_cnn")
    code, _, err = run_cli(base[:-1] + [tmp_path / "s_w", "--model", model, "--workers", "2"],
                           capsys)  # fmt: skip
    assert code == 2 and "--workers" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    code, _, err = run_cli(base[:-1] + [tmp_path / "full", "--model", model], capsys)
    assert code == 2 and "not an RNN state folder" in err


def test_an_encoder_classifier_refuses_state(tmp_path, capsys):
    chunk = write_parquet(table_of(light_curves(), 0), tmp_path / "c.parquet")
    code, _, err = run_cli(["predict", "--input", chunk, "--output", tmp_path / "o.parquet",
                            "--state", tmp_path / "s"], capsys)  # the shipped model  # fmt: skip
    assert code == 2 and "only an RNN model" in err and len(err.strip().splitlines()) == 1
