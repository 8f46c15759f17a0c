"""The PyTorch backend: the evaluator and what it relies on.

* :mod:`.backend` — :class:`TorchBackend`, the interface the scan core calls.
* :mod:`.evaluator` — the PyTorch evaluator (fused parameter build, batch-outer chunks).
* :mod:`.structured` — batches kept as given (dicts, several inputs, dynamic padding).
* :mod:`.build` — the points c + Σ aᵢdᵢ formed in the working precision.
* :mod:`.metrics` — the network and its metrics as one module.
* :mod:`.checks` — the model and metrics run on a few samples first; failures named.
* :mod:`.sizing` — the batch size, fitted to the cache.
* :mod:`.plain` — plain evaluation at a few points: the reference (probe, round-off).
* :mod:`.roundoff` — the scan's round-off floor, measured against float64.
* :mod:`.persample` — a metric's per-example terms as tensors (for derivatives).
* :mod:`.slopes` — the slope at the centre per direction, with its standard error.
* :mod:`.firstlayer` — exact reuse of the first layer's output on the raw input.
* :mod:`.batchnorm` — ``bn="recompute"``: running statistics re-estimated per point.
* :mod:`.restore` — the user's model restored bit-identically, whatever happens.
"""
