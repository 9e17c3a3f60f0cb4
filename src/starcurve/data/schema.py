"""The one in-memory form of light curves: an Arrow table, one row per (object, band).

Columns: ``object_id`` (string), ``band`` (string), list columns ``time`` (float64, days),
``mag`` and ``mag_err`` (float32); optional ``label``, ``survey``, ``split`` (string).
Helpers here move between list columns and flat numpy arrays with offsets, so that every
hot path is a vectorised operation over all points, never a Python loop per light curve.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from starcurve.errors import StarcurveError

ID, BAND, TIME, MAG, ERR = "object_id", "band", "time", "mag", "mag_err"
LABEL, SURVEY, SPLIT = "label", "survey", "split"
LIST_COLUMNS = (TIME, MAG, ERR)
REQUIRED = (ID, BAND, TIME, MAG, ERR)
LIST_TYPES = {TIME: pa.float64(), MAG: pa.float32(), ERR: pa.float32()}


def flat(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and offsets (length rows + 1, starting at 0) of a list column."""
    arr = table.column(column).combine_chunks()
    if isinstance(arr, pa.ChunkedArray):  # empty table
        arr = pa.array([], type=pa.list_(LIST_TYPES.get(column, pa.float64())))
    offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return values, offsets - offsets[0]


def lengths(table: pa.Table) -> np.ndarray:
    """Number of observations per row."""
    return np.diff(flat(table, TIME)[1])


def list_array(values: np.ndarray, offsets: np.ndarray, dtype: pa.DataType) -> pa.ListArray:
    """Build a list column from flat values and offsets."""
    return pa.ListArray.from_arrays(
        pa.array(np.asarray(offsets, dtype=np.int32)), pa.array(values, type=dtype)
    )


def with_lists(table: pa.Table, offsets: np.ndarray, **values: np.ndarray) -> pa.Table:
    """Replace the list columns given (time=..., mag=..., mag_err=...) sharing ``offsets``."""
    for name, v in values.items():
        arr = list_array(v, offsets, LIST_TYPES[name])
        i = table.schema.get_field_index(name)
        field = pa.field(name, arr.type)
        table = table.set_column(i, field, arr) if i >= 0 else table.append_column(field, arr)
    return table


def row_index(offsets: np.ndarray) -> np.ndarray:
    """For each flat point, the row it belongs to."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def validate(table: pa.Table) -> pa.Table:
    """Check the columns and cast them to the canonical types; raise a clear error if wrong."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise StarcurveError(
            f"missing column(s) {missing}; have {table.column_names}. "
            "Give a column mapping (e.g. --columns time=mjd,mag=flux) for other names."
        )
    for name in (ID, BAND, LABEL, SURVEY, SPLIT):
        if name in table.column_names and not pa.types.is_string(table.schema.field(name).type):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, table.column(name).cast(pa.string()))
    for name, dtype in LIST_TYPES.items():
        col_type = table.schema.field(name).type
        if not (pa.types.is_list(col_type) or pa.types.is_large_list(col_type)):
            raise StarcurveError(f"column '{name}' must be a list of numbers, found {col_type}")
        target = pa.list_(dtype)
        if col_type != target:
            try:
                col = table.column(name).cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise StarcurveError(f"column '{name}' is not numeric ({col_type}): {e}") from None
            table = table.set_column(table.schema.get_field_index(name), name, col)
    t_off, m_off, e_off = (flat(table, c)[1] for c in LIST_COLUMNS)
    if not (np.array_equal(t_off, m_off) and np.array_equal(t_off, e_off)):
        bad = np.flatnonzero(
            (np.diff(t_off) != np.diff(m_off)) | (np.diff(t_off) != np.diff(e_off))
        )
        ids = table.column(ID).take(pa.array(bad[:3])).to_pylist()
        raise StarcurveError(
            f"time, mag and mag_err differ in length for {len(bad)} light curve(s), e.g. {ids}"
        )
    return table


def empty_table() -> pa.Table:
    """A table with the canonical columns and no rows."""
    return pa.table(
        {
            ID: pa.array([], pa.string()),
            BAND: pa.array([], pa.string()),
            **{c: pa.array([], pa.list_(t)) for c, t in LIST_TYPES.items()},
        }
    )


def padded(
    values: np.ndarray, starts: np.ndarray, counts: np.ndarray, n: int, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Gather ``counts[i]`` (<= n) values from ``starts[i]`` into a zero-padded [rows, n] array.

    Returns the array and its validity mask; one numpy gather, no loop per light curve.
    """
    idx = np.asarray(starts, np.int64)[:, None] + np.arange(n, dtype=np.int64)[None, :]
    mask = np.arange(n)[None, :] < np.asarray(counts)[:, None]
    if len(values) == 0:
        return np.zeros(idx.shape, dtype), mask
    out = values[np.where(mask, idx, 0)].astype(dtype, copy=False)
    out[~mask] = 0
    return out, mask
