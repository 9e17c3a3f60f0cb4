"""Streaming loader: sharded Parquet -> cleaned -> encoder windows -> PyTorch batches.

Reads ``batch_rows`` light curves at a time (memory does not grow with the dataset), cleans them with
the one ``clean`` function, cuts windows with the one ``windows`` function and shuffles within a
buffer. Row groups are split across DDP ranks and DataLoader workers, so every process sees a
disjoint part of the data.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import IterableDataset, get_worker_info

from starcurve.data import schema as S
from starcurve.data.clean import MIN_OBS, clean
from starcurve.data.io import iter_tables
from starcurve.data.windows import windows
from starcurve.errors import StarcurveError


def window_tensors(table: pa.Table, n: int, mode: str = "consecutive", rng=None) -> dict:
    """Windows of a clean table as float32 tensors: time, mag, err, mask and row."""
    w = windows(table, n, mode=mode, rng=rng)
    return {
        "time": torch.from_numpy(w.time),
        "mag": torch.from_numpy(w.mag),
        "err": torch.from_numpy(w.err),
        "mask": torch.from_numpy(w.mask),
        "row": torch.from_numpy(w.row),
    }


class WindowStream(IterableDataset):
    """Endless (``epochs=None``) or finite stream of training batches of random windows."""

    def __init__(
        self,
        paths,
        *,
        n: int = 200,
        batch_size: int = 64,
        band: str | None = None,
        min_obs: int = MIN_OBS,
        exclude: set[str] | None = None,
        batch_rows: int = 2048,
        epochs: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        self.paths, self.n, self.batch_size, self.band = paths, n, batch_size, band
        self.min_obs, self.exclude, self.batch_rows = min_obs, exclude, batch_rows
        self.epochs, self.seed, self.rank, self.world = epochs, seed, rank, world

    def _tables(self, epoch: int) -> Iterator[pa.Table]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        part, parts = self.rank * nw + wid, self.world * nw
        for i, table in enumerate(
            iter_tables(self.paths, batch_rows=self.batch_rows, band=self.band)
        ):
            if i % parts != part:
                continue
            if self.exclude:
                keep = pc.invert(pc.is_in(table.column(S.ID), pa.array(sorted(self.exclude))))
                table = table.filter(keep)
            table, _ = clean(table, min_obs=self.min_obs)
            if table.num_rows:
                yield table

    def __iter__(self) -> Iterator[dict]:
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            rng = np.random.default_rng([self.seed, epoch, self.rank])
            seen = 0
            for table in self._tables(epoch):
                seen += table.num_rows
                table = table.take(pa.array(rng.permutation(table.num_rows)))
                batch = window_tensors(table, self.n, mode="random", rng=rng)
                for s in range(0, len(batch["row"]), self.batch_size):
                    yield {k: v[s : s + self.batch_size] for k, v in batch.items()}
            if not seen:
                raise StarcurveError(f"no usable light curves in {self.paths} for this process")
            epoch += 1
