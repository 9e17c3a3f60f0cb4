"""The scikit-learn face of every model: one interface, whatever the network.

Transformers (``fit``, ``transform``): ``Embedder`` (an encoder's embeddings) and ``Features`` (the
35 light-curve features). Classifiers (``fit``, ``predict``, ``predict_proba``): ``FeatureForest``
(on feature vectors), and on light curves ``NetworkClassifier`` (the RNN or CNN),
``EncoderClassifier`` (an encoder with the Astromer 2 head, trained end to end) and
``TaxonomyClassifier`` (the head that ships with the model: embeddings -> one taxonomy, with an
out-of-distribution score). Every one is a scikit-learn estimator (``sklearn.base.clone`` works; a
``Pipeline`` of an embedder and a probe is the FS-1 ``embed`` method).

On light curves, ``X`` is anything ``starcurve.read`` accepts and the answers are per input row
(one row per (object, band)), as plain arrays: ``predict_proba`` [rows, classes] with NaN where a
light curve is not classified, ``predict`` the class names with None there; ``answers(X)`` also
gives the OOD score (``TaxonomyClassifier``) and the reason for every skip. Input is cleaned once,
on entry (``starcurve.data.clean``, ``min_obs``); ``fit_table`` and ``answer`` take a table that is
already clean (what FS-1 and the ``predict`` command call). Trained classifiers are saved with
``save(path)`` and opened with ``starcurve.load(path)`` (``models/folder.py``).

New observations: an RNN ``NetworkClassifier`` keeps a small state per (object, band) in a folder
(``update(X, state_dir)``: each row of ``X`` holds only the new points of its object; they are added
to its stored state in O(new points) and the answers equal ``answers`` on the whole light curves;
``starcurve predict --state DIR``). The other classifiers recompute from whole light curves.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from starcurve.data import schema as S
from starcurve.data.clean import MIN_OBS, clean
from starcurve.data.io import read
from starcurve.data.windows import BATCH
from starcurve.errors import StarcurveError
from starcurve.models.folder import Folder, save_folder

NONFINITE = "the model output is not finite (NaN or infinite); not classified"


@dataclass
class Answers:
    """A classifier's answers for the rows of a table."""

    proba: np.ndarray  # [rows, classes] float32; NaN where the row is not classified
    reasons: list  # per row: None, or why it is not classified
    ood: np.ndarray | None = None  # [rows] out-of-distribution score (> 1: unlike the training set)

    @staticmethod
    def nonfinite(proba: np.ndarray, ood: np.ndarray | None = None, reasons=None) -> Answers:
        """Answers whose non-finite rows (probabilities or OOD score) become skips with a reason."""
        proba = np.asarray(proba, np.float32)
        bad = ~np.isfinite(proba).all(1) | (~np.isfinite(ood) if ood is not None else False)
        proba[bad] = np.nan
        reasons = list(reasons) if reasons is not None else [None] * len(proba)
        reasons = [r if r is not None or not b else NONFINITE for r, b in zip(reasons, bad)]
        return Answers(proba, reasons, None if ood is None else np.where(bad, np.nan, ood))

    def expand(self, table: pa.Table, report) -> Answers:
        """These answers (for the clean rows ``report.kept`` of ``table``) among every row of the
        input ``table``: a row that cleaning removed gets NaN and the cleaning's reason."""
        n = table.num_rows
        proba = np.full((n, self.proba.shape[1]), np.nan, np.float32)
        proba[report.kept] = self.proba
        keys = [
            f"{i}/{b}"
            for i, b in zip(table.column(S.ID).to_pylist(), table.column(S.BAND).to_pylist())
        ]
        reasons = [report.removed.get(key, "removed by cleaning") for key in keys]
        for row, why in zip(report.kept, self.reasons):
            reasons[row] = why
        ood = None
        if self.ood is not None:
            ood = np.full(n, np.nan, np.float32)
            ood[report.kept] = self.ood
        return Answers(proba, reasons, ood)


def clean_input(X, min_obs: int) -> tuple[pa.Table, pa.Table, object]:
    """(input table, its clean rows, the cleaning report) of anything ``read`` accepts."""
    table = read(X)
    good, report = clean(table, min_obs=min_obs)
    return table, good, report


class Predictor(ClassifierMixin, BaseEstimator):
    """What every light-curve classifier shares; subclasses give ``fit_table``, ``answer``,
    ``config`` and ``from_folder``."""

    model_type = "classifier"
    min_obs = MIN_OBS

    def fit(self, X, y):
        """Train on light curves ``X`` (anything ``read`` accepts) with one label per row."""
        table, good, report = clean_input(X, self.min_obs)
        y = np.asarray(y, dtype=object)
        if len(y) != table.num_rows:
            raise StarcurveError(f"fit: {len(y)} labels for {table.num_rows} light curves")
        return self.fit_table(good, y[report.kept])

    def answers(self, X) -> Answers:
        """The answers for every input row (skipped rows: NaN, with the cleaning's reason)."""
        table, good, report = clean_input(X, self.min_obs)
        return self.answer(good).expand(table, report)

    def predict_proba(self, X) -> np.ndarray:
        return self.answers(X).proba

    def predict(self, X) -> np.ndarray:
        return self.labels(self.predict_proba(X))

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """The most probable class of each row (None where the row has no answer)."""
        done = np.isfinite(proba).all(1)
        best = np.asarray(self.classes_, dtype=object)[np.nan_to_num(proba, nan=-1).argmax(1)]
        return np.where(done, best, None)

    def state_store(self, state_dir):
        """The folder of per-object states for ``update`` (only an RNN has them)."""
        raise StarcurveError(
            f"--state: only an RNN model adds new observations to stored states; this model "
            f"({type(self).__name__}) recomputes from whole light curves (predict without --state)"
        )

    def update(self, X, state_dir, *, min_obs: int | None = None) -> Answers:
        """Add the new points of each row of ``X`` to its object's stored state (an RNN only)."""
        return self.update_table(read(X), self.state_store(state_dir), min_obs)[0]

    def save(self, path) -> Path:
        """A model folder (``models/folder.py``) that ``starcurve.load`` opens."""
        return save_folder(path, self.model_type, self.config(), self.net_.state_dict(),
                           getattr(self, "meta_", {}))  # fmt: skip


# ----------------------------------------------------------------------------- RNN and CNN


class NetworkClassifier(Predictor):
    """The end-to-end RNN or CNN (``kind``), trained by ``starcurve.train.supervised.fit``.

    ``fit_config`` (``FitConfig``: steps, early stopping, augmentation) and ``model_options`` (fields
    of ``RNNConfig`` / ``CNNConfig``) are the hyperparameters; ``out_dir`` keeps the run (log,
    checkpoints; a temporary folder if None). ``model_options`` may also be a list of such dicts:
    each candidate is trained (same seed, so the same validation split and class weights) and the
    one with the lowest best validation loss is kept, a choice made on the training data alone
    (``meta_["candidates"]`` records every loss); a list of one is that one model."""

    def __init__(
        self,
        kind: str = "rnn",
        fit_config=None,
        model_options: dict | None = None,
        min_obs: int = MIN_OBS,
        out_dir=None,
        desc: str | None = None,
    ):
        self.kind, self.fit_config, self.model_options = kind, fit_config, model_options
        self.min_obs, self.out_dir, self.desc = min_obs, out_dir, desc

    @property
    def model_type(self) -> str:
        return self.kind

    @property
    def classes_(self) -> list[str]:
        return list(self.net_.cfg.classes)

    def fit_table(self, table: pa.Table, y) -> NetworkClassifier:
        from starcurve.train.supervised import fit

        out = Path(self.out_dir or tempfile.mkdtemp(prefix=f"starcurve_{self.kind}_"))
        options = self.model_options
        if isinstance(options, list) and len(options) == 1:
            options = options[0]  # one candidate: nothing to choose
        if not isinstance(options, list):
            self.net_, self.meta_ = fit(self.kind, table, y, out, self.fit_config,
                                        model_options=options, desc=self.desc)  # fmt: skip
            self.meta_.pop("validation_rows", None)  # row numbers of this call's table
            return self
        if not options:
            raise StarcurveError("model_options: an empty list of candidates")
        fits = [
            fit(self.kind, table, y, out / f"candidate{i}", self.fit_config, model_options=opts,
                desc=f"{self.desc or self.kind} [candidate {i + 1}/{len(options)}]")
            for i, opts in enumerate(options)
        ]  # fmt: skip
        losses = [meta["train"].get("best_val_loss") for _, meta in fits]
        chosen = 0 if None in losses else int(np.argmin(losses))  # no validation set: the first
        self.net_, self.meta_ = fits[chosen]
        self.meta_.pop("validation_rows", None)
        self.meta_["candidates"] = [
            {"model_options": o, "best_val_loss": v} for o, v in zip(options, losses)
        ]
        self.meta_["chosen_candidate"] = chosen
        return self

    def answer(self, table: pa.Table) -> Answers:
        from starcurve.train.supervised import network_proba

        proba, reasons = network_proba(self.net_, table)
        return Answers.nonfinite(proba, reasons=reasons)

    def config(self) -> dict:
        return asdict(self.net_.cfg)

    # --- new observations (RNN) -------------------------------------------------------------
    def model_id(self) -> str:
        """A digest of the network's kind, config and weights: the identity its states carry."""
        h = hashlib.sha256(json.dumps([self.kind, self.config()], sort_keys=True).encode())
        for name, v in sorted(self.net_.state_dict().items()):
            h.update(f"{name}:{v.dtype}:{tuple(v.shape)}".encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def state_store(self, state_dir):
        """The folder of per-(object, band) states of this RNN (``models/rnn.StateStore``),
        created if new; the states of another model are refused."""
        from starcurve.models.rnn import StateStore

        if self.kind != "rnn":
            raise StarcurveError(
                f"--state: updating with new observations is an RNN feature; a {self.kind} model "
                "reads whole light curves (predict without --state)"
            )
        self.net_.check_streaming()  # before any state is read or written
        name = str(getattr(self, "folder_", None) or "this model")
        return StateStore(state_dir, self.net_, self.model_id(), name)

    def update_table(self, table: pa.Table, store, min_obs: int | None = None):
        """(answers, observations so far) for the rows of ``table`` (any rows: their new points
        are cleaned here, once): each row's points are added to its (object, band) state in
        ``store`` (a fresh state where there is none), the new states saved, and each row answered
        from its state, exactly as ``answer`` on the whole light curve. A row whose points all go
        (cleaning) keeps its stored state and answer. Nothing is written unless every row can be
        added (a new point earlier than the stored last time is an error)."""
        floor = self.min_obs if min_obs is None else min_obs
        net = self.net_
        good, report = clean(table, min_obs=1)  # new points: any number of them
        t, off = S.flat(good, S.TIME)
        m = S.flat(good, S.MAG)[0]
        err = S.flat(good, S.ERR)[0]
        where = np.full(table.num_rows, -1)
        where[report.kept] = np.arange(good.num_rows)
        ids = [str(v) for v in table.column(S.ID).to_pylist()]
        bands = [str(v) for v in table.column(S.BAND).to_pylist()]
        states, changed, row_states = {}, set(), []
        for i, key in enumerate(zip(ids, bands)):  # a pair repeated in the input: in input order
            state = states[key] if key in states else store.get(*key)
            j = where[i]
            if j >= 0:
                try:
                    new = net.advance(state, *(v[off[j] : off[j + 1]] for v in (t, m, err)))
                except StarcurveError as e:
                    raise StarcurveError(f"{key[0]}/{key[1]}: {e} (no state was written)") from None
                if new is not state:
                    changed.add(key)
                state = new
            states[key] = state
            row_states.append(state)
        for key in changed:
            store.put(*key, states[key])
        proba = np.full((table.num_rows, len(net.cfg.classes)), np.nan, np.float32)
        reasons, n_obs = [], np.array([st.n_obs for st in row_states], np.int32)
        for i, st in enumerate(row_states):
            why = None
            if st.n_obs < floor:
                why = (
                    report.removed.get(f"{ids[i]}/{bands[i]}", "no valid points")
                    if st.n_obs == 0
                    else f"too_few_obs ({st.n_obs} < {floor})"
                )
            elif st.proba is None:
                why = f"too few observations ({st.n_obs} < {net.cfg.min_obs}); not classified"
            else:
                proba[i] = st.proba
            reasons.append(why)
        return Answers.nonfinite(proba, reasons=reasons), n_obs

    @classmethod
    def from_folder(cls, folder: Folder) -> NetworkClassifier:
        from starcurve.models.cnn import CNNClassifier, CNNConfig
        from starcurve.models.rnn import RNNClassifier, RNNConfig

        net_cls, cfg_cls = {"rnn": (RNNClassifier, RNNConfig), "cnn": (CNNClassifier, CNNConfig)}[
            folder.model_type
        ]
        try:
            net = net_cls(cfg_cls(**folder.config))
        except (TypeError, StarcurveError) as e:
            raise StarcurveError(
                f"{folder.path}: invalid {folder.model_type} config ({e})"
            ) from None
        est = cls(kind=folder.model_type)
        est.net_, est.meta_, est.folder_ = folder.load_into(net), folder.meta, folder.path
        return est


# ----------------------------------------------------------------------------- encoder + head


class EncoderClassifier(Predictor):
    """An encoder (``model``: a folder, None for the shipped one) with the Astromer 2 head (layer-
    weighted pooling + MLP on windows): the head on the frozen encoder, then ``full_steps`` steps of
    the whole network (``starcurve.train.heads.fit_classifier``). The FS-1 ``finetune`` method."""

    def __init__(
        self,
        model=None,
        head_steps: int = 400,
        full_steps: int = 0,
        seed: int = 0,
        min_obs: int = MIN_OBS,
        out_dir=None,
    ):
        self.model, self.head_steps, self.full_steps = model, head_steps, full_steps
        self.seed, self.min_obs, self.out_dir = seed, min_obs, out_dir

    @property
    def classes_(self) -> list[str]:
        return list(self.net_.classes)

    def fit_table(self, table: pa.Table, y) -> EncoderClassifier:
        from starcurve.train.heads import fit_classifier

        out = self.out_dir or tempfile.mkdtemp(prefix="starcurve_classifier_")
        self.net_ = fit_classifier(self.model, table, np.asarray(y).astype(str), out_dir=out,
                                   seed=self.seed, head_steps=self.head_steps,
                                   full_steps=self.full_steps)  # fmt: skip
        self.meta_ = {"from": str(self.model or "shipped default"), "head_steps": self.head_steps,
                      "full_steps": self.full_steps, "seed": self.seed}  # fmt: skip
        return self

    def answer(self, table: pa.Table) -> Answers:
        return Answers.nonfinite(self.net_.predict_proba(table))

    def config(self) -> dict:
        return {
            "encoder": self.net_.encoder.config.to_dict(),
            "head": {"kind": "pooled", "classes": self.classes_},
        }

    @classmethod
    def from_folder(cls, folder: Folder) -> EncoderClassifier:
        from starcurve.models.heads import Classifier

        est = cls()
        est.net_, est.meta_ = (
            folder.load_into(Classifier(encoder_of(folder), _classes(folder))),
            folder.meta,
        )
        return est


class TaxonomyClassifier(Predictor):
    """The head that ships with the model (``models/classify.py``): an MLP on the object embeddings
    of an encoder (``model``), trained on survey labels mapped to one taxonomy, with the
    out-of-distribution score (nearest-neighbour distance, periodogram significance and, with
    ``outliers``, outlier exposure). ``outliers``: light curves of no training class (e.g. simulated
    constant stars and quasars), read like ``X``."""

    def __init__(
        self, model=None, epochs: int = 300, seed: int = 0, outliers=None, min_obs: int = MIN_OBS
    ):
        self.model, self.epochs, self.seed, self.outliers, self.min_obs = (
            model,
            epochs,
            seed,
            outliers,
            min_obs,
        )

    @property
    def classes_(self) -> list[str]:
        return list(self.state_["classes"])

    def fit_table(self, table: pa.Table, y) -> TaxonomyClassifier:
        from starcurve.models.classify import head_inputs
        from starcurve.models.hub import load_model
        from starcurve.train.heads import fit_head

        embedder = load_model(self.model)
        X, log_fap = head_inputs(embedder, table, progress=True)
        out = None
        if self.outliers is not None:
            out = embedder.embed_table(
                clean(read(self.outliers), min_obs=self.min_obs)[0], progress=True
            )
        state = fit_head(X, np.asarray(y).astype(str), epochs=self.epochs, seed=self.seed, log_fap=log_fap,
                         outliers=out)  # fmt: skip
        return self.with_state(embedder, state, {"trained_on": len(X), "seed": self.seed})

    def with_state(self, embedder, state: dict, meta: dict) -> TaxonomyClassifier:
        from starcurve.models.classify import TaxonomyNet

        self.embedder_, self.state_, self.meta_ = embedder, state, meta
        self.net_ = TaxonomyNet.of(embedder.encoder, state)
        return self

    def answer(self, table: pa.Table) -> Answers:
        from starcurve.models.classify import head_inputs, head_scores

        X, log_fap = head_inputs(self.embedder_, table, fap="fap_threshold" in self.state_)
        prob, ood = head_scores(self.state_, X, log_fap)
        return Answers.nonfinite(np.where(np.isfinite(X).all(1)[:, None], prob, np.nan), ood)

    def config(self) -> dict:
        from starcurve.models.classify import head_config

        return {"encoder": self.embedder_.config.to_dict(), "head": head_config(self.state_)}

    @classmethod
    def from_folder(cls, folder: Folder) -> TaxonomyClassifier:
        from starcurve.models.classify import TaxonomyNet
        from starcurve.models.hub import Model

        net = folder.load_into(TaxonomyNet(encoder_of(folder), folder.config["head"]))
        est = cls()
        return est.with_state(
            Model(net.encoder, folder.path), net.state(folder.config["head"]), folder.meta
        )


def from_folder(folder: Folder):
    """The estimator of a model folder (``starcurve.load``): by ``model_type``, and for classifiers
    by the head's ``kind``."""
    if folder.model_type in ("rnn", "cnn"):
        return NetworkClassifier.from_folder(folder)
    kind = (
        folder.config.get("head", {}).get("kind")
        if isinstance(folder.config.get("head"), dict)
        else None
    )
    heads = {"pooled": EncoderClassifier, "taxonomy": TaxonomyClassifier}
    if kind not in heads:
        raise StarcurveError(
            f"{folder.path}: unknown classifier head kind {kind!r}; one of {sorted(heads)}"
        )
    return heads[kind].from_folder(folder)


def encoder_of(folder: Folder):
    """A fresh (untrained) encoder of the configuration a classifier folder's ``config["encoder"]``
    or an encoder folder's ``config`` gives."""
    from starcurve.models.encoder import Encoder, EncoderConfig

    cfg = folder.config.get("encoder") if folder.model_type == "classifier" else folder.config
    try:
        return Encoder(EncoderConfig.from_dict(cfg))
    except (TypeError, ValueError, AttributeError) as e:
        raise StarcurveError(f"{folder.path}/config.json: invalid encoder config ({e})") from None


def _classes(folder: Folder) -> list[str]:
    classes = folder.config["head"].get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise StarcurveError(f"{folder.path}/config.json: the head needs a list of classes")
    return [str(c) for c in classes]


# ----------------------------------------------------------------------------- transformers


class Embedder(TransformerMixin, BaseEstimator):
    """Light curves -> embeddings of an encoder (``model``: a folder, a loaded model, or None for
    the shipped one), one row per input row; a row with no usable point gets NaN (and a warning),
    so that rows stay aligned with ``y``. ``per_object``: one row per object from all its bands
    (``Model.embed_objects``; objects in order of first appearance)."""

    def __init__(
        self,
        model=None,
        layers: str | None = None,
        band: str | None = None,
        batch_size: int = BATCH,
        min_obs: int = MIN_OBS,
        per_object: bool = False,
        progress: bool = False,
    ):
        self.model, self.layers, self.band, self.batch_size = model, layers, band, batch_size
        self.min_obs, self.per_object, self.progress = min_obs, per_object, progress

    def fit(self, X=None, y=None):
        from starcurve.models.hub import Model, load_model

        self.model_ = self.model if isinstance(self.model, Model) else load_model(self.model)
        return self

    def transform(self, X) -> np.ndarray:
        return _transform(
            self, read(X, band=self.band), self.model_.dim if hasattr(self, "model_") else None
        )

    def vectors(self, table: pa.Table) -> np.ndarray:
        """Embeddings of the rows (``per_object``: the objects) of a clean table."""
        if not hasattr(self, "model_"):
            self.fit()
        kw = {"layers": self.layers, "batch_size": self.batch_size, "progress": self.progress}
        if self.per_object:
            return self.model_.embed_objects(table, **kw)[1]
        return self.model_.embed_table(table, **kw)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array([f"emb{i}" for i in range(self.model_.dim)], dtype=object)

    def describe(self, table: pa.Table) -> tuple[str, dict]:
        """(name, what a benchmark records) of these vectors."""
        return "embed", {
            "model": str(self.model or "default"),
            "dim": int(self.model_.dim),
            "layers": self.layers,
        }


class Features(TransformerMixin, BaseEstimator):
    """Light curves -> the feature vector of the forest baseline (``models/forest.py``: the 35
    light-curve features of BENCHMARK.md, or the numpy fallback), one row per input row (NaN where a
    feature cannot be computed). ``per_object``: one row per object, its bands' vectors side by side."""

    def __init__(
        self,
        backend: str = "auto",
        min_obs: int = MIN_OBS,
        per_object: bool = False,
        progress: bool = False,
        n_jobs: int = -1,
    ):
        self.backend, self.min_obs, self.per_object = backend, min_obs, per_object
        self.progress, self.n_jobs = progress, n_jobs

    def fit(self, X=None, y=None):
        from starcurve.models.forest import feature_names, light_curve_available

        self.backend_ = self.backend
        if self.backend == "auto":
            self.backend_ = "light-curve" if light_curve_available() else "numpy"
        self.names_ = feature_names(self.backend_)
        return self

    def transform(self, X) -> np.ndarray:
        return _transform(self, read(X))

    def vectors(self, table: pa.Table) -> np.ndarray:
        """Features of the rows (``per_object``: the objects, bands side by side) of a clean table."""
        from starcurve.models.forest import extract_features, side_by_side

        if not hasattr(self, "backend_"):
            self.fit()
        X = extract_features(
            table, backend=self.backend_, progress=self.progress, n_jobs=self.n_jobs
        )[0]
        return side_by_side(table, X) if self.per_object else X

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.names_, dtype=object)

    def describe(self, table: pa.Table) -> tuple[str, dict]:
        """(name, what a benchmark records): the backend and the feature names (``per_object``:
        each band's names, bands sorted)."""
        names = self.names_
        if self.per_object:
            names = [
                f"{b}:{n}" for b in sorted(set(table.column(S.BAND).to_pylist())) for n in names
            ]
        info = {"backend": self.backend_, "features": names}
        if self.backend_ == "light-curve":
            import light_curve

            info["light-curve"] = light_curve.__version__
        return "forest", info


def _transform(est, table: pa.Table, dim: int | None = None) -> np.ndarray:
    """A transformer's ``vectors`` for every input row (or object): cleaned once here; a row (an
    object) with nothing left after cleaning gets NaN, so that rows stay aligned with ``y``."""
    good, report = clean(table, min_obs=est.min_obs)
    V = np.asarray(est.vectors(good), np.float64)
    if not est.per_object:
        out = np.full((table.num_rows, V.shape[1] if good.num_rows else dim or 0), np.nan)
        out[report.kept] = V
        return out
    ids = np.asarray(table.column(S.ID).to_pylist(), dtype=str)
    uniq, first = np.unique(ids, return_index=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first)] = np.arange(len(uniq))  # objects in first-appearance order
    good_ids = np.asarray(good.column(S.ID).to_pylist(), dtype=str)
    g_uniq, g_first = np.unique(good_ids, return_index=True)
    out = np.full((len(uniq), V.shape[1] if V.ndim == 2 else dim or 0), np.nan)
    out[rank[np.searchsorted(uniq, g_uniq[np.argsort(g_first)])]] = V
    return out
