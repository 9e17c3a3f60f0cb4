"""Readable FS-1 reports: Markdown tables and PNG plots, per run and merged over runs.

Per run (``write_run_report``): ``report.md`` (method x n, macro F1 mean +- std over folds, accuracy,
seconds per light curve), ``f1_vs_n.png`` (macro F1 versus labels per class with the fold spread),
``confusion.png`` (row-normalised confusion matrices summed over folds, one panel per n) and, for
embedding methods, ``embedding_map.png`` (test vectors in 2-D: UMAP if installed, else t-SNE,
coloured by class). ``starcurve report --input DIR [--input DIR ...]`` merges result folders into
one table and one plot (F1 versus n, one line per method x dataset).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np

from starcurve.cli import OUTPUT_DIR, input_option, output_option
from starcurve.errors import StarcurveError
from starcurve.files import atomic_write

TABLE_HEAD = "| method | dataset (band) | {ns} | s / light curve |"


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed); every plot starts here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Write a figure as PNG atomically (``starcurve.files.atomic_write``) and close it."""
    try:
        return atomic_write(
            path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
        )
    finally:
        pyplot().close(fig)


def _ns(results: list[dict]) -> list[str]:
    """The sizes of the results, as their keys: ascending, "all" last."""
    from starcurve.eval.fewshot import sort_ns

    return [str(n) for n in sort_ns({n for r in results for n in r["results"]})]


def largest_pool(r: dict) -> int | None:
    """The largest class pool of a result (the training objects per class at n = all)."""
    pools = r.get("pool_sizes")
    if not pools:  # results written before pool_sizes: class counts less test counts
        data = r.get("data", {})
        counts, test = data.get("class_counts", {}), data.get("test_counts", {})
        pools = {c: k - test.get(c, 0) for c, k in counts.items()}
    return max(pools.values()) if pools else None


def n_positions(results: list[dict]) -> dict[str, float]:
    """x position of each size key on a plot's n axis: an integer at itself, "all" at the right
    of every other size (the largest class pool, or twice the largest n if that is further)."""
    ns = _ns(results)
    numeric = [int(n) for n in ns if n != "all"]
    pos = {n: float(n) for n in ns if n != "all"}
    if "all" in ns:
        pools = [p for p in map(largest_pool, results) if p]
        right = 2.0 * max(numeric) if numeric else 1.0
        pos["all"] = float(max(max(pools, default=0), right))
    return pos


def _cell(r: dict, n: str) -> str:
    v = r["results"].get(n)
    return f"{v['f1_mean']:.3f} ± {v['f1_std']:.3f}" if v else "—"


def _name(r: dict) -> str:
    return r.get("label") or r["method"]


def _dataset(r: dict) -> str:
    k = len(r["classes"])
    return f"{r['dataset']} ({r['band']}), {k} classes"


def comparison_table(results: list[dict]) -> str:
    """One Markdown row per result: macro F1 mean ± std over folds at each n, and s / LC."""
    ns = _ns(results)
    lines = [
        TABLE_HEAD.format(ns=" | ".join(f"n={n}" for n in ns)),
        "|" + "---|" * (len(ns) + 3),
    ]
    for r in results:
        cells = " | ".join(_cell(r, n) for n in ns)
        lines.append(f"| {_name(r)} | {_dataset(r)} | {cells} | {r['seconds_per_lc']:.4f} |")
    return "\n".join(lines)


def run_table(result: dict) -> str:
    """The Markdown report of one run: F1 and accuracy per n, and what was measured how."""
    ns = _ns([result])
    acc = " | ".join(
        f"{result['results'][n]['acc_mean']:.3f} ± {result['results'][n].get('acc_std', 0):.3f}"
        for n in ns
    )
    lines = [
        f"# FS-1: {_name(result)} on {result['dataset']} ({result['band']})",
        "",
        comparison_table([result]),
        "",
        f"Accuracy: {acc} (n = {', '.join(ns)}).",
        "",
        "Macro F1 on the fixed test set, mean ± std (numpy, ddof=0) over "
        f"{result.get('folds', 3)} folds; s / light curve: wall-clock seconds per light curve to turn "
        "light curves into vectors (or predictions)"
        + (
            f", CPU seconds {result['cpu_seconds_per_lc']:.4f}"
            if result.get("cpu_seconds_per_lc")
            else ""
        )
        + ".",
        "",
        f"- classes ({len(result['classes'])}): {', '.join(result['classes'])}",
        f"- dropped classes (< 30 objects): {_dropped(result)}",
    ]
    data = result.get("data", {})
    if data:
        lines.append(
            f"- objects: {data.get('objects')}, test: {data.get('test_objects')} "
            f"({'the source split' if result.get('test_source') == 'source' else 'seeded 30%'})"
        )
    lines += [f"- machine: {result['machine']}", f"- versions: {_versions(result)}"]
    if result.get("command"):
        lines += ["", "```", result["command"], "```"]
    return "\n".join(lines) + "\n"


def _dropped(r: dict) -> str:
    counts = r.get("dropped_class_counts") or {}
    return ", ".join(f"{c} ({counts.get(c, '?')})" for c in r["dropped_classes"]) or "none"


def _versions(r: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items())


def plot_f1_vs_n(results: list[dict], path: Path, title: str = "FS-1") -> None:
    """Macro F1 versus labels per class: one line per result, band = min..max over folds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    pos = n_positions(results)
    for r in results:
        ns = _ns([r])
        x = [pos[n] for n in ns]
        mean = np.array([r["results"][n]["f1_mean"] for n in ns])
        folds = [r["results"][n].get("f1_folds", [r["results"][n]["f1_mean"]]) for n in ns]
        label = f"{_name(r)} · {r['dataset']} ({r['band']})"
        (line,) = ax.plot(x, mean, marker="o", label=label)
        ax.fill_between(x, [min(f) for f in folds], [max(f) for f in folds],
                        color=line.get_color(), alpha=0.2)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(list(pos.values()), list(pos))
    ax.minorticks_off()
    xlabel = "labeled objects per class (n); shaded: min to max over folds"
    if "all" in pos:
        xlabel += "\nall: the whole pool of every class"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("macro F1 on the test set")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_confusion(result: dict, path: Path) -> None:
    """Row-normalised confusion matrices (summed over folds), one panel per n."""
    plt = pyplot()
    classes = result["classes"]
    ns = _ns([result])
    k = len(classes)
    size = 1.6 + 0.45 * k
    fig, axes = plt.subplots(1, len(ns), figsize=(size * len(ns), size), squeeze=False)
    for ax, n in zip(axes[0], ns):
        cm = sum(
            np.array(v, float) for key, v in result["confusion"].items() if key.endswith(f"_n{n}")
        )
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > 0.5 else "black")  # fmt: skip
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes if ax is axes[0][0] else [], fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_title(f"n = {n}", fontsize=9)
    axes[0][0].set_ylabel("true")
    fig.suptitle(
        f"{_name(result)} on {result['dataset']} ({result['band']}), all folds", fontsize=9
    )
    save_figure(fig, path)


def embedding_2d(X: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D map of vectors: UMAP if installed, else t-SNE (PCA to 50 dims first, for speed)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X = StandardScaler().fit_transform(np.nan_to_num(np.asarray(X, float)))
    try:
        import umap  # optional

        return umap.UMAP(random_state=seed).fit_transform(X), "UMAP"
    except ImportError:
        pass
    if len(X) < 10:
        return PCA(2).fit_transform(X), "PCA"
    from sklearn.manifold import TSNE

    X = PCA(min(50, X.shape[1], len(X))).fit_transform(X)
    perplexity = min(30.0, (len(X) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X), "t-SNE"


def plot_embedding(X: np.ndarray, labels: np.ndarray, path: Path, title: str = "") -> str:
    """Scatter of the 2-D map coloured by class; returns the method used."""
    plt = pyplot()
    Y, how = embedding_2d(X)
    fig, ax = plt.subplots(figsize=(6, 5))
    for c in np.unique(labels):
        sel = labels == c
        ax.scatter(Y[sel, 0], Y[sel, 1], s=4, alpha=0.7, label=f"{c} ({sel.sum()})")
    ax.set_title(f"{title} ({how} of the test embeddings)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=3)
    save_figure(fig, path)
    return how


def write_run_report(result: dict, out, embedding=None) -> None:
    """report.md and the plots of one run in ``out``; ``embedding`` = (X_test, y_test) or None."""
    out = Path(out)
    plot_f1_vs_n(
        [result], out / "f1_vs_n.png", title=f"FS-1 {result['dataset']} ({result['band']})"
    )
    plot_confusion(result, out / "confusion.png")
    text = run_table(result)
    text += "\n![macro F1 vs n](f1_vs_n.png)\n\n![confusion](confusion.png)\n"
    if embedding is not None:
        how = plot_embedding(*embedding, out / "embedding_map.png", title=_name(result))
        text += f"\n![{how} map of the test embeddings](embedding_map.png)\n"
    tmp = out / ".report.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / "report.md")


def load_results(dirs) -> list[dict]:
    """results.json of each folder (or file), with a clear error for a missing one."""
    results = []
    for d in dirs:
        p = Path(d)
        p = p / "results.json" if p.is_dir() else p
        if not p.exists():
            raise StarcurveError(f"{p}: no results.json here; run 'starcurve benchmark' first")
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise StarcurveError(f"{p}: not valid JSON ({e})") from None
        if r.get("protocol") != "FS-1" or "results" not in r:
            raise StarcurveError(f"{p}: not an FS-1 results file")
        results.append(r)
    return results


def write_comparison(results: list[dict], out, title: str = "FS-1 comparison") -> None:
    """``out/report.md`` (one comparison table) and ``out/f1_vs_n.png`` for several runs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_f1_vs_n(results, out / "f1_vs_n.png", title=title)
    machines = sorted({r["machine"] for r in results})
    text = (
        f"# {title}\n\n"
        + comparison_table(results)
        + "\n\nMacro F1, mean ± std over folds. Machines: "
    )
    text += "; ".join(machines) + ".\n\n![macro F1 vs n](f1_vs_n.png)\n"
    tmp = out / ".report.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / "report.md")


@click.command("report")
@input_option(
    "An FS-1 result folder (starcurve benchmark) or its results.json; give --input once per run.",
    multiple=True,
)
@output_option(
    OUTPUT_DIR, "Write report.md and f1_vs_n.png here (else only print the table).", required=False
)
def report_cmd(input_path, output):
    """Merge FS-1 result folders into one comparison table (and plot with --output)."""
    results = load_results(input_path)
    click.echo(comparison_table(results))
    if output:
        write_comparison(results, output)
        click.echo(f"wrote {Path(output) / 'report.md'} and {Path(output) / 'f1_vs_n.png'}")
