"""Build the pretraining set of the shipped model from ../shared/data, excluding every FS-1 test object.

    python scripts/build_pretrain_set.py --shared ../shared/data --out runs/pretrain_data

Writes (not committed: they are copies of survey data) ``OUT/train/*.parquet`` and ``OUT/val/*.parquet``
(a 2% random hold-out of the allowed objects for reconstruction RMSE), and (committed with the model)
``training_objects.txt.gz``: every object id used, and ``excluded.json``: what was left out and why.

Excluded: the FS-1 test objects of asas_acvs (V) and eros_lmc (R) (every band of those stars), and the
asas3_unlabeled stars that asas3_unlabeled_acvs_overlap.csv matches to those asas_acvs test objects.
Labels are dropped: pretraining is self-supervised.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from starcurve import clean, read, write_parquet
from starcurve.data import schema as S
from starcurve.eval.fewshot import test_object_ids

FILES = ["asas_acvs", "asas3_unlabeled", "eros_lmc", "macho_sample", "ogle2_microlensing"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--out", default="runs/pretrain_data")
    ap.add_argument("--ids-out", default="src/starcurve/resources/models/default")
    ap.add_argument("--val-fraction", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    test = test_object_ids(shared / "asas_acvs.parquet", "V") | test_object_ids(
        shared / "eros_lmc.parquet", "R"
    )
    overlap = pd.read_csv(shared / "asas3_unlabeled_acvs_overlap.csv")
    near_test = set(
        overlap.loc[overlap.asas_acvs_object_id.isin(test), "asas3_unlabeled_object_id"]
    )
    excluded = {"fs1_test_objects": len(test), "asas3_near_fs1_test": len(near_test)}
    parts, kept_ids = [], []
    for name in FILES:
        table = read(shared / f"{name}.parquet")
        drop = pa.array(sorted(test | near_test))
        table = table.filter(pc.invert(pc.is_in(table.column(S.ID), drop)))
        table, rep = clean(table, min_obs=10)
        excluded[f"{name}_cleaning"] = rep.to_dict()
        cols = [S.ID, S.BAND, S.SURVEY, S.TIME, S.MAG, S.ERR]
        parts.append(table.select(cols))
        kept_ids += sorted(set(table.column(S.ID).to_pylist()))
    allrows = pa.concat_tables(parts)
    ids = np.array(sorted(set(kept_ids)))
    rng = np.random.default_rng(args.seed)
    val_ids = set(rng.choice(ids, int(len(ids) * args.val_fraction), replace=False))
    is_val = pc.is_in(allrows.column(S.ID), pa.array(sorted(val_ids)))
    train, val = allrows.filter(pc.invert(is_val)), allrows.filter(is_val)
    train = train.take(pa.array(rng.permutation(train.num_rows)))  # mix surveys across shards
    for i, s in enumerate(range(0, train.num_rows, 4096)):
        write_parquet(train.slice(s, 4096), out / "train" / f"part-{i:05d}.parquet")
    write_parquet(val, out / "val" / "part-00000.parquet")
    dest = Path(args.ids_out)
    dest.mkdir(parents=True, exist_ok=True)
    ids_text = "\n".join(sorted(set(train.column(S.ID).to_pylist()))) + "\n"
    # mtime=0: the same set gives the same bytes (a rebuild leaves the shipped file unchanged)
    (dest / "training_objects.txt.gz").write_bytes(gzip.compress(ids_text.encode(), mtime=0))
    excluded.update(
        train_rows=train.num_rows, val_rows=val.num_rows, train_objects=len(ids) - len(val_ids)
    )
    (dest / "pretrain_set.json").write_text(json.dumps(excluded, indent=1))
    print(json.dumps({k: v for k, v in excluded.items() if not k.endswith("_cleaning")}, indent=1))


if __name__ == "__main__":
    main()
