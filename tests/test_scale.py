"""Survey scale: partitions of an input, resumable parts, the same output on Dask as in process."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from starcurve.data.io import partitions, read, read_partition, write_parquet
from starcurve.data.simulate import simulate
from starcurve.models import hub
from starcurve.models.encoder import build, get_config


def tiny_model(tmp_path):
    cfg = get_config("sc1")
    cfg.d_model, cfg.n_layers, cfg.d_ff, cfg.window = 16, 1, 32, 50
    return hub.save_model(build(cfg), tmp_path / "m")


@pytest.fixture
def shards(tmp_path):
    """Three shards of simulated light curves (row groups of 4 in the first); two bad objects."""
    table = simulate("ogle", 24, seed=5)
    mag, err = table.column("mag").to_pylist(), table.column("mag_err").to_pylist()
    mag[3] = [float("nan")] * len(mag[3])  # nothing finite
    err[17] = [-1.0] * len(err[17])  # no valid error
    for name, values in (("mag", mag), ("mag_err", err)):
        k = table.schema.get_field_index(name)
        table = table.set_column(k, name, pa.array(values, table.schema.field(name).type))
    folder = tmp_path / "shards"
    folder.mkdir()
    pq.write_table(table.slice(0, 10), folder / "a.parquet", row_group_size=4)
    write_parquet(table.slice(10, 8), folder / "b.parquet")
    write_parquet(table.slice(18), folder / "c.parquet")
    return folder, table


def test_partitions_cover_the_input_once_in_order(shards):
    folder, table = shards
    parts = partitions(folder, rows=5)
    # a.parquet: row groups 4,4,2 -> [4], [4], [2]; b: one group of 8 -> pieces 5 + 3; c: 6 -> 5 + 1
    assert [p.rows for p in parts] == [4, 4, 2, 5, 3, 5, 1]
    ids = [i for p in parts for i in read_partition(p).column("object_id").to_pylist()]
    assert ids == read(table).column("object_id").to_pylist()


def embed(tmp_path, folder, out, *extra):
    """The ``starcurve embed`` arguments of these tests (a tiny model, in this process)."""
    return ["embed", "--model", tiny_model(tmp_path), "--input", folder, "--output", out,
            "--workers", "0", "--threads", "1", *extra]  # fmt: skip


def test_embed_in_process_keeps_order_and_reports_skips(shards, tmp_path, capsys):
    folder, table = shards
    out = tmp_path / "e.parquet"
    code, stdout, err = run_cli(embed(tmp_path, folder, out, "--chunk-rows", "5"), capsys)
    assert code == 0, err
    got = pq.read_table(out)
    ids = table.column("object_id").to_pylist()
    assert got.column("object_id").to_pylist() == [i for k, i in enumerate(ids) if k not in (3, 17)]
    assert (
        "24 light curves in, 22 written, 2 skipped" in stdout
        and "light curves per core-second" in stdout
    )
    assert not (tmp_path / "e.parquet.parts").exists()


def test_dask_gives_the_same_output_as_one_process(shards, tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    folder, _ = shards
    args = embed(tmp_path, folder, tmp_path / "one.parquet", "--chunk-rows", "5")
    assert run_cli(args, capsys)[0] == 0
    args[args.index("--output") + 1] = tmp_path / "dask.parquet"
    code, stdout, err = run_cli([*args, "--workers", "1"], capsys)  # the last --workers counts
    assert code == 0, err
    assert "7/7 partitions computed now" in stdout and "(1 cores" in stdout
    assert pq.read_table(tmp_path / "dask.parquet").equals(pq.read_table(tmp_path / "one.parquet"))


def test_a_rerun_with_other_options_is_refused(shards, tmp_path, capsys):
    folder, _ = shards
    (tmp_path / "e.parquet.parts").mkdir()
    (tmp_path / "e.parquet.parts" / "manifest.json").write_text('{"model": "other"}')
    code, _, err = run_cli(embed(tmp_path, folder, tmp_path / "e.parquet"), capsys)
    assert code == 2 and "holds a run with other options" in err


def test_without_dask_the_default_runs_in_process(shards, tmp_path, capsys, monkeypatch):
    import starcurve.parts

    monkeypatch.setattr(starcurve.parts, "_has_dask", lambda: False)
    folder, _ = shards
    args = embed(tmp_path, folder, tmp_path / "e.parquet", "--chunk-rows", "5")
    args.remove("--workers"), args.remove("0")
    code, stdout, err = run_cli(args, capsys)
    assert code == 0 and "7/7 partitions computed now" in stdout, err


def test_classify_on_dask_equals_in_process(shards, tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    folder, _ = shards
    args = ["classify", "--input", folder, "--chunk-rows", "5", "--min-obs", "1", "--threads", "1"]
    code, stdout, err = run_cli(
        [*args, "--output", tmp_path / "a.parquet", "--workers", "0"], capsys
    )
    assert code == 0, err
    assert "22 classified, 2 skipped (objects" in stdout
    code, stdout, err = run_cli(
        [*args, "--output", tmp_path / "b.parquet", "--workers", "1"], capsys
    )
    assert code == 0 and "7/7 partitions computed now" in stdout, err
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert sorted(p.name for p in tmp_path.iterdir() if "parquet" in p.name) == [
        "a.parquet",
        "b.parquet",
    ]


def test_predict_runs_by_partition_and_keeps_its_skip_rows(shards, tmp_path, capsys):
    folder, _ = shards
    write_parquet(simulate("asas", 40, ["RRab", "Mira"], seed=0), tmp_path / "train.parquet")
    code, _, err = run_cli(["train", "rnn", "--data", tmp_path / "train.parquet", "--output", tmp_path / "rnn", "--steps", "1",
                            "--set", "hidden=4", "--set", "dense=4"], capsys)  # fmt: skip
    assert code == 0, err
    args = ["predict", "--model", tmp_path / "rnn", "--input", folder, "--chunk-rows", "5",
            "--workers", "0", "--per-band", "--output", tmp_path / "p.parquet"]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert (
        "22 classified, 2 skipped" in stdout
        and "24 light curves in, 22 written, 2 skipped" in stdout
    )
    out = pq.read_table(tmp_path / "p.parquet")
    assert out.num_rows == 24 and out.column("skip_reason").null_count == 22


def test_an_unreadable_partition_is_a_skip_not_the_end_of_the_run(shards, tmp_path):
    from starcurve.errors import StarcurveError
    from starcurve.parts import UNREADABLE, run

    folder, _ = shards
    parts = partitions(folder, rows=5)

    def job(part):
        if part.path.endswith("b.parquet") and part.skip == 5:
            raise StarcurveError("a damaged page")
        table = read_partition(part)
        return table.select(["object_id", "band"]), {"rows_in": table.num_rows, "skipped": {}}

    summary = run(job, parts, tmp_path / "o.parquet", {}, workers=0)
    assert summary.written == 21 and summary.skipped == {UNREADABLE: 3}
    assert pq.read_table(tmp_path / "o.parquet").num_rows == 21
