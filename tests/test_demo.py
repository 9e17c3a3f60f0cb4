"""The main job on a small built-in default, with the shipped model, offline."""

import json
import re
import shutil
import tempfile
from pathlib import Path

from starcurve import load
from starcurve.cli import main
from starcurve.models.hub import DEFAULT_MODEL, load_model


def test_shipped_model_loads_without_arguments():
    model = load_model()
    assert model.path == DEFAULT_MODEL and model.config.name == "pv1"
    assert (DEFAULT_MODEL / "training_objects.txt.gz").exists()
    assert type(load()).__name__ == "TaxonomyClassifier"  # the encoder with its head


def test_demo_runs_end_to_end_on_simulated_light_curves(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo must not write into the current folder
    main(["demo", "--per-class", "60", "--n", "20", "--folds", "1"])
    printed = capsys.readouterr().out
    out = Path(re.search(r"results go to (\S+)", printed).group(1))
    try:
        assert list(tmp_path.iterdir()) == [] and out.is_relative_to(tempfile.gettempdir())
        assert re.search(r"expected running time: about [0-9.]+ (s|min)", printed)
        assert "| method |" in printed and "(*): each object in its own band" in printed
        assert "What this compared:" in printed and "What to try next:" in printed
        assert re.search(r"With 20 labels per class: .* (wins by [0-9.]+|a tie)", printed)
        for m in ("embed", "forest"):
            r = json.loads((out / m / "results.json").read_text())
            assert r["protocol"] == "FS-1" and len(r["classes"]) == 7
            assert 0.0 <= r["results"]["20"]["f1_mean"] <= 1.0
        assert (out / "report.md").exists() and (out / "f1_vs_n.png").exists()
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_demo_takes_one_band(capsys):
    from conftest import run_cli

    code, _, err = run_cli(["demo", "--band", "V,R"], capsys)
    assert code == 2 and "--band: the demo takes one band" in err
