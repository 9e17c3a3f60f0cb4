"""The ``starcurve`` command: one sub-command per user job.

Sub-commands live in the modules that own them and are imported only when used, so
``starcurve --help`` is fast and a broken optional part cannot break the others.
Every ``StarcurveError`` (and any ``OSError``: a file system problem) is printed as one line
(exit code 2), never as a traceback. The options that open files are defined here once and shared by
every command: ``OUTPUT_FILE`` / ``OUTPUT_DIR`` / ``OUTPUT_ANY`` check that an output can be written
before any work starts, ``COLUMNS`` is the column mapping of ``starcurve.read``.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from starcurve.errors import StarcurveError

COMMANDS = {
    "inspect": ("starcurve.data.inspect", "inspect", "Summarise a light-curve file or folder."),
    "simulate": ("starcurve.data.simulate", "simulate_cmd", "Write simulated survey light curves."),
    "benchmark": ("starcurve.eval.fewshot", "benchmark_cmd", "Score a method with FS-1."),
    "report": ("starcurve.eval.report", "report_cmd", "Merge benchmark result folders."),
    "pretrain": ("starcurve.train.pretrain", "pretrain_cmd", "Pretrain the encoder (masked)."),
    "finetune": (
        "starcurve.train.pretrain",
        "finetune_cmd",
        "Self-supervised fine-tune on a pool.",
    ),
    "embed": ("starcurve.models.hub", "embed_cmd", "Write per-object embeddings."),
    "export": ("starcurve.models.export", "export_cmd", "Export a model to ONNX (onnxruntime)."),
    "train": ("starcurve.train.supervised", "train_cmd", "Train an RNN or CNN classifier."),
    "predict": (
        "starcurve.models.predict",
        "predict_cmd",
        "Classes and probabilities from any classifier.",
    ),
    "classify": (
        "starcurve.models.predict",
        "classify_cmd",
        "Classify with the shipped model (= predict).",
    ),
    "plot": (
        "starcurve.lightcurve",
        "plot_cmd",
        "Plot one object: light curve, periodogram, folds.",
    ),
    "index": ("starcurve.search", "index_cmd", "Build a vector index of embeddings (FAISS)."),
    "similar": ("starcurve.search", "similar_cmd", "Find the objects most like a query."),
    "anomalies": (
        "starcurve.search",
        "anomalies_cmd",
        "Rank objects by how unlike the rest they are.",
    ),
    "demo": ("starcurve.demo", "demo_cmd", "Run the whole path on a built-in default."),
}


class Output(click.ParamType):
    """An output path, checked before the work starts (``starcurve.files.check_writable``)."""

    name = "path"

    def __init__(self, folder: bool | None):
        self.folder = folder

    def convert(self, value, param, ctx):
        from starcurve.files import check_writable

        return str(check_writable(value, self.folder))


class Columns(click.ParamType):
    """``object_id=oid,time=mjd`` (canonical=source) as a mapping."""

    name = "mapping"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            return dict(kv.split("=", 1) for kv in value.split(","))
        except ValueError:
            raise StarcurveError(
                f"--columns must look like object_id=oid,time=mjd,mag=m,mag_err=e; got {value!r}"
            ) from None


bf16_option = click.option(
    "--bf16", is_flag=True,
    help="Encoder forward passes in bfloat16: about 1.3x for the shipped model on CPUs with AMX, "
         "slower on CPUs without (docs/encoder.md).",
)  # fmt: skip


def dask_options(f):
    """``--chunk-rows``, ``--workers``, ``--threads``, ``--scheduler``: how a per-partition command
    (``starcurve.parts``) cuts its input and where it runs (docs/scale.md)."""
    options = [
        click.option("--chunk-rows", default=2048, show_default=True, type=click.IntRange(1),
                     help="Light curves per partition (whole Parquet row groups; one output part "
                          "each)."),
        click.option("--workers", default=None, type=click.IntRange(0),
                     help="Dask worker processes of a local cluster [default: one per core]; 0: no "
                          "Dask, in this process."),
        click.option("--threads", default=None, type=click.IntRange(1),
                     help="Threads per Dask worker [default: 1], or of this process when it runs "
                          "alone [default: every core]."),
        click.option("--scheduler", default=None, help="Address of a running Dask scheduler."),
        bf16_option,
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


OUTPUT_FILE, OUTPUT_DIR, OUTPUT_ANY = Output(False), Output(True), Output(None)
COLUMNS = Columns()

# ---- the shared vocabulary: one definition per option, used by every command that has it --------
# --input / --output: files in and out; --data: training data; --band: only these bands
# (comma-separated; default every band); --columns: the column mapping; --min-obs: the cleaning
# floor (one default, starcurve.data.clean.MIN_OBS); --threads; --seed; --exclude-ids.
columns_option = click.option(
    "--columns", type=COLUMNS, default=None,
    help="Column mapping CANONICAL=SOURCE, e.g. object_id=oid,time=mjd,mag_err=e.",
)  # fmt: skip
band_option = click.option(
    "--band", default=None,
    help="Only rows of these bands, comma-separated (e.g. V or B,R) [default: every band].",
)  # fmt: skip
exclude_ids_option = click.option(
    "--exclude-ids", type=click.Path(dir_okay=False), default=None,
    help="Text file of object ids to leave out, one per line ('#' comments allowed).",
)  # fmt: skip


def input_option(
    help: str = "Light curves: Parquet file, folder of shards, or text files.",
    required: bool = True,
    multiple: bool = False,
):
    return click.option(
        "--input", "input_path", required=required, multiple=multiple, type=click.Path(), help=help
    )


def output_option(kind: Output = OUTPUT_FILE, help: str = "Output file.", required: bool = True):
    return click.option("--output", "output", required=required, default=None, type=kind, help=help)


def data_option(help: str = "Training light curves (Parquet files or folders); more may follow."):
    return click.option(
        "--data", "data", multiple=True, required=True, type=click.Path(), help=help
    )


def min_obs_option(f):
    from starcurve.data.clean import MIN_OBS

    return click.option(
        "--min-obs",
        default=MIN_OBS,
        show_default=True,
        type=click.IntRange(1),
        help="Leave out light curves with fewer points after cleaning.",
    )(f)


def threads_option(help: str = "torch CPU threads of this process [default: every core]."):
    return click.option("--threads", default=None, type=click.IntRange(1), help=help)


def seed_option(help: str = "Random seed."):
    return click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help=help)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, help_text = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except (ModuleNotFoundError, AttributeError) as e:
            if module not in str(e) and attr not in str(e):
                raise

            @click.command(name, help=f"{help_text} (not available in this version)")
            def missing():
                raise StarcurveError(f"'{name}' is not available in this version of starcurve")

            return missing

    def format_commands(self, ctx, formatter):
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="More log output.")
def cli(verbose: bool) -> None:
    """starcurve: deep learning on astronomical light curves."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )


def main(argv=None) -> None:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        cli.main(args=argv, standalone_mode=False)
    except (StarcurveError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
