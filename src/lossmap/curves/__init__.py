"""Paths between two models: trained curves and elastic bands.

:class:`Curve` (``curves/curve.py``) is a Bézier curve or a polygonal chain
through parameter space; :func:`lossmap.curve` trains its bends
(``curves/fit.py``, Garipov et al. 2018) and :func:`lossmap.neb` relaxes a
polygonal chain by the nudged elastic band (``curves/neb.py``, the band's
mechanics in ``curves/band.py``; Draxler et al. 2018). The functions are
exported from ``lossmap`` itself (``lm.curve``, ``lm.neb``).
"""

from .curve import Curve

__all__ = ["Curve"]
