"""Model folders: the one format every starcurve model is saved in, one ``save`` and one ``load``.

A model folder holds

- ``config.json``: ``{"model_type": ..., "format_version": 2, "config": {...}, "meta": {...}}``;
  ``config`` is everything needed to rebuild the network, ``meta`` records how it was made;
- ``model.safetensors``: the network's state dict (float16 allowed, loaded as float32).

``model_type`` is one of ``TYPES``: ``encoder`` (a pretrained encoder: embeddings),
``classifier`` (an encoder and a head: ``config`` = ``{"encoder": ..., "head": {"kind": ...,
"classes": ...}}``), ``rnn`` and ``cnn`` (the end-to-end networks). ``load`` dispatches on it and
returns the model's object (``TYPES``); loading parses JSON and safetensors only, never code, and
checks every tensor name and shape against the config, so that an unknown type or version, a
missing, damaged or mismatched file gives one clear line. A pretraining run in progress has no
``model.safetensors`` yet: its last checkpoint's weights are used. The folder may hold other files
(training records, evaluation); they are never read by ``load``.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from starcurve.errors import StarcurveError, read_json_object
from starcurve.files import atomic_json, atomic_safetensors

log = logging.getLogger("starcurve")
FORMAT_VERSION = 2
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "resources" / "models" / "default"
TYPES = {  # model_type -> the function that builds its object from a ``Folder``
    "encoder": ("starcurve.models.hub", "model_from_folder"),
    "classifier": ("starcurve.models.estimators", "from_folder"),
    "rnn": ("starcurve.models.estimators", "from_folder"),
    "cnn": ("starcurve.models.estimators", "from_folder"),
}


@dataclass
class Folder:
    """What a model folder holds, read and checked (``read_folder``)."""

    path: Path
    model_type: str
    config: dict
    meta: dict = field(default_factory=dict)
    weights: Path | None = None  # None: the config only (``read_folder(..., weights=False)``)

    def state(self) -> dict[str, torch.Tensor]:
        """The weights (float32), read now; one clear error if the file is damaged."""
        try:
            sd = load_file(self.weights)
        except (SafetensorError, OSError, ValueError) as e:  # a damaged or truncated file
            raise StarcurveError(
                f"{self.weights}: corrupted weights ({str(e)[:120]}); re-download or re-train"
            ) from None
        return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}

    def load_into(self, module: torch.nn.Module) -> torch.nn.Module:
        """Load the weights into ``module`` after checking every name and shape (eval mode)."""
        sd, expected = self.state(), module.state_dict()
        missing, extra = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
        bad = [k for k in expected if k in sd and sd[k].shape != expected[k].shape]
        if missing or extra or bad:
            raise StarcurveError(
                f"{self.path}: weights do not match config.json (missing {missing[:3]}, unexpected "
                f"{extra[:3]}, wrong shape {bad[:3]}); the folder is mixed up or damaged"
            )
        module.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()})
        return module.eval()


def save_folder(
    path: str | os.PathLike,
    model_type: str,
    config: dict,
    state: dict | None = None,
    meta: dict | None = None,
    half: bool = False,
) -> Path:
    """Write a model folder (atomically): ``config.json``, and ``model.safetensors`` from ``state``
    (a state dict; float16 if ``half``). ``state=None`` writes the config only (a run starting)."""
    if model_type not in TYPES:
        raise StarcurveError(f"unknown model_type {model_type!r}; one of {sorted(TYPES)}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    doc = {"model_type": model_type, "format_version": FORMAT_VERSION, "config": config,
           "meta": meta or {}}  # fmt: skip
    atomic_json(doc, path / "config.json")
    if state is not None:
        sd = {k: (v.half() if half and v.is_floating_point() else v) for k, v in state.items()}
        atomic_safetensors(sd, path / "model.safetensors", metadata={"model_type": model_type})
    return path


def read_folder(path: str | os.PathLike | None = None, *, weights: bool = True) -> Folder:
    """Read and check a model folder's ``config.json`` (None: the shipped model); with ``weights``,
    find its weights (``model.safetensors``, else a run's last checkpoint)."""
    if path is None:
        if not (DEFAULT_MODEL / "config.json").is_file():
            raise StarcurveError(
                "no pretrained model ships with this version of starcurve; pass a "
                "model folder (make one with `starcurve pretrain --output DIR`)"
            )
        path = DEFAULT_MODEL
    path = Path(path)
    f = path / "config.json"
    if not f.is_file():
        raise StarcurveError(f"{path}: not a model folder (no config.json)")
    doc = read_json_object(f, "model config")
    kind, version = doc.get("model_type"), doc.get("format_version")
    if version != FORMAT_VERSION:
        raise StarcurveError(
            f"{f}: model folder format version {version!r}; this starcurve reads version "
            f"{FORMAT_VERSION} (older folders: python scripts/convert_model_folder.py {path})"
        )
    if kind not in TYPES:
        raise StarcurveError(
            f"{f}: unknown model_type {kind!r}; this starcurve knows {sorted(TYPES)}"
        )
    if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("meta", {}), dict):
        raise StarcurveError(f"{f}: 'config' and 'meta' must be JSON objects")
    folder = Folder(path, kind, doc["config"], doc.get("meta", {}))
    if weights:
        folder.weights = path / "model.safetensors"
        ckpt = path / "checkpoint" / "model.safetensors"
        if not folder.weights.is_file() and ckpt.is_file():
            log.warning("%s: no model.safetensors yet; using the run's last checkpoint", path)
            folder.weights = ckpt
        if not folder.weights.is_file():
            raise StarcurveError(f"{path}: no model.safetensors; the model folder is incomplete")
    return folder


def load(path: str | os.PathLike | None = None):
    """The model of any folder starcurve writes (None: the shipped model), by its ``model_type``:
    an encoder (``hub.Model``: embeddings), or a classifier (``estimators``: ``predict``,
    ``predict_proba``)."""
    folder = read_folder(path)
    module, attr = TYPES[folder.model_type]
    return getattr(importlib.import_module(module), attr)(folder)
