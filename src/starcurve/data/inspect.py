"""``starcurve inspect``: what is in a light-curve file, and what cleaning would drop."""

from __future__ import annotations

import json
from collections import Counter

import click
import numpy as np

from starcurve.cli import band_option, columns_option, input_option, min_obs_option
from starcurve.data import schema as S
from starcurve.data.clean import MIN_OBS, clean
from starcurve.data.io import read_chunks
from starcurve.errors import StarcurveError


def summarise(
    path, band: str | None = None, columns: dict | None = None, min_obs: int = MIN_OBS
) -> dict:
    """Counts, lengths, time span and the cleaning report (``clean`` with ``min_obs``); streams
    nested Parquet shard by shard. ``band``: only rows of these bands (comma-separated)."""
    p = str(path)
    tables = read_chunks(path, band=band, columns=columns)  # streams: flat memory on multi-GB files
    ids, rows, bands, classes = set(), 0, Counter(), Counter()
    lens, spans, dropped = [], [], Counter()
    objects_removed, report_points = 0, 0
    for table in tables:
        rows += table.num_rows
        ids.update(table.column(S.ID).to_pylist())
        bands.update(table.column(S.BAND).to_pylist())
        if S.LABEL in table.column_names:
            lab = table.column(S.LABEL).to_pylist()
            ids_t = table.column(S.ID).to_pylist()
            classes.update(dict(zip(ids_t, lab)).values())
        clean_t, rep = clean(table, min_obs=min_obs)
        for k, v in rep.points.items():
            dropped[k] += v
        objects_removed += len(rep.removed)
        report_points += rep.points_in
        t, off = S.flat(clean_t, S.TIME)
        lens.append(np.diff(off))
        if len(off) > 1:
            nz = np.diff(off) > 0
            spans.append(t[off[1:][nz] - 1] - t[off[:-1][nz]])
    if band is not None and rows == 0:
        raise StarcurveError(f"{p}: no light curves in band(s) {band}")
    lens = np.concatenate(lens) if lens else np.zeros(0, int)
    spans = np.concatenate(spans) if spans else np.zeros(0)
    stat = lambda a: {
        "min": float(a.min()) if len(a) else 0,
        "median": float(np.median(a)) if len(a) else 0,
        "max": float(a.max()) if len(a) else 0,
    }
    return {
        "path": p,
        "objects": len(ids),
        "rows": rows,
        "bands": dict(bands),
        "classes": {("(unlabeled)" if k is None else str(k)): v for k, v in classes.most_common()},
        "obs_per_lc": {k: int(v) for k, v in stat(lens).items()},
        "time_span_days": stat(spans),
        "points": report_points,
        "min_obs": min_obs,
        "dropped": {"points": dict(dropped), "light_curves": objects_removed},
    }


@click.command("inspect")
@input_option()
@band_option
@columns_option
@min_obs_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(
    input_path: str, band: str | None, columns: dict | None, min_obs: int, as_json: bool
) -> None:
    """Summarise a light-curve file or folder: objects, bands, classes, lengths, what cleaning drops."""
    info = summarise(input_path, band, columns, min_obs)
    if as_json:
        click.echo(json.dumps(info))
        return
    o = info["obs_per_lc"]
    ts = info["time_span_days"]
    click.echo(f"{info['path']}")
    click.echo(f"  objects {info['objects']:,}   rows {info['rows']:,}   points {info['points']:,}")
    click.echo("  bands   " + ", ".join(f"{k}: {v:,}" for k, v in info["bands"].items()))
    if info["classes"]:
        click.echo("  classes " + ", ".join(f"{k}: {v:,}" for k, v in info["classes"].items()))
    click.echo(f"  obs/LC  min {o['min']}  median {o['median']}  max {o['max']}")
    click.echo(
        f"  span    min {ts['min']:.1f} d  median {ts['median']:.1f} d  max {ts['max']:.1f} d"
    )
    d = info["dropped"]
    parts = ", ".join(f"{k} {v:,}" for k, v in d["points"].items() if v) or "no"
    click.echo(
        f"  cleaning would drop: {parts} points; {d['light_curves']} light curves "
        f"(--min-obs {info['min_obs']})"
    )
