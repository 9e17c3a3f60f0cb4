"""Encoder speed and a short real pretraining: writes benchmarks/results/encoder_speed.json.

Sections (``--sections``, comma separated; results of earlier runs are kept and updated):
- ``embed``: embedding throughput (windows/s, 200-observation windows, all valid) for a1, a2, sc1 in
  float32 and bfloat16 (CPU autocast), and the bfloat16 accuracy cost (|emb_bf16 - emb_fp32|).
- ``tf``: the official TensorFlow Astromer (PyPI ``astromer==0.1.8`` in its own virtual environment,
  random weights) on the same windows, side by side; its a1 weights are also copied into our ``a1`` and
  the embeddings compared (checks that our a1 is the same network).
- ``train``: pretraining step throughput (masked loss, forward + backward + Adam) per config.
- ``tfpair``: a1 only, TensorFlow and ours alternated ``--rounds`` times (robust to a drifting load).
- ``toy``: can each design (small versions) fit masked values at all (200 steps, fixed probes)?
- ``floor``: trivial and noise-floor hidden RMSE of 512 windows of three files (what is left to learn).
- ``pretrain``: a short real pretraining of sc1 on ``asas3_unlabeled`` (nothing excluded) with the
  masked-reconstruction RMSE on eros_lmc B windows vs the trivial baseline (predict the window mean).

Usage: python benchmarks/encoder_speed.py [--sections embed,tf,tfpair,train,toy,floor,pretrain]
       [--windows 512]
       [--tf-python /tmp/tfenv/bin/python] [--pretrain-steps 300]
Set up the TensorFlow side with:
  python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install astromer==0.1.8 tensorflow tf_keras
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from starcurve.data.clean import clean
from starcurve.data.io import read
from starcurve.data.windows import windows
from starcurve.files import atomic_json
from starcurve.models.encoder import build
from starcurve.models.hub import Model
from starcurve.train.loop import TrainConfig
from starcurve.train.pretrain import Validation, masked_loss, run

OUT = Path(__file__).resolve().parent / "results" / "encoder_speed.json"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = ("a1", "a2", "sc1")


def synthetic_windows(n: int, t: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Full windows like the survey ones: ~3 years of sorted times (zero-mean), magnitudes, errors."""
    rng = np.random.default_rng(seed)
    time_ = np.sort(rng.uniform(0, 1000, (n, t)), 1)
    time_ -= time_.mean(1, keepdims=True)
    mag = 0.3 * np.sin(2 * np.pi * time_ / rng.uniform(0.3, 300, (n, 1))) + rng.normal(
        0, 0.03, (n, t)
    )
    mag -= mag.mean(1, keepdims=True)
    err = rng.uniform(0.01, 0.05, (n, t))
    return {
        "time": time_.astype(np.float32),
        "mag": mag.astype(np.float32),
        "err": err.astype(np.float32),
        "mask": np.ones((n, t), bool),
    }


def embed_speed(model, w: dict, batch: int, bf16: bool = False, repeats: int = 2):
    """Best-of-``repeats`` windows/s of ``window_vectors`` over all windows, and the vectors."""
    tensors = [torch.from_numpy(w[k]) for k in ("time", "mag", "mask", "err")]
    n = len(w["mag"])
    # multi-view models (pv1): the raw view, with a period input (log10 P = 0, power 0.5)
    ctx = torch.tensor([[0.0, 0.5]]).expand(n, 2) if model.config.multiview else None

    def vectors(s: slice) -> torch.Tensor:
        kw = {} if ctx is None else {"ctx": ctx[s]}
        return model.window_vectors(*(x[s] for x in tensors), **kw).float()

    best, out = 0.0, None
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        vectors(slice(0, 8))  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            vecs = [vectors(slice(s, s + batch)) for s in range(0, n, batch)]
            best = max(best, n / (time.perf_counter() - t0))
            out = torch.cat(vecs).numpy()
    return best, out


def section_embed(args, res: dict) -> None:
    w = synthetic_windows(args.windows)
    nb = max(args.windows // 8, 16)  # bfloat16 is slow on this CPU (no native support): fewer
    for name in CONFIGS:
        model = build(name, seed=0).eval()
        wps, emb = embed_speed(model, w, args.batch)
        sub = {k: v[:nb] for k, v in w.items()}
        wps_bf, emb_bf = embed_speed(model, sub, args.batch, bf16=True, repeats=1)
        diff = np.abs(emb_bf - emb[:nb])
        res["embed"][name] = {
            "float32_windows_per_s": round(wps, 1),
            "bfloat16_windows_per_s": round(wps_bf, 1),
            "bfloat16_max_abs_diff": float(diff.max()),
            "bfloat16_mean_abs_diff": float(diff.mean()),
            "embedding_mean_abs": float(np.abs(emb).mean()),
            "windows": args.windows,
            "windows_bf16": nb,
            "batch": args.batch,
            "gflop_per_window": round(flops_per_window(model.config) / 1e9, 3),
        }
        print(name, res["embed"][name], flush=True)


def flops_per_window(cfg, t: int = 200, attention: bool = True) -> float:
    """Forward FLOPs of one full window (matrix multiplications and attention only; ``attention=False``:
    without the two products of attention, QK^T and its product with V)."""
    d, f = cfg.d_model, cfg.d_ff
    per_token = (
        4 * d * d + 2 * d * f + 2 * t * d * attention + (2 * d * d if cfg.residual == "proj" else 0)
    )
    return 2.0 * per_token * t * cfg.n_layers


TF_SCRIPT = r"""
import json, os, sys, time
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
stdout = sys.stdout; sys.stdout = sys.stderr  # the package prints (and clears the screen) on import
from ASTROMER.core.astromer import get_ASTROMER
import ASTROMER
win = np.load(sys.argv[1]); batch = int(sys.argv[2]); out_dir = sys.argv[3]
n = len(win["mag"]); res = {"tensorflow": tf.__version__, "astromer": "0.1.8"}
shapes = {"a1": dict(num_layers=2, dff=128, use_leak=False), "a2": dict(num_layers=6, dff=512, use_leak=True)}
if os.environ.get("TF_A1_ONLY"):
    shapes.pop("a2"); sys.argv = sys.argv[:4]
for name, kw in shapes.items():
    tf.random.set_seed(0)
    model = get_ASTROMER(d_model=256, num_heads=4, base=10000, dropout=0.1, no_train=False, maxlen=200, **kw)
    enc = model.get_layer("encoder")
    data = {"input": win["mag"][..., None], "times": win["time"][..., None],
            "mask_in": np.zeros_like(win["mag"])[..., None]}  # 0 = observed, full windows
    fn = tf.function(lambda d: enc(d, training=False))
    def rate(f, k):
        f({key: v[:8] for key, v in data.items()})
        best = 0.0
        for _ in range(2):
            t0 = time.perf_counter(); outs = []
            for s in range(0, k, batch):
                outs.append(f({key: v[s:s + batch] for key, v in data.items()}).numpy())
            best = max(best, k / (time.perf_counter() - t0))
        return best, np.concatenate(outs)
    wps, states = rate(fn, n)
    eager, _ = rate(lambda d: enc(d, training=False), min(n, batch))
    res[name] = {"tf_function_windows_per_s": round(wps, 1), "eager_windows_per_s": round(eager, 1),
                 "params_encoder": int(sum(np.prod(v.shape) for v in enc.weights)),
                 "params_with_head": int(model.count_params())}
    if name == "a1":
        for extra in sys.argv[4:]:  # real survey windows (padded to 200, as the package pads them)
            win2 = np.load(extra)
            data = {"input": win2["mag"][..., None], "times": win2["time"][..., None],
                    "mask_in": (~win2["mask"]).astype(np.float32)[..., None]}
            res["a1"]["tf_function_windows_per_s_" + os.path.basename(extra)[:-4]] = round(
                rate(fn, len(win2["mag"]))[0], 1)
    if name == "a1":  # export weights and outputs, to load into our a1 and compare
        w = {v.name: v.numpy() for v in enc.weights}
        np.savez(os.path.join(out_dir, "tf_a1_weights.npz"), names=np.array(list(w)), **{f"w{i}": a for i, a in enumerate(w.values())})
        np.save(os.path.join(out_dir, "tf_a1_states.npy"), states[:16])
stdout.write(json.dumps(res))
"""


def section_tf(args, res: dict) -> None:
    py = Path(args.tf_python)
    if not py.exists():
        res["tensorflow"] = {"error": f"{py} not found; see the module docstring to install it"}
        print(res["tensorflow"])
        return
    w = synthetic_windows(args.windows)
    real = real_windows(args.windows)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "win.npz", **w)
        for name, rw in real.items():
            np.savez(Path(tmp) / f"{name}.npz", **rw)
        (Path(tmp) / "tf_bench.py").write_text(TF_SCRIPT)
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": ""}
        cmd = [
            str(py),
            str(Path(tmp) / "tf_bench.py"),
            str(Path(tmp) / "win.npz"),
            str(args.batch),
            tmp,
            *(str(Path(tmp) / f"{name}.npz") for name in real),
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if p.returncode != 0:
            res["tensorflow"] = {"error": p.stderr.strip().splitlines()[-1][:300]}
            print(res["tensorflow"])
            return
        tf_res = json.loads(p.stdout[p.stdout.index('{"tensorflow"') :])  # after 'clear' codes
        tf_res["a1"]["same_network_max_abs_diff"] = compare_a1(Path(tmp), w)
    # ours, in the same run, on the same windows
    for name in ("a1", "a2"):
        ours, _ = embed_speed(build(name).eval(), w, args.batch)
        tf_res[name]["ours_float32_windows_per_s"] = round(ours, 1)
        tf_res[name]["speedup_vs_tf_function"] = round(
            ours / tf_res[name]["tf_function_windows_per_s"], 2
        )
    model = Model(build("a1"))
    for name, rw in real.items():  # ours trims each batch to its longest window (same result)
        ours = model_rate(model, rw, args.batch)
        tf_rate = tf_res["a1"][f"tf_function_windows_per_s_{name}"]
        tf_res["a1"][f"ours_float32_windows_per_s_{name}"] = round(ours, 1)
        tf_res["a1"][f"speedup_vs_tf_function_{name}"] = round(ours / tf_rate, 2)
        tf_res["a1"][f"valid_fraction_{name}"] = round(float(rw["mask"].mean()), 3)
    res["tensorflow"] = tf_res
    print("tensorflow", tf_res, flush=True)


def section_tfpair(args, res: dict) -> None:
    """a1 throughput, TensorFlow and ours alternated ``--rounds`` times (the load drifts)."""
    py = Path(args.tf_python)
    if not py.exists():
        return
    w = synthetic_windows(args.windows)
    model = build("a1").eval()
    tf_rates, ours_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "win.npz", **w)
        (Path(tmp) / "tf_bench.py").write_text(TF_SCRIPT)
        env = {
            **os.environ,
            "TF_USE_LEGACY_KERAS": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "TF_A1_ONLY": "1",
        }
        for _ in range(args.rounds):
            p = subprocess.run(
                [
                    str(py),
                    str(Path(tmp) / "tf_bench.py"),
                    str(Path(tmp) / "win.npz"),
                    str(args.batch),
                    tmp,
                ],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if p.returncode != 0:
                res["tf_vs_ours_a1"] = {"error": p.stderr.strip().splitlines()[-1][:300]}
                return
            tf_rates.append(
                json.loads(p.stdout[p.stdout.index('{"tensorflow"') :])["a1"][
                    "tf_function_windows_per_s"
                ]
            )
            ours_rates.append(round(embed_speed(model, w, args.batch)[0], 1))
            print("round", tf_rates[-1], ours_rates[-1], flush=True)
    res["tf_vs_ours_a1"] = {
        "tf_function_windows_per_s": tf_rates,
        "ours_float32_windows_per_s": ours_rates,
        "ratio_of_medians": round(float(np.median(ours_rates) / np.median(tf_rates)), 2),
        "windows": args.windows,
        "batch": args.batch,
        "note": "full 200-point synthetic windows; TF run then ours, alternated",
    }
    print("tfpair", res["tf_vs_ours_a1"], flush=True)


def real_windows(n: int) -> dict[str, dict]:
    """Consecutive 200-point windows of the first light curves of two FS-1 files (speed only)."""
    out = {}
    for name, file, band in (
        ("eros_lmc_R", "eros_lmc.parquet", "R"),
        ("asas_acvs_V", "asas_acvs.parquet", "V"),
    ):
        if not (DATA / file).exists():
            continue
        table, _ = clean(read(DATA / file, band=band).slice(0, 2 * n))
        w = windows(table, 200)
        out[name] = {k: getattr(w, k)[:n] for k in ("time", "mag", "err", "mask")}
    return out


def model_rate(model: Model, w: dict, batch: int, repeats: int = 2) -> float:
    """Windows/s of ``Model.window_vectors`` (length-sorted batches, padding trimmed)."""
    ns = SimpleNamespace(**w)
    model.window_vectors(SimpleNamespace(**{k: v[:8] for k, v in w.items()}))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.window_vectors(ns, batch_size=batch)
        best = max(best, len(w["mag"]) / (time.perf_counter() - t0))
    return best


def compare_a1(tmp: Path, w: dict) -> float:
    """Copy the TF a1 weights into our a1; max |difference| of the final states on 16 windows."""
    z = np.load(tmp / "tf_a1_weights.npz")
    names = [str(n) for n in z["names"]]
    arrays = [torch.from_numpy(z[f"w{i}"]) for i in range(len(names))]
    # Keras lists the weights in layer order: input Dense, then per block WQ, WK, WV, MixerDense,
    # the two feed-forward Dense layers and the two LayerNorms (kernel/bias, gamma/beta pairs).
    assert "encoder/dense/kernel" in names[0] and all("gamma" in n for n in names[14::16])
    sd = {"inp.weight": arrays[0].T, "inp.bias": arrays[1]}
    for i in range(2):
        a = arrays[2 + 16 * i : 18 + 16 * i]
        p = f"blocks.{i}."
        sd[p + "attn.qkv.weight"] = torch.cat([a[0].T, a[2].T, a[4].T])
        sd[p + "attn.qkv.bias"] = torch.cat([a[1], a[3], a[5]])
        sd[p + "attn.out.weight"], sd[p + "attn.out.bias"] = a[6].T, a[7]
        sd[p + "ffn.0.weight"], sd[p + "ffn.0.bias"] = a[8].T, a[9]
        sd[p + "ffn.2.weight"], sd[p + "ffn.2.bias"] = a[10].T, a[11]
        sd[p + "ln1.weight"], sd[p + "ln1.bias"] = a[12], a[13]
        sd[p + "ln2.weight"], sd[p + "ln2.bias"] = a[14], a[15]
    model = build("a1").eval()
    missing = model.load_state_dict(sd, strict=False).missing_keys
    assert all(k.startswith("head.") for k in missing), missing
    tf_states = np.load(tmp / "tf_a1_states.npy")
    with torch.inference_mode():
        ours = model.encode(*(torch.from_numpy(w[k][:16]) for k in ("time", "mag", "mask")))[-1]
    return float(np.abs(ours.numpy() - tf_states).max())


def section_train(args, res: dict) -> None:
    w = synthetic_windows(args.train_batch, seed=1)
    batch = {k: torch.from_numpy(v) for k, v in w.items()}
    for name in CONFIGS:
        model = build(name).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
        times = []
        for i in range(args.train_steps + 1):
            t0 = time.perf_counter()
            loss, _ = masked_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:  # the first step warms up
                times.append(time.perf_counter() - t0)
        s = float(np.median(times))
        res["train"][name] = {
            "seconds_per_step": round(s, 3),
            "batch": args.train_batch,
            "windows_per_s": round(args.train_batch / s, 1),
            "steps_timed": args.train_steps,
        }
        print("train", name, res["train"][name], flush=True)


def section_pretrain(args, res: dict) -> None:
    out = Path(tempfile.gettempdir()) / "starcurve_encoder_bench_pretrain"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    model = build("sc1", seed=0)
    val = Validation(DATA / "eros_lmc.parquet", 200, band="B", max_windows=args.val_windows)
    before = val.metrics(model)
    tcfg = TrainConfig(
        steps=args.pretrain_steps,
        lr=1e-3,
        optimizer="adam",
        warmup=100,
        log_every=25,
        ckpt_every=10**9,
        eval_every=0,
        seed=0,
    )
    t0 = time.perf_counter()
    run(
        model,
        [str(DATA / "asas3_unlabeled.parquet")],
        out,
        tcfg,
        batch_size=args.pretrain_batch,
        pool=4096,
    )
    seconds = time.perf_counter() - t0
    after = val.metrics(model)
    res["pretrain"] = {
        "config": "sc1",
        "data": "asas3_unlabeled.parquet (V, nothing excluded)",
        "steps": args.pretrain_steps,
        "batch": args.pretrain_batch,
        "lr": 1e-3,
        "warmup": 100,
        "seconds": round(seconds, 1),
        "validation": f"eros_lmc.parquet band B, {val.n_windows} consecutive windows of "
        f"{val.n_objects} objects, fixed probes; RMSE in magnitudes",
        "val_before": {k: round(v, 4) for k, v in before.items()},
        "val_after": {k: round(v, 4) for k, v in after.items()},
        "log": str(out / "log.csv"),
    }
    print("pretrain", res["pretrain"], flush=True)


def section_toy(args, res: dict) -> None:
    """Can each design fit masked values at all? Small versions, 6 smooth toy windows, fixed probes.

    Memorising a fixed probe pattern is the easiest possible task; a design that stays at the
    trivial RMSE (the spread of the values) here cannot learn from the masked objective.
    """
    from starcurve.data.io import from_arrays
    from starcurve.data.loader import window_tensors
    from starcurve.models.encoder import EncoderConfig, get_config

    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 100, 60)) for _ in range(6)]
    mags = [
        0.5 * np.sin(2 * np.pi * t / (20 + 5 * i)) + rng.normal(0, 0.02, 60)
        for i, t in enumerate(times)
    ]
    batch = window_tensors(from_arrays(times, mags, [np.full(60, 0.02)] * 6), 32)
    small = {"window": 32, "d_model": 32, "d_ff": 32, "n_heads": 2, "n_layers": 2, "dropout": 0.0}
    variants = {
        "a1": ("a1", {}),
        "a1 + residual": ("a1", {"residual": "add"}),
        "a2": ("a2", {}),
        "sc1": ("sc1", {}),
    }
    out = {}
    for label, (base, change) in variants.items():
        cfg = EncoderConfig.from_dict({**get_config(base).to_dict(), **small, **change})
        torch.manual_seed(0)
        model = build(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
        curve = []
        for _ in range(200):
            loss, m = masked_loss(model, batch, torch.Generator().manual_seed(0))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            curve.append(float(m["rmse_probed"]))
        out[label] = {
            "rmse_probed_start": round(curve[0], 4),
            "rmse_probed_step100": round(curve[99], 4),
            "rmse_probed_step200": round(curve[-1], 4),
        }
    out["trivial_rmse"] = round(float(batch["mag"][batch["mask"]].std()), 4)
    out["setup"] = (
        "6 windows of 32 points, sine periods 20-40 d, fixed probes, Adam 3e-3, 200 steps"
    )
    res["toy_fit"] = out
    print("toy", out, flush=True)


def section_floor(args, res: dict) -> None:
    """What is left to learn: trivial and noise-floor hidden RMSE of validation-style windows."""
    from starcurve.train.pretrain import _window_mean, probe_masks

    out = {}
    for file, band in (
        ("eros_lmc.parquet", "B"),
        ("asas3_unlabeled.parquet", None),
        ("asas_acvs.parquet", "V"),
    ):
        b = Validation(DATA / file, 200, band=band, max_windows=args.val_windows).batch
        _, _, hidden = probe_masks(b["mag"], b["mask"], torch.Generator().manual_seed(0))
        out[f"{file} {band or ''}".strip()] = {
            "trivial_hidden_rmse": round(float(_window_mean(b["mag"] ** 2, hidden).sqrt()), 4),
            "noise_floor_hidden_rmse": round(float(_window_mean(b["err"] ** 2, hidden).sqrt()), 4),
        }
    out["note"] = "noise floor = rms of the quoted errors on hidden points (same probes as val.csv)"
    res["floor"] = out
    print("floor", out, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="embed,tf,tfpair,train,toy,floor,pretrain")
    ap.add_argument("--windows", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3, help="TF/ours alternations (tfpair)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tf-python", default="/tmp/tfenv/bin/python")
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--pretrain-batch", type=int, default=32)
    ap.add_argument("--val-windows", type=int, default=512)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.exists() else {}
    for key in ("embed", "train"):
        res.setdefault(key, {})
    res["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "note": "2-core CPU, no GPU; absolute rates vary with the load (section_load_average): "
        "compare rates measured in the same run",
    }
    for sec in args.sections.split(","):
        t0 = time.perf_counter()
        load0 = os.getloadavg()[0]
        {
            "embed": section_embed,
            "tf": section_tf,
            "train": section_train,
            "pretrain": section_pretrain,
            "toy": section_toy,
            "tfpair": section_tfpair,
            "floor": section_floor,
        }[sec](args, res)
        res.setdefault("section_seconds", {})[sec] = round(time.perf_counter() - t0, 1)
        res.setdefault("section_load_average", {})[sec] = [
            round(load0, 2),
            round(os.getloadavg()[0], 2),
        ]
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_json(res, out)
    atomic_json(res, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
