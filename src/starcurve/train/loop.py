"""One training loop for every neural model (encoder pretraining, fine-tuning, RNN, CNN).

Plain PyTorch: AdamW/Adam with linear warm-up, gradient clipping, bfloat16 autocast (on GPU; on any
device with ``amp="on"``), DDP when launched by ``torchrun`` (gloo on CPU, nccl on GPU), a tqdm bar,
a CSV log and periodic checkpoints. Checkpoints are safetensors + JSON only (model, optimizer
moments, RNG state), so resuming never unpickles anything. ``resume=True`` restores the last
checkpoint and skips the batches already consumed, so an interrupted run continues exactly as if it
had not stopped.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from tqdm.auto import tqdm

from starcurve.errors import StarcurveError
from starcurve.files import atomic_json, atomic_safetensors, atomic_write

AMP = ("cuda", "on", "off")


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # or "adam"
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    warmup: int = 100
    decay: str = (
        "constant"  # after warm-up: "constant", or "cosine" down to lr/100 at the last step
    )
    clip: float = 1.0
    log_every: int = 25
    ckpt_every: int = 200
    eval_every: int = 0  # 0: no evaluation / early stopping
    patience: int = 0  # evaluations without improvement before stopping (0: never stop early)
    # bfloat16 autocast: "cuda" (on a GPU only), "on" (any device; small models train slower in
    # bfloat16 even on CPUs with AMX: docs/encoder.md), "off"
    amp: str = "cuda"
    seed: int = 0


def ddp_setup(device_type: str | None = None) -> tuple[int, int]:
    """Initialise torch.distributed when launched by torchrun; return (rank, world size).

    The backend is nccl for CUDA (``device_type`` "cuda", or None with a GPU present), else gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = device_type == "cuda" or (device_type is None and torch.cuda.is_available())
        dist.init_process_group("nccl" if cuda else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def model_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); CPU for a module with neither."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def model_args(batch: dict) -> dict:
    """The network's keyword inputs of a batch: everything but the labels ``y``."""
    return {k: v for k, v in batch.items() if k != "y"}


def to_device(batch, device: str | torch.device):
    """``batch`` with every tensor moved to ``device``: a tensor, or dicts, lists and tuples of them
    (nested as deep as needed); anything else is returned unchanged.

    Validation closures (``eval_fn``) get the model on its training device and must move their
    inputs with ``to_device(x, model_device(model))`` (and bring results back with ``.cpu()``).
    """
    device = torch.device(device)
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=device.type == "cuda")  # host-to-GPU copies overlap
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def pick_device(device: str | torch.device | None, rank: int = 0) -> torch.device:
    """``device`` as a torch.device; None: ``cuda:<rank>`` when a GPU is present, else CPU. A bare
    "cuda" gets the rank's GPU (rank modulo the GPUs present)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", rank % max(torch.cuda.device_count(), 1))
    return device


def _from_rank0(value: float, device: torch.device) -> float:
    """``value`` as rank 0 has it, on every rank (a collective: every rank must call it)."""
    on = torch.device("cpu") if dist.get_backend() == "gloo" else device
    t = torch.tensor([float(value)], dtype=torch.float64, device=on)
    dist.broadcast(t, src=0)
    return float(t.item())


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {
        f"{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v))
        for i, st in sd["state"].items()
        for k, v in st.items()
    }
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Checkpoint:
    """The ``checkpoint/`` folder of a run: model, optimizer, RNG state and step."""

    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir) / "checkpoint"

    def exists(self) -> bool:
        return (self.dir / "state.json").exists()

    def save(self, model, opt, step: int, extra: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_safetensors(model.state_dict(), self.dir / "model.safetensors")
        tensors, meta = _optimizer_tensors(opt)
        tensors["rng.torch"] = torch.get_rng_state()
        atomic_safetensors(tensors, self.dir / "optimizer.safetensors")
        atomic_json({"step": step, **meta, **extra}, self.dir / "state.json")  # written last

    def load(self, model, opt) -> dict:
        try:
            state = json.loads((self.dir / "state.json").read_text())
            model.load_state_dict(load_file(self.dir / "model.safetensors"))
            tensors = load_file(self.dir / "optimizer.safetensors")
        except (OSError, ValueError, RuntimeError) as e:
            raise StarcurveError(
                f"cannot resume from {self.dir}: {str(e).splitlines()[0]}"
            ) from None
        torch.set_rng_state(tensors.pop("rng.torch"))
        _load_optimizer(opt, tensors, state)
        return state


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def train(
    model: torch.nn.Module,
    batches: Callable[[], Iterable[dict]],
    loss_fn: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]],
    out_dir: str | os.PathLike,
    cfg: TrainConfig,
    *,
    resume: bool = False,
    eval_fn: Callable[[torch.nn.Module], float] | None = None,
    eval_name: str = "val_score",
    lower_is_better: bool = False,
    desc: str = "train",
    device: str | torch.device | None = None,
) -> dict:
    """Train ``model`` for ``cfg.steps`` steps on ``batches()`` (re-created when exhausted).

    ``loss_fn(model, batch)`` returns the loss and a dict of numbers to log. ``eval_fn(model)``
    returns a validation figure named ``eval_name`` (``lower_is_better`` for a loss or an error)
    that drives early stopping; the best weights are restored at the end. The figure keeps its own
    sign and name everywhere: on the bar (``val_loss=``, ``best_val_loss=``) and in the summary.
    Returns a summary dict: steps done, last loss, ``best_<eval_name>`` and ``<eval_name>_history``
    ([step, figure] per evaluation; with ``eval_fn``), seconds, early_stopped; a number that is not finite is None, so the summary prints as valid JSON.
    A resumed run first drops the rows of ``log.csv`` logged after its checkpoint (it logs them again).

    ``device`` (a string or torch.device; None: ``cuda:<rank>`` when a GPU is present, else CPU) is
    where the loop puts the model and every batch (tensors at any depth of dicts/lists/tuples), so
    ``loss_fn`` gets its batch on the model's device. ``eval_fn`` runs on rank 0 with the model on
    that device and must move its own inputs: ``to_device(x, model_device(model))``. Under DDP the
    early-stopping decision of rank 0 is broadcast, so every rank stops at the same step.
    """
    sign = -1.0 if lower_is_better else 1.0  # inside (and in checkpoints) higher is better
    out_dir = Path(out_dir)
    wanted = None if device is None else torch.device(device)
    rank, world = ddp_setup(None if wanted is None else wanted.type)
    device = pick_device(wanted, rank)
    if world > 1 and device.type == "cuda":
        torch.cuda.set_device(device)  # nccl collectives run on the current GPU
    torch.manual_seed(cfg.seed + rank)
    model.to(device)
    opt = make_optimizer(model, cfg)
    ckpt = Checkpoint(out_dir)
    step, best, best_state, bad_evals, history = 0, -math.inf, None, 0, []
    if resume and ckpt.exists():
        state = ckpt.load(model, opt)
        step, bad_evals = state["step"], state.get("bad_evals", 0)
        history = [h for h in state.get("history", []) if h[0] <= step]
        best = -math.inf if state.get("best") is None else state["best"]
        drop_rows_after(out_dir / "log.csv", step)
        if (ckpt.dir / "best.safetensors").exists():
            best_state = load_file(ckpt.dir / "best.safetensors")
    elif resume:
        raise StarcurveError(f"--resume: no checkpoint in {out_dir}; start without --resume")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def lr_at(s: int) -> float:
        if s < cfg.warmup or cfg.decay == "constant":
            return cfg.lr * min(1.0, (s + 1) / max(cfg.warmup, 1))
        done = (s - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))

    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "log.csv"
    log_file = open(log_path, "a", newline="") if rank == 0 else None  # noqa: SIM115 (closed in the finally below)
    writer = None

    def stream():
        while True:
            got = False
            for b in batches():
                got = True
                yield b
            if not got:
                raise StarcurveError("the training data produced no batches")

    data = itertools.islice(stream(), step, None)  # skip what a resumed run already consumed
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=rank != 0, dynamic_ncols=True)
    t0, loss_val, stopped = time.time(), float("nan"), False
    if cfg.amp not in AMP:
        raise StarcurveError(f"amp={cfg.amp!r}: use one of {AMP}")
    autocast = cfg.amp == "on" or (cfg.amp == "cuda" and device.type == "cuda")
    try:
        while step < cfg.steps:
            batch = to_device(next(data), device)
            net.train()
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss, metrics = loss_fn(net, batch)
            if not torch.isfinite(loss):
                raise StarcurveError(f"loss became {loss.item()} at step {step}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            step += 1
            loss_val = float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_val:.4f}")
            if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
                row = {
                    "step": step,
                    "loss": loss_val,
                    "lr": lr_at(step - 1),
                    "seconds": round(time.time() - t0, 2),
                }
                row.update({k: float(v) for k, v in metrics.items()})
                if writer is None:
                    writer = csv.DictWriter(log_file, fieldnames=list(row), extrasaction="ignore")
                    if log_path.stat().st_size == 0:
                        writer.writeheader()
                writer.writerow(row)
                log_file.flush()
            if eval_fn is not None and cfg.eval_every and step % cfg.eval_every == 0 and rank == 0:
                figure = float(eval_fn(model))
                history.append([step, _finite(figure)])
                score = sign * figure
                if score > best:
                    best, bad_evals = score, 0
                    best_state = {
                        k: v.detach().clone().cpu() for k, v in model.state_dict().items()
                    }
                    ckpt.dir.mkdir(parents=True, exist_ok=True)
                    atomic_safetensors(best_state, ckpt.dir / "best.safetensors")
                else:
                    bad_evals += 1
                bar.set_postfix(
                    {
                        "loss": f"{loss_val:.4f}",
                        eval_name: f"{figure:.4f}",
                        f"best_{eval_name}": f"{sign * best:.4f}",
                    }
                )
                stopped = bool(cfg.patience and bad_evals >= cfg.patience)
            if world > 1 and cfg.patience and cfg.eval_every and step % cfg.eval_every == 0:
                # rank 0 decided (the condition depends on cfg only, so every rank gets here)
                stopped = bool(_from_rank0(stopped, device))
            if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.steps or stopped):
                ckpt.save(
                    model,
                    opt,
                    step,
                    {
                        "best": _finite(best),
                        "bad_evals": bad_evals,
                        "history": history,
                        "config": _jsonable(cfg),
                    },
                )
            if stopped:
                break
    finally:
        bar.close()
        if log_file:
            log_file.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    summary = {"steps": step, "loss": _finite(loss_val)}
    if eval_fn is not None:
        summary[f"best_{eval_name}"] = None if _finite(best) is None else sign * best
        summary[f"{eval_name}_history"] = history  # [step, figure] per evaluation
    return {**summary, "seconds": time.time() - t0, "early_stopped": stopped}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def drop_rows_after(log_path: Path, step: int) -> None:
    """Keep the header and the complete rows whose first column is at most ``step`` (a resumed run
    logs the rest again)."""
    if not log_path.exists():
        return
    with open(log_path, newline="") as f:
        rows = list(csv.reader(f))
    whole = [r for r in rows[1:] if len(r) == len(rows[0]) and r[0].isdigit()]
    keep = rows[:1] + [r for r in whole if int(r[0]) <= step]
    if len(keep) < len(rows):
        text = io.StringIO()
        csv.writer(text).writerows(keep)
        atomic_write(log_path, lambda f: f.write(text.getvalue().encode()))


def _jsonable(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["betas"] = list(d["betas"])
    return d


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
