"""Reading light curves from files, DataFrames and arrays into the one nested Arrow table.

Accepted inputs (``read`` picks by type):
- a Parquet file or a folder of Parquet shards, nested (one row per (object, band), list columns)
  or long (one row per observation);
- a folder of per-object text files (``time mag err`` columns, whitespace or comma separated,
  ``#`` comments, an optional header line), the usual OGLE/MACHO/ASAS dumps; the file stem is
  the object id;
- a pandas DataFrame (nested or long), a pyarrow Table, a dict of columns, or a
  ``(time, mag, mag_err)`` tuple of arrays for one light curve.

Fluxes: with ``flux=True`` the ``mag`` and ``mag_err`` columns hold flux and flux error, converted
with ``mag = zero_point - 2.5 log10(flux)``, ``mag_err = 2.5 / ln(10) * flux_err / flux``. The default
zero point 23.9 is the AB magnitude of 1 microjansky (use 31.4 for nanojansky, as LSST and ZTF forced
photometry give). Non-positive fluxes become non-finite magnitudes, which cleaning drops and reports.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from starcurve.data import schema as S
from starcurve.errors import StarcurveError

log = logging.getLogger("starcurve")
TEXT_SUFFIXES = {".dat", ".txt", ".csv", ".lc", ".tsv", ".mjd"}
DEFAULT_ZERO_POINT = 23.9


def read(
    source,
    *,
    columns: Mapping[str, str] | None = None,
    band: str | None = None,
    flux: bool = False,
    zero_point: float = DEFAULT_ZERO_POINT,
    default_band: str = "unknown",
) -> pa.Table:
    """Read any accepted input into the nested table (see module docstring).

    ``columns`` maps canonical names to the source's names, e.g. ``{"time": "mjd", "mag": "flux"}``.
    ``band`` keeps only rows of that band. Raises ``StarcurveError`` with a one-line reason.
    """
    if isinstance(source, tuple) and len(source) == 3:
        t, m, e = (np.asarray(a, dtype=float).ravel() for a in source)
        source = {S.ID: "lc0", S.TIME: t, S.MAG: m, S.ERR: e}
    if isinstance(source, Mapping):
        source = pd.DataFrame({k: (list(v) if np.ndim(v) > 1 else v) for k, v in source.items()})
    if isinstance(source, pd.DataFrame):
        source = pa.Table.from_pandas(source, preserve_index=False)
    if isinstance(source, pa.Table):
        table = source
    else:
        table = _read_path(Path(source))
    table = _normalise(table, columns or {}, default_band)
    if flux:
        table = flux_to_mag(table, zero_point)
    if band is not None and band != "*":
        table = table.filter(pc.equal(table.column(S.BAND), band))
    return table


def _read_path(path: Path) -> pa.Table:
    if not path.exists():
        raise StarcurveError(f"{path}: no such file or folder")
    if path.is_dir():
        shards = sorted(path.glob("*.parquet"))
        if shards:
            return pa.concat_tables([_read_parquet(p) for p in shards], promote_options="default")
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise StarcurveError(f"{path}: no .parquet or text light-curve files found")
        return read_text_files(files)
    if path.stat().st_size == 0:
        raise StarcurveError(f"{path}: the file is empty")
    if path.suffix.lower() in TEXT_SUFFIXES:
        return read_text_files([path])
    return _read_parquet(path)


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        reason = str(e).splitlines()[0][:200]
        raise StarcurveError(f"{path}: not a readable Parquet file ({reason})") from None


def _normalise(table: pa.Table, columns: Mapping[str, str], default_band: str) -> pa.Table:
    """Apply the column mapping, turn the long form into the nested form, validate types."""
    unknown = set(columns) - {*S.REQUIRED, S.LABEL, S.SURVEY, S.SPLIT}
    if unknown:
        raise StarcurveError(f"unknown canonical column(s) {sorted(unknown)} in the mapping")
    rename = {src: dst for dst, src in columns.items()}
    missing = [src for src in rename if src not in table.column_names]
    if missing:
        raise StarcurveError(f"mapped column(s) {missing} not in the input {table.column_names}")
    table = table.rename_columns([rename.get(c, c) for c in table.column_names])
    if S.BAND not in table.column_names:
        table = table.append_column(S.BAND, pa.array([default_band] * table.num_rows, pa.string()))
    if S.ID not in table.column_names and S.TIME in table.column_names:
        if pa.types.is_list(table.schema.field(S.TIME).type):
            ids = [f"lc{i}" for i in range(table.num_rows)]
        else:
            ids = ["lc0"] * table.num_rows
        table = table.append_column(S.ID, pa.array(ids, pa.string()))
    if S.TIME in table.column_names and not pa.types.is_list(table.schema.field(S.TIME).type):
        table = _nest_long(table)
    return S.validate(table)


def _numeric(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64; unparseable entries become NaN (cleaning reports them)."""
    if name not in table.column_names:
        raise StarcurveError(f"missing column '{name}'; have {table.column_names}")
    return pd.to_numeric(table.column(name).to_pandas(), errors="coerce").to_numpy(float)


def _nest_long(table: pa.Table) -> pa.Table:
    """Group a long table (one row per observation) into one row per (object, band)."""
    t, m, e = (_numeric(table, c) for c in S.LIST_COLUMNS)
    ids = np.asarray(table.column(S.ID).cast(pa.string()).to_numpy(zero_copy_only=False), dtype=str)
    bands = np.asarray(table.column(S.BAND).cast(pa.string()).to_numpy(zero_copy_only=False), dtype=str)
    key = np.char.add(np.char.add(ids, "\x00"), bands)
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(uniq)))])
    out = {S.ID: pa.array(ids[first]), S.BAND: pa.array(bands[first])}
    for extra in (S.LABEL, S.SURVEY, S.SPLIT):
        if extra in table.column_names:
            out[extra] = table.column(extra).cast(pa.string()).take(pa.array(first))
    nested = pa.table(out)
    return S.with_lists(nested, offsets, time=t[order], mag=m[order], mag_err=e[order])


def read_text_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse one ``time mag err`` text file; raises ``StarcurveError`` if it has no usable data."""
    try:
        df = pd.read_csv(
            path, sep=r"[,\s]+", comment="#", header=None, engine="python", skip_blank_lines=True
        )
    except pd.errors.EmptyDataError:
        raise StarcurveError(f"{path.name}: no data lines") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise StarcurveError(f"{path.name}: cannot parse ({str(e).splitlines()[0][:120]})") from None
    df = df.dropna(axis=1, how="all")
    if df.shape[1] < 3:
        raise StarcurveError(f"{path.name}: needs 3 columns (time mag err), found {df.shape[1]}")
    vals = df.iloc[:, :3].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    if len(vals) and np.isnan(vals[0]).all():  # a header line
        vals = vals[1:]
    if len(vals) == 0:
        raise StarcurveError(f"{path.name}: no data lines")
    return vals[:, 0], vals[:, 1], vals[:, 2]


def read_text_files(paths: list[Path]) -> pa.Table:
    """Read per-object text files; a file that cannot be read is skipped and logged, not fatal."""
    ids, cols, skipped = [], [], []
    for p in paths:
        try:
            cols.append(read_text_file(p))
            ids.append(p.stem)
        except StarcurveError as e:
            skipped.append(str(e))
    for msg in skipped:
        log.warning("skipped %s", msg)
    if not cols:
        raise StarcurveError(f"none of the {len(paths)} text file(s) could be read: {skipped[:3]}")
    offsets = np.concatenate([[0], np.cumsum([len(c[0]) for c in cols])])
    table = pa.table({S.ID: pa.array(ids, pa.string())})
    t, m, e = (np.concatenate([c[i] for c in cols]) for i in range(3))
    return S.with_lists(table, offsets, time=t, mag=m, mag_err=e)


def from_arrays(times, mags, errs, ids=None, band: str = "unknown", labels=None) -> pa.Table:
    """Build the nested table from sequences of per-object arrays."""
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in times])]).astype(np.int64)
    n = len(times)
    cols = {
        S.ID: pa.array(ids if ids is not None else [f"lc{i}" for i in range(n)], pa.string()),
        S.BAND: pa.array([band] * n, pa.string()),
    }
    if labels is not None:
        cols[S.LABEL] = pa.array(labels, pa.string())
    cat = lambda xs: np.concatenate([np.asarray(x, float) for x in xs]) if n else np.zeros(0)  # noqa: E731
    return S.validate(
        S.with_lists(pa.table(cols), offsets, time=cat(times), mag=cat(mags), mag_err=cat(errs))
    )


def flux_to_mag(table: pa.Table, zero_point: float = DEFAULT_ZERO_POINT) -> pa.Table:
    """Convert flux/flux-error list columns to magnitudes (non-positive flux -> NaN)."""
    f, off = S.flat(table, S.MAG)
    fe = S.flat(table, S.ERR)[0].astype(float)
    f = f.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = f > 0
        mag = np.where(ok, zero_point - 2.5 * np.log10(np.where(ok, f, 1.0)), np.nan)
        err = np.where(ok, 2.5 / np.log(10) * fe / np.where(ok, f, 1.0), np.nan)
    return S.with_lists(table, off, mag=mag, mag_err=err)


def write_parquet(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write a table atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def parquet_files(paths) -> list[Path]:
    """Expand files and folders of shards into a sorted list of Parquet files."""
    out = []
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(p.glob("*.parquet"))
        elif p.exists():
            out.append(p)
        else:
            raise StarcurveError(f"{p}: no such file or folder")
    if not out:
        raise StarcurveError(f"no Parquet files in {paths}")
    return out


def iter_tables(
    paths, *, batch_rows: int = 4096, band: str | None = None, columns=None
) -> Iterator[pa.Table]:
    """Stream nested Parquet shards as tables of at most ``batch_rows`` rows (flat memory).

    A corrupted shard is logged and skipped so the other shards still arrive.
    """
    files = parquet_files(paths)
    bad = []
    for p in files:
        try:
            pf = pq.ParquetFile(p)
            batches = pf.iter_batches(batch_size=batch_rows, columns=columns)
            for batch in batches:
                table = read(pa.Table.from_batches([batch]), band=band)
                if table.num_rows:
                    yield table
        except (pa.ArrowInvalid, OSError) as e:
            reason = f"{p}: not a readable Parquet file ({str(e).splitlines()[0][:160]})"
            if len(files) == 1:
                raise StarcurveError(reason) from None
            bad.append(p)
            log.warning("skipped shard %s", reason)
    if bad and len(bad) == len(files):
        raise StarcurveError(f"none of the {len(files)} Parquet shards could be read")
