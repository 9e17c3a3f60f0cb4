"""Fuzz: malformed tables and CSV files through read + clean + embed (a tiny random encoder).

Whatever comes in: no exception but ``StarcurveError``, no NaN in an output row, and every input
object (object_id/band) either in the output or in the report of what was skipped.
"""

import functools
import os
import tempfile

import numpy as np
import pandas as pd
import pyarrow as pa
from conftest import tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st

from starcurve import StarcurveError
from starcurve.data import schema as S
from starcurve.models.encoder import build
from starcurve.models.hub import Model

ODD = [
    np.nan,
    np.inf,
    -np.inf,
    1e30,
    -1e30,
    1e300,
    3.3e38,
    1e39,
    -99.0,
    29.999,
    0.0,
    -1.0,
    1e-30,
    12.0,
    15.5,
    0.05,
    0.02,
]
value = st.one_of(st.sampled_from(ODD), st.floats(allow_nan=True, allow_infinity=True))
cell = st.one_of(value.map(repr), st.sampled_from(["oops", "", "1,5", "12.0.1", "--"]))
points = st.lists(st.tuples(value, value, value), max_size=40)
light_curve = st.tuples(
    st.sampled_from(["a", "b", "c"]), st.sampled_from(["B", "R"]), st.booleans(), points
)  # (id, band, regular times?, points)


@functools.cache
def model() -> Model:
    cfg = tiny_config(name="fuzz", window=16, d_model=8, d_ff=8)
    return Model(build(cfg, seed=0))


def rows(lcs) -> list[tuple]:
    """(id, band, time, mag, err) per point; 'regular' light curves get increasing times."""
    out = []
    for oid, band, regular, pts in lcs:
        for i, (t, m, e) in enumerate(pts):
            out.append((oid, band, 1.5 * i if regular else t, m, e))
    return out


def check(source, expected: set[str]) -> None:
    m = model()
    try:
        out = m.embed(source)
    except StarcurveError:
        return
    emb = out.column("embedding").to_pylist()
    assert all(len(v) == m.dim and np.isfinite(v).all() for v in emb)
    got = {f"{i}/{b}" for i, b in zip(out.column(S.ID).to_pylist(), out.column(S.BAND).to_pylist())}
    removed = set(m.last_report.removed)
    assert expected <= got | removed and not got & removed


@settings(max_examples=120, deadline=None)
@given(st.lists(light_curve, min_size=1, max_size=5), st.sampled_from(["nested", "long", "no_id"]))
def test_tables(lcs, form):
    if form == "nested":
        lcs = list({(oid, band): (oid, band, r, p) for oid, band, r, p in lcs}.values())
        table = pa.table({
            S.ID: [lc[0] for lc in lcs], S.BAND: [lc[1] for lc in lcs],
            **{c: [[p[k] for p in rows([lc])] for lc in lcs] for k, c in enumerate(S.LIST_COLUMNS, 2)},
        })  # fmt: skip
        check(table, {f"{oid}/{band}" for oid, band, _, _ in lcs})
        return
    df = pd.DataFrame(rows(lcs), columns=[S.ID, S.BAND, *S.LIST_COLUMNS])
    if form == "no_id":
        df = df.drop(columns=[S.ID])
        check(df, {f"lc0/{b}" for b in df[S.BAND]})  # one light curve, or an error
    else:
        check(df, {f"{i}/{b}" for i, b in zip(df[S.ID], df[S.BAND])})


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["B", "R"]), cell, cell, cell),
        max_size=30,
    ),
    st.booleans(),
)
def test_csv_files(lines, with_id):
    header = [S.ID, S.BAND, S.TIME, S.MAG, "err"] if with_id else [S.BAND, "mjd", "m", "e"]
    body = [row if with_id else row[1:] for row in lines]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "lcs.csv")
        with open(path, "w") as f:
            f.write("\n".join(",".join(map(str, r)) for r in [header, *body]) + "\n")
        ids = [r[0] for r in lines] if with_id else ["lcs"] * len(lines)
        # a cell with a comma splits into two fields: that line is skipped (and logged), not read
        whole = [len(",".join(map(str, r)).split(",")) == len(header) for r in body]
        check(path, {f"{i}/{r[1]}" for i, r, ok in zip(ids, lines, whole) if ok})
