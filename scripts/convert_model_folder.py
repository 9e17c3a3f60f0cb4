"""Convert a model folder of the first formats (before issue 12) into the one folder format.

    python scripts/convert_model_folder.py FOLDER [FOLDER ...]

Old formats: an encoder folder (``"format": "starcurve-encoder"``, with ``head.json`` +
``head.safetensors`` beside it when it carried the shipped head), an encoder classifier
(``"format": "starcurve-classifier"``) and an RNN / CNN folder (``"kind"``). Each becomes a folder of
``models/folder.py`` (config.json with model_type and format_version, one model.safetensors), written
in place; the head files are folded into model.safetensors and removed. JSON and safetensors only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file

from starcurve.models.folder import FORMAT_VERSION, save_folder


def convert(folder: Path) -> str:
    doc = json.loads((folder / "config.json").read_text())
    if doc.get("format_version") == FORMAT_VERSION:
        return "already converted"
    weights = folder / "model.safetensors"
    state = load_file(weights) if weights.is_file() else None
    if doc.get("format") == "starcurve-encoder" and (folder / "head.json").is_file():
        head = json.loads((folder / "head.json").read_text())
        t = load_file(folder / "head.safetensors")
        known = ("classes", "taxonomy", "threshold", "ood_quantile", "ood_k", "dim",
                 "fap_threshold", "exposure_b", "exposure_threshold")  # fmt: skip
        config = {"encoder": doc["config"], "head": {
            "kind": "taxonomy", **{k: head[k] for k in known if k in head},
            "pca_dims": int(t["proj"].shape[1]), "bank_size": int(t["bank"].shape[0])}}  # fmt: skip
        state = {**{f"encoder.{k}": v for k, v in state.items()}, **t}
        meta = {**doc.get("meta", {}), "head": {k: v for k, v in head.items() if k not in known}}
        save_folder(folder, "classifier", config, state, meta)
        (folder / "head.json").unlink()
        (folder / "head.safetensors").unlink()
        return "encoder + head -> classifier (taxonomy)"
    if doc.get("format") == "starcurve-encoder":
        save_folder(folder, "encoder", doc["config"], state, doc.get("meta", {}))
        return "encoder"
    if doc.get("format") == "starcurve-classifier":
        config = {"encoder": doc["encoder"], "head": {"kind": "pooled", "classes": doc["classes"]}}
        save_folder(folder, "classifier", config, state, {})
        return "classifier (pooled)"
    if doc.get("kind") in ("rnn", "cnn"):
        meta = {k: v for k, v in doc.items() if k not in ("kind", "config")}
        save_folder(folder, doc["kind"], doc["config"], state, meta)
        return doc["kind"]
    raise SystemExit(f"{folder}: not a starcurve model folder of a known old format")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    for folder in ap.parse_args().folders:
        print(f"{folder}: {convert(folder)}")


if __name__ == "__main__":
    main()
