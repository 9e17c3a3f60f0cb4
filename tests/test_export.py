"""ONNX export: onnxruntime gives the PyTorch embeddings (within 1e-4), for sc1 and pv1 models."""

import numpy as np
import pytest
from conftest import run_cli

from starcurve.data.clean import clean
from starcurve.data.simulate import simulate
from starcurve.errors import StarcurveError
from starcurve.models import encoder, hub

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from starcurve.models.export import OnnxModel, export_onnx

TOL = 1e-4


@pytest.fixture(scope="module")
def sim():
    table, _ = clean(simulate("asas", 24, seed=3))
    return table


def test_shipped_model_exports_and_matches(sim, tmp_path, capsys):
    out = tmp_path / "sc1.onnx"
    code, stdout, err = run_cli(["export", "--output", out], capsys)
    assert code == 0, err
    model, onnx_model = hub.load_model(), OnnxModel.load(out, threads=1)
    assert model.config.name in stdout and out.is_file()
    assert onnx_model.dim == model.dim and onnx_model.config == model.config
    ref = model.embed_table(sim)
    # dynamic batch and length: other batch sizes cut other batches and padded lengths
    for bs in (1, 7, 256):
        got = onnx_model.embed_table(sim, batch_size=bs)
        assert np.abs(got - ref).max() < TOL
    a, b = model.embed(sim), onnx_model.embed(sim)
    assert a.column("object_id").equals(b.column("object_id"))


@pytest.mark.parametrize("config", ["sc1", "pv1"])
def test_built_models_export_and_match(sim, tmp_path, config):
    folder = hub.save_model(encoder.build(config), tmp_path / config)
    model = hub.load_model(folder)
    path = export_onnx(model, tmp_path / f"{config}.onnx")
    onnx_model = OnnxModel.load(path, threads=1)
    ref = model.embed_table(sim)
    assert ref.shape == (sim.num_rows, model.dim) and np.isfinite(ref).all()
    assert np.abs(onnx_model.embed_table(sim, batch_size=5) - ref).max() < TOL
    ids, vec = onnx_model.embed_objects(sim)
    ids_ref, vec_ref = model.embed_objects(sim)
    assert list(ids) == list(ids_ref) and np.abs(vec - vec_ref).max() < TOL
    with pytest.raises(StarcurveError, match="layers"):
        onnx_model.embed_table(sim, layers="weighted" if model.default_layers == "last" else "last")


def test_bad_onnx_file_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(StarcurveError, match="not a readable ONNX model"):
        OnnxModel.load(bad)
    code, _, err = run_cli(["export", "--model", tmp_path, "--output", tmp_path / "x.onnx"], capsys)
    assert code == 2 and err.startswith("error:") and "Traceback" not in err


def test_light_curve_session_on_real_light_curves(shared_data, tmp_path):
    pytest.importorskip("light_curve.embed")
    import onnxruntime as ort
    import pyarrow.parquet as pq

    from starcurve.data.io import read
    from starcurve.models.lc_session import StarcurveSession

    rows = pq.ParquetFile(shared_data / "eros_lmc.parquet").read_row_group(0).slice(0, 3)
    table, _ = clean(read(rows))
    path = export_onnx(hub.load_model(), tmp_path / "sc1.onnx")
    with pytest.warns(Warning):  # light_curve.embed is marked experimental
        session = StarcurveSession(ort.InferenceSession(str(path)), bands=["B", "R"])
    ref = hub.load_model().embed_table(table)
    for i in range(table.num_rows):
        row = table.slice(i, 1).to_pylist()[0]
        band = np.full(len(row["time"]), row["band"])
        vec = session(row["time"], row["mag"], row["mag_err"], band=band)
        assert vec.shape == (2, 1, 1, ref.shape[1])
        assert np.abs(vec[["B", "R"].index(row["band"]), 0, 0] - ref[i]).max() < TOL
        assert np.isnan(vec[1 - ["B", "R"].index(row["band"])]).all()  # no point in the other band
