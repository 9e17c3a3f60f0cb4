"""Reading light curves from files, DataFrames and arrays into the one nested Arrow table.

Accepted inputs (``read`` picks by type):
- a Parquet file or a folder of Parquet shards, nested (one row per (object, band), list columns)
  or long (one row per observation);
- a text file or a folder of text files (``time mag err`` columns, whitespace or comma separated,
  ``#`` comments, an optional header line), the usual OGLE/MACHO/ASAS dumps: see ``read_text_file``;
- a pandas DataFrame (nested or long), a pyarrow Table, a dict of columns, or a
  ``(time, mag, mag_err)`` tuple of arrays for one light curve.

Fluxes: with ``flux=True`` the ``mag`` and ``mag_err`` columns hold flux and flux error, converted
with ``mag = zero_point - 2.5 log10(flux)``, ``mag_err = 2.5 / ln(10) * flux_err / flux``. The default
zero point 23.9 is the AB magnitude of 1 microjansky (use 31.4 for nanojansky, as LSST and ZTF forced
photometry give). Non-positive fluxes become non-finite magnitudes, which cleaning drops and reports.

Objects are never merged silently: a long table (one row per observation) without an ``object_id``
column is one light curve only if its times increase within each band; repeated or decreasing times
mean several objects, and ``read`` stops with an error that names the mapping to give
(``columns={"object_id": ...}``, ``--columns object_id=...``). A cell that is not a number becomes
NaN, so cleaning drops that point alone (counted as ``nonfinite``), never the whole file.

A Parquet shard that cannot be read is skipped with a warning when it is one of several (an error
when it is the only one, or when none can be read), the same way for whole reads and streaming.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from starcurve.data import schema as S
from starcurve.errors import StarcurveError
from starcurve.files import atomic_write

log = logging.getLogger("starcurve")
TEXT_SUFFIXES = {".dat", ".txt", ".csv", ".lc", ".tsv", ".mjd"}
DEFAULT_ZERO_POINT = 23.9


def read(
    source,
    *,
    columns: Mapping[str, str] | None = None,
    band: str | list[str] | None = None,
    flux: bool = False,
    zero_point: float = DEFAULT_ZERO_POINT,
    default_band: str = "unknown",
) -> pa.Table:
    """Read any accepted input into the nested table (see module docstring).

    ``columns`` maps canonical names to the source's names, e.g. ``{"time": "mjd", "mag": "flux"}``.
    ``band`` keeps only rows of these bands (a name, a comma-separated list or a sequence; None or
    ``*``: every band). Raises ``StarcurveError`` with a one-line reason.
    """
    columns = dict(columns or {})
    unknown = set(columns) - {*S.REQUIRED, S.LABEL, S.SURVEY, S.SPLIT}
    if unknown:
        raise StarcurveError(f"unknown canonical column(s) {sorted(unknown)} in the mapping")
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
        table = _read_path(Path(source), columns)
    table = _normalise(table, columns, default_band)
    if flux:
        table = flux_to_mag(table, zero_point)
    if band is not None and band != "*":
        keep = (
            [b.strip() for b in band.split(",") if b.strip()]
            if isinstance(band, str)
            else list(band)
        )
        table = table.filter(pc.is_in(table.column(S.BAND), pa.array(keep, pa.string())))
    return table


def _read_path(path: Path, columns: Mapping[str, str]) -> pa.Table:
    if not path.exists():
        raise StarcurveError(f"{path}: no such file or folder")
    if path.is_dir():
        shards = parquet_files(path) if is_parquet(path) else []
        if shards:
            return pa.concat_tables(list(_shard_tables(shards, _whole)), promote_options="default")
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise StarcurveError(f"{path}: no .parquet or text light-curve files found")
        return read_text_files(files, columns)
    if path.stat().st_size == 0:
        raise StarcurveError(f"{path}: the file is empty")
    if path.suffix.lower() in TEXT_SUFFIXES:
        return read_text_files([path], columns)
    return read_parquet(path)


def read_parquet(path: Path) -> pa.Table:
    """One Parquet file as it is stored (no column checks)."""
    return next(_shard_tables([Path(path)], _whole))


def _whole(pf: pq.ParquetFile) -> Iterator[pa.Table]:
    yield pf.read()


def _shard_tables(
    files: list[Path], tables: Callable[..., Iterator], with_path: bool = False
) -> Iterator:
    """``tables(shard)`` (``tables(shard, path)`` with ``with_path``) of each Parquet file, the one
    way every reader opens Parquet.

    A shard that cannot be read is skipped with a warning, unless it is the only one (an error);
    if none can be read, that is an error too.
    """
    bad = 0
    for p in files:
        try:
            with pa.OSFile(os.fsencode(p)) as f:  # bytes: any file name the system allows
                yield from tables(pq.ParquetFile(f), *([p] if with_path else []))
        except (pa.ArrowInvalid, OSError) as e:
            size = p.stat().st_size if p.is_file() else -1
            why = (
                "the file is empty"
                if size == 0
                else f"not a readable Parquet file ({_first_line(e)})"
            )
            if len(files) == 1:
                raise StarcurveError(f"{p}: {why}") from None
            bad += 1
            log.warning("skipped shard %s: %s", p, why)
    if bad and bad == len(files):
        raise StarcurveError(f"none of the {len(files)} Parquet shards could be read")


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:160]


def _normalise(table: pa.Table, columns: Mapping[str, str], default_band: str) -> pa.Table:
    """Apply the column mapping, turn the long form into the nested form, validate types."""
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
            check_one_object(table, "the table")
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


def check_one_object(table: pa.Table, what: str, mapping: Mapping[str, str] | None = None) -> None:
    """A long table without object ids must be one light curve: times increasing in each band."""
    mapping = mapping or {}
    t = _numeric(table, mapping.get(S.TIME, S.TIME))
    band_col = mapping.get(S.BAND, S.BAND)
    if band_col in table.column_names:
        bands = np.asarray(
            table.column(band_col).cast(pa.string()).to_numpy(zero_copy_only=False), str
        )
    else:
        bands = np.zeros(len(t), str)
    ok = np.isfinite(t)
    t, bands = t[ok], bands[ok]
    order = np.argsort(bands, kind="stable")
    t, bands = t[order], bands[order]
    back = int(((bands[1:] == bands[:-1]) & (np.diff(t) <= 0)).sum())
    if back:
        others = [
            c for c in table.column_names if c not in (*S.LIST_COLUMNS, S.BAND, *mapping.values())
        ]
        raise StarcurveError(
            f"{what} has no object_id column, but its times repeat or go back ({back} times), so it "
            "holds several light curves. Name the column that tells them apart: "
            "columns={'object_id': NAME} in Python, --columns object_id=NAME on the command line"
            + (f" (columns here: {others})" if others else " (add such a column)")
        )


def _nest_long(table: pa.Table) -> pa.Table:
    """Group a long table (one row per observation) into one row per (object, band)."""
    t, m, e = (_numeric(table, c) for c in S.LIST_COLUMNS)
    ids = np.asarray(table.column(S.ID).cast(pa.string()).to_numpy(zero_copy_only=False), dtype=str)
    bands = np.asarray(
        table.column(S.BAND).cast(pa.string()).to_numpy(zero_copy_only=False), dtype=str
    )
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


def read_text_file(path: Path, columns: Mapping[str, str] | None = None) -> pa.Table:
    """One text file as a long table (one row per observation); ``read`` nests it.

    With a header line, columns are found by their names (after the ``columns`` mapping):
    ``object_id`` (one file may hold several objects), ``band``, ``label``, ``survey``, ``split``,
    ``time``, ``mag``, ``mag_err``; time, magnitude and error columns the header does not name are
    the first other columns, in that order (so ``time,mag,err`` or ``mjd flux flux_err`` work).
    Without a header, the first three columns are time, magnitude and error. Without an object id
    column the file stem is the id (and the times must increase, see ``check_one_object``). A cell
    that is not a number becomes NaN (cleaning drops that point and counts it); a line with more
    fields than the others is skipped with a warning. Raises ``StarcurveError`` if nothing is usable.
    """
    mapping = dict(columns or {})
    extra_lines: list = []
    try:
        df = pd.read_csv(
            path, sep=_separator(path), comment="#", header=None, engine="python", dtype=str,
            skip_blank_lines=True, on_bad_lines=extra_lines.append,
        )  # fmt: skip
    except pd.errors.EmptyDataError:
        raise StarcurveError(f"{path.name}: no data lines") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise StarcurveError(f"{path.name}: cannot parse ({_first_line(e)[:120]})") from None
    df = df.dropna(axis=1, how="all")
    first = df.iloc[0] if len(df) else None
    header = first is not None and pd.to_numeric(first.dropna(), errors="coerce").isna().all()
    if header:
        names = _unique_names([str(v).strip() for v in first])
        df = df.iloc[1:]
    else:
        names = [S.TIME, S.MAG, S.ERR] + [f"column{i}" for i in range(3, df.shape[1])]
    df.columns = names[: df.shape[1]]
    known = {*S.REQUIRED, S.LABEL, S.SURVEY, S.SPLIT}
    free = [n for n in df.columns if n not in known and n not in mapping.values()]
    for c in S.LIST_COLUMNS:  # unnamed time/mag/err: the first free columns, in that order
        if c not in mapping and c not in df.columns and free:
            df = df.rename(columns={free.pop(0): c})
    if len(df) == 0 or any(mapping.get(c, c) not in df.columns for c in S.LIST_COLUMNS):
        raise StarcurveError(
            f"{path.name}: needs time, mag and err columns and at least one data line"
        )
    if extra_lines:
        log.warning(
            "%s: skipped %d line(s) with more fields than the others", path.name, len(extra_lines)
        )
    table = pa.table({c: pa.Array.from_pandas(df[c], type=pa.string()) for c in df.columns})
    if S.ID not in mapping and S.ID not in table.column_names:
        check_one_object(table, path.name, mapping)
        table = table.append_column(S.ID, pa.array([path.stem] * table.num_rows, pa.string()))
    return table


def _separator(path: Path) -> str:
    """Commas if the first data line has one (an empty cell stays a cell), else white space."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip() and not line.lstrip().startswith("#"):
                    return r"\s*,\s*" if "," in line else r"\s+"
    except OSError as e:
        raise StarcurveError(f"{path.name}: cannot read ({e.strerror})") from None
    return r"\s+"


def _unique_names(names: list[str]) -> list[str]:
    out: list[str] = []
    for i, n in enumerate(names):
        n = n or f"column{i}"
        out.append(n if n not in out else f"{n}_{i}")
    return out


def read_text_files(paths: list[Path], columns: Mapping[str, str] | None = None) -> pa.Table:
    """Read text files into one long table; a file that cannot be read is skipped and logged."""
    tables, skipped = [], []
    for p in paths:
        try:
            tables.append(read_text_file(p, columns))
        except StarcurveError as e:
            skipped.append(str(e))
    if len(paths) == 1 and skipped:
        raise StarcurveError(skipped[0])
    for msg in skipped:
        log.warning("skipped %s", msg)
    if not tables:
        raise StarcurveError(f"none of the {len(paths)} text file(s) could be read: {skipped[:3]}")
    return pa.concat_tables(tables, promote_options="default")


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
    cat = lambda xs: np.concatenate([np.asarray(x, float) for x in xs]) if n else np.zeros(0)
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
    """Write a table atomically (``starcurve.files.atomic_write``)."""
    return atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))


def parquet_files(paths) -> list[Path]:
    """Expand files and folders of shards into a sorted list of Parquet files."""
    out = []
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        p = Path(p)
        if p.is_dir():
            out += hats_files(p) or sorted(p.glob("*.parquet"))
        elif p.exists():
            out.append(p)
        else:
            raise StarcurveError(f"{p}: no such file or folder")
    if not out:
        raise StarcurveError(f"no Parquet files in {paths}")
    return out


def iter_tables(
    paths, *, batch_rows: int = 4096, band: str | None = None, columns=None, mapping=None
) -> Iterator[pa.Table]:
    """Stream Parquet shards as tables of at most ``batch_rows`` rows (flat memory).

    ``columns``: the Parquet columns to load; ``mapping``: the column mapping of ``read``. A long
    (one row per observation) shard is read whole, so that no object is cut in two. A corrupted
    shard is logged and skipped so the other shards still arrive.
    """
    time_col = (mapping or {}).get(S.TIME, S.TIME)

    def tables(pf: pq.ParquetFile) -> Iterator[pa.Table]:
        schema = pf.schema_arrow
        nested = time_col in schema.names and pa.types.is_list(schema.field(time_col).type)
        batches = pf.iter_batches(batch_size=batch_rows, columns=columns) if nested else [pf.read()]
        for batch in batches:
            table = read(
                pa.Table.from_batches([batch]) if nested else batch, band=band, columns=mapping
            )
            if table.num_rows:
                yield table

    yield from _shard_tables(parquet_files(paths), tables)


def read_chunks(
    source, *, band: str | None = None, columns=None, batch_rows: int = 4096
) -> Iterator[pa.Table]:
    """Any input ``read`` accepts, as tables: Parquet streamed in chunks, anything else at once.

    The first chunk is read at once, so a bad input fails here, before any progress is shown.
    """
    if isinstance(source, (str, os.PathLike)) and is_parquet(Path(source)):
        chunks = iter_tables(source, batch_rows=batch_rows, band=band, mapping=columns)
    else:
        chunks = iter([read(source, band=band, columns=columns)])
    first = next(chunks, None)
    return itertools.chain([] if first is None else [first], chunks)


def is_parquet(path: Path) -> bool:
    """A Parquet file name, or a folder of Parquet shards (or a HATS catalogue)."""
    return path.suffix == ".parquet" or (
        path.is_dir() and (any(path.glob("*.parquet")) or bool(hats_files(path)))
    )


def hats_files(path: Path) -> list[Path]:
    """The partition files of a HATS catalogue (``dataset/Norder=k/Dir=d/Npix=n.parquet``), by
    (order, pixel); [] when ``path`` is not one."""
    if not ((path / "dataset").is_dir() and any((path / n).is_file() for n in HATS_PROPERTIES)):
        return []
    files = (path / "dataset").glob("Norder=*/Dir=*/Npix=*.parquet")
    return sorted(files, key=lambda f: (int(f.parent.parent.name[7:]), int(f.stem[5:])))


HATS_PROPERTIES = ("hats.properties", "properties")


def parquet_rows(paths) -> int:
    """Rows in the readable Parquet files of ``paths`` (from their footers; for progress bars)."""
    total = 0
    for rows in _shard_tables(parquet_files(paths), lambda pf: [pf.metadata.num_rows]):
        total += rows
    return total


@dataclass(frozen=True)
class Partition:
    """A piece of an input that one task reads: whole row groups of one Parquet file (``row_groups``),
    or ``rows`` rows of one row group from row ``skip`` on (a row group bigger than a partition), or
    a whole Parquet file (``row_groups=None``: a long table, whose objects may span row groups), or
    a non-Parquet input (``rows=None``: read whole). Plain data, so it travels to Dask workers."""

    path: str
    row_groups: tuple[int, ...] | None
    rows: int | None
    skip: int | None = None


def partitions(
    source, *, rows: int = 2048, columns: Mapping[str, str] | None = None
) -> list[Partition]:
    """The partitions of an input, from Parquet footers only: consecutive row groups of each file
    grouped up to ``rows`` rows; a bigger row group is cut into pieces of ``rows`` rows (each piece
    streams the group from its start: shards with smaller row groups read faster). Files in name
    order, rows in file order: the order of the input. Unreadable shards are skipped as ``read``
    does."""
    path = Path(source)
    if not is_parquet(path):
        read(path, columns=columns)  # a bad input fails here, with read's message
        return [Partition(str(path), None, None)]
    time_col = (columns or {}).get(S.TIME, S.TIME)

    def plan(pf: pq.ParquetFile, f: Path) -> Iterator[Partition]:
        schema = pf.schema_arrow
        sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        if not (time_col in schema.names and pa.types.is_list(schema.field(time_col).type)):
            yield Partition(str(f), None, sum(sizes))  # long: whole, so no object is cut in two
            return
        group, n = [], 0
        for i, k in enumerate(sizes):
            if k > rows:  # a big row group: pieces of it
                if group:
                    yield Partition(str(f), tuple(group), n)
                    group, n = [], 0
                for skip in range(0, k, rows):
                    yield Partition(str(f), (i,), min(rows, k - skip), skip)
                continue
            if group and n + k > rows:
                yield Partition(str(f), tuple(group), n)
                group, n = [], 0
            group.append(i)
            n += k
        if group:
            yield Partition(str(f), tuple(group), n)

    return list(_shard_tables(parquet_files(path), plan, with_path=True))


def read_partition(part: Partition, *, band: str | None = None, columns=None) -> pa.Table:
    """The nested table of one partition (``read``'s normalisation and band filter applied)."""
    if part.rows is None:
        return read(part.path, band=band, columns=columns)

    def load(pf: pq.ParquetFile) -> Iterator[pa.Table]:
        if part.row_groups is None:
            yield pf.read()
        elif part.skip is None:
            yield pf.read_row_groups(list(part.row_groups))
        else:  # stream the row group up to the piece: memory stays one piece
            got, seen, end = [], 0, part.skip + part.rows
            for b in pf.iter_batches(batch_size=part.rows, row_groups=list(part.row_groups)):
                lo, hi = max(part.skip - seen, 0), min(end - seen, b.num_rows)
                if hi > lo:
                    got.append(b.slice(lo, hi - lo))
                seen += b.num_rows
                if seen >= end:
                    break
            yield pa.Table.from_batches(got) if got else pf.schema_arrow.empty_table()

    return read(next(_shard_tables([Path(part.path)], load)), band=band, columns=columns)


def read_ids(path: str | os.PathLike | None) -> set[str]:
    """Object ids from a text file (``--exclude-ids``), one per line; blank lines and '#' comments
    are ignored."""
    if path is None:
        return set()
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise StarcurveError(f"--exclude-ids {path}: cannot read ({e.strerror})") from None
    return {s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")}
