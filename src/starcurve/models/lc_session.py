"""A ``light_curve.embed`` session for starcurve models exported to ONNX (light-curve >= 0.13).

``light_curve.embed`` runs ONNX embedding models behind one interface (``EmbeddingSession``: an
``onnxruntime.InferenceSession`` in, ``session(time, mag, ...)`` -> array of shape
``(n_bands, n_subsamples, seq, dim)`` out). ``StarcurveSession`` is that interface for a file written
by ``starcurve export``::

    import onnxruntime as ort
    from starcurve.models.lc_session import StarcurveSession
    emb = StarcurveSession(ort.InferenceSession("model.onnx"), band="g")
    vec = emb(time, mag, mag_err)[0, 0, 0]  # (dim,)

Preprocessing is starcurve's own (cleaning, windows, periodogram and folds; ``OnnxModel``), not a
``light_curve`` reduction: a starcurve model reads every window of a light curve and averages them,
so the result is one vector per band (``n_subsamples = seq = 1``), equal to ``starcurve embed``'s.
light-curve is GPL-3.0 and optional; this module needs it, the rest of starcurve does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from light_curve.embed import SingleBandModel
from light_curve.embed.input_tensors import InputTensors

from starcurve.data.clean import clean
from starcurve.data.io import from_arrays
from starcurve.models.export import OnnxModel


@dataclass
class StarcurveInputs(InputTensors):
    """One clean light curve as starcurve's nested table (empty when cleaning left no point)."""

    table: pa.Table = field(kw_only=True)


class StarcurveSession(SingleBandModel):
    """``light_curve.embed`` session for a ``starcurve export`` file: ``(time, mag, mag_err)`` in.

    Multi-band models (``pv1``) embed each band with its band embedding: give the light curve's
    band name (``band="g"``), or ``bands=[...]`` and a per-point ``band`` array per call, as every
    ``SingleBandModel``.
    """

    hf_repo = None
    model_outputs = frozenset({"mean"})

    def __init__(self, session, *, band: str = "unknown", bands=None):
        # the reduction is not used (starcurve cuts its own windows) but the base class needs one
        super().__init__(session, bands=bands, reduction="non-overlapping-windows")
        self.model, self.band = OnnxModel.from_session(session), band

    def __call__(self, time, mag, mag_err, band=None) -> np.ndarray:
        """(n_bands, 1, 1, dim); NaN where a band has no usable point."""
        if (band is None) != (self.bands is None):
            raise ValueError(
                f"give a per-point band array exactly when bands are set ({self.bands})"
            )
        arrays = [np.asarray(a) for a in (time, mag, mag_err)]
        if self.bands is None:
            groups = [(self.band, arrays)]
        else:
            band = np.asarray(band)
            groups = [(str(b), [a[band == b] for a in arrays]) for b in self.bands]
        return np.stack(
            [self.predict_tensors(self.preprocess_lc(*a, band=name)) for name, a in groups]
        )

    def preprocess_lc(self, time, mag, mag_err, band: str = "unknown") -> StarcurveInputs:
        table, _ = clean(from_arrays([time], [mag], [mag_err], band=band))
        return StarcurveInputs(table=table, bool_mask=np.ones((1, len(time)), bool))

    def predict_tensors(self, tensors: StarcurveInputs) -> np.ndarray:
        if tensors.table.num_rows == 0:
            return np.full((1, 1, self.model.dim), np.nan, np.float32)
        return self.model.embed_table(tensors.table)[:, None, :]
