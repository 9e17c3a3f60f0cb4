"""FS-1, the few-shot benchmark protocol of ``BENCHMARK.md``, for every method.

Split (fixed for a dataset, identical for every method and run):
1. one row per object in the chosen band (the first if an id repeats; ``band='*'``: each object in
   its own single band), cleaned with the core ``clean`` (non-finite points dropped, sorted by time,
   repeated time stamps dropped keeping the first); objects with no point left are dropped;
2. classes with at least 30 objects are kept, the others reported as dropped;
3. test set: the source's ``split == 'test'`` where the source defines a split (EROS), else per class
   the first ``ceil(0.3 n)`` of the sorted ids permuted by a fresh ``default_rng(1234)``; the rest of a
   class is its pool;
4. training set of fold f and size n: per class, the first ``min(n, pool)`` of the sorted pool ids
   permuted by a fresh ``default_rng(f)`` (nested in n within a fold); ``n = "all"`` (``ALL``) is
   the whole pool of every class (the same objects in every fold, in the fold's order: the folds
   then differ only in the probe's or network's random state).

Methods: *vectorisers* (``forest``, ``embed``, ``hybrid``) turn every object into one vector once
(timed), then a probe is fitted per fold and n (features: random forest; embeddings: standardised MLP);
*end-to-end* methods (``rnn``, ``cnn``, ``rnn-sim``, ``cnn-sim``, ``finetune``) are trained per fold and n on the training set
only and predict the test set. Macro F1 and accuracy on the test set, mean and std over folds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import BaseEstimator, ClassifierMixin
from tqdm.auto import tqdm

from starcurve.cli import (
    OUTPUT_DIR,
    band_option,
    bf16_option,
    data_option,
    output_option,
    seed_option,
)
from starcurve.data import io
from starcurve.data import schema as S
from starcurve.data.clean import clean
from starcurve.errors import StarcurveError
from starcurve.files import atomic_json, atomic_npy

log = logging.getLogger("starcurve")

MIN_CLASS = 30
FS1_MIN_OBS = 1  # BENCHMARK.md: an object is dropped only when cleaning leaves no point
TEST_FRACTION = 0.3
TEST_SEED = 1234
DEFAULT_NS = (20, 100, 500)
ALL = "all"  # n = all: the whole pool of every class (BENCHMARK.md's full-data row)


# ----------------------------------------------------------------------------- the split


@dataclass
class FS1Data:
    """A dataset prepared for FS-1: the clean per-object table and the fixed split."""

    table: pa.Table  # clean, one row per object, kept classes only
    ids: np.ndarray  # object ids (str), one per row
    labels: np.ndarray  # class names (str), one per row
    classes: list[str]  # kept classes, sorted
    dropped: dict[str, int]  # dropped class -> number of objects
    test: np.ndarray  # bool per row: the fixed test set
    pool: dict[str, np.ndarray]  # class -> sorted pool ids (the only objects training may use)
    dataset: str = "table"
    band: str = "*"
    test_source: str = "random"  # "random" (seed 1234) or "source" (the file's own split)
    notes: dict = field(default_factory=dict)  # what cleaning and filtering removed
    multi: pa.Table | None = None  # band 'all': every band's row of the kept objects (clean)

    def rows(self, ids) -> np.ndarray:
        """Table rows of the given object ids."""
        order = np.argsort(self.ids)
        pos = np.searchsorted(self.ids, ids, sorter=order)
        return order[pos]


def prepare(data, band: str) -> FS1Data:
    """Read (a path or a table), pick the band, clean, filter classes and fix the test set."""
    if isinstance(data, pa.Table):
        table, name = io.read(data), "table"
    else:
        path = Path(data)
        table, name = io.read(path), path.name.removesuffix(".parquet")
    if S.LABEL not in table.column_names:
        raise StarcurveError(f"{name}: FS-1 needs a 'label' column; this input has none")
    every_band = table
    if band not in ("*", "all"):
        bands = set(pc.unique(table.column(S.BAND)).to_pylist())
        if band not in bands:
            raise StarcurveError(f"{name}: no rows in band '{band}'; bands here: {sorted(bands)}")
        table = table.filter(pc.equal(table.column(S.BAND), band))
    ids = np.asarray(table.column(S.ID).to_pylist(), dtype=object)
    _, first = np.unique(ids.astype(str), return_index=True)
    table = table.take(pa.array(np.sort(first)))  # the first row of each object
    table, report = clean(table, min_obs=FS1_MIN_OBS)
    labels = table.column(S.LABEL).to_pylist()
    labeled = np.array([lab is not None for lab in labels], bool)
    table = table.filter(pa.array(labeled))
    labels = np.asarray([lab for lab in labels if lab is not None], dtype=str)
    names, counts = np.unique(labels, return_counts=True)
    kept = [str(c) for c, k in zip(names, counts) if k >= MIN_CLASS]
    dropped = {str(c): int(k) for c, k in zip(names, counts) if k < MIN_CLASS}
    if len(kept) < 2:
        raise StarcurveError(
            f"{name} (band {band}): FS-1 needs at least 2 classes with >= {MIN_CLASS} objects; "
            f"class sizes here: {dict(zip(names.tolist(), counts.tolist()))}"
        )
    keep = np.isin(labels, kept)
    table, labels = table.filter(pa.array(keep)), labels[keep]
    ids = np.asarray(table.column(S.ID).to_pylist(), dtype=str)
    multi = None
    if band == "all":  # every band of the kept objects; the split stays per object
        multi, _ = clean(
            every_band.filter(pc.is_in(every_band.column(S.ID), pa.array(ids))), min_obs=FS1_MIN_OBS
        )

    source_test = None
    if S.SPLIT in table.column_names:
        split = np.asarray(table.column(S.SPLIT).to_pylist(), dtype=object)
        if (split == "test").any():
            source_test = split == "test"
    test = np.zeros(len(ids), bool)
    pool = {}
    for c in kept:
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(ids[members])]  # sorted ids
        if source_test is None:
            perm = np.random.default_rng(TEST_SEED).permutation(len(members))
            test[members[perm[: math.ceil(TEST_FRACTION * len(members))]]] = True
        else:
            test[members] = source_test[members]
        pool[c] = np.sort(ids[members[~test[members]]])
    notes = {
        "clean": report.to_dict(),
        "unlabeled_objects": int((~labeled).sum()),
        "objects": len(ids),
        "test_objects": int(test.sum()),
        "class_counts": {c: int((labels == c).sum()) for c in kept},
        "test_counts": {c: int(((labels == c) & test).sum()) for c in kept},
    }
    return FS1Data(
        table, ids, labels, kept, dropped, test, pool, name, band,
        "random" if source_test is None else "source", notes, multi,
    )  # fmt: skip


def parse_ns(ns) -> list:
    """Training-set sizes: positive integers and/or ``"all"`` (a list, or a comma-separated string
    as ``--n`` gives it), without repeats, ascending with ``"all"`` last."""
    items = ns.split(",") if isinstance(ns, str) else list(ns)
    out = set()
    for item in items:
        text = str(item).strip().lower()
        if not text:
            continue
        if text == ALL:
            out.add(ALL)
            continue
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise StarcurveError(
                f"--n takes positive integers and 'all' (the whole pool of every class), "
                f"comma-separated; got {item!r}"
            )
        out.add(n)
    if not out:
        raise StarcurveError("--n needs at least one size (e.g. 20,100,500,all)")
    return sort_ns(out)


def sort_ns(ns) -> list:
    """Sizes ascending, ``"all"`` last (for integers or their strings alike)."""
    return sorted(ns, key=lambda n: (str(n) == ALL, 0 if str(n) == ALL else int(n)))


def per_class(n, pool_size: int) -> int:
    """Training objects a class of ``pool_size`` contributes at size ``n`` (an integer or "all")."""
    return pool_size if str(n) == ALL else min(int(n), pool_size)


def training_ids(data: FS1Data, fold: int, n: int | str) -> np.ndarray:
    """Object ids of the training set of ``fold`` with at most ``n`` objects per class
    (``n = "all"``: every pool object, in the fold's order)."""
    parts = []
    for c in data.classes:
        pool = data.pool[c]
        perm = np.random.default_rng(fold).permutation(len(pool))
        parts.append(pool[perm[: per_class(n, len(pool))]])
    return np.concatenate(parts)


def test_object_ids(path, band: str) -> set[str]:
    """Ids of the FS-1 test objects of a labeled file (never pretrain or tune on these)."""
    data = prepare(path, band)
    return set(data.ids[data.test].tolist())


DEV_SEED, DEV_FRACTION = 4321, 0.3


def development(data: FS1Data) -> FS1Data:
    """The development split of the *pool*, for choices FS-1 forbids making on its test set
    (readouts, probes, training recipes): per class, the first 30% of the pool's sorted ids permuted
    by ``default_rng(4321)`` are the development test set, the rest the development pool. The result
    holds the pool's objects only (the FS-1 test objects are not in it) and runs through ``run`` like
    any FS-1 dataset."""
    test, pool = [], {}
    for c in data.classes:
        ids = data.pool[c]
        perm = np.random.default_rng(DEV_SEED).permutation(len(ids))
        k = int(np.ceil(DEV_FRACTION * len(ids)))
        test.append(ids[perm[:k]])
        pool[c] = np.sort(ids[perm[k:]])
    rows = np.sort(data.rows(np.concatenate(list(data.pool.values()))))
    ids = data.ids[rows]
    multi = data.multi
    if multi is not None:
        multi = multi.filter(pc.is_in(multi.column(S.ID), pa.array(ids)))
    return replace(
        data, table=data.table.take(pa.array(rows)), ids=ids, labels=data.labels[rows],
        test=np.isin(ids, np.concatenate(test)), pool=pool, dataset=f"{data.dataset}-dev",
        test_source="development split of the pool", multi=multi,
    )  # fmt: skip


# ----------------------------------------------------------------------------- methods


@dataclass
class Context:
    """What a method may use besides the data: options and a folder for its own files."""

    out: Path
    model: str | None = None
    features: str = "auto"  # feature backend of forest/hybrid
    progress: bool = True
    objects: bool = False  # band 'all': vectorisers get every band's row, return one row per object
    layers: str | None = None  # embedding readout (last | weighted); None: the model's default


@dataclass
class Method:
    """An FS-1 method: a transformer (any ``fit``/``vectors`` object of ``models/estimators.py``)
    whose vectors a probe classifies, or a light-curve classifier (a ``Predictor``) trained per cell."""

    name: str
    help: str
    transformers: Callable | None = None  # ctx -> [transformer, ...] (vectors side by side)
    classifier: Callable | None = None  # (ctx, seed, out_dir) -> Predictor
    probe: str = "mlp"  # for vectorisers: "forest", "mlp", "stack" (or any name in PROBES)
    embedding: bool = False  # draw a 2-D map of its test vectors


def features(ctx: Context):
    from starcurve.models.estimators import Features

    return Features(
        ctx.features, min_obs=FS1_MIN_OBS, per_object=ctx.objects, progress=ctx.progress
    )


def embedder(ctx: Context):
    from starcurve.models.estimators import Embedder

    return Embedder(ctx.model, ctx.layers, min_obs=FS1_MIN_OBS, per_object=ctx.objects,
                    progress=ctx.progress)  # fmt: skip


def _network(kind: str, sim: bool = False):
    def make(ctx, seed, out_dir):
        from starcurve.train.supervised import fs1_estimator

        return fs1_estimator(kind, seed, out_dir, sim=sim)

    return make


def _finetune(ctx, seed, out_dir):
    """The encoder of ``--model`` with the Astromer 2 head, then 150 steps of the whole network."""
    from starcurve.models.estimators import EncoderClassifier

    return EncoderClassifier(ctx.model, full_steps=150, seed=seed, out_dir=out_dir)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry (tests and plug-ins can add their own)."""
    METHODS[method.name] = method
    return method


register(
    Method(
        "forest", "light-curve features + random forest", lambda c: [features(c)], probe="forest"
    )
)
register(
    Method("embed", "embeddings of --model + MLP probe", lambda c: [embedder(c)], embedding=True)
)
for _name, _what, _probe in (
    ("hybrid", "embeddings joined with features + MLP probe", "mlp"),
    ("hybrid-forest", "embeddings joined with features + random forest", "forest"),
    (
        "hybrid-stack",
        "features + out-of-fold MLP(embedding) probabilities + random forest",
        "stack",
    ),
):
    register(
        Method(_name, _what, lambda c: [embedder(c), features(c)], probe=_probe, embedding=True)
    )
register(
    Method(
        "rnn",
        "GRU on (dt, dm) + context, and the same with the period and fold, kept by validation loss",
        classifier=_network("rnn"),
    )
)
register(
    Method("cnn", "1-D CNN on (dt, dm) trained on the training set", classifier=_network("cnn"))
)
register(
    Method(
        "rnn-sim",
        "rnn pretrained on simulations of the data's survey, then trained on the training set",
        classifier=_network("rnn", sim=True),
    )
)
register(
    Method(
        "cnn-sim",
        "cnn pretrained on simulations of the data's survey, then trained on the training set",
        classifier=_network("cnn", sim=True),
    )
)
register(
    Method("finetune", "the encoder of --model trained with a classifier", classifier=_finetune)
)


def _make_forest(seed: int):
    from starcurve.models.forest import FeatureForest

    return FeatureForest(n_estimators=500, random_state=seed, n_jobs=-1)


def _make_mlp(seed: int):
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # The imputer only acts on hybrid vectors (features may be NaN); embeddings pass unchanged.
    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(256, 128), alpha=1e-3, max_iter=500, random_state=seed),
    )


class StackedProbe(ClassifierMixin, BaseEstimator):
    """The named hybrid pipeline ``hybrid-stack`` (fixed on the pool's development split before any
    FS-1 test score, ``docs/benchmarks.md``): the protocol's MLP on the embedding (the first
    ``embedding_dims`` columns) gives out-of-fold class probabilities for the training objects (5
    stratified folds, fewer when a class is smaller), and the protocol's forest is trained on the
    features (the other columns) joined with them. At prediction the MLP refitted on the whole
    training set supplies the probabilities. The forest thus gets a few columns that summarise the
    embedding, instead of hundreds that crowd the features out of its random feature choices.
    """

    def __init__(self, embedding_dims: int, random_state: int = 0, inner_folds: int = 5):
        self.embedding_dims, self.random_state, self.inner_folds = (
            embedding_dims, random_state, inner_folds,
        )  # fmt: skip

    def _joined(self, X: np.ndarray, P: np.ndarray) -> np.ndarray:
        return np.hstack([X[:, self.embedding_dims :], P])

    def fit(self, X, y):
        from sklearn.model_selection import StratifiedKFold

        X, y = np.asarray(X), np.asarray(y)
        d, seed = self.embedding_dims, self.random_state
        self.classes_, counts = np.unique(y, return_counts=True)
        k = int(min(self.inner_folds, counts.min()))
        if k < 2:
            raise StarcurveError("hybrid-stack needs at least 2 training objects of every class")
        P = np.zeros((len(X), len(self.classes_)))
        for tr, va in StratifiedKFold(k, shuffle=True, random_state=seed).split(X, y):
            P[va] = _make_mlp(seed).fit(X[tr, :d], y[tr]).predict_proba(X[va, :d])
        self.mlp_ = _make_mlp(seed).fit(X[:, :d], y)
        self.forest_ = _make_forest(seed).fit(self._joined(X, P), y)
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X)
        return self.forest_.predict_proba(
            self._joined(X, self.mlp_.predict_proba(X[:, : self.embedding_dims]))
        )

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]


PROBES: dict[str, Callable] = {"forest": _make_forest, "mlp": _make_mlp}


def make_probe(name: str, seed: int, embedding_dims: int | None = None):
    """A fresh probe with random state ``seed``: a name in ``PROBES``, or ``stack`` (the
    ``StackedProbe``, which also needs the number of embedding columns at the front of the vector)."""
    if name == "stack":
        return StackedProbe(embedding_dims, random_state=seed)
    return PROBES[name](seed)


# ----------------------------------------------------------------------------- running


def _hash(values) -> str:
    return hashlib.sha1("\n".join(map(str, values)).encode()).hexdigest()[:16]


def model_id(model: str | Path | None) -> str:
    """A model folder (None: the shipped default) and a digest of its files: cached vectors of
    another model, or of the same folder after its weights or readout changed, are never reused."""
    from starcurve.models.hub import DEFAULT_MODEL

    folder = Path(model) if model else DEFAULT_MODEL
    files = [folder / "config.json", folder / "model.safetensors"]
    return (
        f"{folder}:{_hash(hashlib.sha1(f.read_bytes()).hexdigest() for f in files if f.is_file())}"
    )


def _vectors(t, data: FS1Data, ctx: Context) -> tuple[np.ndarray, dict]:
    """Vectors of every object by the transformer ``t`` (on the clean FS-1 table: no second
    cleaning), cached in ``ctx.out`` so a killed run resumes."""
    from starcurve.models.hub import bf16_enabled

    table = data.multi if data.multi is not None else data.table
    name, info = t.fit().describe(table)  # "embed" / "forest" (or a test's name), what to record
    key = {"vectoriser": name, "ids": _hash(data.ids), "band": data.band}
    key.update({"model": model_id(ctx.model), "layers": ctx.layers} if name == "embed" else {})
    key.update({"bf16": True} if name == "embed" and bf16_enabled() else {})
    key.update({"features": ctx.features} if name == "forest" else {})
    path, meta_path = ctx.out / f"vectors_{name}.npy", ctx.out / f"vectors_{name}.json"
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            log.info("reusing cached %s vectors from %s", name, path)
            return np.load(path, allow_pickle=False), meta
    wall, cpu = time.perf_counter(), time.process_time()
    X = t.vectors(table)
    if data.multi is not None:  # band 'all': one row per object, in the order of first appearance
        ids = np.asarray(data.multi.column(S.ID).to_pylist(), dtype=str)
        uniq, first = np.unique(ids, return_index=True)
        X = X[np.argsort(np.argsort(first))[np.searchsorted(uniq, data.ids)]]
    if len(X) != data.table.num_rows:
        raise StarcurveError(f"{name} returned {len(X)} vectors for {data.table.num_rows} objects")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = max(data.table.num_rows, 1)
    meta = {"key": key, "seconds_per_lc": wall / n, "cpu_seconds_per_lc": cpu / n, **info}
    atomic_npy(np.asarray(X, dtype=np.float64), path)
    atomic_json(meta, meta_path)
    return X, meta


def _method_vectors(method: Method, data: FS1Data, ctx: Context) -> tuple[np.ndarray, dict, dict]:
    """(vectors, info, timing) of a vectoriser method; several transformers' vectors side by side
    (hybrid: the embeddings, then the features)."""
    ctx = Context(**{**vars(ctx), "objects": data.multi is not None})
    parts = [_vectors(t, data, ctx) for t in method.transformers(ctx)]
    timing = {
        k: sum(info[k] for _, info in parts) for k in ("seconds_per_lc", "cpu_seconds_per_lc")
    }
    if len(parts) == 1:
        return parts[0][0], parts[0][1], timing
    info = {part[1]["key"]["vectoriser"]: part[1] for part in parts}
    info["embedding_dims"] = int(parts[0][0].shape[1])
    return np.hstack([X for X, _ in parts]), info, timing


def _classify(clf, fs1: FS1Data, rows: np.ndarray, y_train: np.ndarray, out: Path):
    """An end-to-end method's cell: ``clf`` trained on the training rows only, then the label of
    every test object. A test light curve the model cannot classify (too short for it) gets the most
    frequent training class, since FS-1 scores every object (counted in ``out/fs1_predict.json``).
    Returns the labels and the seconds per test light curve spent predicting."""
    clf.fit_table(fs1.table.take(pa.array(rows)), y_train)
    test = fs1.table.filter(pa.array(fs1.test))
    t0 = time.perf_counter()
    pred = clf.labels(clf.answer(test).proba)
    seconds = (time.perf_counter() - t0) / max(test.num_rows, 1)
    values, counts = np.unique(y_train, return_counts=True)
    fallback = str(values[np.argmax(counts)])
    skipped = np.array([p is None for p in pred])
    pred[skipped] = fallback
    atomic_json({"skipped_test_objects": int(skipped.sum()), "fallback_class": fallback,
                 "seconds_per_lc": seconds, **getattr(clf, "meta_", {})}, out / "fs1_predict.json")  # fmt: skip
    return pred, seconds


def _score(y_true: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined per-class F1 counts as 0, as sklearn says
        f1 = f1_score(y_true, pred, average="macro")
    return {
        "f1": float(f1),
        "acc": float(accuracy_score(y_true, pred)),
        "confusion": confusion_matrix(y_true, pred, labels=classes).tolist(),
    }


def run(
    data,
    band: str,
    method: str,
    out,
    *,
    model: str | None = None,
    ns=DEFAULT_NS,
    folds: int = 3,
    seed: int = 0,
    features: str = "auto",
    layers: str | None = None,
    shuffle_labels: bool = False,
    progress: bool = True,
    report: bool = True,
    command: str | None = None,
) -> dict:
    """Score ``method`` with FS-1; write ``out/results.json`` (+ report and plots); return it.

    ``data`` is a path or an FS1Data/table; ``ns``: integers and/or ``"all"`` (the whole pool of
    every class; results key ``"all"``). Probes and end-to-end models use ``seed + fold`` as their
    random state (the protocol's ``random_state=f`` with the default seed 0); the split never depends
    on ``seed``. ``shuffle_labels`` permutes the training labels: a negative control that must score
    at chance. Finished (fold, n) cells are kept in ``out/cells.json``, so a killed run resumes.
    """
    if method not in METHODS:
        raise StarcurveError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    m = METHODS[method]
    ns = parse_ns(ns)
    if folds < 1:
        raise StarcurveError("--folds must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fs1 = data if isinstance(data, FS1Data) else prepare(data, band)
    ctx = Context(out=out, model=model, features=features, progress=progress, layers=layers)
    y_test = fs1.labels[fs1.test]
    from starcurve.models.hub import bf16_enabled  # (torch only when a model is needed)

    header = {
        "dataset": fs1.dataset, "band": fs1.band, "method": method, "model": model,
        "features": features, "layers": layers, "seed": seed, "shuffle_labels": shuffle_labels,
        "test": _hash(fs1.ids[fs1.test]), "train_order": "table",
        **({"bf16": True} if bf16_enabled() else {}),
    }  # fmt: skip
    cells_path = out / "cells.json"
    cells = {}
    if cells_path.exists():
        saved = json.loads(cells_path.read_text())
        if saved.get("header") == header:
            cells = saved["cells"]

    info: dict = {}
    timing: dict = {}
    X = None
    if m.classifier is None:
        X, info, timing = _method_vectors(m, fs1, ctx)
    todo = [(f, n) for f in range(folds) for n in ns]
    bar = tqdm(todo, desc=f"FS-1 {method}", disable=not progress)
    for f, n in bar:
        key = f"f{f}_n{n}"
        if key in cells:
            continue
        bar.set_postfix_str(key)
        # Training rows in the table's (file's) order: forests depend on the row order at the
        # +-0.005 F1 level, and this order reproduces BENCHMARK.md's reference rows exactly.
        rows = np.sort(fs1.rows(training_ids(fs1, f, n)))
        y_train = fs1.labels[rows]
        if shuffle_labels:
            y_train = np.random.default_rng(10_000 + f).permutation(y_train)
        cell: dict = {"n_train": len(rows)}
        if m.classifier is None:
            probe = make_probe(m.probe, seed + f, info.get("embedding_dims"))
            t0 = time.perf_counter()
            probe.fit(X[rows], y_train)
            pred = probe.predict(X[fs1.test])
            cell["probe_seconds"] = time.perf_counter() - t0
        else:
            cell_dir = out / "cells" / key
            cell_dir.mkdir(parents=True, exist_ok=True)
            pred, cell["seconds_per_lc"] = _classify(m.classifier(ctx, seed + f, cell_dir), fs1, rows,
                                                     y_train, cell_dir)  # fmt: skip
        pred = np.asarray(pred).astype(str)
        if len(pred) != len(y_test):
            raise StarcurveError(
                f"method {method} returned {len(pred)} predictions for {len(y_test)}"
            )
        cell.update(_score(y_test, pred, fs1.classes))
        cells[key] = cell
        atomic_json({"header": header, "cells": cells}, cells_path)

    if m.classifier is not None:
        secs = [cells[f"f{f}_n{n}"]["seconds_per_lc"] for f, n in todo]
        timing = {"seconds_per_lc": float(np.mean(secs))}
    results = {}
    for n in ns:
        f1 = np.array([cells[f"f{f}_n{n}"]["f1"] for f in range(folds)])
        acc = np.array([cells[f"f{f}_n{n}"]["acc"] for f in range(folds)])
        results[str(n)] = {
            "f1_mean": float(f1.mean()), "f1_std": float(f1.std()), "acc_mean": float(acc.mean()),
            "acc_std": float(acc.std()), "f1_folds": f1.tolist(), "acc_folds": acc.tolist(),
            "n_train": [cells[f"f{f}_n{n}"]["n_train"] for f in range(folds)],
        }  # fmt: skip
    result = {
        "protocol": "FS-1",
        "dataset": fs1.dataset,
        "band": fs1.band,
        "method": method,
        "classes": fs1.classes,
        "dropped_classes": sorted(fs1.dropped),
        "results": results,
        "pool_sizes": {c: len(fs1.pool[c]) for c in fs1.classes},  # per class: n = all
        "seconds_per_lc": float(timing["seconds_per_lc"]),
        "machine": machine(),
        "versions": versions(info),
        # extras
        "label": method_label(method, info),
        "cpu_seconds_per_lc": timing.get("cpu_seconds_per_lc"),
        "dropped_class_counts": fs1.dropped,
        "test_source": fs1.test_source,
        "folds": folds,
        "seed": seed,
        "model": model,
        "shuffle_labels": shuffle_labels,
        "data": fs1.notes,
        "method_info": {k: v for k, v in info.items() if k != "key"},
        "confusion": {k: v["confusion"] for k, v in cells.items()},
        "command": command,
    }
    atomic_json(result, out / "results.json")
    if report:
        from starcurve.eval import report as rep

        emb = None
        if m.embedding and X is not None:
            dims = info.get("embedding_dims", X.shape[1])
            emb = (X[fs1.test][:, :dims], y_test)
        rep.write_run_report(result, out, embedding=emb)
    return result


def method_label(method: str, info: dict) -> str:
    """A human-readable name for tables: the method and what it is made of."""
    if method == "forest":
        return "features + random forest" + (
            " (numpy fallback features)" if info.get("backend") == "numpy" else ""
        )
    if method in ("embed", "hybrid", "hybrid-forest", "hybrid-stack"):
        model = info.get("model") or info.get("embed", {}).get("model", "default")
        probe = {
            "hybrid-forest": "random forest",
            "hybrid-stack": "random forest on features + out-of-fold MLP probabilities",
        }.get(method, "MLP")
        return f"{method.split('-')[0]} ({model}) + {probe}"
    return method


def machine() -> str:
    """'N-core CPU (model), GPU or no GPU' of this computer."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    gpu = "no GPU"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gpu = f"GPU {torch.cuda.get_device_name(0)}"
    return f"{cores}-core CPU ({cpu}), {gpu}"


def versions(info: dict) -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("starcurve", "numpy", "scipy", "scikit-learn", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].__version__
    lcv = info.get("light-curve") or info.get("forest", {}).get("light-curve")
    if lcv:
        out["light-curve"] = lcv
    return out


@click.command("benchmark")
@data_option("Labeled light curves (a Parquet file).")
@band_option
@click.option(
    "--all-bands",
    is_flag=True,
    help="One vector per object from all its bands (of --band) [default: one band per "
    "object: the band given, else each object's first row].",
)
@click.option("--method", required=True, help=f"One of: {', '.join(METHODS)}.")
@click.option(
    "--model",
    default=None,
    help="Model folder for embed/hybrid/finetune [default: the shipped one].",
)
@output_option(OUTPUT_DIR, "Result folder.")
@click.option(
    "--n", "ns", default="20,100,500", show_default=True,
    help="Labels per class, comma-separated; 'all': the whole pool of every class.",
)  # fmt: skip
@click.option("--folds", default=3, show_default=True, help="Number of folds.")
@seed_option("Offset of the probes' random states.")
@click.option(
    "--features", default="auto", show_default=True,
    type=click.Choice(["auto", "light-curve", "numpy"]), help="Feature backend (forest, hybrid).",
)  # fmt: skip
@click.option(
    "--layers",
    type=click.Choice(["last", "weighted"]),
    default=None,
    help="Embedding readout for embed/hybrid [default: the model's].",
)
@click.option("--shuffle-labels", is_flag=True, help="Negative control: must score at chance.")
@bf16_option
def benchmark_cmd(
    data, band, all_bands, method, model, output, ns, folds, seed, features, layers, shuffle_labels,
    bf16,
):  # fmt: skip
    """Score METHOD on a labeled file with the FS-1 protocol (see BENCHMARK.md)."""
    from starcurve.models.hub import use_bf16

    use_bf16(bf16)
    if len(data) != 1:
        raise StarcurveError("--data: FS-1 scores one labeled file at a time")
    data_path, out_dir = data[0], output
    if band and "," in band and not all_bands:
        raise StarcurveError(
            "--band with several bands needs --all-bands (FS-1 uses one row per object)"
        )
    fs1_band = "all" if all_bands else (band or "*")
    sizes = parse_ns(ns)
    q = shlex.quote
    command = (
        f"starcurve benchmark --data {q(data_path)}" + (f" --band {q(band)}" if band else "")
        + (" --all-bands" if all_bands else "") + f" --method {method}"
        + (f" --model {q(model)}" if model else "")
        + f" --output {q(out_dir)} --n {ns} --folds {folds} --seed {seed}"
        + (f" --features {features}" if features != "auto" else "")
        + (f" --layers {layers}" if layers else "")
        + (" --shuffle-labels" if shuffle_labels else "") + (" --bf16" if bf16 else "")
    )  # fmt: skip
    if all_bands and band:  # only these bands of each object
        from starcurve.data.io import read

        data_path = read(data_path, band=band)
    result = run(
        data_path, fs1_band, method, out_dir, model=model, ns=sizes, folds=folds, seed=seed,
        features=features, layers=layers, shuffle_labels=shuffle_labels, command=command,
    )  # fmt: skip
    from starcurve.eval.report import run_table

    click.echo(run_table(result))
    click.echo(f"wrote {Path(out_dir) / 'results.json'}")
