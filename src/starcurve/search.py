"""Similarity search and anomaly ranking over embeddings: ``starcurve index``, ``similar``, ``anomalies``.

The engine is FAISS (``pip install 'starcurve[search]'``, the ``faiss-cpu`` package), imported only
here and only when used. Vectors come from ``starcurve embed`` (``object_id``, ``band``,
``embedding``; other columns such as ``label`` are kept beside the ids) or any Parquet file of that
shape, e.g. feature vectors. Before indexing they are standardised with the indexed set's own mean
and standard deviation (stored), so that no dimension dominates by its scale; ``metric="l2"``
(default) ranks by Euclidean distance, ``"cosine"`` by the angle between the standardised vectors.

Exact or approximate, by size (``kind="auto"``):

- fewer than ``EXACT_MAX`` vectors: ``IndexFlat``, exact. A query scans every vector: 2-7 ms at
  10^5 vectors of 128 numbers on one core of a 2-core AMD EPYC, 23-26 ms at 10^6; exact answers
  are worth that up to 10^5.
- ``EXACT_MAX`` or more: ``IndexIVFFlat``, approximate: the vectors are split into ``nlist`` cells
  by k-means (nlist = 4 sqrt(n) rounded to a power of two) and a query scans the ``nprobe`` nearest
  cells only (``NPROBE``; ``similar --nprobe`` changes it). ``benchmarks/search_speed.py`` measures
  recall@10 against exact search, latency and memory at 10^4, 10^5 and 10^6 vectors
  (``docs/search.md``).

An index folder holds ``index.faiss`` (FAISS's own binary format, read by ``faiss.read_index``: no
code runs on load, no pickle), ``ids.parquet`` (one row per vector) and ``index.json`` (kind,
metric, dimension, size, cells, the standardisation, the input), written last: a folder without a
valid ``index.json`` is not an index. A damaged folder gives one clear error line.

``similar`` never returns the query object itself (any of its bands). ``anomalies`` ranks every
vector by its mean distance to its ``k`` nearest other objects (a point far from all others is
odd), with an isolation forest (scikit-learn) as a second, independent score.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from starcurve.cli import (
    OUTPUT_DIR,
    OUTPUT_FILE,
    input_option,
    output_option,
    seed_option,
    threads_option,
)
from starcurve.data import schema as S
from starcurve.data.io import read_parquet, write_parquet
from starcurve.errors import StarcurveError, read_json_object
from starcurve.files import atomic_write

log = logging.getLogger("starcurve")
FORMAT, VERSION = "starcurve-index", 1
EXACT_MAX = 100_000  # below: exact search; from here on: IVF (see the module docstring)
NPROBE = 32  # cells scanned per query by an IVF index
VECTOR = "embedding"
FILES = ("index.faiss", "ids.parquet", "index.json")


def faiss():
    """The faiss module, or one clear error saying how to install it."""
    try:
        import faiss as _faiss
    except ImportError:
        raise StarcurveError(
            "similarity search needs FAISS: pip install 'starcurve[search]' (or pip install faiss-cpu)"
        ) from None
    return _faiss


# ----------------------------------------------------------------------------- vectors


def read_vectors(source, what: str | None = None) -> tuple[pa.Table, np.ndarray]:
    """(ids table, float32 vectors) of an embeddings file (``object_id``, ``band``, ``embedding``)
    or table; every other column is kept in the ids table. Raises a clear error for a missing or
    damaged file, missing columns, vectors of different lengths or values that are not finite."""
    what = what or str(source)
    if isinstance(source, pa.Table):
        table = source
    else:
        path = Path(source)
        if not path.is_file():
            raise StarcurveError(f"{what}: no such file")
        table = read_parquet(path)
    missing = [c for c in (S.ID, VECTOR) if c not in table.column_names]
    if missing:
        raise StarcurveError(
            f"{what}: missing column(s) {missing}; an embeddings file (starcurve "
            f"embed) has object_id, band, embedding; this one has {table.column_names}"
        )
    if table.num_rows == 0:
        raise StarcurveError(f"{what}: no vectors")
    col = table.column(VECTOR).combine_chunks()
    if not (
        pa.types.is_list(col.type)
        or pa.types.is_large_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
    ):
        raise StarcurveError(
            f"{what}: column 'embedding' must hold lists of numbers, not {col.type}"
        )
    lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if col.null_count or lens.min() != lens.max() or lens[0] == 0:
        raise StarcurveError(
            f"{what}: every embedding must have the same, non-zero length "
            f"(found lengths {sorted(set(lens.tolist()))[:5]}, {col.null_count} empty)"
        )
    try:
        X = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(lens), -1)
    except (pa.ArrowInvalid, ValueError, TypeError) as e:
        raise StarcurveError(f"{what}: embeddings are not numbers ({e})") from None
    bad = ~np.isfinite(X).all(1)
    if bad.any():
        ids = table.column(S.ID).take(pa.array(np.flatnonzero(bad)[:3])).to_pylist()
        raise StarcurveError(
            f"{what}: {int(bad.sum())} vector(s) hold NaN or infinite values, e.g. "
            f"{ids}; drop or re-embed them"
        )
    ids = table.drop_columns([VECTOR])
    if S.BAND not in ids.column_names:
        ids = ids.append_column(S.BAND, pa.array([""] * ids.num_rows, pa.string()))
    ids = ids.set_column(ids.schema.get_field_index(S.ID), S.ID, ids.column(S.ID).cast(pa.string()))
    return ids, X


# ----------------------------------------------------------------------------- the index


@dataclass
class Index:
    """A FAISS index of standardised vectors with the ids of its rows."""

    index: object  # a faiss.Index
    ids: pa.Table  # object_id, band, ... one row per vector
    meta: dict  # what index.json holds

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    def __len__(self) -> int:
        return self.ids.num_rows

    def prepare(self, X: np.ndarray) -> np.ndarray:
        """Vectors standardised as the index's own (and unit length for the cosine metric)."""
        X = np.asarray(X, np.float32)
        if X.ndim != 2 or X.shape[1] != self.meta["dim"]:
            raise StarcurveError(
                f"query vectors have {X.shape[-1]} numbers; the index holds "
                f"{self.meta['dim']}-number vectors (same model and input?)"
            )
        Z = np.ascontiguousarray((X - np.float32(self.meta["mean"])) / np.float32(self.meta["std"]))
        if self.meta["metric"] == "cosine":
            faiss().normalize_L2(Z)
        return Z

    def search(
        self, Z: np.ndarray, k: int, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows) [queries, k] of prepared vectors; rows -1 (distance inf) past the end.
        Distances: Euclidean for l2, 1 - cosine similarity for cosine."""
        k = max(1, min(int(k), len(self)))
        if self.kind == "ivf":
            faiss().extract_index_ivf(self.index).nprobe = int(nprobe or self.meta["nprobe"])
        D, I = self.index.search(np.ascontiguousarray(Z, np.float32), k)
        D = 1.0 - D if self.meta["metric"] == "cosine" else np.sqrt(np.maximum(D, 0.0))
        return np.where(I < 0, np.inf, D), I

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored (prepared) vectors of some rows."""
        if self.kind == "ivf":
            faiss().extract_index_ivf(self.index).make_direct_map()
        rows = np.asarray(rows, np.int64)
        if len(rows) == len(self) and (rows == np.arange(len(self))).all():
            return self.index.reconstruct_n(0, len(self))
        return self.index.reconstruct_batch(rows)

    def neighbours(self, Z: np.ndarray, query_ids, k: int, nprobe: int | None = None):
        """The k nearest rows of each prepared query whose object is not the query's own:
        (distances, rows) [queries, k], -1 / inf where fewer exist."""
        per_object = pc.max(pc.value_counts(self.ids.column(S.ID)).field("counts")).as_py()
        D, I = self.search(Z, k + per_object, nprobe)
        own = np.asarray(self.ids.column(S.ID).to_pylist(), dtype=object)
        same = (I >= 0) & (own[np.maximum(I, 0)] == np.asarray(query_ids, dtype=object)[:, None])
        D, I = np.where(same, np.inf, D), np.where(same, -1, I)
        order = np.argsort(D, axis=1, kind="stable")[:, :k]
        D, I = np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)
        if D.shape[1] < k:  # fewer objects than k: pad
            pad = k - D.shape[1]
            D = np.pad(D, ((0, 0), (0, pad)), constant_values=np.inf)
            I = np.pad(I, ((0, 0), (0, pad)), constant_values=-1)
        return D, I

    def save(self, folder) -> Path:
        """Write the index folder; ``index.json`` last, so a half-written folder never loads."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = faiss().serialize_index(self.index)
        atomic_write(folder / "index.faiss", lambda f: f.write(data.tobytes()))
        write_parquet(self.ids, folder / "ids.parquet")
        atomic_write(
            folder / "index.json", lambda f: f.write(json.dumps(self.meta, indent=1).encode())
        )
        return folder


def build(
    X: np.ndarray,
    ids: pa.Table,
    *,
    metric: str = "l2",
    kind: str = "auto",
    nlist: int | None = None,
    nprobe: int = NPROBE,
    seed: int = 0,
    source: str = "",
) -> Index:
    """Index vectors ``X`` [n, d] (finite) with their ids; ``kind``: auto (by size), exact or ivf."""
    fa = faiss()
    if metric not in ("l2", "cosine"):
        raise StarcurveError(f"metric must be l2 or cosine, got {metric!r}")
    X = np.asarray(X, np.float32)
    n, d = X.shape
    if n == 0:
        raise StarcurveError("no vectors to index")
    kind = ("exact" if n < EXACT_MAX else "ivf") if kind == "auto" else kind
    if kind not in ("exact", "ivf"):
        raise StarcurveError(f"kind must be auto, exact or ivf, got {kind!r}")
    mean, std = X.mean(0, dtype=np.float64), X.std(0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)  # a constant dimension carries no information: left as is
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "metric": metric,
        "dim": d,
        "n": n,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "source": str(source),
        "seed": seed,
    }
    idx = Index(None, ids, meta)
    Z = idx.prepare(X)
    ip = metric == "cosine"
    if kind == "exact":
        idx.index = fa.IndexFlatIP(d) if ip else fa.IndexFlatL2(d)
    else:
        nlist = nlist or default_nlist(n)
        quantizer = fa.IndexFlatIP(d) if ip else fa.IndexFlatL2(d)
        ivf = fa.IndexIVFFlat(quantizer, d, nlist, fa.METRIC_INNER_PRODUCT if ip else fa.METRIC_L2)
        ivf.cp.seed = seed
        train = Z[np.sort(np.random.default_rng(seed).permutation(n)[: 64 * nlist])]
        ivf.train(train)
        idx.index = ivf
        meta.update(nlist=nlist, nprobe=min(nprobe, nlist))
    idx.index.add(Z)
    return idx


def default_nlist(n: int) -> int:
    """IVF cells: 4 sqrt(n) rounded to a power of two, at least 16, at most n / 39 (k-means needs
    about 39 training points per cell)."""
    target = 2 ** round(math.log2(max(4 * math.sqrt(n), 16)))
    return int(max(1, min(target, n // 39)))


def load(folder) -> Index:
    """Load an index folder (no code runs); a clear error for a missing or damaged one."""
    fa = faiss()
    folder = Path(folder)
    if not folder.is_dir():
        raise StarcurveError(f"{folder}: no such index folder (make one with starcurve index)")
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise StarcurveError(
            f"{folder}: not a complete index folder (missing {', '.join(missing)})"
        )
    meta = read_json_object(folder / "index.json", "index description")
    if meta.get("format") != FORMAT or meta.get("kind") not in ("exact", "ivf"):
        raise StarcurveError(f"{folder}/index.json: not a starcurve index description")
    try:
        index = fa.read_index(str(folder / "index.faiss"))
    except RuntimeError as e:
        why = str(e).strip().splitlines()[-1][:120] if str(e).strip() else "unreadable"
        raise StarcurveError(
            f"{folder}/index.faiss: damaged or not a FAISS index ({why})"
        ) from None
    ids = read_parquet(folder / "ids.parquet")
    if (
        index.ntotal != meta.get("n")
        or ids.num_rows != meta.get("n")
        or index.d != meta.get("dim")
        or S.ID not in ids.column_names
        or len(meta.get("mean", [])) != index.d
    ):
        raise StarcurveError(
            f"{folder}: index.faiss ({index.ntotal} vectors), ids.parquet "
            f"({ids.num_rows} rows) and index.json do not match; rebuild the index"
        )
    return Index(index, ids, meta)


# ----------------------------------------------------------------------------- answers


def similar(
    idx: Index, query, k: int = 10, *, band: str | None = None, nprobe: int | None = None
) -> pa.Table:
    """The k nearest objects of each query: an object id in the index (each of its bands, or
    ``band``), or an embeddings file / table. One row per (query, rank)."""
    if k < 1:
        raise StarcurveError(f"k must be at least 1, got {k}")
    if isinstance(query, pa.Table) or Path(str(query)).is_file():
        if band is not None:
            raise StarcurveError(
                "--query-band picks the vectors of an object id; a query file's vectors are "
                "all used (keep only the rows you want in the file)"
            )
        qids, Xq = read_vectors(query, None if isinstance(query, pa.Table) else str(query))
        Z = idx.prepare(Xq)
    else:
        sel = pc.equal(idx.ids.column(S.ID), str(query))
        if band is not None:
            sel = pc.and_(sel, pc.equal(idx.ids.column(S.BAND), band))
        rows = np.flatnonzero(sel.to_numpy(zero_copy_only=False))
        if len(rows) == 0:
            on = f" in band {band}" if band else ""
            raise StarcurveError(
                f"no object {query!r}{on} in the index ({len(idx)} vectors) and no "
                f"file of that name"
            )
        qids, Z = idx.ids.take(pa.array(rows)), idx.vectors(rows)
    D, I = idx.neighbours(Z, qids.column(S.ID).to_pylist(), k, nprobe)
    q, r = np.nonzero(I >= 0)
    hits = idx.ids.take(pa.array(I[q, r]))
    cols = {
        "query_id": qids.column(S.ID).take(pa.array(q)),
        "query_band": qids.column(S.BAND).take(pa.array(q)),
        "rank": pa.array(r + 1, pa.int32()),
    }
    if S.LABEL in qids.column_names:
        cols["query_label"] = qids.column(S.LABEL).take(pa.array(q))
    cols.update({c: hits.column(c) for c in hits.column_names})
    cols["distance"] = pa.array(D[q, r].astype(np.float32))
    return pa.table(cols)


def anomaly_scores(
    idx: Index, k: int = 10, *, seed: int = 0, n_estimators: int = 200, nprobe: int | None = None
) -> dict[str, np.ndarray]:
    """Per indexed vector: ``knn_distance`` (mean distance to its k nearest other objects) and
    ``iforest_score`` (minus scikit-learn's IsolationForest ``score_samples``); higher is odder."""
    from sklearn.ensemble import IsolationForest

    if len(idx) < 2:
        raise StarcurveError("anomaly ranking needs at least 2 vectors")
    Z = idx.vectors(np.arange(len(idx)))
    own = idx.ids.column(S.ID).to_pylist()
    knn = np.empty(len(idx))
    for a in range(0, len(idx), 4096):  # blocks: memory stays flat
        D, _ = idx.neighbours(Z[a : a + 4096], own[a : a + 4096], k, nprobe)
        knn[a : a + 4096] = np.nanmean(np.where(np.isfinite(D), D, np.nan), axis=1)
    forest = IsolationForest(n_estimators=n_estimators, random_state=seed).fit(Z)
    return {"knn_distance": knn, "iforest_score": -forest.score_samples(Z)}


def rank(scores: dict[str, np.ndarray], by: str = "knn") -> np.ndarray:
    """Row order, oddest first: by ``knn`` distance, ``iforest`` score or ``mean-rank`` of both."""
    knn, iso = scores["knn_distance"], scores["iforest_score"]
    if by == "knn":
        key = knn
    elif by == "iforest":
        key = iso
    elif by == "mean-rank":
        key = _ranks(knn) + _ranks(iso)
    else:
        raise StarcurveError(f"--by must be knn, iforest or mean-rank, got {by!r}")
    return np.argsort(-key, kind="stable")


def _ranks(x: np.ndarray) -> np.ndarray:
    """0 for the lowest value, n - 1 for the highest."""
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)


# ----------------------------------------------------------------------------- the commands


def _threads(n: int | None) -> None:
    if n:
        faiss().omp_set_num_threads(n)


FAISS_THREADS = "FAISS (OpenMP) threads [default: OMP_NUM_THREADS, else every core]."


@click.command("index")
@input_option("Embeddings (starcurve embed) or any Parquet file with object_id, band, embedding.")
@output_option(OUTPUT_DIR, "Index folder.")
@click.option("--metric", type=click.Choice(["l2", "cosine"]), default="l2", show_default=True)
@click.option(
    "--kind",
    type=click.Choice(["auto", "exact", "ivf"]),
    default="auto",
    show_default=True,
    help=f"auto: exact below {EXACT_MAX:,} vectors, IVF from there on.",
)
@click.option(
    "--nlist",
    type=click.IntRange(min=1),
    default=None,
    help="IVF cells [default: 4 sqrt(n), a power of 2].",
)
@click.option(
    "--nprobe",
    type=click.IntRange(min=1),
    default=NPROBE,
    show_default=True,
    help="IVF cells per query.",
)
@seed_option("Seed of the IVF k-means and of its training sample.")
@threads_option(FAISS_THREADS)
def index_cmd(input_path, output, metric, kind, nlist, nprobe, seed, threads) -> None:
    """Build a vector index of embeddings (exact for small sets, approximate for large ones)."""
    _threads(threads)
    ids, X = read_vectors(input_path)
    idx = build(
        X, ids, metric=metric, kind=kind, nlist=nlist, nprobe=nprobe, seed=seed, source=input_path
    )
    idx.save(output)
    cells = f", {idx.meta['nlist']} cells, nprobe {idx.meta['nprobe']}" if idx.kind == "ivf" else ""
    click.echo(f"wrote {output}: {len(idx)} vectors of {X.shape[1]}, {idx.kind} {metric}{cells}")


@click.command("similar")
@click.option("--index", "index_dir", required=True, help="Index folder (starcurve index).")
@click.option("--query", required=True, help="An object id in the index, or an embeddings file.")
@click.option(
    "--k", default=10, show_default=True, type=click.IntRange(min=1), help="Neighbours per query."
)
@click.option(
    "--query-band",
    "band",
    default=None,
    help="With an object id: search with its vector of this band [default: each of its bands].",
)
@output_option(OUTPUT_FILE, "Hits (Parquet): one row per query and rank.")
@click.option(
    "--nprobe",
    type=click.IntRange(min=1),
    default=None,
    help="IVF cells per query [default: the index's].",
)
@threads_option(FAISS_THREADS)
def similar_cmd(index_dir, query, k, band, output, nprobe, threads) -> None:
    """The k objects most like a query (never the query itself), nearest first."""
    _threads(threads)
    hits = similar(load(index_dir), query, k, band=band, nprobe=nprobe)
    write_parquet(hits, output)
    click.echo(f"wrote {hits.num_rows} hits to {output}")
    show = [
        c for c in ("query_id", "rank", S.ID, S.BAND, S.LABEL, "distance") if c in hits.column_names
    ]
    click.echo(hits.slice(0, min(k, 10)).select(show).to_pandas().to_string(index=False))


@click.command("anomalies")
@input_option("Embeddings (starcurve embed).")
@output_option(OUTPUT_FILE, "Ranking (Parquet), oddest first.")
@click.option(
    "--k",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Neighbours of the kNN distance.",
)
@click.option(
    "--by",
    type=click.Choice(["knn", "iforest", "mean-rank"]),
    default="knn",
    show_default=True,
    help="The score that orders the ranking (both are written).",
)
@click.option("--metric", type=click.Choice(["l2", "cosine"]), default="l2", show_default=True)
@click.option(
    "--lightcurves", default=None, help="Light curves of the same objects: draw the top ones."
)
@click.option(
    "--sheet", default=None, type=OUTPUT_FILE, help="Contact sheet PNG [default: OUTPUT with .png]."
)
@click.option(
    "--top",
    default=25,
    show_default=True,
    type=click.IntRange(min=1),
    help="Light curves on the sheet.",
)
@seed_option("Isolation forest (and IVF) seed.")
@threads_option(FAISS_THREADS)
def anomalies_cmd(
    input_path, output, k, by, metric, lightcurves, sheet, top, seed, threads
) -> None:
    """Rank objects by how far they are from the rest: kNN distance, isolation forest."""
    _threads(threads)
    ids, X = read_vectors(input_path)
    if lightcurves is not None and not Path(lightcurves).exists():
        raise StarcurveError(f"--lightcurves {lightcurves}: no such file or folder")
    idx = build(X, ids, metric=metric, seed=seed, source=input_path)
    scores = anomaly_scores(idx, k, seed=seed)
    order = rank(scores, by)
    ranked = ids.take(pa.array(order))
    ranked = ranked.add_column(0, "rank", pa.array(np.arange(1, len(order) + 1), pa.int32()))
    for name, v in scores.items():
        ranked = ranked.append_column(name, pa.array(v[order].astype(np.float32)))
        r = np.empty(len(v), np.int64)
        r[np.argsort(-v, kind="stable")] = np.arange(1, len(v) + 1)
        ranked = ranked.append_column(name.split("_")[0] + "_rank", pa.array(r[order], pa.int32()))
    write_parquet(ranked, output)
    click.echo(f"wrote {output}: {len(order)} objects ranked by {by} ({idx.kind} index, k={k})")
    if lightcurves is not None:
        sheet = sheet or str(Path(output).with_suffix(".png"))
        n = _sheet(ranked.slice(0, top), lightcurves, sheet)
        click.echo(f"wrote {sheet}: the top {n} light curves")


def _sheet(top: pa.Table, lightcurves: str, path: str) -> int:
    """Draw the light curves of the ranked rows ``top`` (found by object id and band)."""
    from starcurve.data.io import read
    from starcurve.lightcurve import contact_sheet, light_curves

    table = read(lightcurves)
    table = table.filter(pc.is_in(table.column(S.ID), top.column(S.ID)))
    have = set(zip(table.column(S.ID).to_pylist(), table.column(S.BAND).to_pylist()))
    curves, titles, missing = [], [], []
    for row in top.to_pylist():
        key = (row[S.ID], row[S.BAND])
        if key not in have:
            missing.append(f"{key[0]}/{key[1]}")
            continue
        one = table.filter(
            pc.and_(pc.equal(table.column(S.ID), key[0]), pc.equal(table.column(S.BAND), key[1]))
        )
        try:
            curves.append(light_curves(one, [key[0]])[key[0]])
        except StarcurveError as e:
            missing.append(f"{key[0]} ({e})")
            continue
        label = f" {row[S.LABEL]}" if row.get(S.LABEL) else ""
        titles.append(
            f"#{row['rank']} {row[S.ID]}{label}\nkNN {row['knn_distance']:.2f}, "
            f"iforest {row['iforest_score']:.2f}"
        )
    if missing:
        log.warning("not on the contact sheet (not in %s): %s", lightcurves, ", ".join(missing[:5]))
    if not curves:
        raise StarcurveError(f"none of the top objects is in {lightcurves} (same ids and bands?)")
    contact_sheet(curves, titles, path)
    return len(curves)
