"""starcurve: deep learning on astronomical light curves."""

from starcurve.data.clean import clean
from starcurve.data.io import read, write_parquet
from starcurve.errors import StarcurveError

__version__ = "0.1.0"
__all__ = [
    "StarcurveError",
    "__version__",
    "clean",
    "light_curve",
    "load",
    "load_model",
    "read",
    "write_parquet",
]


def load(path=None):
    """The model of any folder starcurve writes (None: the shipped model), by its model_type: an
    encoder (embeddings: ``transform``), or a classifier (``predict``, ``predict_proba``); see
    ``starcurve.models.folder``. Imported lazily so that ``import starcurve`` stays fast."""
    from starcurve.models.folder import load as _load

    return _load(path)


def load_model(path=None):
    """The embedding model of a folder (an encoder, or a classifier's encoder); with no path, that of
    the model shipped with starcurve.

    Imported lazily so that ``import starcurve`` stays fast (torch loads on first use).
    """
    from starcurve.models.hub import load_model as _load_model

    return _load_model(path)


def light_curve(source, object_id=None, **kw):
    """One object's ``LightCurve`` (plot, periodogram, fold, reconstruct): ``starcurve.lightcurve``.

    Imported lazily, like ``load_model``, so that ``import starcurve`` does not load matplotlib.
    """
    from starcurve.lightcurve import light_curve as _light_curve

    return _light_curve(source, object_id, **kw)
