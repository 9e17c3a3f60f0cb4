"""The light-curve transformer encoder (Astromer 1 / Astromer 2 shapes, and ours), in one file.

Input: a window of ``n`` observations (time and magnitude zero-mean per window, as ``windows`` gives
them), a validity mask and, during pretraining, a ``hidden`` mask of the positions whose magnitudes the
model must not see. Hidden magnitudes are replaced *before* the network (zero for ``a1``, a trainable
[MASK] scalar for ``a2``, a learned vector for ``sc1``) and hidden and padded positions are removed
from the attention keys, so nothing about a hidden value can reach any output.

Named configurations (``get_config``):

- ``a1``: Astromer 1 shape. 2 post-LN blocks without residual connections, 4 heads x 64, FFN
  256 -> 128 (tanh) -> 256. 660,736 encoder parameters, 661,505 with the reconstruction head.
- ``a2``: Astromer 2 shape. 6 post-LN blocks, FFN 512, a learned Linear(256, 256) projection of each
  sub-layer's input added before its LayerNorm, a trainable scalar [MASK] token, inverse-error
  weighted loss. 3,952,640 encoder parameters, 3,953,410 with the head and the token.
- ``sc1``: ours. Pre-LN residual blocks (d_model 128, 4 blocks, FFN 256 GELU, no dropout: the
  model is small and sees each window once or twice, it underfits rather than overfits), log-spaced time frequencies
  covering periods 0.02 d .. 5000 d, magnitude errors as input, each window scaled to unit spread by
  its visible points with the log of that scale fed back in (shape and amplitude both kept), and a
  loss measured in those scaled units so that every survey and amplitude counts alike.

- ``pv1``: ours, period-aware (``data/views.py``). The same kind of blocks (d_model 96, 3 pre-LN
  blocks) read four views of each light curve, each a sequence of tokens: ``raw`` windows (real
  time stamps), the light curve folded at the periodogram's best period (``fold1``) and at twice it
  (``fold2``), with a harmonic encoding of the phase, and the periodogram (``pgram``: one token per
  log-frequency bin, a learned position per bin). Every token also gets the view's embedding, the
  band's embedding and a projection of (log10 period, peak power). Pretrained by masked
  reconstruction on the raw and folded sequences; the readout adds the model's own prediction of
  each folded curve at 32 phases (``template``). A cross-view contrastive loss (InfoNCE across the
  views of one light curve, ``contrast > 0``, which also learns readout layer weights) exists but
  lowered FS-1 scores in the ablation (docs/benchmarks.md), so ``pv1`` does not use it. The period
  comes from all points of the light curve (a two-number summary), so it is the one input that
  hidden magnitudes contribute to.

Any configuration can also be a JSON file with the fields of ``EncoderConfig``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from starcurve.errors import StarcurveError, read_json_object

LN_EPS = 1e-6  # as the TensorFlow Astromer (Keras LayerNormalization epsilon)


@dataclass
class EncoderConfig:
    name: str = "custom"
    window: int = 200  # observations per window
    d_model: int = 256
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    activation: str = "tanh"  # tanh | gelu | relu
    dropout: float = 0.1
    norm: str = "post"  # post: LayerNorm after each sub-layer (Astromer); pre: pre-LN residual
    residual: str = "none"  # post-LN only: none (a1) | proj (a2's learned projection) | add
    time_encoding: str = "astromer"  # astromer: 1/10000^(2i/d); logspaced: periods min..max_period
    min_period: float = 0.02  # days (logspaced only)
    max_period: float = 5000.0
    mask_token: str = "zero"  # zero (a1) | scalar (a2) | vector (sc1): what replaces hidden values
    use_err: bool = False  # magnitude errors as a second input channel
    scale: bool = False  # scale windows by their visible spread, feed log10(scale), loss in units
    loss_weights: str = "none"  # none | inv_err (a2: 1/sigma min-max scaled in the window + 1e-3)
    loss_clip: float | None = None  # cap on squared scaled residuals (outlier points stop pulling)
    layer_weights: list[float] | None = None  # logits for layers="weighted" (None: uniform)
    views: list[str] = field(default_factory=lambda: ["raw"])  # raw | fold1 | fold2 | pgram
    fold_window: int = 100  # points per folded window
    fold_windows_max: int = 1  # embedding: at most this many folded windows per light curve
    n_bins: int = 64  # periodogram bins (pgram view)
    bands: list[str] = field(default_factory=list)  # band vocabulary of the band embedding
    contrast: float = 0.0  # weight of the cross-view contrastive loss (> 0: learned layer weights)
    temperature: float = 0.1
    template: int = 0  # readout: + the predicted folded curve at this many phases per fold view
    readout_period: bool = (
        False  # readout: + log10 spread per raw/fold window, (log10 P, power) for pgram
    )

    def __post_init__(self) -> None:
        checks = {
            "activation": ("tanh", "gelu", "relu"),
            "norm": ("post", "pre"),
            "residual": ("none", "proj", "add"),
            "time_encoding": ("astromer", "logspaced"),
            "mask_token": ("zero", "scalar", "vector"),
            "loss_weights": ("none", "inv_err"),
        }
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise StarcurveError(f"config {key}={getattr(self, key)!r}: use one of {allowed}")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise StarcurveError("config: d_model must be even and divisible by n_heads")
        if min(self.window, self.d_model, self.n_layers, self.n_heads, self.d_ff) < 1:
            raise StarcurveError("config: window, d_model, n_layers, n_heads, d_ff must be >= 1")
        if self.layer_weights is not None and len(self.layer_weights) != self.n_layers + 1:
            raise StarcurveError(f"config: layer_weights needs {self.n_layers + 1} numbers")
        bad = sorted(set(self.views) - set(VIEWS))
        if bad or not self.views or len(set(self.views)) != len(self.views):
            raise StarcurveError(f"config views={self.views}: use distinct names among {VIEWS}")
        if self.contrast > 0 and len(self.views) < 2:
            raise StarcurveError("config: a contrastive loss needs at least two views")

    @property
    def multiview(self) -> bool:
        """Whether the model has view, band and period inputs (pv1), not just raw windows."""
        return self.views != ["raw"] or bool(self.bands)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise StarcurveError(f"config: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


VIEWS = ("raw", "fold1", "fold2", "pgram")
BANDS = ["V", "B", "R", "I", "G", "BP", "RP", "u", "g", "r", "i", "z", "y", "Hp", "J", "H", "K"]

CONFIGS = {
    "a1": EncoderConfig(name="a1"),
    "a2": EncoderConfig(
        name="a2",
        n_layers=6,
        d_ff=512,
        residual="proj",
        mask_token="scalar",
        loss_weights="inv_err",
    ),
    "sc1": EncoderConfig(
        name="sc1",
        d_model=128,
        n_layers=4,
        n_heads=4,
        d_ff=256,
        activation="gelu",
        dropout=0.0,
        norm="pre",
        residual="add",
        time_encoding="logspaced",
        mask_token="vector",
        use_err=True,
        scale=True,
        loss_clip=25.0,
    ),
    "pv1": EncoderConfig(
        name="pv1",
        d_model=96,
        n_layers=3,
        n_heads=4,
        d_ff=192,
        activation="gelu",
        dropout=0.0,
        norm="pre",
        residual="add",
        time_encoding="logspaced",
        mask_token="vector",
        use_err=True,
        scale=True,
        loss_clip=25.0,
        views=["raw", "fold1", "fold2", "pgram"],
        bands=list(BANDS),
        fold_windows_max=8,  # template: 0 (the predicted folds lowered development-split F1)
    ),
}


def get_config(name_or_path: str | Path | EncoderConfig) -> EncoderConfig:
    """A named configuration (``a1``, ``a2``, ``sc1``) or a JSON file of ``EncoderConfig`` fields."""
    if isinstance(name_or_path, EncoderConfig):
        return name_or_path
    if str(name_or_path) in CONFIGS:
        return EncoderConfig.from_dict(CONFIGS[str(name_or_path)].to_dict())
    path = Path(name_or_path)
    if not path.is_file():
        raise StarcurveError(
            f"config {name_or_path!r}: use one of {sorted(CONFIGS)} or a JSON file"
        )
    d = read_json_object(path, "JSON config")
    return EncoderConfig.from_dict(d.get("config", d))  # also accepts a model folder's config.json


class TimeEncoding(nn.Module):
    """Sinusoidal encoding of real time stamps (days), no parameters."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.d_model
        if cfg.time_encoding == "astromer":
            # Exactly as published: dimension i uses angle t / 10000^(2i/d), sin on even i, cos on odd i.
            i = torch.arange(d, dtype=torch.float64)
            freq = 1.0 / 10000 ** (2 * i / d)
            is_cos = i % 2 == 1
        else:
            # Pairs (sin, cos) of one angular frequency each, periods log-spaced min..max_period.
            periods = torch.logspace(math.log10(cfg.min_period), math.log10(cfg.max_period), d // 2)
            freq = (2 * math.pi / periods.double()).repeat_interleave(2)
            is_cos = torch.arange(d) % 2 == 1
        self.register_buffer("freq", freq.float(), persistent=False)
        # cos(a) = sin(a + pi/2): one sin over all dimensions instead of sin, cos and a select
        self.register_buffer("phase", is_cos.float() * (math.pi / 2), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(torch.addcmul(self.phase, t.float().unsqueeze(-1), self.freq))


class PhaseEncoding(TimeEncoding):
    """Harmonics 1..d/2 of a phase in [0, 1): (sin, cos) of 2 pi k phase; periodic, so 0 == 1."""

    def __init__(self, cfg: EncoderConfig):
        nn.Module.__init__(self)
        k = torch.arange(1, cfg.d_model // 2 + 1, dtype=torch.float64)
        self.register_buffer(
            "freq", (2 * math.pi * k).repeat_interleave(2).float(), persistent=False
        )
        is_cos = torch.arange(cfg.d_model) % 2 == 1
        self.register_buffer("phase", is_cos.float() * (math.pi / 2), persistent=False)


class Attention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # = three Linear(d, d) with bias
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :])
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """One encoder block: attention then feed-forward, post-LN (Astromer) or pre-LN residual."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        d = cfg.d_model
        self.norm_first, self.residual = cfg.norm == "pre", cfg.residual
        self.attn = Attention(cfg)
        act = {"tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU}[cfg.activation]
        self.ffn = nn.Sequential(nn.Linear(d, cfg.d_ff), act(), nn.Linear(cfg.d_ff, d))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=LN_EPS), nn.LayerNorm(d, eps=LN_EPS)
        self.drop = nn.Dropout(cfg.dropout)
        if self.residual == "proj" and not self.norm_first:
            self.proj1, self.proj2 = nn.Linear(d, d), nn.Linear(d, d)

    def skip(self, i: int, x: torch.Tensor) -> torch.Tensor | float:
        if self.residual == "proj":
            return (self.proj1 if i == 1 else self.proj2)(x)
        return x if self.residual == "add" else 0.0

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self.attn(self.ln1(x), keys))
            return x + self.drop(self.ffn(self.ln2(x)))
        x = self.ln1(self.skip(1, x) + self.drop(self.attn(x, keys)))
        return self.ln2(self.skip(2, x) + self.drop(self.ffn(x)))


class Encoder(nn.Module):
    """Transformer encoder over windows, with the per-step reconstruction head used in pretraining."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        d = cfg.d_model
        self.time_enc = TimeEncoding(cfg)
        self.inp = nn.Linear(2 if cfg.use_err else 1, d)
        if cfg.mask_token == "scalar":
            self.mask_token = nn.Parameter(torch.zeros(()))
        elif cfg.mask_token == "vector":
            self.mask_token = nn.Parameter(torch.zeros(d))
        if cfg.scale:
            self.scale_in = nn.Linear(1, d)
        if cfg.multiview:
            self.phase_enc = PhaseEncoding(cfg)
            self.view_emb = nn.Embedding(len(cfg.views), d)
            self.band_emb = nn.Embedding(len(cfg.bands) + 1, d)  # 0: a band not in the vocabulary
            self.ctx_in = nn.Linear(2, d)
            if "pgram" in cfg.views:
                self.pg_in = nn.Linear(1, d)
                self.bin_pos = nn.Parameter(torch.randn(cfg.n_bins, d) * 0.02)
        if cfg.contrast > 0:
            self.layer_logits = nn.Parameter(torch.zeros(cfg.n_layers + 1))
            self.proj = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(d, eps=LN_EPS) if cfg.norm == "pre" else nn.Identity()
        self.head = nn.Sequential(nn.LayerNorm(d, eps=LN_EPS), nn.Linear(d, 1))
        if cfg.norm == "pre":  # GPT-2 style: scale the residual writes down with depth
            for name, p in self.named_parameters():
                if name.endswith(("attn.out.weight", "ffn.2.weight")):
                    nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    def encoder_parameters(self) -> int:
        """Parameters without the reconstruction head and the [MASK] token (as the papers count)."""
        skip = {id(p) for p in self.head.parameters()}
        skip |= {id(p) for p in getattr(self, "proj", nn.Identity()).parameters()}
        if isinstance(getattr(self, "mask_token", None), nn.Parameter):
            skip.add(id(self.mask_token))
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    def normalise(self, mag, mask, hidden, view: str = "raw"):
        """Per-window offset and scale from the visible points only (sc1), else (0, 1)."""
        if not self.config.scale or view == "pgram":
            one = mag.new_ones(mag.shape[0])
            return mag.new_zeros(mag.shape[0]), one
        vis = (mask & ~hidden).to(mag.dtype)
        n = vis.sum(1).clamp(min=1)
        mean = (mag * vis).sum(1) / n
        std = (((mag - mean[:, None]) ** 2 * vis).sum(1) / n).sqrt()
        return mean, std.clamp(min=1e-3)

    def encode(
        self, time, mag, mask, err=None, hidden=None, *, view: str = "raw", ctx=None, band=None
    ) -> list[torch.Tensor]:
        """Every layer's states [B, T, d]: the input embedding, then each block's output.

        For pre-LN configurations each state passes through the final LayerNorm. Multi-view
        configurations also take ``view`` (a name of ``config.views``), ``ctx`` [B, 2]
        (log10 period, peak power) and ``band`` [B] (index into ``config.bands``, + 1; 0 unknown).
        For ``view="pgram"`` ``mag`` holds the periodogram bins and ``time`` is not used.
        """
        cfg = self.config
        mask = mask.bool()
        hidden = torch.zeros_like(mask) if hidden is None else hidden.bool() & mask
        if view not in cfg.views:
            raise StarcurveError(f"model {cfg.name!r} has no view {view!r} (views: {cfg.views})")
        if view == "pgram":
            h = (
                self.pg_in(mag.unsqueeze(-1).to(self.pg_in.weight.dtype))
                + self.bin_pos[: mag.shape[1]]
            )
            return self._blocks(self._context(h, view, ctx, band), mask, hidden)
        shift, scale = self.normalise(mag, mask, hidden, view)
        x = ((mag - shift[:, None]) / scale[:, None]).unsqueeze(-1)
        if cfg.mask_token == "zero":
            x = x.masked_fill(hidden.unsqueeze(-1), 0.0)
        elif cfg.mask_token == "scalar":
            x = torch.where(hidden.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        if cfg.use_err:
            if err is None:
                raise StarcurveError(f"model {cfg.name!r} uses magnitude errors as input: pass err")
            e = (err / scale[:, None]).clamp(max=10.0).masked_fill(hidden | ~mask, 0.0)
            x = torch.cat([x, e.unsqueeze(-1).to(x.dtype)], -1)
        h = self.inp(x)
        if cfg.mask_token == "vector":
            h = torch.where(hidden.unsqueeze(-1), self.mask_token.to(h.dtype), h)
        pos = self.phase_enc if view.startswith("fold") else self.time_enc
        h = h + pos(time).to(h.dtype)
        if cfg.scale:
            h = h + self.scale_in(scale.log10()[:, None, None].to(h.dtype))
        if cfg.multiview:
            h = self._context(h, view, ctx, band)
        return self._blocks(h, mask, hidden)

    def _context(self, h, view, ctx, band):
        """Add the view, band and (log10 period, peak power) embeddings to every token."""
        cfg = self.config
        b = h.shape[0]
        h = h + self.view_emb.weight[cfg.views.index(view)].to(h.dtype)
        band = torch.zeros(b, dtype=torch.long, device=h.device) if band is None else band.long()
        h = h + self.band_emb(band)[:, None, :].to(h.dtype)
        if ctx is None:
            raise StarcurveError(f"model {cfg.name!r} needs the period inputs (ctx) of its views")
        return h + self.ctx_in(ctx.to(self.ctx_in.weight.dtype))[:, None, :].to(h.dtype)

    def _blocks(self, h, mask, hidden) -> list[torch.Tensor]:
        cfg = self.config
        keys = mask & ~hidden
        keys = keys | ~keys.any(1, keepdim=True)  # a window with no visible point: avoid NaN rows
        states = [self.drop(h)]
        for block in self.blocks:
            states.append(block(states[-1], keys))
        # pre-LN: the residual stream is unnormalised; the final LayerNorm puts every layer on one scale
        return [self.final_norm(s) for s in states] if cfg.norm == "pre" else states

    def forward(
        self,
        time,
        mag,
        mask,
        err=None,
        hidden=None,
        *,
        view: str = "raw",
        ctx=None,
        band=None,
        states: bool = False,
    ):
        """Reconstruction: predicted magnitudes [B, T] in the input's units, and the window scale [B]
        (and every layer's states, with ``states=True``)."""
        mask_b = mask.bool()
        hid = torch.zeros_like(mask_b) if hidden is None else hidden.bool() & mask_b
        shift, scale = self.normalise(mag, mask_b, hid, view)
        all_states = self.encode(time, mag, mask, err, hidden, view=view, ctx=ctx, band=band)
        pred = self.head(all_states[-1]).squeeze(-1).float()
        out = pred * scale[:, None] + shift[:, None], scale
        return (*out, all_states) if states else out

    def pool(self, states: list[torch.Tensor], mask: torch.Tensor, layers: str = "weighted"):
        """One vector per window: states averaged over ``mask``; ``last`` layer or ``weighted`` mix
        (learned weights when the model has them, else ``config.layer_weights``, else uniform)."""
        m = mask.to(states[0].dtype).unsqueeze(-1)
        n = m.sum(1).clamp(min=1)
        if layers == "last":
            return (states[-1] * m).sum(1) / n
        if layers != "weighted":
            raise StarcurveError(f"layers={layers!r}: use 'last' or 'weighted'")
        if hasattr(self, "layer_logits"):
            w = torch.softmax(self.layer_logits.float(), 0).to(states[0].dtype)
        else:
            w = self.config.layer_weights or [0.0] * len(states)
            w = torch.softmax(torch.tensor(w, dtype=torch.float32), 0).to(states[0].dtype)
        return sum(wi * (s * m).sum(1) / n for wi, s in zip(w, states))

    @torch.no_grad()
    def window_vectors(
        self,
        time,
        mag,
        mask,
        err=None,
        layers: str = "last",
        *,
        view: str = "raw",
        ctx=None,
        band=None,
        template: int = 0,
    ) -> torch.Tensor:
        """One vector per window: states averaged over the valid steps (``last`` or ``weighted``).

        ``template=K`` (folded views): also the model's prediction of the folded light curve at K
        evenly spaced phases, in units of the window's spread: K hidden query tokens that attend
        to the observations (nothing attends to them, so the pooled part is unchanged).
        ``config.readout_period``: also the window's spread (log10, magnitudes) for raw and folded
        views, and (log10 period, peak power) for the periodogram view.
        """
        if not template:
            vec = self.pool(
                self.encode(time, mag, mask, err, view=view, ctx=ctx, band=band), mask, layers
            )
        else:
            b, n = mag.shape
            q = torch.arange(template, dtype=time.dtype, device=time.device) / template
            cat = lambda x, fill: torch.cat([x, fill.expand(b, template)], 1)
            zero = mag.new_zeros(())
            one = torch.ones((), dtype=torch.bool, device=mask.device)
            mask_q = cat(mask.bool(), one)
            hidden = cat(torch.zeros_like(mask, dtype=torch.bool), one)
            mag_q = cat(mag, zero)
            pred, scale, states = self(
                cat(time, q),
                mag_q,
                mask_q,
                cat(err, zero),
                hidden,
                view=view,
                ctx=ctx,
                band=band,
                states=True,
            )
            shift, _ = self.normalise(mag_q, mask_q, hidden, view)
            curve = (pred[:, n:] - shift[:, None]) / scale[:, None]
            vec = torch.cat([self.pool([s[:, :n] for s in states], mask, layers), curve], 1)
        if not self.config.readout_period:
            return vec
        if view == "pgram":  # the period and its peak power, as the model reads them
            return torch.cat([vec, ctx.to(vec.dtype)], 1)
        _, scale = self.normalise(mag, mask.bool(), torch.zeros_like(mask, dtype=torch.bool), view)
        return torch.cat([vec, torch.log10(scale).to(vec.dtype)[:, None]], 1)  # the amplitude


def build(cfg: str | Path | EncoderConfig, seed: int | None = 0) -> Encoder:
    """A freshly initialised encoder (seeded, so the same config gives the same weights)."""
    cfg = get_config(cfg)
    if seed is None:
        return Encoder(cfg)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Encoder(cfg)
