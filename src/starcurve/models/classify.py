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
A head trained with periodogram significances (``starcurve.train.heads.fit_head(..., log_fap=...)``) also flags a light
curve whose best periodogram peak is less significant (false-alarm probability, ``data.views``) than
that of 99% of the training variables; one trained with ``outliers`` (outlier exposure: simulated
constant stars and quasars) also flags a light curve that a logistic regression of outliers against
training objects scores above 99% of the training objects. The score is the largest of the ratios.
Distances alone miss constant stars, whose embeddings sit among the low-amplitude variables.

The model that ships is a classifier folder (``models/folder.py``, head kind "taxonomy": the encoder,
this head and the OOD arrays in one ``model.safetensors``); ``estimators.TaxonomyClassifier`` is its
estimator and ``starcurve classify`` (= ``starcurve predict`` with it) its command.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from starcurve.data.views import cached_periods, log10_false_alarm
from starcurve.data.windows import BATCH
from starcurve.errors import StarcurveError

FINE = [
    "RRab",
    "RRc",
    "Cepheid",
    "DSCT",
    "EB_contact",
    "EB_semidetached",
    "EB_detached",
    "LPV",
    "ACV",
    "microlensing",
]
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
OPTIONAL_OOD = (
    "fap_threshold",
    "exposure_b",
    "exposure_threshold",
)  # head.json keys of extra tests
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


def head_scores(
    state: dict, X: np.ndarray, log_fap: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
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


class TaxonomyNet(torch.nn.Module):
    """The shipped classifier as one module, for its model folder: ``encoder``, ``head`` (the MLP)
    and the OOD arrays as buffers (standardisation ``mean``/``std``, PCA ``proj``, the nearest-
    neighbour ``bank``, the outlier-exposure weights ``exposure_w``). ``config`` (``head_config``)
    gives the shapes and the scalar thresholds."""

    def __init__(self, encoder: torch.nn.Module, config: dict):
        super().__init__()
        self.encoder = encoder
        dim, pca, bank = config["dim"], config["pca_dims"], config["bank_size"]
        self.head = Head(dim, n_classes=len(config["classes"]))
        shapes = {"mean": (dim,), "std": (dim,), "proj": (dim, pca), "bank": (bank, pca)}
        if "exposure_b" in config:
            shapes["exposure_w"] = (dim,)
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(shape))

    @classmethod
    def of(cls, encoder, state: dict) -> TaxonomyNet:
        """The module of a trained state (``fit_head``)."""
        net = cls(encoder, head_config(state))
        net.head.load_state_dict(state["head"].state_dict())
        for name, _ in net.named_buffers(recurse=False):
            getattr(net, name).copy_(torch.from_numpy(np.asarray(state[name], np.float32)))
        return net.eval()

    def state(self, config: dict) -> dict:
        """The state ``predict`` takes."""
        arrays = {name: b.numpy() for name, b in self.named_buffers(recurse=False)}
        return {
            "head": self.head.eval(),
            **arrays,
            **{k: config[k] for k in ("classes", "threshold", *OPTIONAL_OOD) if k in config},
        }


def head_config(state: dict) -> dict:
    """The head's part of a classifier folder's config (kind "taxonomy")."""
    return {"kind": "taxonomy", "classes": list(state.get("classes", FINE)), "taxonomy": TAXONOMY,
            "threshold": float(state["threshold"]), "ood_quantile": OOD_QUANTILE, "ood_k": OOD_K,
            "dim": int(state["mean"].shape[0]), "pca_dims": int(state["proj"].shape[1]),
            "bank_size": int(state["bank"].shape[0]),
            **{k: float(state[k]) for k in OPTIONAL_OOD if k in state}}  # fmt: skip


def head_inputs(
    model, table: pa.Table, *, fap: bool = True, batch_size: int = BATCH, progress: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings of the rows of a clean table and, with ``fap``, the log10 false-alarm probability
    of each row's periodogram peak (one periodogram serves both when the model folds)."""
    p = cached_periods(table, progress=progress) if fap else None
    X = model.embed_table(table, batch_size=batch_size, progress=progress, periods=p)
    return X, (log10_false_alarm(table, p) if fap else None)
