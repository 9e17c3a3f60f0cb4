"""Masked-magnitude pretraining of the encoder, and self-supervised fine-tuning on a target pool.

Per window (Astromer recipe): 50% of the valid observations are probed; of those 20% keep their true
value, 20% of the rest get a magnitude drawn from the same window and the rest (32% of the window)
are hidden. The loss is the RMSE over probed positions only (per-window mean of squared errors,
averaged over windows, square root); ``a2`` weights each squared error by 1/sigma min-max scaled
within the window plus 1e-3; ``sc1`` measures errors in units of the window's visible spread.

Data come from the core ``WindowStream`` (random windows, sharded Parquet) through a seeded shuffle
pool, so that windows of different files and surveys mix within a batch. Training is the one loop
``starcurve.train.loop.train`` (warm-up, clipping, bf16 on GPU, DDP, CSV log, checkpoints, exact
resume). The run folder is a model folder: ``config.json`` written at the start,
``model.safetensors`` at the end, ``checkpoint/`` for resuming, ``log.csv`` and ``val.csv``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F

from starcurve.cli import (
    OUTPUT_DIR,
    band_option,
    data_option,
    exclude_ids_option,
    min_obs_option,
    output_option,
    seed_option,
    threads_option,
)
from starcurve.data import schema as S
from starcurve.data.clean import MIN_OBS, clean
from starcurve.data.io import parquet_files, read, read_ids
from starcurve.data.loader import WindowStream, window_tensors
from starcurve.errors import StarcurveError
from starcurve.models.encoder import Encoder, EncoderConfig, build, get_config
from starcurve.models.folder import read_folder, save_folder
from starcurve.models.hub import load_model, save_model
from starcurve.train.loop import (
    TrainConfig,
    ddp_setup,
    drop_rows_after,
    model_device,
    to_device,
    train,
)

log = logging.getLogger("starcurve")
PROBE, KEEP, RANDOM = 0.5, 0.2, 0.2


def probe_masks(mag: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None):
    """Draw the probe pattern of each window: returns (mag_in, probed, hidden).

    Exact counts per window of n valid points: floor(n/2) probed, floor(20%) of them kept,
    floor(20%) of the rest replaced by a magnitude of a random valid point of the same window,
    the rest hidden. Valid points are the leading ones of each row (as ``windows`` pads them).
    """
    mask = mask.bool()
    n = mask.sum(1, keepdim=True)
    n_probe = torch.floor(n * PROBE)
    n_keep = torch.floor(n_probe * KEEP)
    n_rand = torch.floor((n_probe - n_keep) * RANDOM)
    score = torch.rand(mask.shape, generator=generator, device=mask.device).masked_fill(~mask, 2.0)
    rank = score.argsort(1).argsort(1)  # a random order of the valid points of each window
    probed = rank < n_probe
    rand = (rank >= n_keep) & (rank < n_keep + n_rand)
    hidden = probed & ~(rank < n_keep) & ~rand
    src = (torch.rand(mask.shape, generator=generator, device=mask.device) * n).long()
    src = src.clamp(max=mask.shape[1] - 1)
    mag_in = torch.where(rand, mag.gather(1, src), mag)
    return mag_in, probed, hidden


def inv_err_weights(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """a2 loss weights: 1/sigma min-max scaled within the window (valid points) plus 1e-3."""
    w = 1.0 / err.clamp(min=1e-6)
    big = torch.finfo(w.dtype).max
    lo = w.masked_fill(~mask, big).amin(1, keepdim=True)
    hi = w.masked_fill(~mask, -big).amax(1, keepdim=True)
    span = hi - lo
    scaled = torch.where(span > 0, (w - lo) / span.clamp(min=1e-12), torch.zeros_like(w))
    return scaled + 1e-3


def masked_loss(model, batch: dict, generator: torch.Generator | None = None):
    """Masked reconstruction loss and logged metrics (RMSE in magnitudes on probed/hidden points)."""
    cfg = getattr(model, "module", model).config
    mag, mask = batch["mag"], batch["mask"].bool()
    mag_in, probed, hidden = probe_masks(mag, mask, generator)
    pred, scale = model(batch["time"], mag_in, mask, batch["err"], hidden)
    resid = pred - mag
    r2 = (resid / scale[:, None]) ** 2 if cfg.scale else resid**2
    if cfg.loss_clip:
        r2 = r2.clamp(max=cfg.loss_clip)  # a 5-sigma outlier cannot be predicted: stop chasing it
    if cfg.loss_weights == "inv_err":
        r2 = r2 * inv_err_weights(batch["err"], mask)
    loss = _window_mean(r2, probed).sqrt()
    with torch.no_grad():
        raw = resid.detach() ** 2
        metrics = {
            "rmse_probed": _window_mean(raw, probed).sqrt(),
            "rmse_hidden": _window_mean(raw, hidden).sqrt(),
            "rmse_hidden_zero": _window_mean(mag**2, hidden).sqrt(),  # predicting the window mean
        }
    return loss, metrics


def _window_mean(r2: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean over windows (those with at least one point in ``where``) of per-window means."""
    k = where.sum(1)
    per = (r2 * where).sum(1) / k.clamp(min=1)
    has = (k > 0).to(per.dtype)
    return (per * has).sum() / has.sum().clamp(min=1)


def view_batches(
    table: pa.Table, p, cfg, batch_size: int, seed: int, rank: int = 0, world: int = 1
):
    """Endless seeded batches for multi-view pretraining: per row drawn, one random raw window, one
    random subset of each fold and the periodogram, as tensors keyed ``<view>.<field>``."""
    from starcurve.data.views import band_index, view_windows

    rng = np.random.default_rng([seed, rank, 11])
    rows_all = np.arange(rank, table.num_rows, world)
    band, ctx = band_index(table, cfg.bands), p.context()
    while True:
        rows = np.sort(rng.choice(rows_all, min(batch_size, len(rows_all)), replace=False))
        part, pp = table.take(pa.array(rows)), p.take(rows)
        batch = {"ctx": torch.from_numpy(ctx[rows]), "band": torch.from_numpy(band[rows])}
        for view in cfg.views:
            w = view_windows(
                part, pp, view, window=cfg.window, fold_window=cfg.fold_window, rng=rng
            )
            for k in ("time", "mag", "err", "mask"):
                batch[f"{view}.{k}"] = torch.from_numpy(np.ascontiguousarray(getattr(w, k)))
        yield batch


def info_nce(z: list[torch.Tensor], temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean InfoNCE over every ordered pair of views: view a of a row must pick the same row's
    view b among the batch's rows. Returns the loss and the top-1 accuracy of that pick."""
    z = [F.normalize(v.float(), dim=-1) for v in z]
    target = torch.arange(len(z[0]), device=z[0].device)
    losses, hits = [], []
    for i in range(len(z)):
        for j in range(len(z)):
            if i != j:
                logits = z[i] @ z[j].T / temperature
                losses.append(F.cross_entropy(logits, target))
                hits.append((logits.argmax(1) == target).float().mean())
    return torch.stack(losses).mean(), torch.stack(hits).mean()


def multiview_loss(model, batch: dict, generator: torch.Generator | None = None):
    """pv1: masked reconstruction on the raw and folded views + cross-view contrast (weighted)."""
    net = getattr(model, "module", model)
    cfg = net.config
    recon, pooled, metrics = [], [], {}
    for view in cfg.views:
        mag, mask = batch[f"{view}.mag"], batch[f"{view}.mask"].bool()
        kw = {"view": view, "ctx": batch["ctx"], "band": batch["band"], "states": True}
        if view == "pgram":
            *_, states = model(batch[f"{view}.time"], mag, mask, batch[f"{view}.err"], **kw)
            pooled.append(net.pool(states, mask))
            continue
        mag_in, probed, hidden = probe_masks(mag, mask, generator)
        pred, scale, states = model(
            batch[f"{view}.time"], mag_in, mask, batch[f"{view}.err"], hidden, **kw
        )
        r2 = (((pred - mag) / scale[:, None]) ** 2).clamp(max=cfg.loss_clip or float("inf"))
        recon.append(_window_mean(r2, probed).sqrt())
        with torch.no_grad():
            metrics[f"rmse_hidden_{view}"] = _window_mean((pred - mag).detach() ** 2, hidden).sqrt()
        pooled.append(net.pool(states, mask & ~hidden))
    loss = torch.stack(recon).mean()
    metrics["recon"] = loss.detach()
    if cfg.contrast > 0:
        nce, acc = info_nce([net.proj(v) for v in pooled], cfg.temperature)
        loss = loss + cfg.contrast * nce
        metrics.update(nce=nce.detach(), nce_acc=acc)
    return loss, metrics


def shuffled_batches(stream: WindowStream, batch_size: int, pool: int, seed: int, rank: int = 0):
    """Mix windows of consecutive stream chunks in a seeded pool of ``pool`` windows, then batch."""
    rng = np.random.default_rng([seed, rank, 7])
    keys = ("time", "mag", "err", "mask")
    buf: list[dict] = []
    have = 0
    for chunk in stream:
        buf.append({k: chunk[k] for k in keys})
        have += len(chunk["mag"])
        if have < pool:
            continue
        cat = {k: torch.cat([b[k] for b in buf]) for k in keys}
        perm = torch.from_numpy(rng.permutation(have))
        full = have - have % batch_size
        for s in range(0, full, batch_size):
            idx = perm[s : s + batch_size]
            yield {k: v[idx] for k, v in cat.items()}
        rest = perm[full:]  # carry the remainder over, so no window is dropped
        buf, have = [{k: v[rest] for k, v in cat.items()}], len(rest)


class Validation:
    """Masked-reconstruction RMSE on fixed held-out windows with a fixed probe pattern."""

    def __init__(
        self,
        source,
        window: int,
        band=None,
        exclude=frozenset(),
        max_windows=1024,
        seed=0,
        log_path: Path | None = None,
        batch_size: int = 256,
        cfg=None,
        min_obs: int = MIN_OBS,
    ):
        table = read(source, band=band)
        if exclude:
            table = table.filter(pc.invert(pc.is_in(table.column(S.ID), pa.array(sorted(exclude)))))
        table, _ = clean(table, min_obs=min_obs)
        if table.num_rows == 0:
            raise StarcurveError(f"--val-data {source}: no light curve with >= {min_obs} points")
        rng = np.random.default_rng(seed)
        self.loss_fn = masked_loss
        if (
            cfg is not None and cfg.multiview
        ):  # one fixed draw of every view of up to max_windows rows
            from starcurve.data.views import cached_periods

            table = table.take(pa.array(np.sort(rng.permutation(table.num_rows)[:max_windows])))
            self.batch = next(view_batches(table, cached_periods(table), cfg, table.num_rows, seed))
            self.loss_fn = multiview_loss
        else:
            w = window_tensors(table, window, mode="consecutive")
            take = torch.from_numpy(np.sort(rng.permutation(len(w["row"]))[:max_windows]))
            self.batch = {k: v[take] for k, v in w.items() if k != "row"}
        self.seed, self.log_path, self.batch_size = seed, log_path, batch_size
        self.n_windows, self.n_objects = (
            len(self.batch["ctx" if cfg and cfg.multiview else "mag"]),
            table.num_rows,
        )
        self.step = 0

    @torch.no_grad()
    def metrics(self, model: Encoder) -> dict:
        was = model.training
        model.eval()
        dev = model_device(model)
        g = torch.Generator(device=dev).manual_seed(self.seed)  # the same probes every time
        sums: dict[str, float] = {}
        n = self.n_windows
        for s in range(0, n, self.batch_size):
            b = to_device({k: v[s : s + self.batch_size] for k, v in self.batch.items()}, dev)
            loss, m = self.loss_fn(model, b, g)
            k = len(next(iter(b.values())))
            for key, v in {**m, "loss": loss}.items():
                sums[key] = sums.get(key, 0.0) + float(v) ** 2 * k
        model.train(was)
        return {k: math.sqrt(v / n) for k, v in sums.items()}

    def __call__(self, model: Encoder) -> float:
        """eval_fn of the loop: logs a row of val.csv; returns the hidden RMSE (multi-view models:
        the validation loss); lower is better."""
        m = self.metrics(model)
        self.step += 1
        if self.log_path is not None:
            new = not self.log_path.exists()
            with open(self.log_path, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["eval", *m])
                if new:
                    w.writeheader()
                w.writerow({"eval": self.step, **{k: round(v, 6) for k, v in m.items()}})
        return m["rmse_hidden"] if "rmse_hidden" in m else m["loss"]


def run(
    model: Encoder,
    paths: list,
    out: Path,
    tcfg: TrainConfig,
    *,
    batch_size: int = 64,
    band: str | None = None,
    exclude: set[str] | None = None,
    resume: bool = False,
    val: Validation | None = None,
    pool: int = 16384,
    meta: dict | None = None,
    desc: str = "pretrain",
    min_obs: int = MIN_OBS,
) -> dict:
    """Train ``model`` by masked reconstruction and write the model folder ``out``."""
    rank, world = ddp_setup()
    out = Path(out)
    cfg = model.config
    if rank == 0:
        if resume and (out / "config.json").exists():  # keep how the run was started
            first = read_folder(out, weights=False).meta
            first.setdefault("resumed", []).append((meta or {}).get("command"))
            if meta and "train" in meta:  # the settings in effect now (--steps may have changed)
                first["train"] = meta["train"]
            meta = first
        save_folder(out, "encoder", cfg.to_dict(), None, meta)  # the weights come at the end
    if tcfg.steps == 0:
        if rank == 0:
            save_model(model, out, meta)
        return {"steps": 0}

    if cfg.multiview:  # the views need whole light curves and their periodograms: held in memory
        from starcurve.data.views import cached_periods

        table = _read_all(paths, band, exclude, min_obs)
        # the periodograms are kept in $STARCURVE_CACHE when set (shared by runs), else in the run
        periods = cached_periods(
            table, os.environ.get("STARCURVE_CACHE") or out, progress=rank == 0
        )

        def batches():
            return view_batches(table, periods, cfg, batch_size, tcfg.seed, rank, world)

        loss_fn = multiview_loss
    else:
        loss_fn = masked_loss

    def stream_batches():
        stream = WindowStream(
            paths,
            n=cfg.window,
            batch_size=4096,
            band=band,
            exclude=exclude or None,
            min_obs=min_obs,
            batch_rows=512,
            seed=tcfg.seed,
            rank=rank,
            world=world,  # small chunks: DDP balance
        )
        return shuffled_batches(stream, batch_size, max(pool, batch_size), tcfg.seed, rank)

    if not cfg.multiview:
        batches = stream_batches
    if val is not None:
        val.log_path, val.step = out / "val.csv", 0
        state = out / "checkpoint" / "state.json"
        if (
            resume and tcfg.eval_every and state.exists()
        ):  # evaluations after the checkpoint run again
            val.step = json.loads(state.read_text())["step"] // tcfg.eval_every
            drop_rows_after(val.log_path, val.step)
    summary = train(
        model,
        batches,
        loss_fn,
        out,
        tcfg,
        resume=resume,
        eval_fn=val,
        eval_name="val_loss" if cfg.multiview else "val_rmse_hidden",
        lower_is_better=True,
        desc=desc,
    )
    if rank == 0:
        save_model(model, out, meta)
    return summary


def _read_all(paths: list, band: str | None, exclude: set[str] | None, min_obs: int) -> pa.Table:
    """Every light curve of ``paths`` (minus ``exclude``), cleaned, in one table."""
    table = pa.concat_tables([read(p, band=band) for p in paths], promote_options="default")
    if exclude:
        table = table.filter(pc.invert(pc.is_in(table.column(S.ID), pa.array(sorted(exclude)))))
    table, _ = clean(table, min_obs=min_obs)
    if table.num_rows == 0:
        raise StarcurveError(f"the training data hold no light curve with >= {min_obs} points")
    return table


def _train_options(f):
    opts = [
        data_option(),
        output_option(OUTPUT_DIR, "Run folder (becomes the model folder)."),
        click.option("--steps", default=None, type=click.IntRange(0),
                     help="Optimizer steps in all (pretrain 20000, finetune 2000 by default; 0: write "
                          "the starting model)."),
        click.option("--resume", is_flag=True, help="Continue the run in --output from its checkpoint."),
        click.option("--batch-size", default=64, show_default=True, type=int),
        click.option("--lr", type=float, default=None, help="Peak learning rate."),
        click.option("--warmup", default=None, type=int, help="Warm-up steps."),
        click.option("--decay", type=click.Choice(["constant", "cosine"]), default="constant",
                     show_default=True, help="Learning rate after warm-up (cosine: down to lr/100 at --steps)."),
        click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default="adam",
                     show_default=True),
        click.option("--weight-decay", default=0.0, show_default=True, type=float),
        click.option("--clip", default=1.0, show_default=True, type=float),
        band_option,
        min_obs_option,
        exclude_ids_option,
        click.option("--val-data", default=None, help="Held-out light curves for validation RMSE."),
        click.option("--val-band", default=None, help="Bands of --val-data to use (as --band)."),
        click.option("--val-windows", default=1024, show_default=True, type=int),
        click.option("--eval-every", default=500, show_default=True, type=int),
        click.option("--ckpt-every", default=200, show_default=True, type=int),
        click.option("--pool", default=16384, show_default=True, type=int,
                     help="Windows mixed in the shuffle pool."),
        click.option("--bf16", type=click.Choice(["auto", "on", "off"]), default="auto",
                     show_default=True,
                     help="bfloat16 autocast. auto: on a GPU only (on a CPU with AMX, pv1 steps "
                          "measured 1.3-1.5x slower in bfloat16 than in float32: docs/encoder.md)."),
        seed_option(),
        threads_option(),
    ]  # fmt: skip
    for o in reversed(opts):
        f = o(f)
    return click.argument("more_data", nargs=-1, type=click.Path())(f)


def _launch(model, out, opts: dict, meta: dict, lr: float, warmup: int, desc: str) -> None:
    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    paths = [str(p) for p in parquet_files(list(opts["data"]) + list(opts["more_data"]))]
    exclude = read_ids(opts["exclude_ids"])
    tcfg = TrainConfig(
        steps=opts["steps"],
        lr=lr,
        optimizer=opts["optimizer"],
        weight_decay=opts["weight_decay"],
        betas=(0.9, 0.98),
        eps=1e-9,
        warmup=warmup,
        decay=opts["decay"],
        clip=opts["clip"],
        log_every=25,
        ckpt_every=opts["ckpt_every"],
        eval_every=opts["eval_every"] if opts["val_data"] else 0,
        seed=opts["seed"],
        amp={"auto": "cuda"}.get(opts["bf16"], opts["bf16"]),
    )
    val = None
    if opts["val_data"] and opts["steps"] > 0:
        val = Validation(
            opts["val_data"],
            model.config.window,
            band=opts["val_band"],
            exclude=exclude,
            max_windows=opts["val_windows"],
            cfg=model.config,
            min_obs=opts["min_obs"],
        )
    meta = {
        **meta,
        "data": paths,
        "band": opts["band"],
        "excluded_ids": len(exclude),
        "exclude_ids_file": opts["exclude_ids"],
        "batch_size": opts["batch_size"],
        "train": {**vars(tcfg), "betas": list(tcfg.betas)},
        "val_data": opts["val_data"],
        "val_band": opts["val_band"],
        "command": " ".join(sys.argv),
    }
    summary = run(
        model,
        paths,
        Path(out),
        tcfg,
        batch_size=opts["batch_size"],
        band=opts["band"],
        min_obs=opts["min_obs"],
        exclude=exclude,
        resume=opts["resume"],
        val=val,
        pool=opts["pool"],
        meta=meta,
        desc=desc,
    )
    if int(ddp_setup()[0]) == 0:
        click.echo(json.dumps({"out": str(out), **{k: v for k, v in summary.items()}}))


def _check_out(out: Path, resume: bool) -> None:
    if not resume and (out / "checkpoint").exists():
        raise StarcurveError(f"{out} already holds a run: add --resume, or choose another --output")


@click.command("pretrain")
@click.option(
    "--config",
    "config",
    default=None,
    help="a1 | a2 | sc1 | pv1 | a JSON file of EncoderConfig fields [default: sc1, or the run's].",
)
@_train_options
def pretrain_cmd(config: str, **opts) -> None:
    """Pretrain an encoder by masked reconstruction on light curves (Parquet)."""
    out = Path(opts["output"])
    _check_out(out, opts["resume"])
    cfg = get_config(config or "sc1")
    if opts["resume"] and (out / "config.json").exists():
        saved = encoder_config(out)  # a resumed run keeps its own configuration
        if config is not None and saved.to_dict() != cfg.to_dict():
            raise StarcurveError(f"--config {config} differs from the run in {out}; drop --config")
        cfg = saved
    opts["steps"] = 20000 if opts["steps"] is None else opts["steps"]
    model = build(cfg, seed=opts["seed"])
    lr = opts["lr"] if opts["lr"] is not None else 1e-3
    warmup = opts["warmup"] if opts["warmup"] is not None else 500
    _launch(model, out, opts, {"task": "pretrain", "from": None}, lr, warmup, "pretrain")


@click.command("finetune")
@click.option(
    "--model",
    "model_dir",
    default=None,
    help="Model folder to start from (default: the shipped model).",
)
@_train_options
def finetune_cmd(model_dir: str | None, **opts) -> None:
    """Continue masked pretraining on a target survey's unlabeled pool (self-supervised)."""
    out = Path(opts["output"])
    _check_out(out, opts["resume"])
    model = load_model(model_dir).encoder
    opts["steps"] = 2000 if opts["steps"] is None else opts["steps"]
    lr = opts["lr"] if opts["lr"] is not None else 2e-4
    warmup = opts["warmup"] if opts["warmup"] is not None else 100
    src = str(model_dir) if model_dir else "shipped default"
    _launch(model, out, opts, {"task": "finetune", "from": src}, lr, warmup, "finetune")


def encoder_config(out: Path) -> EncoderConfig:
    """The configuration of a run folder (model_type encoder; a clear error otherwise)."""
    folder = read_folder(out, weights=False)
    if folder.model_type != "encoder":
        raise StarcurveError(f"{out}: a {folder.model_type} folder, not a pretraining run")
    try:
        return EncoderConfig.from_dict(folder.config)
    except (TypeError, ValueError) as e:
        raise StarcurveError(f"{out}/config.json: invalid config ({e})") from None
