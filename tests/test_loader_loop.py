"""The streaming loader and the one training loop (checkpoint, exact resume, early stopping)."""

import csv

import torch

from starcurve.data.io import write_parquet
from starcurve.data.loader import WindowStream
from starcurve.train.loop import TrainConfig, train


def test_stream_yields_batches_and_respects_exclude_and_ranks(tmp_path, toy_table):
    write_parquet(toy_table.slice(0, 5), tmp_path / "a.parquet")
    write_parquet(toy_table.slice(5), tmp_path / "b.parquet")
    ds = WindowStream(
        tmp_path, n=32, batch_size=4, epochs=1, min_obs=5, batch_rows=2, exclude={"obj0"}
    )
    batches = list(ds)
    assert sum(len(b["row"]) for b in batches) == 9
    assert all(b["time"].shape[1] == 32 and b["mask"].dtype == torch.bool for b in batches)
    parts = [
        sum(
            len(b["row"])
            for b in WindowStream(tmp_path, n=32, epochs=1, batch_rows=2, rank=r, world=2)
        )
        for r in (0, 1)
    ]
    assert sum(parts) == 10 and min(parts) > 0


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(32, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 32)
        )

    def forward(self, x):
        return self.net(x)


def loss_fn(model, batch):
    out = model(batch["time"] / 100)
    loss = ((out - batch["mag"]) ** 2)[batch["mask"]].mean()
    return loss, {"mse": loss.detach()}


def _run(tmp_path, toy_table, out, steps, resume=False):
    write_parquet(toy_table, tmp_path / "d.parquet")
    torch.manual_seed(0)
    model = Tiny()
    cfg = TrainConfig(steps=steps, lr=1e-2, warmup=2, ckpt_every=3, log_every=1)
    summary = train(
        model,
        lambda: WindowStream(tmp_path / "d.parquet", n=32, batch_size=4, epochs=1, seed=1),
        loss_fn,
        out,
        cfg,
        resume=resume,
    )
    return model, summary


def test_resume_continues_the_same_run_exactly(tmp_path, toy_table):
    straight, s = _run(tmp_path, toy_table, tmp_path / "a", 7)
    _run(tmp_path, toy_table, tmp_path / "b", 3)  # "killed" after its step-3 checkpoint
    resumed, s2 = _run(tmp_path, toy_table, tmp_path / "b", 7, resume=True)
    assert s["steps"] == s2["steps"] == 7
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    rows = list(csv.DictReader((tmp_path / "b" / "log.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == list(range(1, 8)) and "mse" in rows[0]


def test_early_stopping_restores_best_weights(tmp_path, toy_table):
    write_parquet(toy_table, tmp_path / "d.parquet")
    model = Tiny()
    scores = iter([0.5, 0.9, 0.1, 0.2, 0.3, 0.4])
    snap = {}

    def eval_fn(m):
        s = next(scores)
        snap[s] = {k: v.clone() for k, v in m.state_dict().items()}
        return s

    cfg = TrainConfig(steps=50, lr=1e-2, warmup=1, eval_every=2, patience=2)
    summary = train(
        model,
        lambda: WindowStream(tmp_path / "d.parquet", n=32, batch_size=4, epochs=1),
        loss_fn,
        tmp_path / "o",
        cfg,
        eval_fn=eval_fn,
    )
    assert summary["early_stopped"] and summary["steps"] == 8 and summary["best_val_score"] == 0.9
    for k, v in model.state_dict().items():
        assert torch.equal(v, snap[0.9][k])


def test_bf16_autocast_on_cpu_when_asked_and_a_clear_error_for_a_bad_setting(tmp_path, toy_table):
    import pytest

    from starcurve.errors import StarcurveError

    write_parquet(toy_table, tmp_path / "d.parquet")
    seen = []

    def recording_loss(model, batch):
        out = model(batch["time"] / 100)
        seen.append(out.dtype)  # a Linear under autocast computes in bfloat16
        return loss_fn(model, batch)

    def go(amp, out):
        torch.manual_seed(0)
        cfg = TrainConfig(steps=3, lr=1e-2, warmup=1, log_every=1, amp=amp)
        stream = lambda: WindowStream(tmp_path / "d.parquet", n=32, batch_size=4, epochs=1, seed=1)
        return train(Tiny(), stream, recording_loss, tmp_path / out, cfg)

    go("on", "on")
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    go("cuda", "default")  # the default: bfloat16 on a GPU only
    assert set(seen) == {torch.float32}
    with pytest.raises(StarcurveError, match="amp="):
        go("fast", "bad")
