from pathlib import Path

import numpy as np
import pytest
import torch

from starcurve.cli import main
from starcurve.data.io import from_arrays
from starcurve.models.encoder import EncoderConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run_cli(args, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the ``starcurve`` command line ``args``, run in this process."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def shared_data() -> Path:
    """Path to the real data folder, or skip when it is absent (e.g. on a fresh clone)."""
    if not (SHARED / "README.md").exists():
        pytest.skip("../shared/data is absent")
    return SHARED


@pytest.fixture
def toy_table():
    """Ten small sine light curves of 30..300 points with labels, made here (no real data)."""
    rng = np.random.default_rng(0)
    times, mags, errs, labels = [], [], [], []
    for i in range(10):
        n = 30 + 30 * i
        t = np.sort(rng.uniform(0, 500, n))
        p = 0.5 + i
        times.append(t)
        mags.append(12 + 0.3 * np.sin(2 * np.pi * t / p) + rng.normal(0, 0.02, n))
        errs.append(np.full(n, 0.02))
        labels.append("A" if i % 2 else "B")
    return from_arrays(
        times, mags, errs, ids=[f"obj{i}" for i in range(10)], band="V", labels=labels
    )


@pytest.fixture(autouse=True)
def one_thread():
    """Tests use tiny models: one thread is faster for them and leaves the other core free. The
    process-wide bfloat16 switch (``--bf16`` in an in-process CLI call) is off again after each."""
    from starcurve.models.hub import use_bf16

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    use_bf16(False)


def tiny_config(**changes) -> EncoderConfig:
    """The tiny encoder the tests build (fast on one core): 1 layer, d_model 16, window 32."""
    base = {"name": "tiny", "window": 32, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 16,
            "norm": "pre", "residual": "add", "time_encoding": "logspaced", "mask_token": "vector",
            "use_err": True, "scale": True}  # fmt: skip
    return EncoderConfig(**{**base, **changes})
