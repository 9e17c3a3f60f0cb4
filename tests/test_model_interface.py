"""Issue 12: one model folder format, one estimator interface, one predict command."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import run_cli, tiny_config
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from starcurve import StarcurveError, load, write_parquet
from starcurve.data import schema as S
from starcurve.data.simulate import simulate
from starcurve.eval import fewshot as fs
from starcurve.models import hub
from starcurve.models.encoder import build
from starcurve.models.estimators import (
    Embedder,
    EncoderClassifier,
    Features,
    NetworkClassifier,
    TaxonomyClassifier,
)
from starcurve.models.folder import FORMAT_VERSION
from starcurve.models.forest import FeatureForest
from starcurve.train import supervised as sup
from starcurve.train.heads import fit_classifier, fit_head

TINY = tiny_config()
CLASSES = ["Mira", "RRab"]


@pytest.fixture(scope="module")
def sim():
    return simulate("asas", 40, CLASSES, seed=0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, sim):
    """One folder of every kind the project writes."""
    root = tmp_path_factory.mktemp("folders")
    enc = hub.save_model(build(TINY, seed=0), root / "encoder")
    model = hub.load_model(enc)
    labels = sim.column(S.LABEL).to_pylist()
    state = fit_head(model.embed_table(sim), labels, epochs=10)
    TaxonomyClassifier().with_state(model, state, {}).save(root / "taxonomy")
    pooled = EncoderClassifier()
    pooled.net_ = fit_classifier(model, sim, labels, out_dir=root / "run", head_steps=4)
    pooled.save(root / "pooled")
    for kind in ("rnn", "cnn"):
        torch.manual_seed(0)
        net = NetworkClassifier(kind)
        net.net_ = sup.build(
            kind,
            classes=CLASSES,
            **(
                {"hidden": 8, "dense": 8}
                if kind == "rnn"
                else {"filters1": 4, "filters2": 4, "dense": 8}
            ),
        )
        net.save(root / kind)
    return {
        "encoder": enc,
        "taxonomy": root / "taxonomy",
        "pooled": root / "pooled",
        "rnn": root / "rnn",
        "cnn": root / "cnn",
    }


def test_load_opens_every_folder_kind(folders, sim):
    expect = {
        "encoder": hub.Model,
        "taxonomy": TaxonomyClassifier,
        "pooled": EncoderClassifier,
        "rnn": NetworkClassifier,
        "cnn": NetworkClassifier,
    }
    for name, cls in expect.items():
        doc = json.loads((folders[name] / "config.json").read_text())
        assert doc["format_version"] == FORMAT_VERSION and doc["model_type"] in (
            "encoder",
            "classifier",
            name,
        )
        model = load(folders[name])
        assert isinstance(model, cls), name
        if name == "encoder":
            assert model.transform(sim).shape == (sim.num_rows, 16)
        else:
            proba = model.predict_proba(sim)
            assert proba.shape == (sim.num_rows, len(model.classes_))
            np.testing.assert_allclose(proba.sum(1), 1, atol=1e-5)
            assert set(model.predict(sim)) <= set(model.classes_)
    assert isinstance(load(), TaxonomyClassifier)  # the shipped model, with no argument
    assert hub.load_model(folders["taxonomy"]).config.name == "tiny"  # a classifier's encoder


def test_unknown_type_or_version_gives_one_clear_line(folders, tmp_path, capsys):
    for key, value, message in (
        ("model_type", "gru9", "unknown model_type 'gru9'"),
        ("format_version", 7, "format version 7"),
    ):
        bad = tmp_path / f"bad_{key}"
        bad.mkdir()
        doc = json.loads((folders["rnn"] / "config.json").read_text())
        (bad / "config.json").write_text(json.dumps({**doc, key: value}))
        with pytest.raises(StarcurveError, match=message):
            load(bad)
        write_parquet(simulate("asas", 3, ["RRab"], seed=1), tmp_path / "in.parquet")
        code, _, err = run_cli(
            [
                "predict",
                "--model",
                bad,
                "--input",
                tmp_path / "in.parquet",
                "--output",
                tmp_path / "out.parquet",
            ],
            capsys,
        )
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    with pytest.raises(StarcurveError, match="no encoder"):
        hub.load_model(folders["rnn"])


def test_predict_gives_one_schema_for_every_classifier(folders, sim, tmp_path, capsys):
    data = sim.slice(0, 6)
    write_parquet(data, tmp_path / "in.parquet")
    columns = {}
    for name in ("rnn", "cnn", "pooled", "taxonomy", None):
        args = [
            "predict",
            "--input",
            tmp_path / "in.parquet",
            "--output",
            tmp_path / f"{name}.parquet",
        ]
        code, _out, err = run_cli(args + (["--model", folders[name]] if name else []), capsys)
        assert code == 0, err
        table = pq.read_table(tmp_path / f"{name}.parquet")
        assert table.num_rows == 6
        classes = load(folders[name] if name else None).classes_
        prob = np.stack([table.column(f"prob_{c}").to_numpy() for c in classes], 1)
        np.testing.assert_allclose(prob.sum(1), 1, atol=1e-5)
        cols = [c for c in table.column_names if not c.startswith("prob_")]
        columns[name] = cols
    base = ["object_id", "band", "label", "n_obs", "class", "probability"]
    for name in ("rnn", "cnn", "pooled"):
        assert columns[name] == base + ["skip_reason"]
    for name in ("taxonomy", None):  # models with an out-of-distribution score also give it
        assert columns[name] == base + ["ood_score", "is_ood", "skip_reason"]
    code, _, err = run_cli(
        ["classify", "--input", tmp_path / "in.parquet", "--output", tmp_path / "classify.parquet"],
        capsys,
    )
    assert code == 0, err
    assert pq.read_table(tmp_path / "classify.parquet").equals(
        pq.read_table(tmp_path / "None.parquet")
    )


def test_clone_works_on_every_estimator(folders):
    estimators = [
        Embedder(folders["encoder"], layers="last"),
        Features("numpy"),
        FeatureForest(n_estimators=5),
        NetworkClassifier("cnn", model_options={"dense": 8}),
        EncoderClassifier(folders["encoder"], full_steps=3),
        TaxonomyClassifier(epochs=5),
    ]
    for est in estimators:
        twin = clone(est)
        assert type(twin) is type(est) and twin.get_params() == est.get_params()
    fitted = load(folders["rnn"])
    assert clone(fitted).get_params() == fitted.get_params() and not hasattr(clone(fitted), "net_")


def test_a_pipeline_of_embedder_and_probe_reproduces_fs1_embed(folders, tmp_path):
    table = simulate("asas", 150, ["RRab", "Mira", "EB_contact"], seed=3)
    result = fs.run(table, "*", "embed", tmp_path, model=str(folders["encoder"]), ns=[5, 20], folds=2,
                    progress=False, report=False)  # fmt: skip
    data = fs.prepare(table, "*")
    test = data.table.filter(pa.array(data.test))
    for f in range(2):
        for n in (5, 20):
            rows = np.sort(data.rows(fs.training_ids(data, f, n)))
            pipe = make_pipeline(
                Embedder(folders["encoder"], min_obs=fs.FS1_MIN_OBS), fs.PROBES["mlp"](f)
            )
            pipe.fit(data.table.take(pa.array(rows)), data.labels[rows])
            f1 = fs._score(data.labels[data.test], pipe.predict(test), data.classes)["f1"]
            assert f1 == result["results"][str(n)]["f1_folds"][f]
