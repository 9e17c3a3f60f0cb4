"""Simulator pretraining of the RNN and CNN (issue 14): stage 1 of ``supervised.fit``.

With ``FitConfig.pretrain_sim`` set, ``fit`` first trains the freshly built network on a stream of
simulated light curves (``starcurve.data.simulate``) with the target survey's cadence and noise, then
fine-tunes it on the real labels with early stopping (stage 2, the usual path). Both stages run in the
one loop (``train/loop.py``); stage 1 keeps its log and checkpoint in ``OUT/pretrain_sim/``.

- **Classes.** The network's classes are the real ones, so both stages share the head. Each simulated
  class is mapped to a real class (``sim_class_map``): the user's ``--label-map`` entry for it if there
  is one (the same file that renames the real labels), else the same name if it is a real class, else
  the first of its default names (``DEFAULT_NAMES``: ``RRab``/``RRc`` -> ``RR_Lyrae``, the three
  ``EB_*`` -> ``EB``, ``Cep_F``/``Cep_1O`` -> ``Cepheid``, ``Mira``/``SRV``/``OSARG`` -> ``LPV``, ...)
  that is a real class. Simulated classes that map to nothing are not drawn; real classes with no
  simulated counterpart (ASAS ``ACV``, ``EB_ambiguous``) are left out of stage 1: its loss is the
  cross-entropy over the mapped classes' logits only, so their biases are not pushed down.
  Simulated classes are drawn uniformly, so a real class fed by k of them is weighted by 1/k in the
  loss (each mapped real class counts the same). Fewer than two mapped real classes is an error.
- **Stream.** ``sim_batches`` yields training batches forever; it simulates one chunk
  (``chunk`` objects, split between the surveys) at a time with ``simulate_range(survey, j * m,
  (j + 1) * m, classes, seed)``, so chunk ``j`` depends on (survey, classes, seed, j) only, a resumed
  run replays it exactly, and no more than one chunk is ever in memory. Each chunk goes through the
  core ``clean`` (light curves shorter than the model's ``min_obs`` dropped), gets each light curve's
  period from its own periodogram for a model that reads it (``period`` / ``fold``; once per light
  curve, before cuts, as ``fit`` does for real ones; cached with ``STARCURVE_CACHE``), is shuffled,
  cut (RNN: random stretches of ``train_max_obs`` points, as for the real data) and batched.
- **Budget.** Stage 1 runs ``ceil(n / batch_size)`` steps (``n`` simulated light curves, each seen
  once), no early stopping; the real validation loss after stage 1 is recorded in the meta.
- **Scales.** The input scales (dt, dm) are the real training set's, measured before stage 1.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

from starcurve.data import schema as S
from starcurve.data import simulate as sim
from starcurve.data.augment import crop
from starcurve.data.clean import clean
from starcurve.data.deltas import needs_period, with_period
from starcurve.errors import StarcurveError
from starcurve.files import atomic_json
from starcurve.train.loop import Checkpoint, TrainConfig, model_args, train

log = logging.getLogger("starcurve")

STAGE_DIR = "pretrain_sim"  # stage 1's log and checkpoint, inside the model folder

# simulated class -> real class names it stands for, in order of preference (the first one that is a
# real class wins); e.g. eros_lmc's RR_Lyrae / Cepheid / EB / Mira, asas_acvs's own subclass names.
# T2Cep is not a "Cepheid" here: the EROS LMC Cepheids are classical ones (as in
# scripts/derive_sim_tables.py, EROS_LABELS).
DEFAULT_NAMES: dict[str, tuple[str, ...]] = {
    "RRab": ("RRab", "RR_Lyrae", "RRL"),
    "RRc": ("RRc", "RR_Lyrae", "RRL"),
    "Cep_F": ("Cep_F", "Cepheid", "DCEP"),
    "Cep_1O": ("Cep_1O", "Cepheid", "DCEP"),
    "T2Cep": ("T2Cep", "T2CEP"),
    "DSCT": ("DSCT",),
    "EB_detached": ("EB_detached", "EB", "ECL"),
    "EB_semidetached": ("EB_semidetached", "EB", "ECL"),
    "EB_contact": ("EB_contact", "EB", "ECL"),
    "Mira": ("Mira", "LPV"),
    "SRV": ("SRV", "LPV"),
    "OSARG": ("OSARG", "LPV"),
    "constant": ("constant",),
    "QSO": ("QSO",),
    "microlensing": ("microlensing",),
}


@dataclass
class SimPretrain:
    """Stage 1 of ``fit``: train on ``n`` simulated light curves of ``surveys`` first."""

    surveys: str = (
        "auto"  # "asas", "asas,eros", ...; "auto": from the training data's survey column
    )
    n: int = 96_000  # simulated light curves (each used once): ceil(n / batch_size) steps
    chunk: int = 1024  # light curves simulated at a time (one simulator block)
    label_map: dict | None = None  # {simulated class: real class or None}, before the defaults


def sim_class_map(real_classes, label_map: dict | None = None) -> dict[str, str]:
    """``{simulated class: real class}`` for the simulated classes that map to a real class.

    A ``label_map`` entry for a simulated class wins (None or a name that is not a real class: not
    drawn); then the same name; then the first default name (``DEFAULT_NAMES``) that is a real class.
    Fewer than two real classes reached is an error (nothing to pretrain a classifier on).
    """
    real = [str(c) for c in real_classes]
    out = {}
    for s in sim.classes():
        if label_map and s in label_map:
            target = label_map[s]
            if target is not None and str(target) in real:
                out[s] = str(target)
            continue
        target = next((c for c in (s, *DEFAULT_NAMES.get(s, ())) if c in real), None)
        if target is not None:
            out[s] = target
    reached = sorted(set(out.values()))
    if len(reached) < 2:
        raise StarcurveError(
            f"simulator pretraining: the simulated classes map to {reached or 'no'} class(es) of the "
            f"training labels {real}; it needs at least two. Map simulated classes "
            f"({', '.join(sim.classes())}) to your class names with --label-map, e.g. "
            '{"RRab": "RR_Lyrae", "EB_contact": "EB"}'
        )
    return out


def resolve_surveys(spec, table: pa.Table | None = None) -> list[str]:
    """Simulated survey names from ``"asas,eros"`` (or a list), or ``"auto"``: the surveys of the
    training table's ``survey`` column ("ASAS-3" -> asas, "EROS-1" -> eros, ...)."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(x).strip().lower() for x in names if str(x).strip()]
    if names == ["auto"]:
        found = []
        if table is not None and S.SURVEY in table.column_names:
            for real in sorted({v for v in table.column(S.SURVEY).to_pylist() if v}):
                key = re.sub(r"[^a-z0-9]", "", real.lower())
                match = [s for s in sim.surveys() if key.startswith(s)]
                if not match:
                    raise StarcurveError(
                        f"simulator pretraining: no simulated survey for the data's survey "
                        f"{real!r}; name one with --pretrain-sim ({', '.join(sim.surveys())})"
                    )
                found.append(match[0])
        if not found:
            raise StarcurveError(
                "simulator pretraining: the training data have no 'survey' column; name the "
                f"survey with --pretrain-sim ({', '.join(sim.surveys())})"
            )
        names = found
    bad = [s for s in names if s not in sim.surveys()]
    if bad or not names:
        raise StarcurveError(
            f"--pretrain-sim: unknown survey(s) {bad or names}; choose from {', '.join(sim.surveys())}"
        )
    return list(dict.fromkeys(names))


def sim_chunks(
    surveys: list[str], sim_classes: list[str], seed: int, chunk: int, min_obs: int
) -> Iterator[pa.Table]:
    """Clean tables of simulated light curves, one chunk at a time, forever: chunk ``j`` holds
    objects ``j*m .. (j+1)*m - 1`` of each survey's sequence (``m = ceil(chunk / len(surveys))``)."""
    m = max(1, math.ceil(chunk / len(surveys)))
    j = 0
    while True:
        parts = [sim.simulate_range(s, j * m, (j + 1) * m, sim_classes, seed) for s in surveys]
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        table, _ = clean(table, min_obs=min_obs)
        yield table
        del table, parts
        j += 1


def sim_batches(
    inputs: Callable[[pa.Table], dict],
    classes: list[str],
    mapping: dict[str, str],
    surveys: list[str],
    batch_size: int,
    *,
    seed: int = 0,
    chunk: int = 1024,
    min_obs: int = 20,
    max_obs: int = 0,
    period: bool = False,
) -> Iterator[dict]:
    """Training batches ``{x, lengths, y}`` of simulated light curves, forever; ``y`` indexes the
    real ``classes`` (through ``mapping``). ``inputs`` is the model's ``inputs``; ``period``: each
    light curve's period is computed once, on the whole simulated light curve. A chunk holds at
    least two batches; 20 chunks in a row without a batch (light curves shorter than ``min_obs``)
    are an error rather than an endless loop."""
    index = {c: i for i, c in enumerate(classes)}
    sim_classes = sorted(mapping)
    chunk, empty = max(int(chunk), 2 * batch_size), 0
    for j, table in enumerate(sim_chunks(surveys, sim_classes, seed, chunk, min_obs)):
        empty = empty + 1 if table.num_rows < batch_size else 0
        if empty >= 20:
            raise StarcurveError(
                f"simulator pretraining: the simulated {', '.join(surveys)} light curves of "
                f"{sim_classes} rarely have {min_obs} observations; use another survey"
            )
        if period:
            table = with_period(table)
        rng = np.random.default_rng([seed, j])
        y = np.array([index[mapping[v]] for v in table.column(S.LABEL).to_pylist()], np.int64)
        order = rng.permutation(table.num_rows)
        for s in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[s : s + batch_size]
            sub = table.take(pa.array(idx))
            if max_obs:
                sub = crop(sub, max_obs, rng)
            yield {**inputs(sub), "y": torch.from_numpy(y[idx])}


def stage_loss(classes: list[str], mapping: dict[str, str]):
    """Stage 1's loss: cross-entropy over the logits of the mapped real classes only, each mapped real
    class weighted by 1 / (number of simulated classes drawn for it)."""
    cols = sorted({classes.index(c) for c in mapping.values()})
    pos = torch.full((len(classes),), -1, dtype=torch.long)
    pos[cols] = torch.arange(len(cols))
    share = np.array([sum(classes[c] == t for t in mapping.values()) for c in cols], float)
    weight = torch.tensor(share.sum() / (len(cols) * share), dtype=torch.float32)

    def loss_fn(net, batch):
        logits = net(**model_args(batch))[:, cols]
        y = pos.to(logits.device)[batch["y"]]
        loss = F.cross_entropy(logits, y, weight=weight.to(logits.device))
        return loss, {"acc": (logits.argmax(1) == y).float().mean()}

    return loss_fn


def pretrain(
    model: torch.nn.Module,
    sp: SimPretrain,
    table: pa.Table,
    classes: list[str],
    out_dir,
    *,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int = 0,
    ckpt_every: int = 200,
    resume: bool = False,
    eval_fn: Callable[[torch.nn.Module], float] | None = None,
    desc: str = "pretrain on simulations",
) -> dict:
    """Stage 1: train ``model`` (already built with the real classes and the real data's input
    scales) on ``sp.n`` simulated light curves; return what the model folder's meta records.

    ``table`` is the real training table (for ``surveys="auto"``); ``eval_fn`` (the real validation
    loss of stage 2) is measured once at the end. Log and checkpoint go to ``out_dir/pretrain_sim``;
    ``resume`` continues (or, when stage 1 had finished, reloads) it.
    """
    if int(sp.n) < 1 or int(sp.chunk) < 1:
        raise StarcurveError(f"--sim-n must be at least 1 (got {sp.n})")
    surveys = resolve_surveys(sp.surveys, table)
    mapping = sim_class_map(classes, sp.label_map)
    steps = max(1, math.ceil(int(sp.n) / batch_size))
    stage_dir = Path(out_dir) / STAGE_DIR
    max_obs = getattr(model.cfg, "train_max_obs", 0)

    def inputs(sub: pa.Table) -> dict:
        """The model's inputs, with a neutral context (the training set's mean magnitude and error):
        simulated magnitudes are the survey's, not the target field's, and the ``eros`` per-class
        magnitudes were calibrated on the whole eros_lmc file; brightness is learnt from real labels
        only. The period numbers (after the context) are the simulated light curve's own."""
        out = model.inputs(sub)
        if model.cfg.context:
            out["context"][:, :2] = out["context"].new_tensor(model.cfg.context_mean[:2])
        return out

    def batches():
        return sim_batches(inputs, list(classes), mapping, surveys, batch_size, seed=seed,
                           chunk=int(sp.chunk), min_obs=model.cfg.min_obs, max_obs=max_obs,
                           period=needs_period(model.cfg))  # fmt: skip

    tcfg = TrainConfig(
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        warmup=min(100, max(steps // 10, 1)),
        log_every=min(25, steps),
        ckpt_every=ckpt_every,
        seed=seed,
    )
    done_path = stage_dir / "summary.json"
    again = resume and Checkpoint(stage_dir).exists()
    summary = train(model, batches, stage_loss(list(classes), mapping), stage_dir, tcfg,
                    resume=again, desc=desc)  # fmt: skip
    if again and done_path.exists():  # finished before: keep the first run's figures
        old = json.loads(done_path.read_text())
        if old.get("train", {}).get("steps") == steps:
            summary = old["train"]
    else:
        atomic_json({"train": summary}, done_path)
    val = float(eval_fn(model)) if eval_fn is not None else None
    return {
        "surveys": surveys,
        "bands": {s: sim._resources()[0][s]["band"] for s in surveys},
        "class_map": mapping,
        "classes_not_pretrained": [c for c in classes if c not in set(mapping.values())],
        "n": int(sp.n),
        "chunk": int(sp.chunk),
        "batch_size": batch_size,
        "steps": steps,
        "seed": seed,
        "label_map": sp.label_map,
        "train": summary,
        "val_loss_after_pretraining": val if val is None or math.isfinite(val) else None,
    }
