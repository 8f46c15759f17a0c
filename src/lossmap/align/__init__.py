"""Permutation alignment of two networks (Git Re-Basin), with the structure read off torch.fx.

* :mod:`.graph` — units, the spaces of channels they fill, permutation groups.
* :mod:`.layers`, :mod:`.ops` — how each layer and operation treats channels.
* :mod:`.trace` — tracing a model and walking its graph into groups.
* :mod:`.match` — weight matching and activation matching.
* :mod:`.apply` — permuting tensors and a copy of the model.
* :mod:`.api` — :func:`align`, the front door (``lm.align``).
"""

from .api import align, permutations

__all__ = ["align", "permutations"]
