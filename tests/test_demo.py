"""The main job on a small built-in default, with the shipped model, offline."""

import json

from starcurve.cli import main
from starcurve.models.hub import DEFAULT_MODEL, load_model


def test_shipped_model_loads_without_arguments():
    model = load_model()
    assert model.path == DEFAULT_MODEL and model.config.name == "sc1"
    assert (DEFAULT_MODEL / "head.json").exists() and (DEFAULT_MODEL / "training_objects.txt.gz").exists()


def test_demo_runs_end_to_end_on_simulated_light_curves(tmp_path, capsys):
    out = tmp_path / "demo"
    main(["demo", "--per-class", "60", "--n", "20", "--folds", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| method |" in printed and "report:" in printed
    for m in ("embed", "forest"):
        r = json.loads((out / m / "results.json").read_text())
        assert r["protocol"] == "FS-1" and len(r["classes"]) == 7
        assert 0.0 <= r["results"]["20"]["f1_mean"] <= 1.0
    assert (out / "report.md").exists() and (out / "f1_vs_n.png").exists()
