"""A HATS catalogue built with hats-import from real light curves: ``starcurve embed`` reads it,
and ``embed_partition`` runs inside LSDB's ``map_partitions`` (the example of docs/scale.md)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from starcurve.models import hub
from starcurve.models.encoder import build, get_config

pytest.importorskip("hats_import")
lsdb = pytest.importorskip("lsdb")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    from starcurve.data import io

    shared = io.Path(__file__).resolve().parents[2] / "shared" / "data" / "macho_sample.parquet"
    if not shared.exists():
        pytest.skip("../shared/data is absent")
    from dask.distributed import Client
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.pipeline import pipeline_with_client

    tmp = tmp_path_factory.mktemp("hats")
    table = pq.read_table(shared)  # 49 (object, band) rows of 25 MACHO stars
    rng = np.random.default_rng(0)  # the files have no coordinates: spread the rows on the sky
    table = table.append_column("ra", pa.array(rng.uniform(0, 360, table.num_rows)))
    table = table.append_column(
        "dec", pa.array(np.degrees(np.arcsin(rng.uniform(-1, 1, table.num_rows))))
    )
    pq.write_table(table, tmp / "in.parquet")
    args = ImportArguments(output_path=tmp, output_artifact_name="macho", input_file_list=[tmp / "in.parquet"],
                           file_reader="parquet", pixel_threshold=15, highest_healpix_order=3,
                           progress_bar=False, resume=False)  # fmt: skip
    with Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as client:
        pipeline_with_client(args, client)
    cfg = get_config("sc1")
    cfg.d_model, cfg.n_layers, cfg.d_ff, cfg.window = 16, 1, 32, 50
    return tmp / "macho", tmp / "in.parquet", hub.save_model(build(cfg), tmp / "model")


def by_key(table) -> dict:
    keys = zip(table.column("object_id").to_pylist(), table.column("band").to_pylist())
    return dict(zip(keys, np.array(table.column("embedding").to_pylist())))


def test_embed_reads_a_hats_catalogue(catalogue, tmp_path, capsys):
    cat, flat, model = catalogue
    common = ["embed", "--model", model, "--workers", "0"]
    assert run_cli([*common, "--input", cat, "--output", tmp_path / "h.parquet"], capsys)[0] == 0
    assert run_cli([*common, "--input", flat, "--output", tmp_path / "f.parquet"], capsys)[0] == 0
    a, b = (
        by_key(pq.read_table(tmp_path / "h.parquet")),
        by_key(pq.read_table(tmp_path / "f.parquet")),
    )
    assert a.keys() == b.keys() and len(a) > 30
    assert max(np.abs(a[k] - b[k]).max() for k in a) < 1e-5


def test_embed_partition_inside_lsdb_map_partitions(catalogue):
    cat, flat, model_dir = catalogue
    model = hub.load_model(model_dir)

    def embed_frame(df):
        table, _ = hub.embed_partition(model, df[["object_id", "band", "time", "mag", "mag_err"]])
        return table.to_pandas()

    emb = lsdb.open_catalog(cat).map_partitions(embed_frame).compute()
    ref, _ = hub.embed_partition(model, pq.read_table(flat))
    a = dict(zip(zip(emb["object_id"], emb["band"]), emb["embedding"]))
    b = by_key(ref)
    assert a.keys() == b.keys()
    assert max(np.abs(np.asarray(a[k]) - b[k]).max() for k in a) < 1e-5
