"""Evaluating many grid points at once: the evaluator and what it relies on.

* :mod:`.evaluator` — the PyTorch evaluator (fused parameter build, batch-outer chunks).
* :mod:`.firstlayer` — exact reuse of the first layer's output on the raw input.
* :mod:`.batchnorm` — ``bn="recompute"``: running statistics re-estimated per point.
* :mod:`.restore` — the user's model restored bit-identically, whatever happens.
"""
