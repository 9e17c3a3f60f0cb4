"""FS-1: the fixed split, nested training sets, class filter, reproducibility, controls, outputs."""

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from starcurve.data import schema as S
from starcurve.data.io import from_arrays
from starcurve.errors import StarcurveError
from starcurve.eval import fewshot as fs
from starcurve.eval import report

AMPLITUDES = {"A": 0.1, "B": 0.3, "C": 0.6, "D": 1.0}


def toy(n_per_class=60, small=10, seed=0, split=False) -> pa.Table:
    """Four classes that differ in amplitude (+ class E with ``small`` objects, below the 30 cut)."""
    rng = np.random.default_rng(seed)
    times, mags, errs, labels = [], [], [], []
    plan = [c for c in AMPLITUDES for _ in range(n_per_class)] + ["E"] * small
    for c in plan:
        n = int(rng.integers(40, 90))
        t = np.sort(rng.uniform(0, 200, n))
        amp = AMPLITUDES.get(c, 0.5) * rng.uniform(0.9, 1.1)
        times.append(t)
        mags.append(
            12 + amp * np.sin(2 * np.pi * t / rng.uniform(0.3, 30)) + rng.normal(0, 0.03, n)
        )
        errs.append(np.full(n, 0.03))
        labels.append(c)
    ids = [f"obj{i:04d}" for i in rng.permutation(len(plan))]
    table = from_arrays(times, mags, errs, ids=ids, band="V", labels=labels)
    if split:
        table = table.append_column("split", pa.array(rng.choice(["train", "test"], len(plan))))
    return table


class Spread:
    """A cheap FS-1 transformer for tests: standard deviation and range of the magnitudes."""

    per_object = False

    def fit(self, X=None, y=None):
        return self

    def describe(self, table):
        return "spread", {"dim": 2}

    def vectors(self, table):
        m, off = S.flat(table, S.MAG)
        rows = S.row_index(off)
        n = np.diff(off)
        mean = np.bincount(rows, m) / n
        std = np.sqrt(np.bincount(rows, (m - mean[rows]) ** 2) / n)
        ptp = np.maximum.reduceat(m, off[:-1]) - np.minimum.reduceat(m, off[:-1])
        return np.column_stack([std, ptp])


@pytest.fixture
def toy_method():
    from sklearn.ensemble import RandomForestClassifier

    fs.PROBES["small_forest"] = lambda seed: RandomForestClassifier(20, random_state=seed)
    fs.register(fs.Method("toy", "test vectoriser", lambda ctx: [Spread()], probe="small_forest"))
    yield "toy"
    fs.METHODS.pop("toy")
    fs.PROBES.pop("small_forest")


def test_split_is_fixed_disjoint_and_class_filtered():
    table = toy()
    a = fs.prepare(table, "V")
    b = fs.prepare(table.take(pa.array(np.random.default_rng(5).permutation(table.num_rows))), "V")
    assert a.classes == ["A", "B", "C", "D"] and a.dropped == {"E": 10}
    test_a, test_b = set(a.ids[a.test]), set(b.ids[b.test])
    assert test_a == test_b  # independent of row order, hence of method and run
    assert len(test_a) == 4 * math.ceil(0.3 * 60)
    for f in range(3):
        for n in (5, 20, 500):
            train = fs.training_ids(a, f, n)
            assert not set(train) & test_a
            assert np.array_equal(train, fs.training_ids(b, f, n))
            for c in a.classes:
                assert (a.labels[a.rows(train)] == c).sum() == min(n, len(a.pool[c]))


def test_training_sets_are_nested_within_a_fold_and_differ_across_folds():
    d = fs.prepare(toy(), "V")
    for f in range(3):
        small, mid, big = (set(fs.training_ids(d, f, n)) for n in (5, 20, 40))
        assert small < mid < big
    assert set(fs.training_ids(d, 0, 5)) != set(fs.training_ids(d, 1, 5))


def test_source_split_is_used_as_the_test_set():
    table = toy(split=True)
    d = fs.prepare(table, "V")
    assert d.test_source == "source"
    split = dict(zip(table.column("object_id").to_pylist(), table.column("split").to_pylist()))
    assert all((split[i] == "test") == t for i, t in zip(d.ids, d.test))


def test_run_is_reproducible_and_writes_the_schema(toy_method, tmp_path):
    d = fs.prepare(toy(), "V")
    r1 = fs.run(d, "V", toy_method, tmp_path / "a", ns=[5, 20], folds=3, progress=False)
    r2 = fs.run(d, "V", toy_method, tmp_path / "b", ns=[5, 20], folds=3, progress=False,
                report=False)  # fmt: skip
    assert r1["results"] == r2["results"]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    validate_schema(saved, ns=["5", "20"])
    assert saved["dropped_classes"] == ["E"]
    assert saved["results"]["20"]["f1_mean"] > 0.8  # the toy classes are separable
    for name in ("report.md", "f1_vs_n.png", "confusion.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert "| toy |" in (tmp_path / "a" / "report.md").read_text()


def test_shuffled_labels_score_at_chance(toy_method, tmp_path):
    d = fs.prepare(toy(n_per_class=100), "V")
    real = fs.run(d, "V", toy_method, tmp_path / "r", ns=[20], progress=False, report=False)
    fake = fs.run(d, "V", toy_method, tmp_path / "s", ns=[20], progress=False, report=False,
                  shuffle_labels=True)  # fmt: skip
    assert real["results"]["20"]["f1_mean"] > 0.8
    assert abs(fake["results"]["20"]["acc_mean"] - 0.25) < 0.1  # 4 balanced classes


def test_a_killed_run_resumes_without_recomputing(toy_method, tmp_path, monkeypatch):
    d = fs.prepare(toy(), "V")
    first = fs.run(d, "V", toy_method, tmp_path, ns=[5, 20], folds=2, progress=False, report=False)
    cells = json.loads((tmp_path / "cells.json").read_text())
    del cells["cells"]["f1_n20"]  # as if killed before the last cell
    (tmp_path / "cells.json").write_text(json.dumps(cells))
    calls = []
    monkeypatch.setattr(Spread, "vectors", lambda *a: calls.append(1))
    again = fs.run(d, "V", toy_method, tmp_path, ns=[5, 20], folds=2, progress=False, report=False)
    assert not calls  # the cached vectors were reused
    assert again["results"] == first["results"]


def test_unknown_methods_fail_clearly(tmp_path):
    with pytest.raises(StarcurveError, match="unknown method 'nope'"):
        fs.run(toy(), "V", "nope", tmp_path)


def test_cli_reports_errors_without_traceback(tmp_path):
    from starcurve.cli import cli

    path = tmp_path / "toy.parquet"
    import pyarrow.parquet as pq

    pq.write_table(toy(), path)
    runner = CliRunner()
    res = runner.invoke(cli, ["benchmark", "--data", str(path), "--band", "Q", "--method",
                              "forest", "--output", str(tmp_path / "o")])  # fmt: skip
    assert isinstance(res.exception, StarcurveError) and "no rows in band 'Q'" in str(res.exception)


def test_report_merges_result_folders(toy_method, tmp_path):
    d = fs.prepare(toy(), "V")
    for name in ("a", "b"):
        fs.run(d, "V", toy_method, tmp_path / name, ns=[5, 20], folds=2, progress=False,
               report=False)  # fmt: skip
    from starcurve.cli import cli

    res = CliRunner().invoke(cli, ["report", "--input", str(tmp_path / "a"), "--input",
                                   str(tmp_path / "b"), "--output", str(tmp_path / "merged")])  # fmt: skip
    assert res.exit_code == 0, res.output
    text = (tmp_path / "merged" / "report.md").read_text()
    assert text.count("| toy |") == 2 and "n=5" in text and "n=20" in text
    assert (tmp_path / "merged" / "f1_vs_n.png").stat().st_size > 0
    with pytest.raises(StarcurveError, match="no results.json"):
        report.load_results([tmp_path / "missing"])


def test_report_command_takes_each_folder_with_input(tmp_path):
    from starcurve.cli import cli

    for name, f1 in (("a", 0.5), ("b", 0.7)):
        r = {
            "protocol": "FS-1",
            "method": name,
            "dataset": "toy",
            "band": "V",
            "classes": ["A", "B"],
            "seconds_per_lc": 0.01,
            "machine": "test",
            "results": {"5": {"f1_mean": f1, "f1_std": 0.1, "f1_folds": [f1 - 0.1, f1 + 0.1]}},
        }
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(r))
    res = CliRunner().invoke(cli, ["report", "--input", str(tmp_path / "a"), "--input",
                                   str(tmp_path / "b")])  # fmt: skip
    assert res.exit_code == 0 and "| a |" in res.output and "| b |" in res.output, res.output
    assert not (tmp_path / "report.md").exists()  # no --output: the table only
    res = CliRunner().invoke(cli, ["report", "--input", str(tmp_path / "a"), "--output",
                                   str(tmp_path / "merged")])  # fmt: skip
    assert res.exit_code == 0 and (tmp_path / "merged" / "f1_vs_n.png").stat().st_size > 0
    assert CliRunner().invoke(cli, ["report"]).exit_code == 2  # --input is required


def validate_schema(r: dict, ns) -> None:
    """The results.json schema of issue 4."""
    types = {"protocol": str, "dataset": str, "band": str, "method": str, "classes": list,
             "dropped_classes": list, "results": dict, "seconds_per_lc": float, "machine": str,
             "versions": dict}  # fmt: skip
    for key, typ in types.items():
        assert isinstance(r[key], typ), key
    assert r["protocol"] == "FS-1"
    assert all(isinstance(c, str) for c in r["classes"] + r["dropped_classes"])
    assert fs.sort_ns(r["results"]) == ns
    for v in r["results"].values():
        for k in ("f1_mean", "f1_std", "acc_mean"):
            assert isinstance(v[k], float) and 0 <= v[k] <= 1


@pytest.mark.realdata
def test_real_split_sizes(shared_data):
    eros = fs.prepare(shared_data / "eros_lmc.parquet", "R")
    assert eros.test_source == "source" and eros.classes == ["Cepheid", "EB", "Mira", "RR_Lyrae"]
    assert eros.test.sum() == 729 and not eros.dropped
    ids = fs.test_object_ids(shared_data / "eros_lmc.parquet", "R")
    assert ids == set(eros.ids[eros.test])
    asas = fs.prepare(shared_data / "asas_acvs.parquet", "V")
    assert asas.dropped == {"BCEP": 7} and len(asas.classes) == 9
    counts = asas.notes["class_counts"]
    assert asas.test.sum() == sum(math.ceil(0.3 * k) for k in counts.values())


def test_embedding_methods_get_a_2d_map(toy_method, tmp_path):
    fs.METHODS["toy"].embedding = True
    d = fs.prepare(toy(n_per_class=40), "V")
    fs.run(d, "V", toy_method, tmp_path, ns=[5], folds=1, progress=False)
    assert (tmp_path / "embedding_map.png").stat().st_size > 0
    assert "map of the test embeddings" in (tmp_path / "report.md").read_text()


def test_band_star_keeps_one_row_per_object():
    v = toy()
    r = v.set_column(v.schema.get_field_index("band"), "band", pa.array(["R"] * v.num_rows))
    both = pa.concat_tables([v, r])
    d = fs.prepare(both, "*")
    assert len(d.ids) == len(set(d.ids)) == 4 * 60
    assert set(d.table.column("band").to_pylist()) == {"V"}  # the first row of each object
    assert set(fs.prepare(both, "R").table.column("band").to_pylist()) == {"R"}


def test_cached_embeddings_are_keyed_by_the_model_weights_not_its_folder_name(tmp_path):
    """The shipped default changes between releases: FS-1 and the search benchmark must not reuse
    vectors of the old default (model=None) or of a folder whose weights were replaced."""
    from starcurve.models import hub
    from starcurve.models.encoder import build

    folder = tmp_path / "m"
    hub.save_model(build("sc1", seed=0), folder)
    first = fs.model_id(folder)
    assert fs.model_id(folder) == first and fs.model_id(None) != first
    hub.save_model(build("sc1", seed=1), folder)  # same folder, other weights
    assert fs.model_id(folder) != first


def test_n_all_is_the_whole_pool_of_every_class_in_the_fold_order():
    d = fs.prepare(toy(), "V")
    everything = np.concatenate([d.pool[c] for c in d.classes])
    orders = [fs.training_ids(d, f, "all") for f in range(3)]
    for f, ids in enumerate(orders):
        assert sorted(ids) == sorted(everything)  # every pool object, nothing from the test set
        assert np.array_equal(ids, fs.training_ids(d, f, 10**6))  # = an n above every pool
        assert set(fs.training_ids(d, f, 20)) < set(ids)  # still nested
    assert not np.array_equal(orders[0], orders[1])  # the folds differ in order only
    assert fs.parse_ns("100, all,20,100") == [20, 100, "all"]
    assert fs.parse_ns([20, "ALL"]) == [20, "all"]
    for bad in ("0", "twenty", "20,-1", ""):
        with pytest.raises(StarcurveError, match="--n"):
            fs.parse_ns(bad)


def test_n_all_runs_reports_plots_and_resumes(toy_method, tmp_path, monkeypatch):
    d = fs.prepare(toy(), "V")
    pool = sum(len(p) for p in d.pool.values())
    first = fs.run(d, "V", toy_method, tmp_path, ns=[5], folds=2, progress=False, report=False)
    r = fs.run(d, "V", toy_method, tmp_path, ns=[5, "all"], folds=2, progress=False)
    assert r["results"]["5"] == first["results"]["5"]  # the n = 5 cells were resumed
    saved = json.loads((tmp_path / "results.json").read_text())
    validate_schema(saved, ns=["5", "all"])
    assert saved["results"]["all"]["n_train"] == [pool, pool]
    assert saved["pool_sizes"] == {c: len(d.pool[c]) for c in d.classes}
    assert saved["results"]["all"]["f1_mean"] > 0.8
    text = (tmp_path / "report.md").read_text()
    assert "n=5 | n=all |" in text and "(n = 5, all)" in text
    assert (tmp_path / "f1_vs_n.png").stat().st_size > 0
    assert (tmp_path / "confusion.png").stat().st_size > 0
    pos = report.n_positions([saved])  # "all" at the right end of the axis: the largest pool
    assert pos == {"5": 5.0, "all": float(max(saved["pool_sizes"].values()))}
    assert report.n_positions([{**saved, "pool_sizes": {"A": 3}}])["all"] == 10.0  # right of 5
    cells = json.loads((tmp_path / "cells.json").read_text())
    assert {"f0_nall", "f1_nall"} <= set(cells["cells"])
    del cells["cells"]["f1_nall"]  # as if killed before the last cell
    (tmp_path / "cells.json").write_text(json.dumps(cells))
    calls = []
    monkeypatch.setattr(Spread, "vectors", lambda *a: calls.append(1))
    again = fs.run(d, "V", toy_method, tmp_path, ns=["all", 5], folds=2, progress=False,
                   report=False)  # fmt: skip
    assert not calls and again["results"] == r["results"]


def test_cli_benchmark_takes_n_all(toy_method, tmp_path):
    import pyarrow.parquet as pq

    from starcurve.cli import cli

    path = tmp_path / "toy.parquet"
    pq.write_table(toy(), path)
    out = tmp_path / "o"
    args = ["benchmark", "--data", str(path), "--band", "V", "--method", toy_method,
            "--output", str(out), "--folds", "1"]  # fmt: skip
    res = CliRunner().invoke(cli, args + ["--n", "5,all"])
    assert res.exit_code == 0, res.output
    assert "n=all" in res.output
    assert list(json.loads((out / "results.json").read_text())["results"]) == ["5", "all"]
    res = CliRunner().invoke(cli, args + ["--n", "5,most"])
    assert res.exit_code != 0 and "'all'" in str(res.exception)


def test_development_split_holds_only_the_pool_and_runs_like_fs1(toy_method, tmp_path):
    """``development``: the choices FS-1 forbids on its test set are scored on 30% of each class's
    pool; no FS-1 test object is in it, it is the same every time, and ``run`` takes it."""
    data = fs.prepare(toy(), "V")
    dev = fs.development(data)
    assert not set(dev.ids) & set(data.ids[data.test])
    assert set(dev.ids) == {i for ids in data.pool.values() for i in ids}
    for c in data.classes:
        n_pool = len(data.pool[c])
        held = dev.ids[dev.test & (dev.labels == c)]
        assert len(held) == math.ceil(0.3 * n_pool)
        assert not set(held) & set(dev.pool[c]) and len(held) + len(dev.pool[c]) == n_pool
    again = fs.development(fs.prepare(toy(), "V"))
    assert (again.ids[again.test] == dev.ids[dev.test]).all()
    r = fs.run(dev, "V", toy_method, tmp_path, ns=[20], folds=1, progress=False, report=False)
    assert r["results"]["20"]["n_train"] == [20 * len(dev.classes)]
