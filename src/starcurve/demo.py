"""``starcurve demo``: the whole path on a built-in default, offline, in a few minutes on 2 cores.

Simulated ASAS-like light curves (or ``--data`` with the user's labeled file) -> embeddings of the
shipped model -> FS-1 few-shot probes at 20/100/500 labels per class, with the features + forest
baseline beside it -> a printed comparison table and a report folder with plots.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from starcurve.errors import StarcurveError


@click.command("demo")
@click.option("--data", default=None, type=click.Path(), help="Your labeled light curves (default: simulated).")
@click.option("--band", default="*", show_default=True, help="Band of --data ('*': each object's own).")
@click.option("--survey", default="asas", show_default=True, help="Simulated survey cadence.")
@click.option("--per-class", default=720, show_default=True, help="Simulated objects per class.")
@click.option("--n", "ns", default="20,100,500", show_default=True, help="Labels per class.")
@click.option("--folds", default=3, show_default=True)
@click.option("--methods", default="embed,forest", show_default=True, help="FS-1 methods to run.")
@click.option("--model", default=None, help="Model folder (default: the shipped model).")
@click.option("--out", "out_dir", default="starcurve-demo", show_default=True, type=click.Path())
@click.option("--seed", default=0, show_default=True)
def demo_cmd(data, band, survey, per_class, ns, folds, methods, model, out_dir, seed):
    """Run the whole path on a built-in default: embed, few-shot probe, forest, report."""
    from starcurve.data.io import write_parquet
    from starcurve.eval import fewshot, report

    out = Path(out_dir)
    t0 = time.time()
    if data is None:
        from starcurve.data.simulate import ASAS_CLASSES, simulate

        if per_class < 50:
            raise StarcurveError("--per-class must be at least 50 (FS-1 keeps classes with >= 30 objects)")
        click.echo(f"simulating {per_class} {survey} light curves per class: {', '.join(ASAS_CLASSES)}")
        table = simulate(survey, per_class * len(ASAS_CLASSES), ASAS_CLASSES, seed=seed)
        data = write_parquet(table, out / "data" / f"simulated_{survey}.parquet")
    names = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in fewshot.METHODS]
    if unknown:
        raise StarcurveError(f"unknown method(s) {unknown}; choose from {', '.join(fewshot.METHODS)}")
    fs1 = fewshot.prepare(data, band)
    click.echo(f"FS-1 on {fs1.dataset}: {len(fs1.ids)} objects, {len(fs1.classes)} classes, "
               f"{int(fs1.test.sum())} in the fixed test set")  # fmt: skip
    results = []
    for m in names:
        click.echo(f"-- {m}")
        sizes = [int(n) for n in ns.split(",")]
        cmd = f"starcurve demo (method {m})"
        results.append(fewshot.run(fs1, band, m, out / m, model=model, ns=sizes, folds=folds, command=cmd))
    report.write_comparison(results, out, title="starcurve demo")
    click.echo("")
    click.echo(report.comparison_table(results))
    click.echo(f"\nreport: {out / 'report.md'} (plots beside it); {time.time() - t0:.0f} s in all")
