"""The scan pipeline: one front door, one plan, one runner.

* :mod:`.api` — :func:`lossmap.scan`, the front door (also ``load_directions``).
* :mod:`.spec` — :class:`ScanSpec` and :class:`Axis`: one validated, serializable vocabulary.
* :mod:`.plan` — arguments resolved once into a :class:`Plan` for a backend.
* :mod:`.options` — ``lm.scan``'s options, declared once (flags, spec-file keys, checks).
* :mod:`.runner` — the points visited coarse to fine, stored, resumed, reported.
* :mod:`.path` and :mod:`.pathspec` — scans along a path θ(t) (curves, elastic bands).
* :mod:`.metrics` — metric names resolved to callables.
* :mod:`.progress` — points done, points/s and ETA.

Nothing is imported here: ``lossmap.scan`` is also the name of the front-door
function, and the submodules import each other only as they need.
"""
