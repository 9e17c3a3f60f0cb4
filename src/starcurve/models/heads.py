"""The Astromer 2 classifier head on the encoder (the network; ``starcurve.train.heads`` trains it).

The head: average the input embedding and every block output over the valid steps of a window, mix
them with learned softmax weights (one scalar per layer, uniform at the start), then an MLP
1024-512-256 (ReLU, LayerNorm). Predictions are per object: the mean of the class probabilities of
its consecutive windows. Saved as a classifier folder (``models/folder.py``, head kind "pooled").
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from starcurve.data.windows import length_batches, windows
from starcurve.models.encoder import Encoder


class WeightedPooling(nn.Module):
    """Softmax-weighted sum of per-layer window vectors [B, L, d] -> [B, d] (uniform at start)."""

    def __init__(self, n_states: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_states))

    def forward(self, layer_means: torch.Tensor) -> torch.Tensor:
        return torch.einsum("l,bld->bd", torch.softmax(self.logits, 0), layer_means)


def mlp(d_in: int, n_classes: int, hidden=(1024, 512, 256)) -> nn.Sequential:
    """Astromer 2 classifier MLP: Linear -> ReLU -> LayerNorm per hidden layer, then logits."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.ReLU(), nn.LayerNorm(h)]
        d_in = h
    return nn.Sequential(*layers, nn.Linear(d_in, n_classes))


def layer_means(encoder: Encoder, time, mag, mask, err=None) -> torch.Tensor:
    """Every layer's states averaged over the valid steps of each window: [B, n_layers + 1, d]."""
    states = encoder.encode(time, mag, mask, err)
    m = mask.to(states[0].dtype).unsqueeze(-1)
    n = m.sum(1).clamp(min=1)
    return torch.stack([(s * m).sum(1) / n for s in states], 1)


class Classifier(nn.Module):
    """Encoder + weighted pooling + MLP. ``forward`` takes window tensors or cached ``feats``."""

    def __init__(self, encoder: Encoder, classes: list[str]):
        super().__init__()
        self.encoder, self.classes = encoder, list(classes)
        cfg = encoder.config
        self.pool = WeightedPooling(cfg.n_layers + 1)
        self.mlp = mlp(cfg.d_model, len(classes))

    def forward(self, batch: dict) -> torch.Tensor:
        feats = batch.get("feats")
        if feats is None:
            feats = layer_means(
                self.encoder, batch["time"], batch["mag"], batch["mask"], batch["err"]
            )
        return self.mlp(self.pool(feats))

    def set_encoder_trainable(self, on: bool) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(on)

    @torch.inference_mode()
    def predict_proba(self, table: pa.Table, batch_size: int = 256) -> np.ndarray:
        """Class probabilities per row of a clean table: mean over the row's windows."""
        self.eval()
        w = windows(table, self.encoder.config.window, mode="consecutive")
        probs = _window_logits(self, w, batch_size).softmax(-1).numpy()
        return _per_row(probs, w.row, table.num_rows)


def _window_logits(clf: Classifier, w, batch_size: int) -> torch.Tensor:
    count = w.mask.sum(1)
    out = torch.zeros(len(count), len(clf.classes))
    for idx in length_batches(count, batch_size):
        n = max(int(count[idx].max()), 1)
        b = {
            k: torch.from_numpy(np.ascontiguousarray(getattr(w, k)[idx, :n]))
            for k in ("time", "mag", "mask", "err")
        }
        out[torch.from_numpy(idx)] = clf(b).float()
    return out


def _per_row(values: np.ndarray, row: np.ndarray, n_rows: int) -> np.ndarray:
    sums = np.zeros((n_rows, values.shape[1]))
    np.add.at(sums, row, values)
    return sums / np.maximum(np.bincount(row, minlength=n_rows), 1)[:, None]
