"""Model folders, embeddings and the ``starcurve embed`` command.

An encoder is saved as a model folder of model_type "encoder" (``models/folder.py``: the one
format, save and load of every model); ``load_model`` also takes the encoder of a classifier folder
(the shipped model is one: an encoder with its head).

Embeddings: per window, the states of the last layer (or the softmax-weighted mix of every layer)
averaged over the valid steps; per light curve, the mean over its consecutive windows. Nothing
non-finite reaches the encoder: a window whose inputs are not finite is not run and its light curve's
vector is NaN; ``embed`` and ``starcurve embed`` turn every non-finite vector into a skip with a
reason (``CleanReport.skip_nonfinite``), never into an output row.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from starcurve.cli import (
    OUTPUT_FILE,
    band_option,
    columns_option,
    dask_options,
    input_option,
    min_obs_option,
    output_option,
)
from starcurve.data import schema as S
from starcurve.data.clean import MIN_OBS, CleanReport, clean
from starcurve.data.io import Partition, partitions, read, read_partition
from starcurve.data.views import band_index, cached_periods, view_windows
from starcurve.data.windows import BATCH, PAD_BUCKET, length_batches, windows
from starcurve.errors import StarcurveError
from starcurve.models.encoder import Encoder, EncoderConfig
from starcurve.models.folder import DEFAULT_MODEL, Folder, save_folder
from starcurve.parts import run, threads_for

log = logging.getLogger("starcurve")


# ---------------------------------------------------------------- encoder folders


def save_model(
    model: Encoder, path: str | os.PathLike, meta: dict | None = None, half: bool = False
) -> Path:
    """An encoder model folder (``models/folder.py``; float16 weights if ``half``)."""
    return save_folder(path, "encoder", model.config.to_dict(), model.state_dict(), meta, half)


def model_from_folder(folder: Folder) -> Model:
    """The ``Model`` of an encoder folder (``starcurve.load`` on model_type "encoder")."""
    from starcurve.models.estimators import encoder_of

    return Model(folder.load_into(encoder_of(folder)), folder.path)


def load_model(path: str | os.PathLike | None = None) -> Model:
    """The embedding model of a folder (None: the shipped one): an encoder folder, or the encoder of
    a classifier folder."""
    from starcurve.models.folder import load

    obj = load(path)
    if isinstance(obj, Model):
        return obj
    if hasattr(obj, "embedder_"):
        return obj.embedder_
    if hasattr(getattr(obj, "net_", None), "encoder"):
        return Model(obj.net_.encoder, Path(path) if path else DEFAULT_MODEL)
    raise StarcurveError(
        f"{path}: a {obj.model_type} folder has no encoder; it gives classes, not "
        "embeddings (use `starcurve predict`)"
    )


# ---------------------------------------------------------------- embeddings


_BF16 = [False]  # process-wide, like torch's thread count (Dask jobs set it in each worker)


def use_bf16(on: bool) -> None:
    """Run every encoder forward pass of this process under bfloat16 autocast (``--bf16``).

    It pays where the CPU multiplies bfloat16 in hardware (AMX): the shipped model's network is
    1.6x faster there and development-split F1 scores move by at most 0.007 (docs/encoder.md);
    elsewhere bfloat16 is emulated and slower. Off by default, so that
    embeddings do not depend on the machine's instruction set."""
    _BF16[0] = bool(on)


def bf16_enabled() -> bool:
    """Whether ``use_bf16`` is on in this process."""
    return _BF16[0]


class Model:
    """A loaded encoder with per-light-curve embeddings."""

    def __init__(self, encoder: Encoder, path: Path | None = None):
        self.encoder = encoder.eval()
        self.path = path
        self.last_report: CleanReport | None = None

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @property
    def dim(self) -> int:
        """Embedding size: d_model per view (multi-view models concatenate their views), plus
        the predicted folded curve of each fold view when the config asks for a template, plus the
        period, peak power and spreads with ``readout_period``."""
        return sum(self._view_dim(v) for v in self.config.views)

    @property
    def default_layers(self) -> str:
        """The readout used when none is asked for: ``weighted`` with learned layer weights."""
        return "weighted" if hasattr(self.encoder, "layer_logits") else "last"

    def _view_dim(self, view: str) -> int:
        c = self.config
        summary = (2 if view == "pgram" else 1) if c.readout_period else 0
        return c.d_model + (c.template if view.startswith("fold") else 0) + summary

    def transform(self, X) -> np.ndarray:
        """Embeddings of anything ``read`` accepts, one row per input row (``estimators.Embedder``)."""
        from starcurve.models.estimators import Embedder

        return Embedder(self).fit().transform(X)

    def __repr__(self) -> str:
        c = self.config
        return f"Model({c.name!r}, d_model={c.d_model}, layers={c.n_layers}, path={self.path})"

    @torch.inference_mode()
    def window_vectors(
        self,
        w,
        *,
        layers: str = "last",
        batch_size: int = BATCH,
        progress: bool = False,
        view: str = "raw",
        ctx=None,
        band=None,
    ) -> np.ndarray:
        """One vector per window of a ``Windows``, the same bit for bit whatever else is embedded.

        Windows are batched by length bucket (``PAD_BUCKET`` steps); every forward pass has the
        same shape, ``batch_size`` windows padded to the top of their bucket (a short last batch is
        filled with copies of its first window, whose outputs are dropped). torch's CPU kernels
        give results that depend on the shape of the batch at the 1e-7 level; with fixed shapes a
        window's vector depends on the window alone, so an FS-1 run over a whole table and a
        scikit-learn Pipeline over its subsets give the same vectors. Multi-view models also take
        the view's name and, per window, ``ctx`` and ``band``. A window with a non-finite input
        never reaches the network: its vector is NaN (a light curve to skip).
        """
        count = w.mask.sum(1)
        finite = np.isfinite(w.time).all(1) & np.isfinite(w.mag).all(1) & np.isfinite(w.err).all(1)
        if ctx is not None:
            finite &= np.isfinite(ctx).all(1)
        fin = np.flatnonzero(finite)
        template = self.config.template if view.startswith("fold") else 0
        out = np.full((len(count), self._view_dim(view)), np.nan, np.float32)
        width = w.mask.shape[1]
        batches = length_batches(count[fin], batch_size, bucket=PAD_BUCKET)
        for b in tqdm(batches, disable=not progress, desc="embed", unit="batch"):
            idx = fin[b]
            n = min(-(-max(int(count[idx].max()), 1) // PAD_BUCKET) * PAD_BUCKET, width)
            take = np.concatenate([idx, np.repeat(idx[:1], batch_size - len(idx))])
            batch = {
                k: np.ascontiguousarray(a[take, :n])
                for k, a in (("time", w.time), ("mag", w.mag), ("mask", w.mask), ("err", w.err))
            }
            batch.update((k, v[take]) for k, v in (("ctx", ctx), ("band", band)) if v is not None)
            out[idx] = self.network(batch, layers=layers, view=view, template=template)[: len(idx)]
        return out

    def network(
        self, batch: dict[str, np.ndarray], *, layers: str, view: str, template: int
    ) -> np.ndarray:
        """The encoder on one batch of padded windows (numpy in, float32 numpy out): the one step
        that an exported model (``starcurve.models.export.OnnxModel``) runs in onnxruntime instead."""
        dev = next(self.encoder.parameters()).device
        t = {k: torch.from_numpy(v).to(dev) for k, v in batch.items()}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=_BF16[0]):
            vec = self.encoder.window_vectors(
                t["time"],
                t["mag"],
                t["mask"],
                t["err"],
                layers=layers,
                view=view,
                template=template,
                ctx=t.get("ctx"),
                band=t.get("band"),
            )
        return vec.float().cpu().numpy()

    def embed_table(
        self,
        table: pa.Table,
        *,
        layers: str | None = None,
        batch_size: int = BATCH,
        progress: bool = False,
        periods=None,
    ) -> np.ndarray:
        """One vector per row of an already clean table: per view, the mean of its windows' vectors;
        the views side by side. ``layers``: ``last`` or ``weighted`` (default: ``weighted`` for models
        with learned layer weights, else ``last``). Multi-view models take the table's ``Periods``
        when the caller has them (else they are computed, or read from $STARCURVE_CACHE)."""
        cfg = self.config
        layers = layers or self.default_layers
        if table.num_rows == 0:
            return np.zeros((0, self.dim), np.float32)
        if not cfg.multiview:
            w = windows(table, cfg.window, mode="consecutive")
            vec = self.window_vectors(w, layers=layers, batch_size=batch_size, progress=progress)
            return row_means(vec, w.row, table.num_rows)
        p = periods if periods is not None else cached_periods(table, progress=progress)
        return self._view_vectors(table, p, layers, batch_size, progress)

    def _view_vectors(self, table, p, layers, batch_size=BATCH, progress=False) -> np.ndarray:
        """Multi-view models: per row, each view's mean window vector, the views side by side."""
        cfg = self.config
        ctx, band = p.context(), band_index(table, cfg.bands)
        parts = []
        for view in cfg.views:
            w = view_windows(table, p, view, window=cfg.window, fold_window=cfg.fold_window,
                             fold_windows_max=cfg.fold_windows_max)  # fmt: skip
            vec = self.window_vectors(
                w,
                layers=layers,
                batch_size=batch_size,
                progress=progress,
                view=view,
                ctx=ctx[w.row],
                band=band[w.row],
            )
            parts.append(row_means(vec, w.row, table.num_rows))
        return np.hstack(parts)

    def embed_objects(
        self,
        table: pa.Table,
        *,
        layers: str | None = None,
        batch_size: int = BATCH,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One vector per object from all its bands (rows of a clean table sharing an object_id):
        returns (object ids in order of first appearance, vectors).

        Multi-view models fold every band of an object at one period, that of the band whose
        periodogram peak is the highest, then average the object's per-band vectors (each band
        enters with its own band embedding). Other models average the per-band embeddings.
        """
        ids = np.asarray(table.column(S.ID).to_pylist(), dtype=object)
        uniq, first, inv = np.unique(ids.astype(str), return_index=True, return_inverse=True)
        order = np.argsort(first)  # objects in order of first appearance
        if self.config.multiview and table.num_rows:
            layers = layers or self.default_layers
            p = cached_periods(table, progress=progress)
            best = np.lexsort((p.power, inv))  # per object, its rows by power; the last is the best
            last = np.flatnonzero(np.r_[inv[best][1:] != inv[best][:-1], True])
            pick = np.empty(len(uniq), np.int64)
            pick[inv[best][last]] = best[last]
            joint = p.take(pick[inv])
            joint.bins = p.bins  # each band keeps its own periodogram
            vec = self._view_vectors(table, joint, layers, batch_size, progress)
        else:
            vec = self.embed_table(table, layers=layers, batch_size=batch_size, progress=progress)
        return uniq[order].astype(object), row_means(vec, inv, len(uniq))[order]

    def embed(
        self,
        source,
        band: str | None = None,
        *,
        columns=None,
        layers: str | None = None,
        batch_size: int = BATCH,
        progress: bool = False,
    ) -> pa.Table:
        """Read and clean any input ``read`` accepts; a table (object_id, band, embedding).

        Objects that cleaning removes, or whose embedding is not finite, are skipped and reported
        (log warning, ``last_report.removed``: "object_id/band" -> reason).
        """
        out, report = embed_partition(
            self,
            read(source, band=band, columns=columns),
            layers=layers,
            batch_size=batch_size,
            progress=progress,
        )
        self.last_report = report
        if report.removed:
            log.warning(
                "skipped %d light curve(s), e.g. %s", len(report.removed), _examples(report.removed)
            )
        return out


NONFINITE = "the embedding is not finite (NaN or infinite); not embedded"


def _examples(removed: dict, k: int = 3) -> str:
    return "; ".join(f"{key} ({why})" for key, why in list(removed.items())[:k])


def row_means(vec: np.ndarray, row: np.ndarray, n_rows: int) -> np.ndarray:
    """Mean of the window vectors of each row (float32 [n_rows, d])."""
    sums = np.zeros((n_rows, vec.shape[1]), np.float64)
    np.add.at(sums, row, vec)
    return (sums / np.maximum(np.bincount(row, minlength=n_rows), 1)[:, None]).astype(np.float32)


def embedding_table(table: pa.Table, vec: np.ndarray) -> pa.Table:
    """(object_id, band, embedding list<float32>) for the rows of ``table``."""
    d = vec.shape[1] if vec.ndim == 2 else 0
    offsets = np.arange(len(vec) + 1, dtype=np.int32) * d
    emb = pa.ListArray.from_arrays(pa.array(offsets), pa.array(vec.reshape(-1), pa.float32()))
    return pa.table({S.ID: table.column(S.ID), S.BAND: table.column(S.BAND), "embedding": emb})


# ---------------------------------------------------------------- the `embed` command


def embed_partition(
    model: Model,
    source,
    *,
    layers: str | None = None,
    batch_size: int = BATCH,
    progress: bool = False,
    min_obs: int = MIN_OBS,
) -> tuple[pa.Table, CleanReport]:
    """The per-partition step of ``starcurve embed``: read (anything ``read`` accepts: a table, a
    pandas / nested-pandas partition with list columns), clean, embed; returns (object_id, band,
    embedding) for the good rows in input order, and the cleaning report (``report.removed``:
    "object_id/band" -> why each other row was skipped).

    Any ``map_partitions`` can call it (docs/scale.md shows LSDB / nested-pandas)."""
    table, report = clean(read(source), min_obs=min_obs)
    vec = model.embed_table(table, layers=layers, batch_size=batch_size, progress=progress)
    ok = report.skip_nonfinite(table, vec, NONFINITE)
    return embedding_table(table.filter(pa.array(ok)), vec[ok]), report


_LOADED: dict = {}  # per process (a Dask worker): (model path, its mtime) -> loaded model


def load_any(path: str | os.PathLike | None, threads: int | None = None) -> Model:
    """A model folder (``load_model``) or an exported ``.onnx`` file (``OnnxModel``), loaded once
    per process (again if the folder or file changed)."""
    key = (str(path), Path(path).stat().st_mtime_ns if path and Path(path).exists() else 0)
    if key not in _LOADED:
        if str(path).endswith(".onnx"):
            from starcurve.models.export import OnnxModel

            _LOADED[key] = OnnxModel.load(path, threads=threads)
        else:
            _LOADED[key] = load_model(path)
    return _LOADED[key]


@dataclass(frozen=True)
class EmbedJob:
    """``embed_partition`` over one input partition; plain data, so that Dask ships it to workers,
    which load the model once each (``load_any``)."""

    model: str | None
    layers: str
    batch_size: int = BATCH
    band: str | None = None
    columns: dict | None = None
    threads: int = 1
    min_obs: int = MIN_OBS
    bf16: bool = False

    def __call__(self, part: Partition) -> tuple[pa.Table, dict]:
        torch.set_num_threads(self.threads)
        use_bf16(self.bf16)
        table = read_partition(part, band=self.band, columns=self.columns)
        out, report = embed_partition(
            load_any(self.model, self.threads),
            table,
            layers=self.layers,
            batch_size=self.batch_size,
            min_obs=self.min_obs,
        )
        return out, {"rows_in": table.num_rows, "skipped": report.removed}


@click.command("embed")
@click.option(
    "--model",
    "model_dir",
    default=None,
    help="Model folder or exported .onnx file (default: the shipped model).",
)
@input_option()
@output_option(OUTPUT_FILE, "OUT.parquet")
@band_option
@columns_option
@min_obs_option
@click.option(
    "--layers",
    type=click.Choice(["last", "weighted"]),
    default=None,
    help="Readout: last layer, or the weighted mix of every layer [default: the model's].",
)
@click.option(
    "--batch-size", default=BATCH, show_default=True, type=int, help="Windows per forward pass."
)
@dask_options
def embed_cmd(
    model_dir,
    input_path,
    output,
    band,
    columns,
    min_obs,
    layers,
    batch_size,
    chunk_rows,
    workers,
    threads,
    scheduler,
    bf16,
) -> None:
    """Write one embedding per (object, band): object_id, band, embedding; resumable, on Dask.

    Each input partition (--chunk-rows light curves) becomes one part in OUTPUT.parts/, kept until
    the end, so that an interrupted run (Ctrl-C, kill -9 of the command or of a worker) re-run with
    the same command computes only the missing parts; a run that fails with an error removes them,
    so that it never blocks the corrected run. The output keeps the input order (files by name,
    rows in file order); skipped light curves are counted by reason. docs/scale.md has the details.
    """
    parts = partitions(input_path, rows=chunk_rows, columns=columns)  # opens the input
    threads = threads_for(len(parts), workers, scheduler, threads)
    torch.set_num_threads(threads)
    use_bf16(bf16)
    model = load_any(model_dir, threads)
    layers = layers or model.default_layers
    setup = {
        "model": str(model.path),
        "input": str(input_path),
        "band": band,
        "layers": layers,
        "min_obs": min_obs,
        "chunk_rows": chunk_rows,
        **({"columns": columns} if columns else {}),
        **({"bf16": True} if bf16 else {}),
    }
    job = EmbedJob(model_dir, layers, batch_size, band, columns, threads, min_obs, bf16)
    summary = run(
        job,
        parts,
        output,
        setup,
        workers=workers,
        threads=threads,
        scheduler=scheduler,
        desc="embed",
        nothing=f"{input_path}: no light curve could be embedded",
    )
    click.echo(
        f"wrote {summary.written} embeddings (dim {model.dim}) to {output}; {summary.seconds:.1f} s"
    )
    click.echo(f"summary: {summary}")
    if summary.skipped:
        click.echo(
            f"skipped {sum(summary.skipped.values())} light curve(s): {_examples(summary.examples)}"
        )
