"""The JAX backend, laid out as the PyTorch one (:mod:`lossmap.backends.torch`).

* :mod:`.backend` — :class:`JaxBackend`, the interface the scan core calls.
* :mod:`.evaluate` — the JAX evaluator (vmap over a chunk of points).
* :mod:`.metrics` — JAX metrics and their per-example terms.
* :mod:`.slopes` — the slope at the centre per direction, by ``jax.jvp``.

Imported only once the user's process has imported ``jax``; the user-facing JAX
names (models, the Flax CNN, training, conversion) are in :mod:`lossmap.jax`.
"""
