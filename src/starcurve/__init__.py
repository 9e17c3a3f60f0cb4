"""starcurve: deep learning on astronomical light curves."""

from starcurve.data.clean import clean
from starcurve.data.io import read, write_parquet
from starcurve.errors import StarcurveError

__version__ = "0.1.0"
__all__ = ["read", "clean", "write_parquet", "StarcurveError", "__version__"]
