"""Recurrent classifier over time and magnitude differences (the published "RNN on deltas").

Input (from the core ``starcurve.data.deltas.rnn_input`` on a clean table): consecutive differences
(dt, dm); a window of ``w`` = 4 differences slides with stride 2; each step is [4 dt, 4 dm].
Scaling, inside the model so that every path sees it: ``dt -> log1p(dt) / dt_scale`` and
``dm -> dm / dm_scale`` with the two scales measured on the training set and stored in config.json.

Network: stacked GRU (or LSTM); the top layer's hidden state at each light curve's last valid
step is gathered (padding comes after it and the recurrence is causal, so padding cannot change
it); dense ReLU + dropout; linear to class logits (softmax at prediction). Light curves with fewer than ``min_obs`` (20) observations are
not classified.

Streaming: ``init_state()`` / ``update(state, new_obs)`` carry the hidden state plus the few
differences not yet consumed by a window, so adding k observations costs O(k) and gives the same
probabilities as a full recomputation on the whole light curve. A state is saved as one small
file (``save_state`` / ``load_state``: safetensors for its arrays and hidden tensors, its scalars as
JSON in the file's metadata; never pickle), and ``StateStore`` keeps one such file per
(object, band) of one model: ``NetworkClassifier.update`` and ``starcurve predict --state DIR``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from starcurve.data import schema as S
from starcurve.data.clean import clean
from starcurve.data.deltas import (
    PERIOD_COLUMN,
    context_from_sums,
    context_width,
    fold_input,
    model_context,
    needs_period,
    rnn_input,
    scaled_context,
    scaled_fold,
    with_period,
)
from starcurve.data.io import from_arrays
from starcurve.errors import StarcurveError, read_json_object
from starcurve.files import atomic_json, atomic_safetensors


@dataclass
class RNNConfig:
    classes: list[str] = field(default_factory=list)
    w: int = 4  # differences per step
    stride: int = 2  # differences between step starts
    cell: str = "gru"  # or "lstm"
    hidden: int = 64
    layers: int = 2
    dense: int = 64
    dropout: float = 0.25
    min_obs: int = 20  # shorter light curves are not classified
    dt_scale: float = 1.0  # training-set RMS of log1p(dt)
    dm_scale: float = 1.0  # training-set RMS of dm
    train_max_obs: int = 400  # training uses random stretches of at most this many points (0: all)
    # survey input: with names here, every step also gets a one-hot of the row's ``survey`` column
    # (zeros for another or a missing survey); such a model classifies whole light curves only
    surveys: list[str] = field(default_factory=list)
    # context input (``deltas.context_input``: mean magnitude, log10 mean error) joined to the head
    context: bool = False
    # period input (``deltas.context_input``: log10 best period, peak power) joined to the head
    # after the context; it needs the whole light curve, so such a model does not stream
    period: bool = False
    # folded input (``deltas.fold_input``: at most this many points of the light curve folded at
    # twice its best period, [phase, magnitude]) read by a second recurrent stack; 0: none
    fold: int = 0
    context_mean: list[float] = field(default_factory=lambda: [0.0, 0.0])  # set by training
    context_std: list[float] = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class RNNState:
    """Streaming state of one light curve after ``n_obs`` clean observations."""

    n_obs: int = 0
    last_t: float | None = None
    last_m: float | None = None
    pending: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # unconsumed (dt, dm)
    hidden: object = None  # GRU: tensor [layers, 1, H]; LSTM: (h, c); None before the first step
    proba: np.ndarray | None = None  # class probabilities, None while n_obs < min_obs
    sum_mag: float = 0.0  # sums of the magnitudes and errors so far (the context input)
    sum_err: float = 0.0

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, scalars): the arrays and hidden tensors (float64 differences, so that a saved
        and reloaded state continues bit for bit), and the scalars as JSON-ready values."""
        tensors = {"pending": torch.from_numpy(np.ascontiguousarray(self.pending, np.float64))}
        if isinstance(self.hidden, tuple):
            tensors["hidden_h"], tensors["hidden_c"] = self.hidden
        elif self.hidden is not None:
            tensors["hidden"] = self.hidden
        if self.proba is not None:
            tensors["proba"] = torch.from_numpy(np.asarray(self.proba, np.float32))
        scalars = {"n_obs": int(self.n_obs), "last_t": self.last_t, "last_m": self.last_m}
        return tensors, {**scalars, "sum_mag": self.sum_mag, "sum_err": self.sum_err}

    @classmethod
    def from_tensors(cls, tensors: dict, scalars: dict) -> RNNState:
        """The state ``to_tensors`` gave."""
        hidden = tensors.get("hidden")
        if "hidden_h" in tensors:
            hidden = (tensors["hidden_h"], tensors["hidden_c"])
        proba = tensors.get("proba")
        return cls(
            n_obs=int(scalars["n_obs"]),
            last_t=None if scalars["last_t"] is None else float(scalars["last_t"]),
            last_m=None if scalars["last_m"] is None else float(scalars["last_m"]),
            pending=tensors["pending"].numpy().reshape(-1, 2),
            hidden=hidden,
            proba=None if proba is None else proba.numpy(),
            sum_mag=float(scalars.get("sum_mag", 0.0)),
            sum_err=float(scalars.get("sum_err", 0.0)),
        )


STATE_FORMAT = "starcurve-rnn-state"
STATE_VERSION = 1


def save_state(state: RNNState, path, meta: dict | None = None) -> Path:
    """One state as a safetensors file, written atomically: its tensors, and its scalars with
    ``meta`` (e.g. the model and the object) as JSON in the file's metadata."""
    tensors, scalars = state.to_tensors()
    doc = {"format": STATE_FORMAT, "version": STATE_VERSION, **(meta or {}), **scalars}
    return atomic_safetensors(tensors, path, metadata={"starcurve": json.dumps(doc)})


def load_state(path) -> tuple[RNNState, dict]:
    """(state, its JSON document) of a file ``save_state`` wrote; one clear line if it is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = Path(path).read_bytes()  # one read: an 8-byte header size, the JSON header, tensors
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size]) if 0 < size <= len(data) - 8 else None
        meta = header.get("__metadata__") if isinstance(header, dict) else None
        doc = json.loads((meta or {}).get("starcurve", "null"))
        tensors = load(data)
    except (SafetensorError, OSError, ValueError) as e:
        raise StarcurveError(f"{path}: not a readable RNN state file ({str(e)[:120]})") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or "pending" not in tensors:
        raise StarcurveError(f"{path}: not an RNN state file (no starcurve state metadata)")
    if doc.get("version") != STATE_VERSION:
        raise StarcurveError(
            f"{path}: RNN state format version {doc.get('version')!r}; this starcurve reads "
            f"version {STATE_VERSION}"
        )
    try:
        return RNNState.from_tensors(tensors, doc), doc
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise StarcurveError(f"{path}: damaged RNN state file ({e})") from None


def last_state(out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``out`` [B, T, H] at each row's last valid step (``lengths`` - 1; at least step 0)."""
    last = (lengths.to(out.device).clamp(min=1) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
    return out.gather(1, last)[:, 0]


class RNNClassifier(nn.Module):
    kind = "rnn"

    def __init__(self, cfg: RNNConfig):
        super().__init__()
        if not cfg.classes:
            raise StarcurveError("RNNConfig.classes is empty: give the class names")
        if cfg.fold < 0:
            raise StarcurveError(
                f"fold must be 0 (none) or the folded points to read, got {cfg.fold}"
            )
        if cfg.cell not in ("gru", "lstm"):
            raise StarcurveError(f"cell must be 'gru' or 'lstm', got {cfg.cell!r}")
        self.cfg = cfg
        rnn_cls = nn.GRU if cfg.cell == "gru" else nn.LSTM
        drop = cfg.dropout if cfg.layers > 1 else 0.0
        n_in = 2 * cfg.w + len(cfg.surveys)
        self.rnn = rnn_cls(n_in, cfg.hidden, cfg.layers, batch_first=True, dropout=drop)
        if cfg.fold:
            self.fold_rnn = rnn_cls(2, cfg.hidden, cfg.layers, batch_first=True, dropout=drop)
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden * (1 + bool(cfg.fold)) + context_width(cfg), cfg.dense),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.dense, len(cfg.classes)),
        )

    def inputs(self, table: pa.Table) -> dict[str, torch.Tensor]:
        """Model input of a clean table: x [B, T, 2w] (zero-padded) and the valid steps per row."""
        if needs_period(self.cfg) and PERIOD_COLUMN not in table.column_names:
            table = with_period(table)  # one periodogram per light curve for both inputs
        x, steps = rnn_input(table, self.cfg.w, self.cfg.stride)
        if self.cfg.surveys:
            names = (
                table.column(S.SURVEY).to_pylist()
                if S.SURVEY in table.column_names
                else [None] * table.num_rows
            )
            onehot = np.array(names, object)[:, None] == np.array(self.cfg.surveys, object)[None]
            onehot = np.broadcast_to(onehot[:, None, :], (*x.shape[:2], onehot.shape[1]))
            x = np.concatenate([x, onehot.astype(np.float32)], axis=2)
        out = {"x": torch.from_numpy(x), "lengths": torch.from_numpy(steps.astype(np.int64))}
        if context_width(self.cfg):
            out["context"] = torch.from_numpy(model_context(self.cfg, table))
        if self.cfg.fold:
            fold, count = fold_input(table, self.cfg.fold)
            out["fold"], out["fold_lengths"] = torch.from_numpy(fold), torch.from_numpy(count)
        return out

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled differences; the survey one-hot (columns after the 2w differences) as it is."""
        w = self.cfg.w
        dt = torch.log1p(x[..., :w].clamp(min=0)) / self.cfg.dt_scale
        return torch.cat([dt, x[..., w : 2 * w] / self.cfg.dm_scale, x[..., 2 * w :]], dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        context: torch.Tensor | None = None,
        fold: torch.Tensor | None = None,
        fold_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits [B, C] from the top layer's hidden state at each row's last valid step
        (joined with the scaled ``context`` [B, k] for a model with ``config.context`` / ``period``,
        and with the last state of the folded light curve ``fold`` [B, n, 2] for ``config.fold``).

        The recurrence is causal and padding comes after the valid steps, so gathering the output
        at ``lengths - 1`` ignores the padding exactly. (On CPU this is 3-6x faster than
        ``pack_padded_sequence``; batches of similar lengths keep the wasted padded work small.)
        """
        h = last_state(self.rnn(self.scale(x))[0], lengths)
        if self.cfg.fold:
            f = scaled_fold(None if fold_lengths is None else fold, self.cfg, "RNN")
            h = torch.cat([h, last_state(self.fold_rnn(f)[0], fold_lengths)], 1)
        return self.logits(h, context)

    def logits(self, h: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """The head on top-layer states ``h`` [B, H] (and the context, if the model takes it)."""
        if not context_width(self.cfg):
            return self.head(h)
        return self.head(torch.cat([h, scaled_context(context, self.cfg, h, "RNN")], 1))

    # --- streaming -------------------------------------------------------------------------
    def init_state(self) -> RNNState:
        """The state of a light curve with no observations yet."""
        return RNNState()

    def check_streaming(self) -> None:
        """One clear line if this RNN cannot add streamed observations to a state: an input that
        needs the whole light curve (the survey column, the period, the fold)."""
        whole = "of the whole light curve"
        for opt, what in (("surveys", "the survey"), ("period", f"the period {whole}"),
                          ("fold", f"the folded light curve {whole}")):  # fmt: skip
            if getattr(self.cfg, opt):
                raise StarcurveError(
                    f"this RNN takes {what} as an input (config {opt}); it classifies whole light "
                    "curves only, not streamed observations"
                )

    @torch.no_grad()
    def update(self, state: RNNState, new_obs) -> RNNState:
        """Add observations ``(t, m)`` or ``(t, m, err)`` (all later than the last one) in O(k).

        They are cleaned exactly like the full light curve (the core ``clean``: non-finite, sentinel
        and bad-error points dropped, sorted, a repeated time stamp keeps the first point), so the
        result equals a full recomputation. Missing errors count as 1.
        """
        t, m = np.asarray(new_obs[0], float), np.asarray(new_obs[1], float)
        e = np.asarray(new_obs[2], float) if len(new_obs) > 2 else np.ones_like(t)
        if not (len(t) == len(m) == len(e)):
            raise StarcurveError("update: time, mag and error arrays differ in length")
        new, _ = clean(from_arrays([t], [m], [e]), min_obs=1)  # new points: any number
        t = new.column("time")[0].values.to_numpy() if new.num_rows else np.zeros(0)
        m = new.column("mag")[0].values.to_numpy() if new.num_rows else np.zeros(0, np.float32)
        e = new.column("mag_err")[0].values.to_numpy() if new.num_rows else np.zeros(0, np.float32)
        return self.advance(state, t, m, e)

    @torch.no_grad()
    def advance(
        self, state: RNNState, t: np.ndarray, m: np.ndarray, e: np.ndarray | None = None
    ) -> RNNState:
        """``update`` with points that are already clean (sorted, finite, no repeated time stamp,
        as one row of a table the core ``clean`` returned): the caller cleaned them once, on entry.
        Their errors ``e`` are needed by a model with a context input."""
        self.check_streaming()
        if state.last_t is not None and len(t):
            if t[0] < state.last_t:
                raise StarcurveError(
                    f"update: new observations start at t = {t[0]!r}, earlier than the last one "
                    f"already added (t = {state.last_t!r}); recompute the whole light curve "
                    "instead of streaming"
                )
            keep = t != state.last_t  # a repeated time stamp keeps the earlier point, as clean does
            t, m, e = t[keep], m[keep], (None if e is None else e[keep])
        if len(t) == 0:
            return state
        if self.cfg.context and e is None:
            raise StarcurveError("this RNN takes a context input: give the errors of new points")
        # running sums, point by point in float64 as ``context_input`` sums a whole light curve
        sums = [state.sum_mag, state.sum_err]
        if self.cfg.context:
            for i, v in enumerate((m, e)):
                for x in v.tolist():
                    sums[i] += x
        m = m.astype(np.float64)  # the core differences float32 magnitudes in float64
        tt = np.concatenate([[state.last_t], t]) if state.last_t is not None else t
        mm = np.concatenate([[state.last_m], m]) if state.last_m is not None else m
        pending = np.concatenate([state.pending, np.stack([np.diff(tt), np.diff(mm)], 1)])
        w, s = self.cfg.w, self.cfg.stride
        k = (len(pending) - w) // s + 1 if len(pending) >= w else 0
        hidden, proba = state.hidden, state.proba
        n_obs = state.n_obs + len(t)
        # a context model answers again after any new point (its context moves with every point)
        stale = hidden is not None and (proba is None or self.cfg.context)
        answer = n_obs >= self.cfg.min_obs and (k or stale)
        if k or answer:  # the network runs only when the hidden state or the answer changes
            was_training = self.training
            if was_training:
                self.eval()  # no dropout (toggled only when needed: it costs more than a step)
            try:
                if k:
                    idx = np.arange(k)[:, None] * s + np.arange(w)[None, :]
                    steps = np.concatenate([pending[idx, 0], pending[idx, 1]], axis=1)
                    x = self.scale(torch.from_numpy(steps.astype(np.float32))[None])
                    _, hidden = self.rnn(x, hidden)
                    pending = pending[k * s :]
                if answer:
                    h = hidden[0] if isinstance(hidden, tuple) else hidden
                    ctx = context_from_sums(sums[0], sums[1], n_obs)[None]
                    proba = torch.softmax(self.logits(h[-1], torch.from_numpy(ctx)), -1)[0].numpy()
            finally:
                if was_training:
                    self.train()
        return replace(
            state,
            n_obs=n_obs,
            last_t=float(t[-1]),
            last_m=float(m[-1]),
            pending=pending,
            hidden=hidden,
            proba=proba,
            sum_mag=sums[0],
            sum_err=sums[1],
        )


# ----------------------------------------------------------------------------- per-object states

STORE_FILE = "store.json"


def state_file_name(object_id, band) -> str:
    """A safe relative path for the state of (object, band): a subfolder of two hex digits, then
    a readable part (letters, digits, ``.``, ``_``, ``-``) and a digest of the exact pair, so that
    distinct pairs never share a file whatever characters their names hold."""
    key = f"{object_id}\x1f{band}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{object_id}.{band}").strip("._")[:60]
    return f"{digest[:2]}/{readable or 'lc'}-{digest}.safetensors"


class StateStore:
    """A folder of RNN states, one file per (object, band), for one model.

    ``store.json`` records the model's identity (a digest of its config and weights, ``model_id``);
    the states of another model are refused with one clear line, as is a state file whose own
    record names another model or another object. Files sit in 256 subfolders (by the digest of the
    pair), so that millions of objects do not crowd one folder. One writer at a time per folder.
    """

    def __init__(self, folder, net: RNNClassifier, model_id: str, model_name: str = "the model"):
        self.folder, self.net, self.model_id = Path(folder), net, model_id
        info = {"format": "starcurve-rnn-states", "version": STATE_VERSION, "model": model_id,
                "model_name": model_name, "classes": list(net.cfg.classes)}  # fmt: skip
        path = self.folder / STORE_FILE
        if path.is_file():
            theirs = read_json_object(path, "RNN state store")
            if theirs.get("format") != info["format"]:
                raise StarcurveError(f"{path}: not an RNN state folder")
            if theirs.get("model") != model_id:
                raise StarcurveError(
                    f"{self.folder}: these states were written by another model "
                    f"({theirs.get('model_name')}, id {str(theirs.get('model'))[:12]}), not by "
                    f"{model_name} (id {model_id[:12]}); use another --state folder, or that model"
                )
        elif self.folder.exists() and any(
            p.name != STORE_FILE and not p.name.startswith(".") for p in self.folder.iterdir()
        ):
            raise StarcurveError(
                f"{self.folder}: not an RNN state folder (no {STORE_FILE}) and not empty; "
                "give an empty or new folder"
            )
        else:
            atomic_json(info, path)

    def path(self, object_id, band) -> Path:
        return self.folder / state_file_name(object_id, band)

    def get(self, object_id, band) -> RNNState:
        """The stored state of (object, band), or a fresh one if there is none yet."""
        path = self.path(object_id, band)
        if not path.is_file():
            return self.net.init_state()
        state, doc = load_state(path)
        if doc.get("model") != self.model_id:
            raise StarcurveError(
                f"{path}: this state was written by another model (id {str(doc.get('model'))[:12]})"
            )
        if (doc.get("object_id"), doc.get("band")) != (str(object_id), str(band)):
            raise StarcurveError(
                f"{path}: holds the state of {doc.get('object_id')}/{doc.get('band')}, not "
                f"{object_id}/{band}; the folder is mixed up"
            )
        self._check(state, path)
        return state

    def put(self, object_id, band, state: RNNState) -> Path:
        meta = {"model": self.model_id, "object_id": str(object_id), "band": str(band)}
        return save_state(state, self.path(object_id, band), meta)

    def _check(self, state: RNNState, path) -> None:
        cfg = self.net.cfg
        shape = (cfg.layers, 1, cfg.hidden)
        hidden = state.hidden if isinstance(state.hidden, tuple) else (state.hidden,)
        ok = len(state.pending) < cfg.w and state.n_obs >= 0
        ok &= state.hidden is None or (
            isinstance(state.hidden, tuple) == (cfg.cell == "lstm")
            and all(tuple(h.shape) == shape for h in hidden)
        )
        ok &= state.proba is None or len(state.proba) == len(cfg.classes)
        if not ok:
            raise StarcurveError(f"{path}: the state does not fit this model (damaged file?)")
