"""Issue 15: no silent wrong answers. Each test here failed before the change it covers.

1. nothing non-finite into or out of a model (plausibility in cleaning: test_clean.py);
2. reading never merges objects silently, bad cells cost their row only;
3. one answer per object (classify, predict);
4. every command handles bad input and outputs the same way;
5. output files get the user's normal permissions;
6. training logs: one sign and one name per figure, no -Infinity, no repeated row after a resume.
(7, the demo, is in test_demo.py; the fuzz test of read + clean + embed in test_fuzz_inputs.py.)
"""

import csv
import json
import os
import stat

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import run_cli as run
from conftest import tiny_config

from starcurve import StarcurveError, clean, read, write_parquet
from starcurve.data import schema as S
from starcurve.data.io import from_arrays, iter_tables, read_parquet
from starcurve.data.simulate import simulate
from starcurve.models import classify as C
from starcurve.models import hub
from starcurve.models.encoder import build
from starcurve.models.estimators import NetworkClassifier, TaxonomyClassifier
from starcurve.models.folder import load
from starcurve.models.predict import prediction_table
from starcurve.train import supervised as sup
from starcurve.train.heads import fit_head

TINY = tiny_config()
BAD_NAME = os.fsdecode(b"lc\xff.parquet")  # not UTF-8


@pytest.fixture(scope="module")
def sim():
    return simulate("asas", 80, ["RRab", "Mira"], seed=0)


@pytest.fixture(scope="module")
def models(tmp_path_factory, sim):
    """A tiny encoder folder, a classifier folder (that encoder with the taxonomy head) and a tiny
    RNN folder."""
    root = tmp_path_factory.mktemp("models")
    enc = hub.save_model(build(TINY, seed=0), root / "enc")
    m = hub.load_model(enc)
    state = fit_head(m.embed_table(sim), sim.column("label").to_pylist(), epochs=20)
    TaxonomyClassifier().with_state(m, state, {}).save(root / "clf")
    torch.manual_seed(0)
    rnn = NetworkClassifier("rnn")
    rnn.net_ = sup.build("rnn", classes=["Mira", "RRab"], hidden=8, dense=8)
    rnn.save(root / "rnn")
    return {"enc": enc, "clf": root / "clf", "rnn": root / "rnn"}


def two_bands(table: pa.Table) -> pa.Table:
    """Every object twice: band B (every second point) and band R (all points)."""
    b = pa.table({S.ID: table.column(S.ID), S.BAND: pa.array(["B"] * table.num_rows)})
    t, off = S.flat(table, S.TIME)
    keep = np.arange(len(t)) % 2 == 0
    rows = S.row_index(off)
    off_b = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=table.num_rows))])
    b = S.with_lists(b, off_b, **{c: S.flat(table, c)[0][keep] for c in S.LIST_COLUMNS})
    r = table.select([S.ID, S.BAND, *S.LIST_COLUMNS]).set_column(
        1, S.BAND, pa.array(["R"] * table.num_rows)
    )
    return pa.concat_tables([b, r])


# --------------------------------------------------------------------- 1. plausibility, NaN outputs


def test_nothing_non_finite_reaches_the_encoder_and_a_nan_embedding_is_a_skip(models, sim):
    model = hub.load_model(models["enc"])
    table = sim.slice(0, 3)
    t = S.flat(table, S.TIME)[0].copy()
    t[S.flat(table, S.TIME)[1][1]] = 1e300  # finite in float64, not in the encoder's float32
    table = S.with_lists(table, S.flat(table, S.TIME)[1], time=t)
    seen = []
    original = model.encoder.window_vectors

    def spy(time, mag, mask, err, layers="last", **kw):
        seen.append(all(bool(torch.isfinite(x).all()) for x in (time, mag, err)))
        return original(time, mag, mask, err, layers=layers, **kw)

    model.encoder.window_vectors = spy
    out = model.embed(table)
    assert seen and all(seen)
    assert out.column(S.ID).to_pylist() == [
        table.column(S.ID)[0].as_py(),
        table.column(S.ID)[2].as_py(),
    ]
    assert np.isfinite(np.stack(out.column("embedding").to_pylist())).all()
    key = f"{table.column(S.ID)[1].as_py()}/V"
    assert "not finite" in model.last_report.removed[key]


def test_classify_never_gives_a_class_for_a_nan_output(models, sim, tmp_path, capsys, monkeypatch):
    data = sim.slice(0, 6)
    mags, off = S.flat(data, S.MAG)
    mags = mags.copy()
    mags[off[2] + 3] = 1e30  # one absurd point: dropped by cleaning, the object still classified
    write_parquet(S.with_lists(data, off, mag=mags), tmp_path / "in.parquet")
    real = hub.Model.embed_table

    def nan_first_row(self, table, **kw):
        vec = real(self, table, **kw)
        vec[0] = np.nan  # a model output gone bad
        return vec

    monkeypatch.setattr(hub.Model, "embed_table", nan_first_row)
    code, out, _ = run(
        [
            "predict",
            "--model",
            models["clf"],
            "--input",
            tmp_path / "in.parquet",
            "--output",
            tmp_path / "c.parquet",
        ],
        capsys,
    )
    assert code == 0
    res = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert len(res) == 6 and res[0]["object_id"] == data.column(S.ID)[0].as_py()
    assert res[0]["class"] is None and "not finite" in res[0]["skip_reason"]
    assert all(r["class"] is not None and np.isfinite(r["probability"]) for r in res[1:])
    assert "5 classified, 1 skipped" in out


def test_predict_gives_a_reason_not_a_class_when_the_output_is_nan(models, sim):
    model = load(models["rnn"])
    with torch.no_grad():
        next(model.net_.parameters()).fill_(float("nan"))
    out = prediction_table(model, sim.slice(0, 4))
    assert out.column("class").null_count == 4
    assert all("not finite" in r for r in out.column("skip_reason").to_pylist())


# --------------------------------------------------------------------- 2. reading


def test_a_table_of_several_objects_without_ids_is_an_error_naming_the_mapping():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "oid": np.repeat(list("abcde"), 60),
            "mjd": np.tile(np.arange(60.0), 5),
            "mag": rng.normal(12, 0.1, 300),
            "mag_err": 0.1,
        }
    )
    with pytest.raises(StarcurveError, match=r"object_id.*columns=\{'object_id': NAME\}.*'oid'"):
        read(df, columns={"time": "mjd"})
    by_time = df.sort_values("mjd", kind="stable")  # interleaved: repeated times, never decreasing
    with pytest.raises(StarcurveError, match="several light curves"):
        read(by_time, columns={"time": "mjd"})
    assert read(df, columns={"time": "mjd", "object_id": "oid"}).num_rows == 5


def _csv(path, rows, header="object_id,time,mag,mag_err"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_an_object_id_column_in_a_csv_is_honoured(tmp_path, capsys):
    rows = [(oid, i * 1.3, 12 + 0.1 * np.sin(i), 0.02) for oid in "ab" for i in range(30)]
    path = _csv(tmp_path / "two.csv", rows)
    t = read(path)
    assert t.column(S.ID).to_pylist() == ["a", "b"] and S.lengths(t).tolist() == [30, 30]
    _csv(tmp_path / "renamed.csv", rows, header="star,time,mag,mag_err")
    code, out, _ = run(
        ["inspect", "--input", tmp_path / "renamed.csv", "--columns", "object_id=star", "--json"],
        capsys,
    )
    assert code == 0 and json.loads(out)["objects"] == 2
    code, _, err = run(
        ["inspect", "--input", tmp_path / "renamed.csv"], capsys
    )  # no mapping: refused
    assert code == 2 and "--columns object_id=NAME" in err and "'star'" in err


def test_a_bad_cell_drops_its_row_not_the_file(tmp_path):
    rows = [["x", f"{i * 1.3:.2f}", f"{12 + 0.1 * np.sin(i):.3f}", "0.02"] for i in range(62)]
    rows[5][1] = "oops"  # text in a time cell
    rows[9][2] = "n/a"  # and in a magnitude cell
    rows[14][2] = ""  # an empty cell stays a cell (the error is not read as the magnitude)
    rows[20].append("extra")  # a line with one field too many
    out, rep = clean(read(_csv(tmp_path / "bad.csv", rows)))
    assert S.lengths(out).tolist() == [58] and (S.flat(out, S.ERR)[0] == np.float32(0.02)).all()
    assert rep.points["nonfinite"] == 3


def test_streaming_a_long_parquet_file_never_cuts_an_object_in_two(tmp_path):
    df = pd.DataFrame(
        {
            "object_id": np.repeat(["a", "b", "c"], 25),
            "time": np.tile(np.arange(25.0), 3),
            "mag": 12.0,
            "mag_err": 0.1,
        }
    )
    df.to_parquet(tmp_path / "long.parquet")
    tables = list(iter_tables(tmp_path / "long.parquet", batch_rows=10))
    ids = [i for t in tables for i in t.column(S.ID).to_pylist()]
    assert ids == ["a", "b", "c"]


# --------------------------------------------------------------------- 3. one answer per object


def test_classify_gives_one_answer_per_object_combining_bands(models, sim, tmp_path, capsys):
    data = two_bands(sim.slice(0, 8))
    write_parquet(data, tmp_path / "in.parquet")
    args = ["predict", "--model", models["clf"], "--input", tmp_path / "in.parquet", "--output"]
    assert run([*args, tmp_path / "obj.parquet"], capsys)[0] == 0
    assert run([*args, tmp_path / "band.parquet", "--per-band"], capsys)[0] == 0
    obj, band = pq.read_table(tmp_path / "obj.parquet"), pq.read_table(tmp_path / "band.parquet")
    assert obj.num_rows == 8 and band.num_rows == 16
    assert set(obj.column("band").to_pylist()) == {"B,R"}
    # the documented rule: probabilities averaged over the bands, weighted by their points
    p_band = np.stack([band.column(f"prob_{c}").to_numpy() for c in C.FINE], 1)
    w = band.column("n_obs").to_numpy().astype(float)
    first = sim.column(S.ID)[0].as_py()
    rows = np.array(band.column(S.ID).to_pylist()) == first
    expect = (p_band[rows] * w[rows, None]).sum(0) / w[rows].sum()
    got = np.stack([obj.column(f"prob_{c}").to_numpy() for c in C.FINE], 1)[0]
    np.testing.assert_allclose(got, expect, rtol=1e-5)
    assert obj.column("class")[0].as_py() == C.FINE[int(expect.argmax())]
    assert obj.column("n_obs")[0].as_py() == w[rows].sum()


def test_predict_gives_one_answer_per_object_and_keeps_the_reasons(models, sim, tmp_path, capsys):
    data = two_bands(sim.slice(0, 6))
    short = from_arrays(
        [[1.0, 2.0]] * 2, [[12.0, 12.1]] * 2, [[0.1, 0.1]] * 2, ids=["tiny", "tiny"]
    )
    short = short.set_column(1, S.BAND, pa.array(["B", "R"]))
    write_parquet(
        pa.concat_tables([data.select(short.column_names), short]), tmp_path / "in.parquet"
    )
    args = ["predict", "--model", models["rnn"], "--input", tmp_path / "in.parquet", "--output"]
    assert run([*args, tmp_path / "obj.parquet"], capsys)[0] == 0
    assert run([*args, tmp_path / "band.parquet", "--per-band"], capsys)[0] == 0
    obj, band = pq.read_table(tmp_path / "obj.parquet"), pq.read_table(tmp_path / "band.parquet")
    assert obj.num_rows == 7 and band.num_rows == 14
    probs = np.stack([band.column(f"prob_{c}").to_numpy() for c in ("Mira", "RRab")], 1)
    p_band = probs[[0, 1, 6, 7]]
    w = band.column("n_obs").to_numpy()[[0, 1, 6, 7]].astype(float)
    ids = band.column(S.ID).to_pylist()
    assert ids[0] == ids[6]  # band B rows first, then band R rows
    expect = (p_band[[0, 2]] * w[[0, 2], None]).sum(0) / w[[0, 2]].sum()
    got = [obj.column(f"prob_{c}")[0].as_py() for c in ("Mira", "RRab")]
    np.testing.assert_allclose(got, expect, rtol=1e-5)
    last = obj.to_pylist()[-1]
    assert last["object_id"] == "tiny" and last["class"] is None
    assert (
        last["skip_reason"].startswith("B: too_few_obs (2 < 10)")
        and "; R: too_few_obs" in last["skip_reason"]
    )


# --------------------------------------------------------------------- 4. bad input, every command


def _commands(models, inp, out):
    """Each command that reads light curves, reading ``inp`` and writing under ``out``."""
    enc, clf, rnn = models["enc"], models["clf"], models["rnn"]
    return {
        "inspect": ["inspect", "--input", inp],
        "embed": ["embed", "--model", enc, "--input", inp, "--output", out / "e.parquet"],
        "classify": ["predict", "--model", clf, "--input", inp, "--output", out / "c.parquet"],
        "predict": ["predict", "--model", rnn, "--input", inp, "--output", out / "p.parquet"],
        "benchmark": [
            "benchmark",
            "--data",
            inp,
            "--method",
            "forest",
            "--output",
            out / "b",
            "--n",
            "5",
            "--folds",
            "1",
        ],
        "train": [
            "train",
            "rnn",
            "--data",
            inp,
            "--output",
            out / "t",
            "--steps",
            "1",
            "--set",
            "hidden=4",
            "--set",
            "dense=4",
        ],
        "pretrain": [
            "pretrain",
            "--config",
            enc / "config.json",
            "--data",
            inp,
            "--output",
            out / "pt",
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--pool",
            "8",
        ],
    }


BAD_INPUTS = {
    "empty": (lambda p: p.write_bytes(b""), "lc.parquet", "the file is empty"),
    "garbage": (lambda p: p.write_bytes(os.urandom(500)), "lc.parquet", "not a readable Parquet"),
    "missing": (lambda p: None, "lc.parquet", "no such file"),
    "non-UTF-8 name": (lambda p: p.write_bytes(b"PAR1 junk"), BAD_NAME, r"lc\udcff.parquet"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize(
    "command", ["inspect", "embed", "classify", "predict", "benchmark", "train", "pretrain"]
)
def test_bad_input_gives_one_line_and_exit_2_in_every_command(
    models, tmp_path, capsys, command, case
):
    make, name, message = BAD_INPUTS[case]
    inp = tmp_path / name
    make(inp)
    code, _, err = run(_commands(models, inp, tmp_path / "out")[command], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip() and "|" not in ln]  # not progress bars
    assert code == 2 and lines == [lines[-1]] and lines[-1].startswith("error:"), err
    assert message in lines[-1]


@pytest.mark.parametrize(
    "command", ["inspect", "embed", "classify", "predict", "benchmark", "train", "pretrain"]
)
def test_a_corrupt_shard_is_skipped_and_reported_the_same_way_everywhere(
    models, sim, tmp_path, capsys, caplog, command
):
    shards = tmp_path / "shards"
    write_parquet(sim, shards / "part-1.parquet")
    (shards / "part-0.parquet").write_bytes(b"junk")  # first: every command meets it
    code, _, err = run(_commands(models, shards, tmp_path / "out")[command], capsys)
    assert code == 0, err
    assert (
        "skipped shard" in caplog.text and "part-0.parquet: not a readable Parquet" in caplog.text
    )


@pytest.mark.parametrize(
    "command", ["embed", "classify", "predict", "simulate", "benchmark", "train", "pretrain"]
)
def test_an_unwritable_output_gives_one_line_and_exit_2(models, sim, tmp_path, capsys, command):
    write_parquet(sim, tmp_path / "in.parquet")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cmds = _commands(models, tmp_path / "in.parquet", blocker)
    cmds["simulate"] = [
        "simulate",
        "--survey",
        "asas",
        "--objects",
        "5",
        "--output",
        blocker / "s.parquet",
    ]
    code, _, err = run(cmds[command], capsys)
    assert code == 2 and err.startswith("error: cannot write") and len(err.splitlines()) == 1, err


def test_files_with_non_utf8_names_are_read_and_written(models, sim, tmp_path, capsys):
    write_parquet(sim.slice(0, 5), tmp_path / BAD_NAME)
    code, out, _ = run(["inspect", "--input", tmp_path / BAD_NAME, "--json"], capsys)
    assert code == 0 and json.loads(out)["objects"] == 5
    out_name = tmp_path / os.fsdecode(b"emb\xfe.parquet")
    code, out, err = run(
        ["embed", "--model", models["enc"], "--input", tmp_path / BAD_NAME, "--output", out_name],
        capsys,
    )
    assert code == 0, err
    assert r"emb\udcfe.parquet" in out and read_parquet(out_name).num_rows == 5
    code, _, _ = run(
        ["simulate", "--survey", "asas", "--objects", "3", "--output", out_name], capsys
    )
    assert code == 0


def test_a_failed_embed_does_not_block_the_corrected_run(models, sim, tmp_path, capsys):
    write_parquet(sim.slice(0, 5), tmp_path / "in.parquet")
    args = [
        "embed",
        "--model",
        models["enc"],
        "--input",
        tmp_path / "in.parquet",
        "--output",
        tmp_path / "e.parquet",
    ]
    code, _, err = run([*args, "--band", "nope"], capsys)  # a mistake: no such band
    assert code == 2 and not (tmp_path / "e.parquet.parts").exists(), err
    code, _, err = run(args, capsys)
    assert code == 0, err
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 5


# --------------------------------------------------------------------- 5. permissions


def test_output_files_get_the_users_normal_permissions(models, sim, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        write_parquet(sim.slice(0, 3), tmp_path / "in.parquet")
        assert (
            run(
                [
                    "simulate",
                    "--survey",
                    "asas",
                    "--objects",
                    "3",
                    "--output",
                    tmp_path / "s.parquet",
                ],
                capsys,
            )[0]
            == 0
        )
        assert (
            run(
                [
                    "predict",
                    "--model",
                    models["clf"],
                    "--input",
                    tmp_path / "in.parquet",
                    "--output",
                    tmp_path / "c.parquet",
                ],
                capsys,
            )[0]
            == 0
        )
        folder = hub.save_model(build(TINY), tmp_path / "m")
        files = [
            tmp_path / "in.parquet",
            tmp_path / "s.parquet",
            tmp_path / "c.parquet",
            folder / "model.safetensors",
            folder / "config.json",
        ]
        assert {oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {"0o644"}
        os.umask(0o077)
        write_parquet(sim.slice(0, 3), tmp_path / "private.parquet")
        assert stat.S_IMODE((tmp_path / "private.parquet").stat().st_mode) == 0o600
    finally:
        os.umask(old)


# --------------------------------------------------------------------- 6. training logs


def test_training_shows_one_sign_and_one_name_for_the_validation_loss(sim, tmp_path, capsys):
    write_parquet(sim, tmp_path / "in.parquet")
    code, out, err = run(
        [
            "train",
            "rnn",
            "--data",
            tmp_path / "in.parquet",
            "--output",
            tmp_path / "t",
            "--steps",
            "4",
            "--eval-every",
            "2",
            "--set",
            "hidden=4",
            "--set",
            "dense=4",
        ],
        capsys,
    )
    assert code == 0, err
    best = json.loads((tmp_path / "t" / "config.json").read_text())["meta"]["train"][
        "best_val_loss"
    ]
    assert best > 0 and f"best val_loss {best:.4f}" in out
    assert f"best_val_loss={best:.4f}" in err and "=-" not in err


def test_pretrain_prints_valid_json_without_infinity(sim, tmp_path, capsys, models):
    write_parquet(sim, tmp_path / "in.parquet")
    code, out, err = run(
        [
            "pretrain",
            "--config",
            models["enc"] / "config.json",
            "--data",
            tmp_path / "in.parquet",
            "--output",
            tmp_path / "pt",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--pool",
            "8",
        ],
        capsys,
    )
    assert code == 0, err

    def no_constants(name):
        raise AssertionError(f"{name} printed")

    summary = json.loads(out.strip().splitlines()[-1], parse_constant=no_constants)
    assert summary["steps"] == 2 and "best" not in summary


def test_a_resumed_log_has_no_repeated_row(tmp_path, toy_table):
    from starcurve.data.loader import WindowStream
    from starcurve.train.loop import TrainConfig, train
    from starcurve.train.pretrain import masked_loss

    write_parquet(toy_table, tmp_path / "d.parquet")
    calls = {"n": 0}

    def batches():
        for b in WindowStream(tmp_path / "d.parquet", n=32, batch_size=4, epochs=1):
            calls["n"] += 1
            if calls["n"] == 6 and not resumed:
                raise KeyboardInterrupt  # killed after step 5 was logged, checkpoint at step 4
            yield b

    cfg = TrainConfig(steps=8, lr=1e-3, warmup=1, log_every=1, ckpt_every=4)
    resumed = False
    with pytest.raises(KeyboardInterrupt):
        train(build(TINY), batches, masked_loss, tmp_path / "run", cfg)
    resumed = True
    train(build(TINY), batches, masked_loss, tmp_path / "run", cfg, resume=True)
    with open(tmp_path / "run" / "log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(1, 9))
