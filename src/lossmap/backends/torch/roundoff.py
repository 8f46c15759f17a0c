"""The round-off floor of a scan, measured: its own evaluator against float64 at a few points.

A verdict read off second differences (convexity, monotonicity, a barrier)
must know how large the evaluation's own numerical error is. Instead of
assuming it from the machine epsilon, :func:`measure_floor` measures it per
scan:

1. **Points.** :func:`floor_points`: the grid point closest to the centre and
   the grid's corners (its two ends on a line, four corners on a plane), at
   most :data:`MAX_POINTS` = 5. The corners are the points farthest from the
   centre, where the loss (and so its absolute error) is usually largest.
2. **The samples.** At most :data:`FLOOR_SAMPLES` = 1024 of each split, spread
   over it (:func:`spread_subset`: every ⌈N/1024⌉-th sample; a split of at most
   1024 samples whole). Why fewer samples suffice: the floor is a property of
   the float format and of the magnitudes the model computes, not of the data's
   mean. A split's value is the mean of per-example terms, each rounded with an
   error e_i of the same kind wherever the example comes from; the value's error
   is the mean of the e_i, whose systematic part is the same on the subset and on
   the whole split and whose random part shrinks as 1/√n. So the subset's
   difference is, in expectation, at least the whole split's: the floor errs
   toward the larger (more cautious verdicts), and ``tests/test_setup_passes.py``
   checks that it bounds the evaluator's full-data error against float64.
3. **The scan's values.** The scan's own evaluator, built on those samples
   with the scan's batch size and options, evaluates them exactly as it
   evaluates every grid point (first-layer reuse, batching, autocast, vmap):
   the comparison includes the evaluator's own error. With ``compile=True``,
   or splits kept as batches, the scan's evaluator itself on every sample.
4. **The reference.** The same points evaluated plainly in float64: centre,
   directions, buffers and floating-point data cast to float64, the model run
   through ``torch.func.functional_call`` on the same samples (no first-layer
   reuse, no autocast), the same metrics, the batch means weighted by batch
   size as the evaluator does.
5. **The floor.** ``floor[v] = max over the points of |v_scan − v_float64|``,
   and at least ``eps · |v|`` (about one unit in the last place of the value
   in the evaluation's dtype: a float32 batch mean is routinely off by that
   much), so that a lucky agreement at a few points does not make it vanish.

A scan whose weights are already float64 has no more precise reference at
hand; its reference is the same float64 evaluation with the samples in
reversed order (so other batches and another order of accumulation), and the
floor is that difference, at least ``eps · |v|`` with float64's eps.

Cost: at most 5 extra points in float32 and 5 in float64 (a float64 point
costs about 2–5 times a float32 one on a CPU), on at most 1024 samples per
split, once per scan, before the grid: 3 + 3 points on a line. On a
784-512-512-10 MLP with 10,000 samples that is about 1.5 % of a 15×15 plane
(``benchmarks/mlp_plane.py``); on the demo's CNN (512 + 512 samples, no
subset) about 2 % of its 31×31 plane.
Memory: float64 copies of the centre and the directions; above :data:`BUDGET`
the floor is not measured (the 50M-parameter memory benchmark stays as it was).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ...data.splits import Split

#: Points at which the floor is measured, at most.
MAX_POINTS = 5
#: Samples per split the floor is measured on, at most (:func:`spread_subset`).
FLOOR_SAMPLES = 1024
#: The float64 reference keeps float64 copies of the centre and the directions and forms
#: each point in one more float64 state: above this many bytes of them (a model of about
#: 22M parameters with one direction, 17M with two) the floor is not measured, and verdicts
#: say that they assume it from the dtype's eps.
BUDGET = 512 * 1024**2


def float64_bytes(state: dict, ndirs: int) -> int:
    """Bytes of the float64 reference's copies: centre, directions and one working state."""
    return 8 * sum(t.numel() for t in state.values()) * (2 + ndirs)


def spread_subset(split: Split, m: int | None = None) -> Split:
    """Every ⌈N/m⌉-th sample of ``split``: at most ``m``, spread over it (all where N ≤ m).

    ``m`` defaults to :data:`FLOOR_SAMPLES`.

    Spread rather than the first ``m``, so that a split sorted by class or
    difficulty gives a subset of the same magnitudes.

    Examples
    --------
    >>> s = spread_subset(Split("train", torch.arange(10.0)[:, None], torch.arange(10)), 4)
    >>> s.name, s.y.tolist()
    ('train', [0, 3, 6, 9])
    """
    step = -(-split.n // max(FLOOR_SAMPLES if m is None else m, 1))
    if step <= 1:
        return split
    return dataclasses.replace(split, X=split.X[::step].contiguous(),
                               y=split.y[::step].contiguous())


def floor_points(coords: Sequence[np.ndarray]) -> np.ndarray:
    """The points the floor is measured at: the centre-most grid point and the grid's corners.

    Parameters
    ----------
    coords : sequence of ndarray
        The grid's coordinates per dimension (``spec.coords()``).

    Returns
    -------
    ndarray, shape (K, ndim)
        K = 3 on a line, 5 on a plane (fewer where points coincide).

    Examples
    --------
    >>> floor_points([np.linspace(-1, 1, 5)])
    array([[ 0.],
           [-1.],
           [ 1.]])
    """
    centre = [c[int(np.argmin(np.abs(c)))] for c in coords]
    corners = np.stack(np.meshgrid(*[[c[0], c[-1]] for c in coords], indexing="ij"), -1)
    out: list[tuple[float, ...]] = []
    for p in [tuple(centre), *map(tuple, corners.reshape(-1, len(coords)))]:
        if p not in out:
            out.append(tuple(float(x) for x in p))
    return np.asarray(out[:MAX_POINTS], dtype=np.float64)


def measure_floor(evaluator: Any, reference: Callable[[np.ndarray], np.ndarray],
                  variables: Sequence[str], points: np.ndarray, dtype: torch.dtype
                  ) -> dict[str, float]:
    """``floor[v] = max over points of max(|v_eval − v_ref|, eps · |v_ref|)``.

    Parameters
    ----------
    evaluator : object
        The scan's evaluator (its ``evaluate(points)`` and ``chunk``).
    reference : callable
        ``reference(points)`` → the float64 values (K, len(variables)).
    variables : sequence of str
        The column names.
    points : ndarray, shape (K, ndim)
    dtype : torch.dtype
        The scan's evaluation dtype (its eps is the lower bound).

    Returns
    -------
    dict of str to float
        Points where a value is not finite (a diverged corner) are left out;
        a variable with no finite point is left out (its floor is not measured).

    Examples
    --------
    >>> class Scan:  # an evaluator off by 1e-6 at every point
    ...     chunk = 2
    ...     def evaluate(self, p):
    ...         return p ** 2 + 1e-6
    >>> pts = np.array([[0.0], [-1.0], [1.0]])
    >>> fl = measure_floor(Scan(), lambda p: p ** 2, ["train_loss"], pts, torch.float32)
    >>> round(fl["train_loss"], 9)
    1e-06
    """
    ours = np.concatenate([np.asarray(evaluator.evaluate(points[i : i + evaluator.chunk]))
                           for i in range(0, len(points), evaluator.chunk)])
    ref = np.asarray(reference(points), dtype=np.float64)
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else float(np.finfo(np.float32).eps)
    out = {}
    for j, name in enumerate(variables):
        ok = np.isfinite(ours[:, j]) & np.isfinite(ref[:, j])  # a diverged corner is left out
        if ok.any():
            a, b = ours[ok, j], ref[ok, j]
            out[name] = float(np.max(np.maximum(np.abs(a - b), eps * np.abs(b))))
    return out
