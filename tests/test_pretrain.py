"""Masked pretraining: it learns, it resumes exactly, the command writes model folders, DDP runs."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from starcurve.data.io import from_arrays, read, write_parquet
from starcurve.data.loader import window_tensors
from starcurve.errors import StarcurveError
from starcurve.models import hub
from starcurve.models.encoder import EncoderConfig, build
from starcurve.train.loop import TrainConfig
from starcurve.train.pretrain import inv_err_weights, masked_loss, pretrain_cmd, run

TINY = {
    "name": "tiny",
    "window": 32,
    "d_model": 16,
    "n_layers": 1,
    "n_heads": 2,
    "d_ff": 16,
    "norm": "pre",
    "residual": "add",
    "time_encoding": "logspaced",
    "mask_token": "vector",
    "use_err": True,
    "scale": True,
    "dropout": 0.1,
}


@pytest.fixture
def lc_file(tmp_path):
    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 100, 60)) for _ in range(24)]
    mags = [
        0.5 * np.sin(2 * np.pi * t / (1 + i % 5)) + rng.normal(0, 0.02, 60)
        for i, t in enumerate(times)
    ]
    table = from_arrays(times, mags, [np.full(60, 0.02)] * 24, ids=[f"s{i}" for i in range(24)])
    return write_parquet(table, tmp_path / "lcs.parquet")


def test_a2_loss_weights_are_min_max_scaled_inverse_errors():
    err = torch.tensor([[0.1, 0.2, 0.05, 9.0], [0.1, 0.1, 0.1, 0.1]])
    mask = torch.tensor([[True, True, True, False], [True] * 4])
    w = inv_err_weights(err, mask)
    assert w[0, 2] == pytest.approx(1 + 1e-3) and w[0, 1] == pytest.approx(1e-3)
    assert w[0, 0] == pytest.approx((10 - 5) / (20 - 5) + 1e-3)
    assert torch.allclose(w[1], torch.full((4,), 1e-3))  # equal errors: all weights 1e-3


def test_a_tiny_model_overfits_a_handful_of_light_curves(lc_file):
    torch.manual_seed(0)
    model = build(EncoderConfig(**{**TINY, "dropout": 0.0}))
    batch = window_tensors(read(lc_file).slice(0, 6), 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):  # the same probes every step: memorising them must drive the loss down
        loss, _ = masked_loss(model, batch, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])


def test_resume_after_interruption_continues_the_same_run(lc_file, tmp_path):
    cfg = EncoderConfig(**TINY)

    def tc(steps):
        return TrainConfig(steps=steps, lr=1e-3, warmup=3, ckpt_every=100, log_every=1)

    straight = build(cfg)
    run(straight, [lc_file], tmp_path / "a", tc(8), batch_size=8, pool=16)
    part = build(cfg)
    run(part, [lc_file], tmp_path / "b", tc(3), batch_size=8, pool=16)  # "killed" after step 3
    resumed = build(cfg, seed=99)  # fresh weights: everything must come from the checkpoint
    run(resumed, [lc_file], tmp_path / "b", tc(8), batch_size=8, pool=16, resume=True)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    folder = hub.load_model(tmp_path / "b")  # the run folder is a model folder
    assert torch.equal(folder.encoder.inp.weight, straight.inp.weight)


def test_pretrain_command(lc_file, tmp_path):
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    r = CliRunner()
    res = r.invoke(
        pretrain_cmd,
        ["--data", str(lc_file), "--config", str(cfg_file), "--output", str(out), "--steps", "0"],
    )
    assert res.exit_code == 0, res.output
    assert hub.load_model(out).config.name == "tiny"  # --steps 0: the initialised model folder
    shutil.rmtree(out)
    ids = tmp_path / "exclude.txt"
    ids.write_text("# test objects\ns0\ns1\n")
    args = [
        "--data",
        str(lc_file),
        "--config",
        str(cfg_file),
        "--output",
        str(out),
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--pool",
        "16",
        "--ckpt-every",
        "2",
        "--val-data",
        str(lc_file),
        "--val-windows",
        "8",
        "--eval-every",
        "2",
        "--exclude-ids",
        str(ids),
    ]
    res = r.invoke(pretrain_cmd, args)
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert meta["excluded_ids"] == 2 and meta["task"] == "pretrain"
    assert meta["train"]["amp"] == "cuda"  # --bf16 auto: bfloat16 on a GPU only
    val = (out / "val.csv").read_text().splitlines()
    assert len(val) == 3 and val[0].startswith("eval,rmse_probed,rmse_hidden")
    res = r.invoke(pretrain_cmd, args)  # same folder without --resume: refused
    assert isinstance(res.exception, StarcurveError)
    with open(out / "val.csv", "a") as f:  # as if killed after an evaluation, before its checkpoint
        f.write(val[-1].replace("2,", "3,", 1) + "\n")
    res = r.invoke(pretrain_cmd, [*args[:7], "6", *args[8:], "--resume"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 6
    meta = json.loads((out / "config.json").read_text())["meta"]
    assert meta["train"]["steps"] == 6 and len(meta["resumed"]) == 1  # the settings in effect
    evals = [row.split(",")[0] for row in (out / "val.csv").read_text().splitlines()[1:]]
    assert evals == [
        "1",
        "2",
        "3",
    ]  # steps 2, 4, 6: the row logged after the checkpoint is not kept twice
    res = r.invoke(pretrain_cmd, [*args[:5], str(tmp_path / "run_bf16"), *args[6:], "--bf16", "on"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "run_bf16" / "config.json").read_text())["meta"]
    assert meta["train"]["amp"] == "on"
    ids.write_text("\n".join(f"s{i}" for i in range(24)))  # everything excluded: a clear error
    res = r.invoke(pretrain_cmd, [*args[:5], str(tmp_path / "run2"), *args[6:]])
    assert isinstance(res.exception, StarcurveError), res.output


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(lc_file, tmp_path):
    """torchrun with 2 CPU processes (gloo) trains and writes one model folder."""
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps(TINY))
    second = write_parquet(read(lc_file), tmp_path / "more.parquet")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29561",
        "-m",
        "starcurve.cli",
        "pretrain",
        "--data",
        str(lc_file),
        str(second),
        "--config",
        str(cfg_file),
        "--output",
        str(tmp_path / "ddp"),
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--pool",
        "16",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "ddp" / "checkpoint" / "state.json").read_text())["step"] == 3
    assert hub.load_model(tmp_path / "ddp").config.name == "tiny"
