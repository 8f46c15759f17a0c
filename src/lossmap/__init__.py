"""lossmap: loss-surface slices of neural networks.

>>> import lossmap as lm
>>> lm.__version__
'0.1.0'
"""

__version__ = "0.1.0"

from .directions import Direction, random_direction, random_directions
from .errors import InputError, InputTypeError, LossmapError, StoreError
from .scan import load_directions, scan
from .spec import Axis, ScanSpec
from .surface import Surface, load

__all__ = [
    "Axis",
    "Direction",
    "InputError",
    "InputTypeError",
    "LossmapError",
    "ScanSpec",
    "StoreError",
    "Surface",
    "__version__",
    "load",
    "load_directions",
    "random_direction",
    "random_directions",
    "scan",
]
