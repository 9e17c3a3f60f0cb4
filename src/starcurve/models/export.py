"""ONNX export of a model folder, and ``OnnxModel``: the same embeddings through onnxruntime.

Only the network goes into the graph: per view, the padded windows of a batch (and, for multi-view
models, ``ctx`` [B, 2] and ``band`` [B]) in, one vector per window out, exactly what
``Model.network`` computes. Everything before it (reading, cleaning, windows, periodogram, folds)
and after it (mean over each light curve's windows) stays the numpy code of ``models/hub.py`` and
``data/views.py``: ``OnnxModel`` is a ``Model`` whose ``network`` step runs an
``onnxruntime.InferenceSession``, so ``embed_table``, ``embed_objects`` and ``embed`` are shared.

Graph interface (batch ``B`` and length ``T`` dynamic, one group per view of ``config.views``):

- raw and folded views ``V``: ``V_time`` float32 [B, T] (days from the window's mean; phase for
  folds), ``V_mag`` float32 [B, T] (minus the window's mean), ``V_mask`` bool [B, T],
  ``V_err`` float32 [B, T];
- ``pgram``: ``pgram_mag`` float32 [B, n_bins] (the periodogram bins) and ``pgram_mask``;
- multi-view models also ``V_ctx`` float32 [B, 2] (log10 period, peak power) and ``V_band`` int64 [B];
- output ``V_vectors`` float32 [B, dim of the view].

A graph has one set of inputs, so a call for one view feeds the others a single empty window (one
masked step) and ignores their outputs. The model's config and readout (``layers``) are stored in
the file's metadata (``starcurve_config``, ``starcurve_layers``): an ``.onnx`` file is enough to
embed, and loading it parses JSON, never code.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import click
import numpy as np
import torch
from torch import nn

from starcurve.cli import OUTPUT_FILE, output_option
from starcurve.errors import StarcurveError
from starcurve.files import atomic_write
from starcurve.models.encoder import EncoderConfig
from starcurve.models.hub import Model, load_model

OPSET = 17


def view_inputs(cfg: EncoderConfig, view: str) -> list[str]:
    """The graph's input names for one view (see module docstring)."""
    names = ["mag", "mask"] if view == "pgram" else ["time", "mag", "mask", "err"]
    names += ["ctx", "band"] if cfg.multiview else []
    return [f"{view}_{n}" for n in names]


class _Float64Sin(nn.Module):
    """A sinusoidal encoding (``TimeEncoding``/``PhaseEncoding``) as torch computes it on the CPU.

    Real time stamps give angles up to ~1e5 rad, where one float32 ulp is 0.01 rad. torch's
    ``addcmul`` rounds the angle once (a fused multiply-add), onnxruntime's Mul then Add twice, which
    moved embeddings by up to 2e-4. Here the angle is formed in float64 and rounded once to float32
    (the fused result) and its sine taken in float64: the same numbers as torch to ~4e-8.
    """

    def __init__(self, enc: nn.Module):
        super().__init__()
        self.enc = enc

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angle = self.enc.phase.double() + t.float().unsqueeze(-1).double() * self.enc.freq.double()
        return torch.sin(angle.float().double()).float()


class _Graph(nn.Module):
    """Every view of an encoder side by side: the module that is traced into ONNX."""

    def __init__(self, model: Model, layers: str):
        super().__init__()
        self.encoder, self.layers, self.cfg = copy.deepcopy(model.encoder), layers, model.config
        for name in ("time_enc", "phase_enc"):
            if hasattr(self.encoder, name):
                setattr(self.encoder, name, _Float64Sin(getattr(self.encoder, name)))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, i = [], 0
        for view in self.cfg.views:
            keys = [n.split("_", 1)[1] for n in view_inputs(self.cfg, view)]
            a = dict(zip(keys, inputs[i : i + len(keys)]))
            i += len(keys)
            mag = a["mag"]
            time = a.get("time", torch.zeros_like(mag))
            err = a.get("err", torch.zeros_like(mag))
            template = self.cfg.template if view.startswith("fold") else 0
            out.append(
                self.encoder.window_vectors(
                    time,
                    mag,
                    a["mask"],
                    err,
                    self.layers,
                    view=view,
                    ctx=a.get("ctx"),
                    band=a.get("band"),
                    template=template,
                ).float()
            )
        return tuple(out)


def _dummy(cfg: EncoderConfig, view: str, b: int = 2, t: int = 7) -> dict[str, np.ndarray]:
    """A small batch for tracing, and the placeholder that a call for another view feeds."""
    t = cfg.n_bins if view == "pgram" else t
    rng = np.random.default_rng(0)
    a = {"time": np.sort(rng.normal(size=(b, t)), 1).astype(np.float32),
         "mag": rng.normal(size=(b, t)).astype(np.float32), "mask": np.ones((b, t), bool),
         "err": np.full((b, t), 0.05, np.float32), "ctx": np.tile(np.float32([0.0, 0.5]), (b, 1)),
         "band": np.zeros(b, np.int64)}  # fmt: skip
    return {f"{view}_{k}": a[k] for k in (n.split("_", 1)[1] for n in view_inputs(cfg, view))}


def export_onnx(model: Model, path: str | Path, *, layers: str | None = None) -> Path:
    """Write ``model``'s network as one ONNX file (atomically), dynamic batch and length."""
    import onnx

    cfg = model.config
    layers = layers or model.default_layers
    feeds = {}
    for view in cfg.views:
        feeds.update(_dummy(cfg, view))
    names = list(feeds)
    outputs = [f"{v}_vectors" for v in cfg.views]
    axes = {}  # per view its own names: views' batches and lengths differ within one call
    for view in cfg.views:
        for n in view_inputs(cfg, view):
            axes[n] = {0: f"{view}_batch"}
            if view != "pgram" and n.split("_", 1)[1] in ("time", "mag", "mask", "err"):
                axes[n][1] = f"{view}_length"
        axes[f"{view}_vectors"] = {0: f"{view}_batch"}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(
            _Graph(model, layers).eval(),
            tuple(torch.from_numpy(v) for v in feeds.values()),
            buf,
            dynamo=False,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in (
        ("starcurve_config", json.dumps(cfg.to_dict())),
        ("starcurve_layers", layers),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return atomic_write(path, lambda f: f.write(proto.SerializeToString()))


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise StarcurveError(
            "onnxruntime is not installed: pip install 'starcurve[onnx]'"
        ) from None
    return onnxruntime


def session(path: str | Path, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on an exported file (``threads``: intra-op threads)."""
    ort = _ort()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors derive from Exception only
        raise StarcurveError(
            f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:120]})"
        ) from None


class OnnxModel(Model):
    """A ``Model`` whose network runs in onnxruntime: the same ``embed_table`` / ``embed``."""

    def __init__(self, sess, config: EncoderConfig, layers: str, path: Path | None = None):
        self.session, self._config, self.layers = sess, config, layers
        self.encoder, self.path, self.last_report = None, path, None

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> OnnxModel:
        """An exported file; ``threads``: onnxruntime intra-op threads (default: all cores)."""
        return cls.from_session(session(path, threads), Path(path))

    @classmethod
    def from_session(cls, sess, path: Path | None = None) -> OnnxModel:
        """Wrap an ``onnxruntime.InferenceSession`` of an exported file."""
        meta = sess.get_modelmeta().custom_metadata_map
        if "starcurve_config" not in meta:
            raise StarcurveError(
                f"{path or 'session'}: not a starcurve ONNX export (no starcurve_config metadata)"
            )
        cfg = EncoderConfig.from_dict(json.loads(meta["starcurve_config"]))
        return cls(sess, cfg, meta.get("starcurve_layers", "last"), path)

    @property
    def config(self) -> EncoderConfig:
        return self._config

    @property
    def default_layers(self) -> str:
        return self.layers

    def __repr__(self) -> str:
        return f"OnnxModel({self.config.name!r}, layers={self.layers!r}, path={self.path})"

    def network(self, batch, *, layers, view, template) -> np.ndarray:
        if layers != self.layers:
            raise StarcurveError(
                f"{self.path}: exported with layers={self.layers!r}; "
                f"re-export with --layers {layers} to use that readout"
            )
        feeds = {}
        for other in self.config.views:  # other views: one tiny placeholder window each
            feeds.update(
                _dummy(self.config, other, b=1, t=1)
                if other != view
                else {n: batch[n.split("_", 1)[1]] for n in view_inputs(self.config, view)}
            )
        (out,) = self.session.run([f"{view}_vectors"], feeds)
        return out


@click.command("export")
@click.option(
    "--model", "model_dir", default=None, help="Model folder (default: the shipped model)."
)
@output_option(OUTPUT_FILE, "The ONNX file (OUT.onnx).")
@click.option(
    "--layers",
    type=click.Choice(["last", "weighted"]),
    default=None,
    help="Readout baked into the graph [default: the model's].",
)
def export_cmd(model_dir, output, layers) -> None:
    """Export a model's network to ONNX (dynamic batch and length); embed with
    ``starcurve.models.export.OnnxModel.load(OUT).embed(...)``."""
    model = load_model(model_dir)
    export_onnx(model, output, layers=layers)
    click.echo(
        f"wrote {output} ({model.config.name}, views {', '.join(model.config.views)}, "
        f"dim {model.dim})"
    )
