"""``starcurve demo``: the whole path on a built-in default, offline, in about two minutes on 2 cores.

Simulated ASAS-like light curves (or ``--data`` with the user's labeled file) -> embeddings of the
shipped model -> FS-1 few-shot probes, with the features + forest baseline beside it -> a printed
comparison table, a closing paragraph in plain words, and a report folder with plots.

To fit its time budget the demo is smaller than the full protocol, and says so: it first measures how
fast this machine embeds and extracts features (on 56 light curves), then simulates as many objects per
class as fit in about ``BUDGET_S`` seconds of that work (60 to 720; ``--per-class`` fixes the number),
and uses 20 and 100 labels per class (the protocol also has 500). The expected running time is
printed before the long phases start; every long phase shows a progress bar.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np
from threadpoolctl import threadpool_limits

from starcurve.cli import OUTPUT_DIR, band_option, output_option, seed_option
from starcurve.errors import StarcurveError

BUDGET_S = 60.0  # seconds of embedding + feature extraction the default sample is sized for
CALIBRATION_PER_CLASS = 8
# seconds of one probe fit + prediction (FS-1 cell) as (fixed, per training object), measured on the
# 2-core reference machine: MLP on embeddings, 500-tree forest on features; and of a method's report
PROBE_S = {"forest": (2.5, 0.002), "default": (0.5, 0.004)}
REPORT_S = 10.0


@click.command("demo")
@click.option(
    "--data",
    default=None,
    type=click.Path(),
    help="Your labeled light curves (default: simulated).",
)
@band_option
@click.option("--survey", default="asas", show_default=True, help="Simulated survey cadence.")
@click.option(
    "--per-class",
    default=None,
    type=int,
    help="Simulated objects per class [default: as many as fit the time budget, 60-720].",
)
@click.option(
    "--n",
    "ns",
    default="20,100",
    show_default=True,
    help="Labels per class (the protocol: 20,100,500).",
)
@click.option("--folds", default=3, show_default=True)
@click.option("--methods", default="embed,forest", show_default=True, help="FS-1 methods to run.")
@click.option("--model", default=None, help="Model folder (default: the shipped model).")
@output_option(OUTPUT_DIR, "Result folder [default: a new temporary folder].", required=False)
@seed_option()
def demo_cmd(data, band, survey, per_class, ns, folds, methods, model, output, seed):
    """Run the whole path on a built-in default: embed, few-shot probe, forest, report."""
    import torch

    if band and "," in band:
        raise StarcurveError(
            f"--band: the demo takes one band (FS-1 uses one row per object), got {band!r}"
        )
    band = band or "*"  # FS-1's '*': each object in its own band
    threads = torch.get_num_threads()
    # scikit-learn's OpenMP and BLAS on one thread: its small probes and the t-SNE map run faster
    # so (10x when other jobs share the cores); the encoder keeps its threads
    with threadpool_limits(1):
        torch.set_num_threads(threads)
        _demo(data, band, survey, per_class, ns, folds, methods, model, output, seed)


def _demo(data, band, survey, per_class, ns, folds, methods, model, out_dir, seed) -> None:
    from starcurve.data.io import write_parquet
    from starcurve.data.simulate import ASAS_CLASSES, simulate
    from starcurve.eval import fewshot, report

    t0 = time.time()
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="starcurve-demo-"))
    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in fewshot.METHODS]
    if unknown:
        raise StarcurveError(
            f"unknown method(s) {unknown}; choose from {', '.join(fewshot.METHODS)}"
        )
    sizes = fewshot.parse_ns(ns)
    if per_class is not None and per_class < 50:
        raise StarcurveError(
            "--per-class must be at least 50 (FS-1 keeps classes with >= 30 objects)"
        )
    k = len(ASAS_CLASSES)
    click.echo(f"starcurve demo: about 2 to 3 minutes on a 2-core CPU; results go to {out}")
    click.echo(
        f"measuring this machine's speed on {CALIBRATION_PER_CLASS * k} simulated light curves ..."
    )
    calib = simulate(survey, CALIBRATION_PER_CLASS * k, ASAS_CLASSES, seed=seed + 1)
    per_lc = _seconds_per_lc(calib, names, model)
    if data is None:
        if per_class is None:
            per_class = int(np.clip(BUDGET_S / (k * max(per_lc, 1e-4)), 60, 720))
            sample = f"{per_class} simulated objects per class, sized to fit the time budget"
        else:
            sample = f"{per_class} simulated objects per class"
        click.echo(
            f"simulating {per_class} {survey} light curves per class: {', '.join(ASAS_CLASSES)}"
        )
        table = simulate(survey, per_class * k, ASAS_CLASSES, seed=seed)
        data = write_parquet(table, out / "data" / f"simulated_{survey}.parquet")
    else:
        sample = f"the labeled light curves of {data}"
    fs1 = fewshot.prepare(data, band)
    n_obj, n_test = len(fs1.ids), int(fs1.test.sum())
    click.echo(f"FS-1 on {fs1.dataset}: {n_obj} objects, {len(fs1.classes)} classes, "
               f"{n_test} in the fixed test set")  # fmt: skip
    n_train = sum(fewshot.per_class(n, len(p)) for n in sizes for p in fs1.pool.values())
    expected = (
        time.time()
        - t0
        + n_obj * per_lc
        + folds
        * sum(
            a * len(sizes) + b * n_train
            for a, b in (PROBE_S.get(m, PROBE_S["default"]) for m in names)
        )
        + REPORT_S * (len(names) + 1)
    )
    click.echo(
        f"demo settings: {sample}; {', '.join(map(str, sizes))} labels per class; {folds} "
        f"folds (the full protocol: --n 20,100,500 on real survey files, see docs/benchmarks.md)"
    )
    click.echo(
        f"expected running time: about {_minutes(expected)} on this machine "
        f"({per_lc * 1000:.0f} ms per light curve to embed and extract features)"
    )
    results = []
    for m in names:
        click.echo(f"-- {m}: {fewshot.METHODS[m].help}")
        cmd = f"starcurve demo (method {m})"
        results.append(
            fewshot.run(fs1, band, m, out / m, model=model, ns=sizes, folds=folds, command=cmd)
        )
    report.write_comparison(results, out, title="starcurve demo")
    click.echo("")
    click.echo(report.comparison_table(results))
    if fs1.band == "*":
        click.echo("(*): each object in its own band.")
    click.echo("")
    click.echo(closing(results, n_obj, n_test, len(fs1.classes), folds))
    click.echo(f"\nreport: {out / 'report.md'} (plots beside it); {time.time() - t0:.0f} s in all")


def _seconds_per_lc(calib, methods: list[str], model) -> float:
    """Wall seconds per light curve of the vectorisers the demo runs, measured on ``calib``."""
    from starcurve.data.clean import clean
    from starcurve.models.forest import extract_features
    from starcurve.models.hub import load_model

    table, _ = clean(calib)
    steps = []
    if any(m in ("embed", "hybrid") for m in methods):
        steps.append(load_model(model).embed_table)
    if any(m in ("forest", "hybrid") for m in methods):
        steps.append(extract_features)
    seconds = 0.0
    for step in steps:
        step(table.slice(0, 2))  # warm-up: imports and first calls are not what the sample costs
        t = time.perf_counter()
        step(table)
        seconds += time.perf_counter() - t
    return seconds / max(table.num_rows, 1)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _labels(n) -> str:
    return "every pool object labeled (n = all)" if str(n) == "all" else f"{n} labels per class"


def closing(results: list[dict], n_obj: int, n_test: int, k: int, folds: int) -> str:
    """What was compared, who won by how much at each number of labels, and what to try next."""
    from starcurve.eval.fewshot import sort_ns
    from starcurve.eval.report import _name

    ns = sort_ns({n for r in results for n in r["results"]})
    what = " and ".join(_name(r) for r in results)
    lines = [
        (
            f"What this compared: {what}, on {n_obj} light curves of {k} classes. Each method learned "
            f"from a few labeled examples per class and was scored on the same {n_test} test objects by "
            f"macro F1 (1 is perfect, about {1 / k:.2f} is guessing), averaged over {folds} folds."
        )
    ]
    for n in ns:
        scored = sorted(
            ((r["results"][str(n)], _name(r)) for r in results if str(n) in r["results"]),
            key=lambda x: -x[0]["f1_mean"],
        )
        if len(scored) == 1:
            lines.append(f"With {_labels(n)}, {scored[0][1]} scored {scored[0][0]['f1_mean']:.2f}.")
            continue
        (a, name_a), (b, name_b) = scored[0], scored[1]
        gap = a["f1_mean"] - b["f1_mean"]
        spread = max(a["f1_std"], b["f1_std"])
        verdict = f"{name_a} wins by {gap:.2f}" + (
            f" (more than the spread between folds, {spread:.2f})"
            if gap > spread
            else f", within the spread between folds ({spread:.2f}): a tie"
        )
        lines.append(
            f"With {_labels(n)}: {name_a} {a['f1_mean']:.2f}, {name_b} "
            f"{b['f1_mean']:.2f}; {verdict}."
        )
    lines.append(
        "What to try next: your own labeled light curves (starcurve demo --data FILE, a 'label' "
        "column); the full protocol on real survey data (starcurve benchmark --data FILE --band R "
        "--method embed --output DIR, and --method forest; docs/benchmarks.md); if the embeddings "
        "lose, adapt the encoder to your survey first (starcurve finetune --data POOL --output DIR, "
        "then --model DIR)."
    )
    return "\n".join(lines)
