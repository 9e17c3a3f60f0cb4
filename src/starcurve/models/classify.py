"""The classifier head that ships with the model, and ``starcurve classify``.

One taxonomy across surveys. Sources label at different depths (EROS says "RR_Lyrae" where ASAS says
RRab or RRc; ASAS "EB_ambiguous" and EROS "EB" do not give the binary type), so each source label maps
to a *set* of fine classes and the head is trained with the set-valued likelihood
``-log sum_{c in set} p(c)``: a coarse label teaches the head what it knows and nothing more.

Out-of-distribution score: the distance of the (standardised, PCA-projected) embedding to its k-th
nearest training object (k = 10; deep nearest neighbours, Sun et al. 2022), divided by the 99th
percentile of that distance over the training objects themselves (leaving each one out). A score above
1 flags the light curve as unlike every training class (``is_ood``) instead of forcing it into one.
Nearest neighbours follow the shape of each class (many classes are not one blob around a mean); the
bank of training points (at most 8,192, projected on 32 principal axes) ships in the head file.
A head trained with periodogram significances (``fit_head(..., log_fap=...)``) also flags a light
curve whose best periodogram peak is less significant (false-alarm probability, ``data.views``) than
that of 99% of the training variables; one trained with ``outliers`` (outlier exposure: simulated
constant stars and quasars) also flags a light curve that a logistic regression of outliers against
training objects scores above 99% of the training objects. The score is the largest of the ratios.
Distances alone miss constant stars, whose embeddings sit among the low-amplitude variables.

The head is stored beside the encoder as ``head.json`` + ``head.safetensors`` (no pickle).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from starcurve.cli import OUTPUT_FILE, columns_option, dask_options
from starcurve.data import schema as S
from starcurve.data.clean import CleanReport
from starcurve.data.views import cached_periods, log10_false_alarm
from starcurve.errors import StarcurveError
from starcurve.models.per_object import per_object
from starcurve.train.loop import atomic_json, atomic_safetensors

FINE = ["RRab", "RRc", "Cepheid", "DSCT", "EB_contact", "EB_semidetached", "EB_detached", "LPV", "ACV", "microlensing"]
EB = ("EB_contact", "EB_semidetached", "EB_detached")
# (survey label) -> set of fine classes; labels not listed are not used to train the head.
TAXONOMY: dict[str, tuple[str, ...]] = {
    "RRab": ("RRab",), "RRc": ("RRc",), "RR_Lyrae": ("RRab", "RRc"),
    "Cepheid": ("Cepheid",), "Cep_F": ("Cepheid",), "Cep_1O": ("Cepheid",),
    "DSCT": ("DSCT",), "ACV": ("ACV",), "microlensing": ("microlensing",),
    "EB_contact": ("EB_contact",), "EB_semidetached": ("EB_semidetached",),
    "EB_detached": ("EB_detached",), "EB_ambiguous": EB, "EB": EB,
    "Mira": ("LPV",), "LPV_WoodA": ("LPV",), "LPV_WoodB": ("LPV",), "LPV_WoodC": ("LPV",),
    "LPV_WoodD": ("LPV",),
}  # fmt: skip
OOD_QUANTILE = 0.99
OPTIONAL_OOD = ("fap_threshold", "exposure_b", "exposure_threshold")  # head.json keys of extra tests
PCA_DIMS = 32
OOD_K = 10
BANK_SIZE = 8192


def label_sets(labels) -> tuple[np.ndarray, np.ndarray]:
    """A [n, classes] 0/1 matrix of allowed fine classes, and which labels are usable."""
    mat = np.zeros((len(labels), len(FINE)), np.float32)
    usable = np.zeros(len(labels), bool)
    for i, lab in enumerate(labels):
        if lab in TAXONOMY:
            usable[i] = True
            mat[i, [FINE.index(c) for c in TAXONOMY[lab]]] = 1
    return mat, usable


class Head(torch.nn.Module):
    def __init__(self, dim: int, hidden: int = 256, n_classes: int = len(FINE)):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.LayerNorm(hidden),
            torch.nn.Dropout(0.2), torch.nn.Linear(hidden, n_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


def fit_head(X: np.ndarray, labels, *, epochs: int = 300, seed: int = 0,
             log_fap: np.ndarray | None = None, outliers: np.ndarray | None = None) -> dict:
    """Train the head on embeddings ``X`` with survey ``labels``; return everything ``predict`` needs.
    ``log_fap`` (log10 false-alarm probability per row) adds the periodogram test of the OOD score;
    ``outliers`` (embeddings of light curves of no training class, e.g. simulated constant stars and
    quasars) adds a learned test: a logistic regression of outliers against the training objects."""
    allowed, usable = label_sets(labels)
    if usable.sum() < 10:
        raise StarcurveError("fewer than 10 objects carry a label of the taxonomy; cannot train a head")
    extra = {} if log_fap is None else {"fap_threshold": float(np.quantile(log_fap[usable], OOD_QUANTILE))}
    X, allowed = X[usable].astype(np.float32), allowed[usable]
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / std
    torch.manual_seed(seed)
    head = Head(X.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    # each fine-labelled group weighs the same in the loss, whatever its size
    groups = {tuple(r) for r in allowed}
    weight = np.zeros(len(Z), np.float32)
    for g in groups:
        sel = (allowed == np.array(g)).all(1)
        weight[sel] = 1.0 / sel.sum()
    zt, at, wt = torch.from_numpy(Z), torch.from_numpy(allowed), torch.from_numpy(weight / weight.sum())
    for _ in range(epochs):
        head.train()
        logp = torch.log_softmax(head(zt), 1)
        nll = -torch.logsumexp(logp + torch.log(at.clamp_min(1e-30)), 1)
        loss = (nll * wt).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    # OOD: distance along the principal axes to the k-th nearest training object (a bank of at most BANK_SIZE)
    _, s, vt = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
    k = min(PCA_DIMS, len(s))
    proj = np.ascontiguousarray(vt[:k].T, dtype=np.float32)  # a rotation: no whitening, so that
    # directions along which the classes are spread (the informative ones) keep their weight
    P = Z @ proj
    bank = P[np.sort(np.random.default_rng(seed).permutation(len(P))[:BANK_SIZE])]
    d = _kth_distance(bank, bank, skip_self=True)  # each bank point without itself
    if outliers is not None:
        extra.update(_fit_exposure(Z, (outliers.astype(np.float32) - mean) / std))
    return {
        "head": head.eval(), "mean": mean, "std": std, "proj": proj, "bank": bank,
        "threshold": float(np.quantile(d, OOD_QUANTILE)), **extra,
    }  # fmt: skip


def _fit_exposure(Z: np.ndarray, Zout: np.ndarray) -> dict:
    """Outlier exposure: logistic regression of outliers (1) against training objects (0), on the
    standardised embeddings; its threshold is the 99th percentile of the training objects' score."""
    from sklearn.linear_model import LogisticRegression

    y = np.r_[np.zeros(len(Z)), np.ones(len(Zout))]
    clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced").fit(np.vstack([Z, Zout]), y)
    w, b = clf.coef_[0].astype(np.float32), float(clf.intercept_[0])
    return {"exposure_w": w, "exposure_b": b,
            "exposure_threshold": float(np.quantile(_exposure(Z, w, b), OOD_QUANTILE))}


def _exposure(Z: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    from scipy.special import expit

    return expit(Z @ w + b)


def _kth_distance(P: np.ndarray, bank: np.ndarray, skip_self: bool = False) -> np.ndarray:
    """Distance of each row of ``P`` to its ``OOD_K``-th nearest bank point (in blocks: flat memory)."""
    k = min(OOD_K + skip_self, len(bank)) - 1
    b2 = (bank**2).sum(1)
    out = np.empty(len(P), np.float32)
    for i in range(0, len(P), 1024):
        p = P[i : i + 1024]
        d2 = (p**2).sum(1)[:, None] + b2[None] - 2 * p @ bank.T
        out[i : i + 1024] = np.sqrt(np.partition(d2, k, axis=1)[:, k].clip(0))
    return out


def predict(state: dict, X: np.ndarray, log_fap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities [n, classes] and OOD scores [n] (> 1: unlike every training class).
    A head with a periodogram test needs ``log_fap`` of the rows."""
    Z = ((X - state["mean"]) / state["std"]).astype(np.float32)
    with torch.no_grad():
        prob = torch.softmax(state["head"](torch.from_numpy(Z)), 1).numpy()
    ood = _kth_distance(Z @ state["proj"], state["bank"]) / state["threshold"]
    if "fap_threshold" in state:
        if log_fap is None:
            raise StarcurveError("this head also tests periodogram significance: pass log_fap")
        ood = np.maximum(ood, 10.0 ** (np.asarray(log_fap) - state["fap_threshold"]))
    if "exposure_w" in state:
        p_out = _exposure(Z, state["exposure_w"], state["exposure_b"])
        ood = np.maximum(ood, p_out / state["exposure_threshold"])
    return prob, ood


def save_head(state: dict, folder: Path, meta: dict) -> None:
    tensors = {f"head.{k}": v for k, v in state["head"].state_dict().items()}
    for k in ("mean", "std", "proj", "bank", "exposure_w"):
        if k in state:
            tensors[k] = torch.from_numpy(np.ascontiguousarray(state[k], dtype=np.float32))
    atomic_safetensors(tensors, Path(folder) / "head.safetensors")
    atomic_json({"classes": FINE, "taxonomy": TAXONOMY, "threshold": state["threshold"],
                 "ood_quantile": OOD_QUANTILE, "ood_k": OOD_K, "dim": int(state["mean"].shape[0]),
                 **{k: state[k] for k in OPTIONAL_OOD if k in state}, **meta},
                Path(folder) / "head.json")  # fmt: skip


def load_head(folder: Path) -> dict:
    folder = Path(folder)
    if not (folder / "head.json").exists():
        raise StarcurveError(f"{folder} has no classifier head (head.json); train one with scripts/train_head.py")
    try:
        meta = json.loads((folder / "head.json").read_text())
        t = load_file(folder / "head.safetensors")
        head = Head(meta["dim"], n_classes=len(meta["classes"]))
        head.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("head.")})
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as e:
        raise StarcurveError(f"{folder}: corrupted classifier head ({str(e).splitlines()[0]})") from None
    return {"head": head.eval(), "threshold": meta["threshold"], "classes": meta["classes"],
            **{k: meta[k] for k in OPTIONAL_OOD if k in meta},
            **{k: t[k].numpy() for k in ("mean", "std", "proj", "bank", "exposure_w") if k in t}}  # fmt: skip


def head_inputs(model, table: pa.Table, *, fap: bool = True, batch_size: int = 256,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings of the rows of a clean table and, with ``fap``, the log10 false-alarm probability
    of each row's periodogram peak (one periodogram serves both when the model folds)."""
    p = cached_periods(table, progress=progress) if fap else None
    X = model.embed_table(table, batch_size=batch_size, progress=progress, periods=p)
    return X, (log10_false_alarm(table, p) if fap else None)


def classify_table(model, table: pa.Table, state: dict, batch_size: int = 256, progress: bool = False,
                   report: CleanReport | None = None) -> pa.Table:
    """Per row of a clean table: class, probability, every class's probability, OOD score and flag.

    A row whose embedding, probabilities or OOD score is not finite gets no class: it is left out and
    recorded in ``report.removed`` with the reason.
    """
    X, log_fap = head_inputs(model, table, fap="fap_threshold" in state, batch_size=batch_size,
                             progress=progress)
    prob, ood = predict(state, X, log_fap)
    report = report if report is not None else CleanReport(objects_out=table.num_rows)
    ok = report.skip_nonfinite(table, np.column_stack([X, prob, ood]), NONFINITE)
    table, prob, ood = table.filter(pa.array(ok)), prob[ok], ood[ok]
    return _class_table(table.column("object_id"), table.column("band"), S.lengths(table), prob, ood,
                        state["classes"])


NONFINITE = "the model output is not finite (NaN or infinite); not classified"


def _class_table(ids, bands, n_obs, prob: np.ndarray, ood: np.ndarray, classes: list[str]) -> pa.Table:
    cols = {
        "object_id": pa.array(ids, pa.string()),
        "band": pa.array(bands, pa.string()),
        "n_obs": pa.array(np.asarray(n_obs, np.int32)),
        "class": pa.array([classes[i] for i in prob.argmax(1)], pa.string()),
        "probability": pa.array(prob.max(1, initial=0).astype(np.float32)),
        "ood_score": pa.array(ood.astype(np.float32)),
        "is_ood": pa.array(ood > 1.0),
    }
    for i, c in enumerate(classes):
        cols[f"p_{c}"] = pa.array(prob[:, i].astype(np.float32))
    return pa.table(cols)


def classes_per_object(rows: pa.Table, classes: list[str]) -> pa.Table:
    """One row per object from per-band rows (``starcurve.models.per_object``: probabilities and OOD
    scores averaged over the bands, weighted by their numbers of points); ``band`` lists the bands."""
    prob = np.stack([rows.column(f"p_{c}").to_numpy() for c in classes], 1) if rows.num_rows else (
        np.zeros((0, len(classes))))
    ood = rows.column("ood_score").to_numpy()
    obj = per_object(rows.column("object_id").to_numpy(zero_copy_only=False),
                     rows.column("band").to_numpy(zero_copy_only=False),
                     rows.column("n_obs").to_numpy(), np.column_stack([prob, ood]))
    ids = rows.column("object_id").take(pa.array(obj.first))
    return _class_table(ids, obj.bands, obj.n_obs, obj.values[:, :-1], obj.values[:, -1], classes)


@dataclass(frozen=True)
class ClassifyJob:
    """``classify_table`` over one input partition (``starcurve.parts``): per-band rows; plain data,
    so that Dask ships it to workers, which load the model and head once each."""

    model: str | None
    band: str | None = None
    columns: dict | None = None
    min_obs: int = 10
    threads: int = 1

    def __call__(self, part) -> tuple[pa.Table, dict]:
        from starcurve.data.clean import clean
        from starcurve.data.io import read_partition
        from starcurve.models.hub import load_any

        torch.set_num_threads(self.threads)
        m = load_any(self.model)
        chunk = read_partition(part, band=self.band, columns=self.columns)
        table, rep = clean(chunk, min_obs=self.min_obs)
        out = classify_table(m, table, _head(str(m.path)), report=rep)
        return out, {"rows_in": chunk.num_rows, "skipped": rep.removed}


@functools.lru_cache(maxsize=4)
def _head(folder: str) -> dict:
    return load_head(Path(folder))


@click.command("classify")
@click.option("--input", "input_path", required=True, type=click.Path(), help="Light curves (any readable input).")
@click.option("--output", required=True, type=OUTPUT_FILE, help="Output Parquet file.")
@click.option("--model", default=None, help="Model folder with a head (default: the shipped model).")
@click.option("--band", default=None, help="Only this band.")
@columns_option
@click.option("--min-obs", default=10, show_default=True, help="Skip light curves with fewer points.")
@click.option("--per-band", is_flag=True, help="One row per (object, band) instead of one per object.")
@dask_options
def classify_cmd(input_path, output, model, band, columns, min_obs, per_band, chunk_rows, workers,
                 threads, scheduler):
    """Per object: most likely class, probabilities, and an out-of-distribution flag.

    An object observed in several bands gets one answer: its bands' probabilities averaged, weighted
    by their numbers of points (``--per-band``: one row per band). Runs partition by partition, in
    this process or on Dask, resumably, as ``starcurve embed`` (docs/scale.md); the per-object
    answers are formed from the merged per-band rows.
    """
    from starcurve.data.io import partitions, read_parquet, write_parquet
    from starcurve.models.hub import load_any
    from starcurve.parts import run, threads_for

    parts = partitions(input_path, rows=chunk_rows, columns=columns)  # opens the input
    threads = threads_for(len(parts), workers, scheduler, threads)
    torch.set_num_threads(threads)
    m = load_any(model)
    state = _head(str(m.path))
    output = Path(output)
    rows = output if per_band else output.with_name(output.name + ".per_band.parquet")
    setup = {"model": str(m.path), "input": str(input_path), "band": band, "min_obs": min_obs,
             "chunk_rows": chunk_rows, **({"columns": columns} if columns else {})}  # fmt: skip
    summary = run(ClassifyJob(model, band, columns, min_obs, threads), parts, rows, setup,
                  workers=workers, threads=threads, scheduler=scheduler, desc="classify",
                  nothing=f"no light curve of {input_path} could be classified")  # fmt: skip
    out = read_parquet(rows)
    if not per_band:
        out = classes_per_object(out, state["classes"])
        write_parquet(out, output)
        rows.unlink()
    what = "light curves (object, band)" if per_band else "objects"
    counts = dict(zip(*np.unique(out.column("class").to_numpy(zero_copy_only=False), return_counts=True)))
    n_ood = int(np.sum(out.column("is_ood")))
    click.echo(f"{out.num_rows} classified ({what}) -> {output}; {n_ood} flagged OOD")
    click.echo("classes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    click.echo(f"summary: {summary}")
    if summary.skipped:
        click.echo(f"skipped {sum(summary.skipped.values())} of {summary.objects_in} light curves: "
                   f"{_skips(summary.examples)}")


def _skips(removed: dict) -> str:
    return "; ".join(f"{k} ({v})" for k, v in list(removed.items())[:5]) + (" ..." if len(removed) > 5 else "")
