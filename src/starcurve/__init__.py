"""starcurve: deep learning on astronomical light curves."""

from starcurve.data.clean import clean
from starcurve.data.io import read, write_parquet
from starcurve.errors import StarcurveError

__version__ = "0.1.0"
__all__ = [
    "StarcurveError", "__version__", "clean", "light_curve", "load_model", "read", "write_parquet",
]


def load_model(path=None):
    """Load an encoder model folder; with no path, the pretrained model shipped with starcurve.

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
