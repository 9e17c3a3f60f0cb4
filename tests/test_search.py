"""Vector index, similarity search and anomaly ranking (`starcurve index / similar / anomalies`)."""

import json

import numpy as np
import pyarrow as pa
import pytest
from conftest import run_cli as run

from starcurve import StarcurveError, read, write_parquet
from starcurve.data.io import read_parquet
from starcurve.data.simulate import simulate

faiss = pytest.importorskip("faiss")  # the [search] extra; CI installs it
from starcurve import search as se


def clusters(n_per=60, k=4, d=16, seed=0, outliers=3):
    """k tight clusters (labels c0..) plus a few far-away outliers (label 'odd')."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 5, (k, d))
    X = np.vstack(
        [c + rng.normal(0, 0.5, (n_per, d)) for c in centers]
        + [rng.normal(0, 5, (outliers, d)) * 4]
    )
    labels = [f"c{i}" for i in range(k) for _ in range(n_per)] + ["odd"] * outliers
    ids = [f"o{i}" for i in range(len(X))]
    emb = pa.ListArray.from_arrays(
        pa.array(np.arange(len(X) + 1, dtype=np.int32) * d), pa.array(X.ravel().astype(np.float32))
    )
    return pa.table({"object_id": ids, "band": ["V"] * len(X), "label": labels, "embedding": emb})


@pytest.fixture
def emb(tmp_path):
    path = tmp_path / "emb.parquet"
    write_parquet(clusters(), path)
    return path


def precision(hits: pa.Table) -> float:
    d = hits.to_pandas()
    return float((d["label"] == d["query_label"]).mean())


@pytest.mark.parametrize("kind", ["exact", "ivf"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_build_save_load_search(kind, metric, tmp_path):
    ids, X = se.read_vectors(clusters())
    idx = se.build(X, ids, kind=kind, metric=metric, nlist=4 if kind == "ivf" else None)
    assert idx.kind == kind and len(idx) == len(X)
    idx.save(tmp_path / "ix")
    assert sorted(p.name for p in (tmp_path / "ix").iterdir()) == [
        "ids.parquet",
        "index.faiss",
        "index.json",
    ]
    again = se.load(tmp_path / "ix")
    hits = se.similar(again, "o5", 10)
    assert hits.num_rows == 10 and "o5" not in hits.column("object_id").to_pylist()
    assert hits.column("rank").to_pylist() == list(range(1, 11)) and precision(hits) == 1.0
    d = hits.column("distance").to_numpy()
    assert np.all(np.diff(d) >= 0) and np.all(d >= 0)
    # the same answer as a brute-force search in the standardised space
    Z = again.prepare(X)
    if metric == "l2":
        truth = np.argsort(((Z - Z[5]) ** 2).sum(1))[1:11]
        assert set(hits.column("object_id").to_pylist()) == {f"o{i}" for i in truth}


def test_auto_kind_follows_the_size_threshold(monkeypatch):
    ids, X = se.read_vectors(clusters())
    assert se.build(X, ids).kind == "exact"
    monkeypatch.setattr(se, "EXACT_MAX", 100)
    idx = se.build(X, ids)
    assert (
        idx.kind == "ivf"
        and idx.meta["nlist"] == se.default_nlist(len(X))
        and idx.meta["nprobe"] <= idx.meta["nlist"]
    )
    assert se.default_nlist(10**6) == 4096 and se.default_nlist(10**4) == 256


def test_query_by_file_excludes_the_query_object_and_k_beyond_the_size(tmp_path):
    table = clusters()
    ids, X = se.read_vectors(table)
    idx = se.build(X, ids)
    write_parquet(table.slice(0, 2), tmp_path / "q.parquet")
    hits = se.similar(idx, tmp_path / "q.parquet", 5)
    assert hits.num_rows == 10 and set(hits.column("query_id").to_pylist()) == {"o0", "o1"}
    assert not (np.array(hits.column("query_id")) == np.array(hits.column("object_id"))).any()
    many = se.similar(idx, "o0", 10_000)
    assert many.num_rows == len(X) - 1


def test_index_similar_anomalies_commands(emb, tmp_path, capsys):
    code, out, _ = run(["index", "--input", emb, "--output", tmp_path / "ix"], capsys)
    assert code == 0 and "exact l2" in out
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["n"] == 243 and meta["dim"] == 16 and meta["kind"] == "exact"
    code, out, _ = run(
        [
            "similar",
            "--index",
            tmp_path / "ix",
            "--query",
            "o3",
            "--k",
            "10",
            "--output",
            tmp_path / "hits.parquet",
        ],
        capsys,
    )
    assert code == 0 and "wrote 10 hits" in out
    assert precision(read_parquet(tmp_path / "hits.parquet")) == 1.0
    code, out, _ = run(
        ["anomalies", "--input", emb, "--output", tmp_path / "ranked.parquet"], capsys
    )
    assert code == 0
    ranked = read_parquet(tmp_path / "ranked.parquet").to_pandas()
    assert list(ranked["rank"]) == list(range(1, 244))
    assert set(ranked["label"][:3]) == {"odd"}  # the outliers come first
    assert set(ranked.sort_values("iforest_rank")["label"][:3]) == {"odd"}
    assert {"knn_distance", "knn_rank", "iforest_score", "iforest_rank"} <= set(ranked.columns)


def test_anomalies_contact_sheet(tmp_path, capsys):
    lcs = simulate("asas", 40, ["RRab", "Mira"], seed=0)
    lcs = lcs.set_column(lcs.schema.get_field_index("band"), "band", pa.array(["V"] * 40))
    write_parquet(lcs, tmp_path / "lcs.parquet")
    emb = pa.table(
        {
            "object_id": lcs.column("object_id"),
            "band": ["V"] * 40,
            "embedding": clusters(n_per=10, outliers=0).column("embedding"),
        }
    )
    write_parquet(emb, tmp_path / "emb.parquet")
    code, out, _ = run(
        [
            "anomalies",
            "--input",
            tmp_path / "emb.parquet",
            "--output",
            tmp_path / "ranked.parquet",
            "--lightcurves",
            tmp_path / "lcs.parquet",
            "--top",
            "6",
        ],
        capsys,
    )
    assert code == 0 and "the top 6 light curves" in out
    assert (tmp_path / "ranked.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs_and_damaged_index_folders_are_one_line(emb, tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    table = clusters()
    X = np.array(table.column("embedding").to_pylist(), np.float32)
    X[4, 2] = np.nan
    nan = table.set_column(3, "embedding", pa.array(list(X), pa.list_(pa.float32())))
    ragged = table.set_column(3, "embedding", pa.array([[1.0]] + [[1.0, 2.0]] * 242))
    cases = [
        (nan, "NaN or infinite values, e.g. ['o4']"),
        (ragged, "same, non-zero length"),
        (table.drop_columns(["embedding"]), "missing column(s) ['embedding']"),
        (table.slice(0, 0), "no vectors"),
    ]
    for t, msg in cases:
        write_parquet(t, bad)
        code, _, err = run(["index", "--input", bad, "--output", tmp_path / "ix"], capsys)
        assert code == 2 and msg in err and err.count("\n") == 1, err
    bad.write_bytes(b"not parquet")
    code, _, err = run(["anomalies", "--input", bad, "--output", tmp_path / "r.parquet"], capsys)
    assert code == 2 and "not a readable Parquet file" in err

    assert run(["index", "--input", emb, "--output", tmp_path / "ix"], capsys)[0] == 0
    q = ["similar", "--index", tmp_path / "ix", "--output", tmp_path / "h.parquet", "--query"]
    code, _, err = run([*q, "nope"], capsys)
    assert code == 2 and "no object 'nope' in the index" in err
    write_parquet(pa.table({"object_id": ["x"], "embedding": [[1.0, 2.0]]}), tmp_path / "q.parquet")
    code, _, err = run([*q, tmp_path / "q.parquet", "--query-band", "V"], capsys)  # ids only
    assert code == 2 and "--query-band picks the vectors of an object id" in err
    code, _, err = run([*q, tmp_path / "q.parquet"], capsys)
    assert code == 2 and "query vectors have 2 numbers; the index holds 16" in err
    ix = tmp_path / "ix"
    good = (ix / "index.faiss").read_bytes()
    (ix / "index.faiss").write_bytes(good[: len(good) // 2])
    code, _, err = run([*q, "o1"], capsys)
    assert code == 2 and "damaged or not a FAISS index" in err and err.count("\n") == 1
    (ix / "index.faiss").write_bytes(good)
    (ix / "index.json").write_text("{oops")
    code, _, err = run([*q, "o1"], capsys)
    assert code == 2 and "corrupted or unreadable index description" in err
    (ix / "index.json").unlink()
    code, _, err = run([*q, "o1"], capsys)
    assert code == 2 and "missing index.json" in err
    code, _, err = run(
        [
            "similar",
            "--index",
            tmp_path / "none",
            "--query",
            "o1",
            "--output",
            tmp_path / "h.parquet",
        ],
        capsys,
    )
    assert code == 2 and "no such index folder" in err
    assert not (tmp_path / "h.parquet").exists()


def test_index_of_mismatched_files_is_refused(emb, tmp_path):
    ids, X = se.read_vectors(emb)
    se.build(X, ids).save(tmp_path / "ix")
    write_parquet(
        read(simulate("asas", 3, seed=0)).select(["object_id"]), tmp_path / "ix" / "ids.parquet"
    )
    with pytest.raises(StarcurveError, match="do not match; rebuild the index"):
        se.load(tmp_path / "ix")


def test_without_faiss_the_error_says_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_faiss(name, *a, **kw):
        if name == "faiss":
            raise ImportError("no faiss")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(StarcurveError, match=r"pip install 'starcurve\[search\]'"):
        se.faiss()
