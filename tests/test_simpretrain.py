"""Simulator pretraining (issue 14): class mapping, the streamed simulated batches, the two stages."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from click.testing import CliRunner
from conftest import run_cli

from starcurve.cli import cli
from starcurve.data import schema as S
from starcurve.data import simulate as sim
from starcurve.data.clean import clean
from starcurve.data.io import write_parquet
from starcurve.errors import StarcurveError
from starcurve.train import simpretrain as sp
from starcurve.train import supervised as sup

TINY_RNN = {"hidden": 8, "layers": 1, "dense": 8, "dropout": 0.0, "train_max_obs": 60}
EROS = ["Cepheid", "EB", "Mira", "RR_Lyrae"]
ASAS = ["ACV", "DSCT", "EB_ambiguous", "EB_contact", "EB_detached", "EB_semidetached", "Mira",
        "RRab", "RRc"]  # fmt: skip


def real_like(n=60, seed=5):
    """'Real' data: simulated ASAS RRab and Mira, the RR Lyrae renamed as in EROS."""
    t = sim.simulate("asas", n, ["RRab", "Mira"], seed=seed)
    labels = ["RR_Lyrae" if v == "RRab" else v for v in t.column(S.LABEL).to_pylist()]
    return t.set_column(t.schema.get_field_index(S.LABEL), S.LABEL, pa.array(labels))


def test_default_class_maps_of_the_fs1_datasets():
    eros = sp.sim_class_map(EROS)
    assert eros == {"RRab": "RR_Lyrae", "RRc": "RR_Lyrae", "Cep_F": "Cepheid",
                    "Cep_1O": "Cepheid", "EB_detached": "EB", "EB_semidetached": "EB",
                    "EB_contact": "EB", "Mira": "Mira"}  # fmt: skip
    asas = sp.sim_class_map(ASAS)
    assert asas == {c: c for c in sim.ASAS_CLASSES}  # ACV, EB_ambiguous: no simulated counterpart
    # --label-map entries win: a name, or None (not drawn)
    m = sp.sim_class_map(EROS, {"Mira": None, "SRV": "Mira", "RRc": "nowhere"})
    assert "Mira" not in m and m["SRV"] == "Mira" and "RRc" not in m and m["RRab"] == "RR_Lyrae"


@pytest.mark.parametrize(
    "classes, label_map",
    [
        (["quiet", "loud"], None),
        (["RR_Lyrae", "ACV"], None),
        (EROS, {c: None for c in sim.CLASSES}),
    ],
)
def test_a_mapping_with_fewer_than_two_classes_is_a_clear_error(classes, label_map):
    with pytest.raises(StarcurveError, match="at least two.*--label-map"):
        sp.sim_class_map(classes, label_map)


def test_surveys_auto_from_the_survey_column():
    t = pa.table({S.SURVEY: ["EROS-1", "ASAS-3", "EROS-1"]})
    assert sp.resolve_surveys("auto", t) == ["asas", "eros"]
    assert sp.resolve_surveys("eros, asas,eros") == ["eros", "asas"]
    with pytest.raises(StarcurveError, match="unknown survey"):
        sp.resolve_surveys("kepler")
    with pytest.raises(StarcurveError, match="no simulated survey"):
        sp.resolve_surveys("auto", pa.table({S.SURVEY: ["Kepler"]}))


def test_stream_yields_mapped_classes_one_chunk_at_a_time(monkeypatch):
    calls = []
    real_range = sim.simulate_range

    def spy(survey, start, stop, classes, seed, **kw):
        calls.append((survey, stop - start, tuple(classes)))
        return real_range(survey, start, stop, classes, seed, **kw)

    monkeypatch.setattr(sim, "simulate_range", spy)
    torch.manual_seed(0)
    net = sup.build("rnn", classes=EROS, **TINY_RNN)
    mapping = sp.sim_class_map(EROS, {"EB_contact": None})
    stream = sp.sim_batches(net.inputs, EROS, mapping, ["eros", "asas"], 16, seed=3, chunk=64)
    assert calls == []  # lazy: nothing simulated before the first batch is asked for
    batches = [next(stream) for _ in range(3)]
    # one chunk (32 objects of each survey) serves the first batches; no call ever asks for more
    assert len(calls) == 2 and {c[1] for c in calls} == {32}
    assert all(set(c[2]) == set(mapping) for c in calls)  # unmapped classes are never drawn
    for _ in range(10):
        batches.append(next(stream))
    assert max(c[1] for c in calls) == 32 and len(calls) <= 2 * (13 * 16 // 48 + 1)
    ys = torch.cat([b["y"] for b in batches]).numpy()
    assert set(np.array(EROS)[ys]) <= set(mapping.values())
    assert all(b["x"].shape[0] == 16 and torch.isfinite(b["x"]).all() for b in batches)
    # a batch larger than the chunk still comes (the chunk grows to two batches)
    assert (
        next(sp.sim_batches(net.inputs, EROS, mapping, ["eros"], 40, chunk=16))["x"].shape[0] == 40
    )
    # the same seed gives the same stream
    again = sp.sim_batches(net.inputs, EROS, mapping, ["eros", "asas"], 16, seed=3, chunk=64)
    assert torch.equal(next(again)["x"], batches[0]["x"])


def test_stage_loss_ignores_classes_without_simulations():
    classes = ["ACV", "Mira", "RRab"]
    loss_fn = sp.stage_loss(classes, {"RRab": "RRab", "Mira": "Mira"})

    class Net(torch.nn.Module):
        def forward(self, x, lengths, context=None):
            return x

    y = torch.tensor([1, 2])
    logits = torch.tensor([[50.0, 2.0, 0.0], [-50.0, 0.0, 2.0]])  # the ACV logit does not count
    loss, _ = loss_fn(Net(), {"x": logits, "lengths": None, "y": y})
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits[:, 1:], y - 1))


def test_cli_train_pretrain_sim_records_both_stages(tmp_path):
    data = write_parquet(real_like(), tmp_path / "real.parquet")
    out = tmp_path / "model"
    args = ["train", "rnn", "--data", str(data), "--output", str(out), "--steps", "5",
            "--eval-every", "5", "--pretrain-sim", "asas", "--sim-n", "200", "--batch-size", "16"]  # fmt: skip
    args += [f"--set={k}={v}" for k, v in TINY_RNN.items()]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "stage 1: 13 steps on simulated asas" in res.output
    meta = json.loads((out / "config.json").read_text())["meta"]
    pre = meta["pretrain_sim"]
    assert pre["train"]["steps"] == 13 and meta["train"]["steps"] == 5  # ceil(200 / 16), stage 2
    assert pre["surveys"] == ["asas"] and pre["n"] == 200 and pre["bands"] == {"asas": "V"}
    assert pre["class_map"] == {"RRab": "RR_Lyrae", "RRc": "RR_Lyrae", "Mira": "Mira"}
    assert pre["val_loss_after_pretraining"] is not None
    assert (out / "pretrain_sim" / "log.csv").exists() and (out / "log.csv").exists()
    # --resume continues stage 2 from its checkpoint; stage 1 is not redone
    res = CliRunner().invoke(cli, [a if a != "5" else "8" for a in args] + ["--resume"])
    assert res.exit_code == 0, res.output
    meta2 = json.loads((out / "config.json").read_text())["meta"]
    assert meta2["train"]["steps"] == 8 and meta2["pretrain_sim"]["train"] == pre["train"]


def test_cli_pretrain_sim_with_unmappable_labels_is_one_error_line(tmp_path, capsys):
    t = real_like(40)
    t = t.set_column(t.schema.get_field_index(S.LABEL), S.LABEL,
                     pc.if_else(pc.equal(t.column(S.LABEL), "Mira"), "loud", "quiet"))  # fmt: skip
    data = write_parquet(t, tmp_path / "real.parquet")
    args = ["train", "rnn", "--data", str(data), "--output", str(tmp_path / "m"), "--steps", "2",
            "--pretrain-sim", "asas", "--sim-n", "32"]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.startswith("error: simulator pretraining") and "at least two" in err
    assert len(err.strip().splitlines()) == 1
    # the same --label-map that renames the real labels maps the simulated ones
    lm = tmp_path / "map.json"
    lm.write_text(json.dumps({"RRab": "quiet", "Mira": "loud"}))
    args += ["--label-map", str(lm), "--batch-size", "16"]
    args += [f"--set={k}={v}" for k, v in TINY_RNN.items()]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "m" / "config.json").read_text())["meta"]
    assert meta["pretrain_sim"]["class_map"] == {"RRab": "quiet", "Mira": "loud"}


def test_fs1_rnn_sim_method(tmp_path, monkeypatch):
    from starcurve.eval import fewshot as fs

    monkeypatch.setitem(sup.FS1_FIT, "rnn", sup.FitConfig(steps=4, eval_every=2, batch_size=16))
    monkeypatch.setitem(sup.FS1_MODEL, "rnn", TINY_RNN)
    monkeypatch.setattr(sup, "FS1_SIM", sp.SimPretrain(surveys="auto", n=32, chunk=64))
    table, _ = clean(real_like(50))  # survey column "ASAS-3-sim": auto -> asas
    labels = np.array(table.column(S.LABEL).to_pylist())
    ids = np.array(table.column(S.ID).to_pylist())
    test = np.arange(table.num_rows) >= 36
    data = fs.FS1Data(table, ids, labels, ["Mira", "RR_Lyrae"], {}, test, {}, notes={})
    clf = fs.METHODS["rnn-sim"].classifier(None, 0, tmp_path)
    rows = np.flatnonzero(~test)
    pred, _ = fs._classify(clf, data, rows, labels[rows], tmp_path)
    assert pred.shape == (test.sum(),)
    meta = json.loads((tmp_path / "fs1_predict.json").read_text())
    assert meta["pretrain_sim"]["surveys"] == ["asas"] and meta["pretrain_sim"]["steps"] == 2


@pytest.mark.parametrize("period", [False, True])
def test_stage_one_gives_a_context_model_a_neutral_context(tmp_path, monkeypatch, period):
    """Simulated magnitudes are not the target field's: stage 1 sees the training set's mean
    magnitude and error on every light curve, so brightness is learnt from the real labels only.
    A period model gets each simulated light curve's own period, computed once per light curve
    (not per batch)."""
    from starcurve.data import views

    seen, calls = [], []
    real_batches, real_periods = sp.sim_batches, views.periods

    def spy(inputs, *args, **kw):
        for batch in real_batches(inputs, *args, **kw):
            seen.append(batch["context"])
            yield batch

    monkeypatch.setattr(sp, "sim_batches", spy)
    monkeypatch.setattr(
        views, "periods", lambda t, **kw: calls.append(t.num_rows) or real_periods(t, **kw)
    )
    table, _ = clean(real_like(40))
    labels = np.array(table.column(S.LABEL).to_pylist(), object)
    cfg = sup.FitConfig(steps=2, eval_every=2, batch_size=16,
                        pretrain_sim=sp.SimPretrain(surveys="asas", n=48, chunk=64))  # fmt: skip
    opts = {**TINY_RNN, "context": True, "period": period}
    m, _ = sup.fit("rnn", table, labels, tmp_path, cfg, model_options=opts)
    assert len(seen) == 3 and seen[0].shape[1] == 2 + 2 * period
    mean = torch.tensor(m.cfg.context_mean)
    assert all(torch.allclose(c[:, :2], mean[:2].expand(len(c), 2)) for c in seen)
    if period:  # the simulated light curves' own periods: they differ, and one periodogram each
        assert torch.cat(seen)[:, 2].std() > 0.1
        # the real training and validation tables, then the one simulated chunk the 3 batches
        # came from (64 light curves): one periodogram call per table, none per batch
        assert len(calls) == 3 and calls[2] == 64, calls
    # the real data's context is not constant: stage 2 does see it
    real = m.inputs(table)["context"]
    assert real[:, 0].std() > 0.1
