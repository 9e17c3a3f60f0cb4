"""Put a pretraining run's latest checkpoint into the model folder that ships with starcurve.

    python scripts/ship_checkpoint.py --run runs/sc1_default --out src/starcurve/resources/models/default

Writes OUT/config.json (the run's configuration and record: command, data, steps done, the last
held-out validation row of RUN/val.csv) and OUT/model.safetensors (encoder weights only, no optimizer
state). OUT becomes an encoder folder; the head must be retrained afterwards with scripts/train_head.py
(which makes OUT the classifier folder that ships: the encoder and its head), since the head reads
the encoder's embeddings.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from starcurve.models.hub import load_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/sc1_default")
    ap.add_argument("--out", default="src/starcurve/resources/models/default")
    args = ap.parse_args()
    run, out = Path(args.run), Path(args.out)
    encoder = load_model(run).encoder  # the run folder's model.safetensors, else its checkpoint
    meta = json.loads((run / "config.json").read_text())["meta"]
    state = run / "checkpoint" / "state.json"
    steps = json.loads(state.read_text())["step"] if state.exists() else meta["train"]["steps"]
    meta["data"] = [f"{meta['data'][0].rsplit('/', 1)[0]} (built by scripts/build_pretrain_set.py)"]
    meta["steps_done"] = steps
    val = run / "val.csv"
    if val.exists():
        rows = list(csv.DictReader(val.open()))
        if rows:
            last = {k: float(v) for k, v in rows[-1].items()}
            every = meta["train"]["eval_every"]
            meta["validation"] = {"step": int(last.pop("eval")) * every, **last,
                                  "what": "held-out windows, fixed probes; RMSE in magnitudes; "
                                          "rmse_hidden_zero = predicting the window mean"}  # fmt: skip
    meta["note"] = (f"pretraining checkpoint at step {steps} of {meta['train']['steps']} "
                    "(2-core CPU, no GPU); see docs/model_card.md")  # fmt: skip
    save_model(encoder, out, meta)
    print(f"shipped step {steps} of {run} to {out}")


if __name__ == "__main__":
    main()
