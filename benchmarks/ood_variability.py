"""Could a plain variability test flag non-variable stars? Scatter over quoted errors, real vs simulated.

For every light curve: r = robust scatter of the magnitudes (1.4826 MAD) / median quoted error.
A constant star with honest errors has r ~ 1; a variable has r > 1. Percentiles of r over the real
labeled variables of asas_acvs (V) and eros_lmc (R), per class, and over 300 simulated constant stars
and quasars (damped random walk) of the matching survey, with the share of those that a test keeping
99% of the real variables (r below their 1st percentile) would flag.

    python benchmarks/ood_variability.py     # -> benchmarks/results/ood_variability.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from starcurve import clean, read
from starcurve.data import schema as S
from starcurve.data.simulate import simulate
from starcurve.files import atomic_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "ood_variability.json"
FILES = {"asas_acvs": ("V", "asas"), "eros_lmc": ("R", "eros")}


def scatter_over_error(table) -> np.ndarray:
    """1.4826 MAD of the magnitudes / median error, per row (grouped, no loop per light curve)."""
    mag, off = S.flat(table, S.MAG)
    row = S.row_index(off)
    df = pd.DataFrame({"row": row, "mag": mag.astype(np.float64), "err": S.flat(table, S.ERR)[0]})
    g = df.groupby("row")
    dev = (df["mag"] - g["mag"].transform("median")).abs()
    return (1.4826 * dev.groupby(df["row"]).median() / g["err"].median()).to_numpy()


def pct(r: np.ndarray, q=(1, 5, 50, 95, 99)) -> dict:
    return {f"p{k}": round(float(v), 3) for k, v in zip(q, np.percentile(r, q))}


def main() -> None:
    res = {}
    for name, (band, survey) in FILES.items():
        t, _ = clean(read(DATA / f"{name}.parquet", band=band), min_obs=10)
        r, lab = scatter_over_error(t), np.asarray(t.column(S.LABEL).to_pylist())
        res[name] = {"all_variables": pct(r), "fraction_below_1": round(float((r < 1).mean()), 3),
                     "per_class": {c: pct(r[lab == c]) for c in np.unique(lab)}}  # fmt: skip
        cut = np.percentile(r, 1)  # a test that keeps 99% of the real variables: flag r < cut
        for cls in ("constant", "QSO"):
            s, _ = clean(simulate(survey, 300, [cls], seed=1), min_obs=10)
            rs = scatter_over_error(s)
            res[name][f"simulated_{survey}_{cls}"] = {
                **pct(rs),
                "flagged_below_real_p1": round(float((rs < cut).mean()), 3),
            }
        print(
            name,
            res[name]["all_variables"],
            {k: v for k, v in res[name].items() if k.startswith("sim")},
        )
    atomic_json(res, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
