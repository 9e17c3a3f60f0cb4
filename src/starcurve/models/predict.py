"""``starcurve predict``: classes for light curves from any classifier folder; one output schema.

Any folder that ``starcurve.load`` opens as a classifier (an RNN, a CNN, an encoder with its head,
the shipped model) answers through ``estimators.Predictor.answer``; ``starcurve classify`` is this
command with the shipped model. Output columns, per object (``--per-band``: per (object, band)):

    object_id, band, [label], n_obs, class, probability, prob_<class>..., [ood_score, is_ood],
    skip_reason

``class`` is null and ``skip_reason`` says why for a light curve that is not classified (too few
points, non-finite input or output); ``ood_score`` / ``is_ood`` appear for a model with an
out-of-distribution score (> 1: unlike every training class). An object observed in several bands
gets one answer (``models/per_object.py``: its bands' probabilities and OOD scores averaged,
weighted by their numbers of points). Runs partition by partition, in this process or on Dask,
resumably, as ``starcurve embed`` (docs/scale.md).

``--state DIR`` (an RNN only): the input holds only the new observations of each object; they are
added to its stored state in DIR (``NetworkClassifier.update_table``; created if absent) and the
output, in the same schema, equals a plain ``predict`` on the whole light curves (``n_obs`` counts
every point so far). It runs in this process, partition by partition, one writer per DIR.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pyarrow as pa
import torch

from starcurve.cli import (
    OUTPUT_FILE,
    band_option,
    columns_option,
    dask_options,
    input_option,
    min_obs_option,
    output_option,
)
from starcurve.data import schema as S
from starcurve.data.clean import MIN_OBS, clean
from starcurve.errors import StarcurveError
from starcurve.models.estimators import Answers, Predictor
from starcurve.models.per_object import per_object


@functools.lru_cache(maxsize=4)
def load_predictor(path: str | None) -> Predictor:
    """A classifier folder, loaded once per process (a Dask worker); None: the shipped model."""
    from starcurve.models.folder import load

    model = load(path)
    if not isinstance(model, Predictor):
        raise StarcurveError(
            f"{path or 'the model'}: an encoder folder gives embeddings, not classes "
            "(use `starcurve embed`, or train a classifier on it)"
        )
    return model


def prediction_table(model: Predictor, table: pa.Table, min_obs: int = MIN_OBS) -> pa.Table:
    """The output rows (module docstring) for every row of ``table`` (any rows: cleaned here)."""
    good, report = clean(table, min_obs=min_obs)
    n_obs = np.zeros(table.num_rows, np.int32)
    n_obs[report.kept] = S.lengths(good)
    labels = table.column(S.LABEL) if S.LABEL in table.column_names else None
    return output_table(
        model.classes_,
        table.column(S.ID),
        table.column(S.BAND),
        labels,
        n_obs,
        model.answer(good).expand(table, report),
    )


def output_table(classes, ids, bands, labels, n_obs, ans: Answers) -> pa.Table:
    done = np.isfinite(ans.proba).all(1)
    names = np.asarray(classes, dtype=object)
    best = names[np.nan_to_num(ans.proba, nan=-1.0).argmax(1)] if len(names) else names
    cols = {S.ID: pa.array(ids, pa.string()), S.BAND: pa.array(bands, pa.string())}
    if labels is not None:
        cols[S.LABEL] = labels
    cols["n_obs"] = pa.array(np.asarray(n_obs, np.int32))
    cols["class"] = pa.array(np.where(done, best, None).tolist(), pa.string())
    cols["probability"] = pa.array(np.nanmax(np.where(done[:, None], ans.proba, -1), 1, initial=-1),
                                   pa.float32(), mask=~done)  # fmt: skip
    for j, c in enumerate(names):
        cols[f"prob_{c}"] = pa.array(ans.proba[:, j].astype(np.float32), pa.float32(), mask=~done)
    if ans.ood is not None:
        ood = np.asarray(ans.ood, np.float32)
        cols["ood_score"] = pa.array(ood, pa.float32(), mask=~done)
        cols["is_ood"] = pa.array(ood > 1.0, pa.bool_(), mask=~done)
    cols["skip_reason"] = pa.array(
        [None if d else r for d, r in zip(done, ans.reasons)], pa.string()
    )
    return pa.table(cols)


def per_object_table(rows: pa.Table, classes: list[str]) -> pa.Table:
    """One row per object from per-band rows (``models/per_object.py``); ``band`` lists the bands
    that answered, ``n_obs`` counts their points; an object none of whose bands answered keeps every
    band's reason."""
    proba = np.stack([rows.column(f"prob_{c}").to_numpy(zero_copy_only=False) for c in classes], 1)
    has_ood = "ood_score" in rows.column_names
    values = np.column_stack([proba] + ([rows.column("ood_score").to_numpy(zero_copy_only=False)]
                                        if has_ood else []))  # fmt: skip
    obj = per_object(rows.column(S.ID).to_numpy(zero_copy_only=False),
                     rows.column(S.BAND).to_numpy(zero_copy_only=False),
                     rows.column("n_obs").to_numpy(), values)  # fmt: skip
    done = np.isfinite(obj.values).all(1)
    reasons = np.full(len(done), None, dtype=object)
    for i, (band, why) in enumerate(
        zip(rows.column(S.BAND).to_pylist(), rows.column("skip_reason").to_pylist())
    ):
        o = obj.rows[i]
        if not done[o] and why:
            reasons[o] = f"{reasons[o]}; {band}: {why}" if reasons[o] else f"{band}: {why}"
    first = pa.array(obj.first)
    labels = rows.column(S.LABEL).take(first) if S.LABEL in rows.column_names else None
    ans = Answers(obj.values[:, : len(classes)].astype(np.float32), list(reasons),
                  obj.values[:, -1] if has_ood else None)  # fmt: skip
    return output_table(classes, rows.column(S.ID).take(first), obj.bands, labels, obj.n_obs, ans)


@dataclass(frozen=True)
class PredictJob:
    """``prediction_table`` over one input partition (``starcurve.parts``); the output keeps the
    skipped rows with their ``skip_reason``. Plain data for Dask; each worker loads the model once."""

    model: str | None
    band: str | None = None
    columns: dict | None = None
    min_obs: int = MIN_OBS
    threads: int = 1
    bf16: bool = False

    def __call__(self, part) -> tuple[pa.Table, dict]:
        from starcurve.data.io import read_partition
        from starcurve.models.hub import use_bf16

        torch.set_num_threads(self.threads)
        use_bf16(self.bf16)
        table = read_partition(part, band=self.band, columns=self.columns)
        out = prediction_table(load_predictor(self.model), table, self.min_obs)
        why = out.column("skip_reason").to_pylist()
        keys = [
            f"{i}/{b}" for i, b in zip(out.column(S.ID).to_pylist(), out.column(S.BAND).to_pylist())
        ]
        skipped = {k: w for k, w in zip(keys, why) if w is not None}
        return out, {
            "rows_in": table.num_rows,
            "skipped": skipped,
            "answers": out.num_rows - len(skipped),
        }


def _predict_options(f):
    for option in reversed([
        input_option("Light curves to classify: Parquet file, folder of shards (a HATS catalogue's "
                     "too), or text files."),
        output_option(OUTPUT_FILE, "Output Parquet file."),
        band_option, columns_option, min_obs_option,
        click.option("--per-band", is_flag=True, help="One row per (object, band) instead of one per object."),
    ]):  # fmt: skip
        f = option(f)
    return dask_options(f)


@click.command("predict")
@click.option(
    "--model",
    default=None,
    help="Classifier folder: starcurve train (rnn, cnn), a trained encoder classifier, or "
    "the shipped model [default].",
)
@click.option(
    "--state", "state_dir", type=click.Path(file_okay=False), default=None,
    help="RNN only: folder of per-object states. The input then holds only the NEW observations "
         "of each object; they are added to its stored state (created if absent) and the answers "
         "equal a plain predict on the whole light curves.",
)  # fmt: skip
@_predict_options
def predict_cmd(model, state_dir, **opts) -> None:
    """Per object: class, probabilities, OOD score where the model has one (or why not classified)."""
    if state_dir is not None:
        run_update(model, state_dir, **opts)
    else:
        run_predict(model, **opts)


@click.command("classify")
@_predict_options
def classify_cmd(**opts) -> None:
    """Classify with the shipped model: `starcurve predict` without --model."""
    run_predict(None, **opts)


def run_predict(
    model,
    input_path,
    output,
    band,
    columns,
    min_obs,
    per_band,
    chunk_rows,
    workers,
    threads,
    scheduler,
    bf16,
) -> None:
    from starcurve.data.io import partitions, read_parquet, write_parquet
    from starcurve.models.hub import use_bf16
    from starcurve.parts import run, threads_for

    parts = partitions(input_path, rows=chunk_rows, columns=columns)  # opens the input
    threads = threads_for(len(parts), workers, scheduler, threads)
    torch.set_num_threads(threads)
    use_bf16(bf16)
    predictor = load_predictor(model)
    output = Path(output)
    rows = output if per_band else output.with_name(output.name + ".per_band.parquet")
    setup = {"model": str(model or "default"), "input": str(input_path), "band": band,
             "min_obs": min_obs, "chunk_rows": chunk_rows, **({"columns": columns} if columns else {}),
             **({"bf16": True} if bf16 else {})}  # fmt: skip
    summary = run(PredictJob(model, band, columns, min_obs, threads, bf16), parts, rows, setup,
                  workers=workers, threads=threads, scheduler=scheduler, desc="predict",
                  nothing=f"{input_path}: no light curves" + (f" in band {band}" if band else ""))  # fmt: skip
    out = read_parquet(rows)
    if not per_band:
        out = per_object_table(out, predictor.classes_)
        write_parquet(out, output)
        rows.unlink()
    _report(out, output, per_band)
    click.echo(f"summary: {summary}")


def run_update(
    model,
    state_dir,
    input_path,
    output,
    band,
    columns,
    min_obs,
    per_band,
    chunk_rows,
    workers,
    threads,
    scheduler,
    bf16,
) -> None:
    """``predict --state``: new observations added to the stored per-object states of an RNN."""
    from starcurve.data.io import partitions, read_partition, write_parquet

    if scheduler or workers:
        raise StarcurveError(
            "--state runs in this process (one writer per state folder); leave out --workers and "
            "--scheduler"
        )
    predictor = load_predictor(model)
    store = predictor.state_store(state_dir)  # a CNN / encoder model, or another model's states
    parts = partitions(input_path, rows=chunk_rows, columns=columns)  # opens the input
    torch.set_num_threads(threads or 1)
    tables = []
    for part in parts:
        table = read_partition(part, band=band, columns=columns)
        if table.num_rows == 0:
            continue
        ans, n_obs = predictor.update_table(table, store, min_obs)
        labels = table.column(S.LABEL) if S.LABEL in table.column_names else None
        tables.append(output_table(predictor.classes_, table.column(S.ID), table.column(S.BAND),
                                   labels, n_obs, ans))  # fmt: skip
    if not tables:
        raise StarcurveError(
            f"{input_path}: no light curves" + (f" in band {band}" if band else "")
        )
    out = pa.concat_tables(tables, promote_options="default")
    if not per_band:
        out = per_object_table(out, predictor.classes_)
    write_parquet(out, output)
    _report(out, output, per_band)
    click.echo(f"states: {state_dir}")


def _report(out: pa.Table, output, per_band: bool) -> None:
    skipped = int(out.column("class").null_count)
    what = "light curves (object, band)" if per_band else "objects"
    click.echo(
        f"{out.num_rows - skipped} classified, {skipped} skipped ({what}; see skip_reason); "
        f"wrote {output}"
    )
    if "is_ood" in out.column_names:
        click.echo(
            f"{int(np.sum(out.column('is_ood').fill_null(False)))} flagged out of distribution"
        )
    counts = dict(zip(*np.unique(out.column("class").drop_null().to_numpy(zero_copy_only=False),
                                 return_counts=True)))  # fmt: skip
    click.echo(
        "classes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    )
