"""Shared supervised glue for the end-to-end classifiers (``rnn``, ``cnn``).

One path for every use (CLI, FS-1 benchmark, scripts):

    read -> clean (core) -> labels (map, drop unlabeled/rare) -> validation split (stratified, from the
    training data) -> optional augmentation (``starcurve.data.augment``) -> training scales
    -> [optional stage 1 on simulated light curves, ``train/simpretrain.py``] -> the ONE core loop ``starcurve.train.loop.train`` (early stopping on validation loss,
    checkpoints, resume, progress bar) -> model folder (config.json + model.safetensors).

The model folder is the one format (``models/folder.py``: model_type "rnn" or "cnn", the model
config with class names and input scales, the training summary as meta); ``starcurve.load`` opens
it as an ``estimators.NetworkClassifier``. Light curves with fewer than
``min_obs`` observations are never classified: they get a skip reason instead of a class.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F

from starcurve.cli import (
    OUTPUT_DIR,
    band_option,
    columns_option,
    data_option,
    exclude_ids_option,
    min_obs_option,
    output_option,
    seed_option,
    threads_option,
)
from starcurve.data import schema as S
from starcurve.data.augment import AugmentConfig, balance, batch_augment, crop
from starcurve.data.clean import clean
from starcurve.data.deltas import cnn_input, context_stats, needs_period, with_period
from starcurve.data.io import read, read_ids
from starcurve.data.windows import length_batches
from starcurve.errors import StarcurveError
from starcurve.models.cnn import CNNClassifier, CNNConfig
from starcurve.models.folder import save_folder
from starcurve.models.rnn import RNNClassifier, RNNConfig
from starcurve.train.loop import (
    Checkpoint,
    TrainConfig,
    model_args,
    model_device,
    to_device,
    train,
)
from starcurve.train.simpretrain import SimPretrain, pretrain

log = logging.getLogger("starcurve")
MODELS = {"rnn": (RNNClassifier, RNNConfig), "cnn": (CNNClassifier, CNNConfig)}
_ROW = "__row"  # helper column that follows rows through cleaning


@dataclass
class FitConfig:
    steps: int = 3000  # upper bound; early stopping usually ends sooner
    epochs: float | None = None  # if given, steps = ceil(epochs * training objects / batch_size)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_frac: float = 0.15  # stratified validation split out of the training data
    max_val: int = 2000  # validation objects used at most (evaluation cost)
    eval_every: int = 100
    patience: int = 5  # evaluations without a better validation loss before stopping
    class_weight: bool = True  # inverse-frequency weights in the loss (after augmentation)
    augment: AugmentConfig | None = None
    ckpt_every: int = 200
    seed: int = 0
    pretrain_sim: SimPretrain | None = None  # stage 1 on simulated light curves (simpretrain.py)


# --- data -------------------------------------------------------------------------------------
def map_labels(labels: np.ndarray, label_map: dict | None) -> np.ndarray:
    """Apply ``{source name: new name or None}``; unmapped names stay; None/'' mean unlabeled."""
    labels = np.asarray(labels, dtype=object)
    if label_map:
        labels = np.array([label_map.get(v, v) if v is not None else None for v in labels], object)
    labels[~_labeled(labels) | (labels == "")] = None
    return labels


def _labeled(labels: np.ndarray) -> np.ndarray:
    return np.array([v is not None for v in labels], bool)


def split_validation(
    y: np.ndarray, frac: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: about ``frac`` of each class (at least one if it has two or more) to validation."""
    val = []
    for k in np.unique(y):  # loop over classes
        idx = rng.permutation(np.flatnonzero(y == k))
        nv = min(max(round(frac * len(idx)), 1), len(idx) - 1) if frac > 0 else 0
        val.append(idx[:nv])
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(y)), val), val


def balance_per_survey(
    table: pa.Table, y: np.ndarray, cfg: AugmentConfig, rng
) -> tuple[pa.Table, np.ndarray]:
    """Class balancing by augmentation; with several surveys, each (survey, class) pair is a group.

    A class that is rare in one survey (EROS eclipsing binaries beside thousands of ASAS ones) is then
    replicated within that survey, so the network cannot learn "this class has that cadence".
    """
    if S.SURVEY not in table.column_names or pc.count_distinct(table.column(S.SURVEY)).as_py() < 2:
        return balance(table, y, cfg, rng)
    survey = np.asarray(
        table.column(S.SURVEY).fill_null("?").to_numpy(zero_copy_only=False), dtype=str
    )
    keys, groups = np.unique(
        np.char.add(np.char.add(survey, "\x1f"), y.astype(str)), return_inverse=True
    )
    group_class = np.array([int(k.split("\x1f")[1]) for k in keys])
    table, groups = balance(table, groups, cfg, rng)
    return table, group_class[groups]


def delta_scales(table: pa.Table, n: int = 500) -> tuple[float, float]:
    """RMS of log1p(dt) and of dm over the first ``n`` points of every light curve (training set)."""
    x, lens = cnn_input(table, n)
    valid = (np.arange(n)[None, :] >= 1) & (np.arange(n)[None, :] < lens[:, None])
    dt, dm = np.log1p(np.maximum(x[:, 0][valid], 0)), x[:, 1][valid]
    rms = lambda v: float(np.sqrt(np.mean(v.astype(np.float64) ** 2))) if len(v) else 1.0
    return rms(dt) or 1.0, rms(dm) or 1.0


# --- models: build, save, load ------------------------------------------------------------------
def model_config(kind: str, **config):
    """The config dataclass of ``kind`` (``RNNConfig`` / ``CNNConfig``); unknown options are errors."""
    if kind not in MODELS:
        raise StarcurveError(f"unknown model kind {kind!r}; use one of {sorted(MODELS)}")
    cfg_cls = MODELS[kind][1]
    names = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise StarcurveError(f"unknown {kind} option(s) {unknown}; known: {sorted(names)}")
    return cfg_cls(**config)


def build(kind: str, **config) -> torch.nn.Module:
    """A freshly initialised model of ``kind`` with the given config values."""
    return MODELS[kind][0](model_config(kind, **config))


# --- training ---------------------------------------------------------------------------------
def fit(
    kind: str,
    table: pa.Table,
    labels,
    out_dir,
    cfg: FitConfig | None = None,
    *,
    model_options: dict | None = None,
    resume: bool = False,
    desc: str | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Train a classifier on a clean table with one label per row; save it in ``out_dir``.

    Rows shorter than the model's ``min_obs`` are left out (counted in the summary).
    Returns the trained model (best validation weights, eval mode) and a summary dict (with
    ``validation_rows``: the rows of ``table`` held out for validation, never trained on).
    """
    cfg = cfg or FitConfig()
    opts = dict(model_options or {})
    min_obs = model_config(kind, classes=["?"], **opts).min_obs  # also validates the options
    labels = np.asarray(labels, dtype=object)
    ok = (S.lengths(table) >= min_obs) & _labeled(labels)
    if not ok.any():
        raise StarcurveError(
            f"no labeled light curve with at least {min_obs} observations to train on"
        )
    rows = np.flatnonzero(ok)
    classes, y = np.unique(labels[rows].astype(str), return_inverse=True)
    if len(classes) < 2:
        raise StarcurveError(
            f"need at least two classes to train a classifier, found {list(classes)}"
        )
    rng = np.random.default_rng(cfg.seed)
    tr, va = split_validation(y, cfg.val_frac, rng)
    train_t, y_tr = table.take(pa.array(rows[tr])), y[tr]
    if needs_period(SimpleNamespace(**opts)):  # once per object, before copies and crops
        train_t = with_period(train_t)
    if cfg.augment is not None and cfg.augment.balance:
        train_t, y_tr = balance_per_survey(train_t, y_tr, cfg.augment, rng)
    dt_scale, dm_scale = delta_scales(train_t)
    if opts.get("context") or opts.get("period"):  # scaled by the training set's own statistics
        stats = context_stats(train_t, bool(opts.get("context")), bool(opts.get("period")))
        opts["context_mean"], opts["context_std"] = stats
    torch.manual_seed(cfg.seed)  # initial weights depend on the seed only
    model = build(
        kind, classes=[str(c) for c in classes], dt_scale=dt_scale, dm_scale=dm_scale, **opts
    )
    counts = np.bincount(y_tr, minlength=len(classes))
    weight = None
    if cfg.class_weight:
        weight = torch.tensor(
            len(y_tr) / (len(classes) * np.maximum(counts, 1)), dtype=torch.float32
        )

    va = va[rng.permutation(len(va))[: cfg.max_val]]
    val_t, y_va = table.take(pa.array(rows[va])), y[va]
    val_batches = [
        {**model.inputs(val_t.take(pa.array(b))), "y": torch.from_numpy(y_va[b])}
        for b in length_batches(S.lengths(val_t), 256)
    ]
    n_train = train_t.num_rows
    bs = min(cfg.batch_size, n_train)
    steps = cfg.steps if cfg.epochs is None else max(1, math.ceil(cfg.epochs * n_train / bs))
    epoch_counter = itertools.count()
    max_obs = getattr(model.cfg, "train_max_obs", 0)

    def batches():
        """One epoch; the RNG depends only on (seed, epoch), so a resumed run replays it exactly."""
        erng = np.random.default_rng([cfg.seed, next(epoch_counter)])
        order = erng.permutation(n_train)
        for s in range(0, n_train - bs + 1, bs):
            idx = order[s : s + bs]
            sub = train_t.take(pa.array(idx))
            if cfg.augment is not None:
                sub = batch_augment(sub, cfg.augment, erng)
            if max_obs:
                sub = crop(sub, max_obs, erng)
            yield {**model.inputs(sub), "y": torch.from_numpy(y_tr[idx])}

    def loss_fn(net, batch):
        logits = net(**model_args(batch))
        w = weight.to(logits.device) if weight is not None else None
        loss = F.cross_entropy(logits, batch["y"], weight=w)
        return loss, {"acc": (logits.argmax(1) == batch["y"]).float().mean()}

    @torch.no_grad()
    def eval_fn(net) -> float:
        """The (class-weighted) validation cross-entropy."""
        net.eval()
        total, norm = 0.0, 0.0
        dev = model_device(net)
        for b in val_batches:
            logits = net(**to_device(model_args(b), dev)).float().cpu()
            w = weight[b["y"]] if weight is not None else torch.ones(len(b["y"]))
            total += float((F.cross_entropy(logits, b["y"], reduction="none") * w).sum())
            norm += float(w.sum())
        net.train()
        return total / max(norm, 1e-12)

    stage1 = None
    if cfg.pretrain_sim is not None:  # stage 1; the real data's input scales are already set
        stage1 = pretrain(
            model, cfg.pretrain_sim, train_t, [str(c) for c in classes], out_dir,
            batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed,
            ckpt_every=cfg.ckpt_every, resume=resume, eval_fn=eval_fn if len(va) else None,
            desc=f"{desc or f'train {kind}'}: simulations",
        )  # fmt: skip
        resume = resume and Checkpoint(out_dir).exists()  # stage 2 may not have started
    tcfg = TrainConfig(
        steps=steps,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup=min(100, max(steps // 10, 1)),
        log_every=min(25, steps),
        ckpt_every=cfg.ckpt_every,
        eval_every=cfg.eval_every if len(va) else 0,
        patience=cfg.patience,
        seed=cfg.seed,
    )
    summary = train(
        model,
        batches,
        loss_fn,
        out_dir,
        tcfg,
        resume=resume,
        eval_fn=eval_fn if len(va) else None,
        eval_name="val_loss",
        lower_is_better=True,
        desc=desc or f"train {kind}",
    )
    model.eval()
    info = {
        "train": summary,
        "data": {
            "classes": {
                str(c): int(n) for c, n in zip(classes, np.bincount(y, minlength=len(classes)))
            },
            "train_objects": len(tr),
            "train_rows_after_augmentation": int(n_train),
            "validation_objects": len(va),
            "skipped_short_or_unlabeled": int((~ok).sum()),
        },
        "fit": {k: v for k, v in asdict(cfg).items() if k not in ("augment", "pretrain_sim")},
        "augment": asdict(cfg.augment) if cfg.augment is not None else None,
    }
    if stage1 is not None:  # both stages: pretrain_sim (stage 1), train (stage 2, real labels)
        info["pretrain_sim"] = stage1
    save_folder(out_dir, kind, asdict(model.cfg), model.state_dict(), info)
    # not in the folder: the rows of ``table`` that formed the validation set (for per-group scores)
    info["validation_rows"] = rows[va]
    return model, info


# --- prediction -------------------------------------------------------------------------------
@torch.no_grad()
def network_proba(model, table: pa.Table, batch_size: int = 256) -> tuple[np.ndarray, list]:
    """Class probabilities [rows, classes] (NaN where skipped) and a skip reason per row (or None)."""
    model.eval()
    lens = S.lengths(table)
    min_obs = model.cfg.min_obs
    proba = np.full((table.num_rows, len(model.cfg.classes)), np.nan, np.float32)
    ok = np.flatnonzero(lens >= min_obs)
    for b in length_batches(lens[ok], batch_size):
        idx = ok[b]
        inp = model.inputs(table.take(pa.array(idx)))
        fin = torch.ones(len(idx), dtype=torch.bool)  # nothing non-finite reaches the model
        for v in inp.values():
            fin &= torch.isfinite(v.reshape(len(idx), -1).float()).all(1)
        if fin.any():
            proba[idx[fin.numpy()]] = torch.softmax(
                model(**{k: v[fin] for k, v in inp.items()}), -1
            ).numpy()
    done = np.isfinite(proba).all(1)
    reasons = [
        None
        if d
        else NONFINITE
        if n >= min_obs
        else f"too few observations ({n} < {min_obs}); not classified"
        for n, d in zip(lens, done)
    ]
    return proba, reasons


NONFINITE = "the model input or output is not finite (NaN or infinite); not classified"


# FS-1 budget (2-core CPU): every training ends by early stopping on the validation loss (20
# evaluations of 50 steps without improvement) or at a cap of 6,000 steps; the best validation
# weights are kept. Every training object gets 5 augmented copies (subsets of its points), since FS-1
# training sets are small (20-500 per class). Chosen on the development split of the pool
# (benchmarks/supervised_dev.py, 2026-12-07): until then the budget also added noise of one
# photometric error to every batch and stopped after 6 evaluations (cap 3,000 RNN / 2,000 CNN steps),
# which cost 0.01-0.12 macro F1 per development cell (docs/supervised.md).
_FS1_AUG = AugmentConfig(target_factor=6.0, noise=0.0)
_FS1 = FitConfig(
    steps=6000,
    batch_size=64,
    lr=2e-3,
    eval_every=50,
    patience=20,
    ckpt_every=10_000,
    max_val=500,
    augment=_FS1_AUG,
)
FS1_FIT = {"rnn": _FS1, "cnn": _FS1}
# Both networks get the context input (mean magnitude, log10 mean error at the head), chosen on the
# development split on 2026-12-07 (docs/supervised.md): RNN eros_lmc n = 100 / all +0.08 / +0.09,
# asas_acvs +0.03 / +0.005; CNN eros_lmc +0.08 / +0.14, asas_acvs n = all +0.04 (fold 0).
FS1_MODEL = {
    "rnn": {"hidden": 32, "dense": 32, "train_max_obs": 300, "context": True},
    "cnn": {"context": True},
}
# The FS-1 ``rnn`` trains two candidates on each training set and keeps the one with the lower
# validation loss (its own 15% split): the recipe above, and the same with the period and the folded
# light curve (``period``, ``fold``; docs/supervised.md). On the development split the period and
# fold lifted asas_acvs (n = all, fold 0: 0.585 -> 0.642) and were 0.657 / 0.745 / 0.698 against
# 0.688 / 0.687 / 0.684 on eros_lmc (folds 0-2); choosing by validation loss was never below the
# context recipe there (asas 0.642, eros 0.688 / 0.745 / 0.684; 2026-12-07).
# The FS-1 ``cnn`` is the context recipe with the period and the folded light curve (its own
# convolution stack): on the development split (n = all) 0.655 / 0.663 / 0.644 against 0.557 / 0.594 /
# 0.586 on eros_lmc (folds 0-2) and 0.620 against 0.519 on asas_acvs (fold 0), above in every cell, so
# one recipe, no choice (2026-12-07, third session; docs/supervised.md). Then 400 folded points
# instead of 200 (asas_acvs light curves have a median of 430): 0.646 against 0.620 on asas_acvs and
# 0.666 against 0.655 on eros_lmc (fold 0 each; eros_lmc R light curves have at most 125 points, so
# there the change is only zero padding), above in both cells (2026-12-07, fourth session).
FS1_CANDIDATES = {
    "rnn": [FS1_MODEL["rnn"], {**FS1_MODEL["rnn"], "period": True, "fold": 200}],
    "cnn": [{**FS1_MODEL["cnn"], "period": True, "fold": 400}],
}
# FS-1 ``rnn-sim`` / ``cnn-sim``: the budget above, after a stage 1 of 6,000 steps (384,000 simulated
# light curves of the training data's own survey, batch 64). Until 2026-12-07 stage 1 had 1,500 steps
# (96,000); four times as many was better at n = 20 / 100 / all on the development split of eros_lmc
# (RNN, fold 0: 0.562 / 0.623 / 0.595 against 0.525 / 0.584 / 0.576; docs/supervised.md).
FS1_SIM = SimPretrain(surveys="auto", n=384_000)


def fs1_estimator(kind: str, seed: int, out_dir, sim: bool = False):
    """The FS-1 ``rnn`` / ``cnn`` method: ``FS1_CANDIDATES`` with the budget above, on the training set
    only (``sim``: ``rnn-sim`` / ``cnn-sim``, pretrained on simulations of the training data's survey
    first, with ``FS1_MODEL``: the period and fold were never scored after a stage 1)."""
    from starcurve.models.estimators import NetworkClassifier

    return NetworkClassifier(
        kind,
        replace(FS1_FIT[kind], seed=seed, pretrain_sim=FS1_SIM if sim else None),
        FS1_MODEL[kind] if sim else FS1_CANDIDATES[kind],
        out_dir=out_dir,
        desc=f"FS-1 {kind}" + ("-sim" if sim else ""),
    )


# --- command line -----------------------------------------------------------------------------
_KEEP = (S.ID, S.BAND, S.TIME, S.MAG, S.ERR, S.LABEL, S.SURVEY)


def read_inputs(paths, band=None, columns=None) -> pa.Table:
    """Read and concatenate files (canonical columns only), rows of ``band`` (as ``read``)."""
    tables = []
    for p in paths:
        t = read(p, band=band, columns=columns)
        tables.append(t.select([c for c in _KEEP if c in t.column_names]))
    table = pa.concat_tables(tables, promote_options="default")
    if table.num_rows == 0:
        raise StarcurveError(
            f"no light curves in {list(paths)}" + (f" in band {band}" if band else "")
        )
    return table


def _parse_options(kind: str, items: tuple[str, ...]) -> dict:
    """``--set hidden=128 --set cell=lstm`` into typed model options."""
    fixed = ("classes", "dt_scale", "dm_scale", "context_mean", "context_std")  # set by training
    cfg_fields = {f.name: f.type for f in fields(MODELS[kind][1]) if f.name not in fixed}
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or key not in cfg_fields:
            raise StarcurveError(
                f"--set {item!r}: use KEY=VALUE with KEY one of {sorted(cfg_fields)}"
            )
        typ = cfg_fields[key]
        try:
            out[key] = (
                (val.lower() in ("1", "true", "yes"))
                if "bool" in str(typ)
                else (int(val) if "int" in str(typ) else float(val) if "float" in str(typ) else val)
            )
        except ValueError:
            raise StarcurveError(f"--set {item!r}: {val!r} is not a valid {typ}") from None
    return out


@click.command("train")
@click.argument("kind", type=click.Choice(sorted(MODELS)))
@click.argument("more_data", nargs=-1, type=click.Path())
@data_option(
    "Labeled light curves (Parquet file/folder); several: --data A B or --data A --data B."
)
@band_option
@columns_option
@min_obs_option
@output_option(OUTPUT_DIR, "Model folder to write.")
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=3000,
    show_default=True,
    help="Training steps at most (early stopping usually ends sooner).",
)
@click.option(
    "--epochs", type=float, default=None, help="Instead of --steps: passes over the training set."
)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--val-frac", type=float, default=0.15, show_default=True, help="Validation split.")
@click.option("--eval-every", type=int, default=100, show_default=True)
@click.option("--patience", type=int, default=5, show_default=True, help="Early stopping (0: off).")
@click.option(
    "--augment", is_flag=True, help="Balance classes with augmented copies (docs/supervised.md)."
)
@click.option(
    "--noise", type=float, default=0.0, help="With --augment: Gaussian noise in units of mag_err."
)
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/checkpoint.")
@click.option(
    "--label-map",
    type=click.Path(),
    default=None,
    help='JSON {"source class": "new class" or null}, e.g. {"RRab": "RR_Lyrae"}.',
)
@click.option(
    "--pretrain-sim",
    default=None,
    metavar="SURVEY[,SURVEY]",
    help="First train on simulated light curves of these surveys (asas, eros, ogle, macho, gaia, "
    "ztf, lsst; auto: the data's survey column), then fine-tune on the real labels. Simulated "
    "classes are mapped to the real ones (docs/supervised.md; --label-map applies to them too).",
)
@click.option(
    "--sim-n",
    type=click.IntRange(1),
    default=96_000,
    show_default=True,
    help="With --pretrain-sim: simulated light curves (steps = ceil(N / batch size)).",
)
@exclude_ids_option
@click.option("--min-per-class", type=int, default=5, show_default=True, help="Drop rarer classes.")
@click.option(
    "--set", "options", multiple=True, help="Model option KEY=VALUE, e.g. --set hidden=128."
)
@seed_option()
@threads_option()
def train_cmd(
    kind,
    more_data,
    data,
    band,
    columns,
    min_obs,
    output,
    steps,
    epochs,
    batch_size,
    lr,
    val_frac,
    eval_every,
    patience,
    augment,
    noise,
    resume,
    label_map,
    pretrain_sim,
    sim_n,
    exclude_ids,
    min_per_class,
    options,
    seed,
    threads,
) -> None:
    """Train an RNN or CNN classifier on labeled light curves (validation split, early stopping)."""
    if threads:
        torch.set_num_threads(threads)
    out_dir = output
    opts = _parse_options(kind, options)
    table = read_inputs(list(data) + list(more_data), band, columns)
    if S.LABEL not in table.column_names:
        raise StarcurveError("the training data have no 'label' column")
    mapping = None
    if label_map:
        try:
            mapping = json.loads(Path(label_map).read_text())
            assert isinstance(mapping, dict)
        except (OSError, ValueError, AssertionError):
            raise StarcurveError(
                f"--label-map {label_map}: not a JSON object of class names"
            ) from None
    ids = read_ids(exclude_ids)
    if ids:
        table = table.filter(
            pc.invert(pc.is_in(table.column(S.ID), pa.array(sorted(ids), pa.string())))
        )
    table, _ = clean(table, min_obs=min_obs)
    labels = map_labels(np.asarray(table.column(S.LABEL).to_pylist(), object), mapping)
    names, counts = np.unique(labels[_labeled(labels)].astype(str), return_counts=True)
    rare = set(names[counts < min_per_class])
    if rare:
        click.echo(f"dropping classes with < {min_per_class} objects: {sorted(rare)}")
        labels[np.isin(labels.astype(str), list(rare))] = None
    cfg = FitConfig(
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        val_frac=val_frac,
        eval_every=eval_every,
        patience=patience,
        seed=seed,
        augment=AugmentConfig(noise=noise) if augment else None,
        pretrain_sim=SimPretrain(surveys=pretrain_sim, n=sim_n, label_map=mapping)
        if pretrain_sim
        else None,
    )
    model, info = fit(
        kind, table, labels, out_dir, cfg, model_options=opts, resume=resume, desc=f"train {kind}"
    )
    d = info["data"]
    click.echo(
        f"{kind}: {len(model.cfg.classes)} classes {d['classes']}; trained on {d['train_objects']} objects "
        f"({d['train_rows_after_augmentation']} rows with augmentation), validated on {d['validation_objects']}; "
        f"{d['skipped_short_or_unlabeled']} unlabeled or < {model.cfg.min_obs} obs skipped"
    )
    if "pretrain_sim" in info:
        p = info["pretrain_sim"]
        click.echo(
            f"stage 1: {p['steps']} steps on simulated {','.join(p['surveys'])} light curves "
            f"({len(set(p['class_map'].values()))} classes mapped: {p['class_map']}); "
            f"not pretrained: {p['classes_not_pretrained'] or 'none'}"
        )
    best = info["train"].get("best_val_loss")
    score = f"best val_loss {best:.4f}" if best is not None else "no validation score yet"
    click.echo(f"steps {info['train']['steps']}, {score}")
    click.echo(f"model written to {out_dir}")
