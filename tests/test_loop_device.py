"""The training loop owns the device: batches and validation closures follow the model; under DDP
every rank stops early at the step rank 0 decided."""

import json
import multiprocessing
import os
import socket
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist

from starcurve.data.io import from_arrays, write_parquet
from starcurve.models.encoder import EncoderConfig, build, get_config
from starcurve.train import heads, loop, pretrain
from starcurve.train import supervised as sup
from starcurve.train.loop import TrainConfig, model_device, pick_device, to_device, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def _tensors(x):
    if torch.is_tensor(x):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)


def mse(net, batch):
    loss = ((net(batch["x"]) - batch["y"]) ** 2).mean()
    return loss, {"mse": loss.detach()}


def linear_data(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return [
        {"x": torch.randn(8, 4, generator=g), "y": torch.randn(8, 1, generator=g)} for _ in range(n)
    ]


def test_to_device_moves_nested_tensors_and_keeps_the_rest():
    batch = {
        "a": torch.ones(2),
        "b": [torch.zeros(1), (torch.ones(1), "s")],
        "n": 3,
        "c": {"d": torch.ones(1)},
    }
    out = to_device(batch, "cpu")
    assert out["n"] == 3 and out["b"][1][1] == "s" and isinstance(out["b"][1], tuple)
    assert (
        all(t.device == torch.device("cpu") for t in _tensors(out))
        and len(list(_tensors(out))) == 4
    )
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters at all
    assert pick_device("cpu") == pick_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert pick_device(None) == torch.device("cpu")


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), pytest.param("cuda", marks=cuda)])
def test_train_on_an_explicit_device(tmp_path, device):
    torch.manual_seed(0)
    model, data, seen = torch.nn.Linear(4, 1), linear_data(), []
    val = linear_data(seed=1, n=1)[0]

    def loss_fn(net, batch):
        seen.append({t.device for t in _tensors(batch)})
        return mse(net, batch)

    @torch.no_grad()
    def eval_fn(net):
        b = to_device(val, model_device(net))
        return float(((net(b["x"]) - b["y"]) ** 2).mean().cpu())

    cfg = TrainConfig(steps=6, lr=1e-2, warmup=1, eval_every=2, log_every=1, ckpt_every=100)
    summary = train(
        model,
        lambda: data,
        loss_fn,
        tmp_path,
        cfg,
        eval_fn=eval_fn,
        eval_name="val_mse",
        lower_is_better=True,
        device=device,
    )
    want = pick_device(device)
    assert summary["steps"] == 6 and summary["best_val_mse"] is not None
    assert model_device(model) == want and all(s == {want} for s in seen)


class EvalInputs:
    """Checks that evaluations feed the model only tensors that went through ``to_device`` with the
    model's device. On a CPU-only machine nothing else can tell a forgotten move from a done one."""

    def __init__(self, monkeypatch, module):
        self.moved, self.calls, self.checked = [], [], 0
        real_to, real_train = loop.to_device, module.train

        def spy_to(x, device):
            out = real_to(x, device)
            self.calls.append(torch.device(device))
            self.moved.extend(_tensors(out))
            return out

        def spy_train(model, *args, **kwargs):
            handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)
            try:
                return real_train(model, *args, **kwargs)
            finally:
                handle.remove()

        monkeypatch.setattr(module, "to_device", spy_to)
        monkeypatch.setattr(module, "train", spy_train)

    def hook(self, mod, args, kwargs):
        if mod.training:  # a training step: the loop moved the batch
            return
        for t in _tensors((args, kwargs)):
            assert any(t is m for m in self.moved), (
                "an evaluation fed the model a tensor it did not move"
            )
            assert t.device == model_device(mod)
        self.checked += 1


def two_class_table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(30, 80, n)
    labels = np.where(np.arange(n) % 2 == 0, "quiet", "loud")
    times = [np.cumsum(rng.exponential(1.0, k)) for k in lens]
    mags = [
        14 + (0.01 if c == "quiet" else 0.5) * rng.standard_normal(k) for c, k in zip(labels, lens)
    ]
    table = from_arrays(
        times,
        mags,
        [np.full(k, 0.01) for k in lens],
        ids=[f"s{i}" for i in range(n)],
        band="V",
        labels=labels.tolist(),
    )
    return table, labels


RNN = {"hidden": 8, "layers": 1, "dense": 8, "dropout": 0.0, "train_max_obs": 60}


def test_supervised_validation_moves_its_batches_to_the_model_device(tmp_path, monkeypatch):
    spy = EvalInputs(monkeypatch, sup)
    table, labels = two_class_table()
    cfg = sup.FitConfig(
        steps=4, batch_size=16, eval_every=2, patience=0, val_frac=0.25, ckpt_every=100
    )
    _, info = sup.fit("rnn", table, labels, tmp_path, cfg, model_options=RNN)
    assert spy.checked >= 2 and info["train"]["best_val_loss"] is not None


def tiny_encoder():
    d = get_config("sc1").to_dict()
    d.update(
        {"window": 32, "d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 16}, name="tiny-sc1"
    )
    return build(EncoderConfig.from_dict(d), seed=0)


def test_head_validation_moves_its_batches_to_the_model_device(tmp_path, monkeypatch):
    spy = EvalInputs(monkeypatch, heads)
    table, labels = two_class_table()
    heads.fit_classifier(
        tiny_encoder(),
        table,
        labels,
        out_dir=tmp_path,
        head_steps=4,
        full_steps=2,
        eval_every=2,
        patience=0,
    )
    assert spy.checked >= 3  # stage 1 (cached features) and stage 2 (whole network)


PRETRAIN = {"name": "tiny", "window": 32, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 16}


def test_pretraining_validation_moves_its_windows_to_the_model_device(tmp_path, monkeypatch):
    table, _ = two_class_table(12)
    val = pretrain.Validation(write_parquet(table, tmp_path / "v.parquet"), 32, batch_size=8)
    spy = EvalInputs(monkeypatch, pretrain)
    model = build(EncoderConfig(**PRETRAIN))
    assert np.isfinite(val(model))
    assert len(spy.calls) == -(-val.n_windows // 8) and set(spy.calls) == {model_device(model)}
    assert sum(len(t) for t in spy.moved if t.dim() == 2) >= val.n_windows


@cuda
def test_validation_closures_run_on_the_gpu(tmp_path):
    table, labels = two_class_table()
    cfg = sup.FitConfig(
        steps=4, batch_size=16, eval_every=2, patience=0, val_frac=0.25, ckpt_every=100
    )
    model, info = sup.fit("rnn", table, labels, tmp_path / "rnn", cfg, model_options=RNN)
    assert model_device(model).type == "cuda" and info["train"]["best_val_loss"] is not None
    clf = heads.fit_classifier(
        tiny_encoder(),
        table,
        labels,
        out_dir=tmp_path / "head",
        head_steps=4,
        full_steps=2,
        eval_every=2,
        patience=0,
    )
    assert model_device(clf).type == "cuda"
    val = pretrain.Validation(write_parquet(table, tmp_path / "v.parquet"), 32)
    assert np.isfinite(val(build(EncoderConfig(**PRETRAIN)).cuda()))


# --- DDP -------------------------------------------------------------------------------------------
def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE="2",
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model, data = torch.nn.Linear(4, 1), linear_data(seed=rank)
        scores = iter([0.5, 0.9, 0.1, 0.2, 0.3, 0.4, 0.5])  # only rank 0 evaluates: best at step 4

        def eval_fn(net):
            return next(scores)

        cfg = TrainConfig(
            steps=40, lr=1e-2, warmup=1, eval_every=2, patience=2, log_every=1, ckpt_every=1000
        )
        s = train(
            model,
            lambda: data,
            mse,
            os.path.join(out, "run"),
            cfg,
            eval_fn=eval_fn,
            device="cpu",
            desc=f"rank {rank}",
        )
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"steps": s["steps"], "early_stopped": s["early_stopped"]}, f)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_every_rank_stops_early_at_the_step_rank0_decided(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, port, str(tmp_path))) for r in (0, 1)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 90
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    assert not hung, "a rank kept training after rank 0 stopped"
    assert [p.exitcode for p in procs] == [0, 0]
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert (
        got == [{"steps": 8, "early_stopped": True}] * 2
    )  # evals at 2, 4, 6, 8: worse twice after 4
