"""Trace and diagonal estimators with standard errors (lossmap.curvature.estimators).

Each estimate is checked against a brute-force float64 NumPy reference on the
same probes (replayed from the seed: curvlinops draws them from torch's global
generator, one vector at a time), and its standard error against the spread
of the actual errors over 200 seeds of a matrix with known trace.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from curvlinops.sampling import random_vector

from lossmap.curvature.estimators import (
    DiagonalEstimate,
    TraceEstimate,
    diagonal_estimate,
    trace_estimate,
)
from lossmap.errors import InputError, InputTypeError

pytestmark = pytest.mark.usefixtures("one_thread")

DIM = 200
SEEDS = range(200)


def spectrum_matrix(decay: float, dim: int = DIM) -> tuple[torch.Tensor, np.ndarray]:
    """A dense symmetric matrix with eigenvalues k^-decay (k = 1..dim), and those eigenvalues."""
    g = torch.Generator().manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64, generator=g))
    lam = torch.arange(1, dim + 1, dtype=torch.float64) ** -decay
    return (U * lam) @ U.T, lam.numpy()


def probes(seed: int, *counts: int) -> list[np.ndarray]:
    """The Rademacher blocks curvlinops draws after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return [
        torch.stack([random_vector(DIM, "rademacher", "cpu", torch.float64) for _ in range(n)], 1)
        .numpy()
        .copy()
        for n in counts
    ]


def basis(M: np.ndarray) -> np.ndarray:
    return np.linalg.qr(M)[0]


def summary(terms: np.ndarray) -> tuple[float, float]:
    return terms.mean(), terms.std(ddof=1) / np.sqrt(len(terms))


# -- against a float64 reference on the same probes --------------------------------


def test_hutchinson_equals_the_reference():
    A, _ = spectrum_matrix(1.0)
    t = trace_estimate(lambda V: A @ V, DIM, probes=30, seed=5)
    (G,) = probes(5, 30)
    An = A.numpy()
    value, se = summary(np.einsum("ij,ij->j", G, An @ G))
    assert (t.method, t.matvecs, t.probes) == ("hutchinson", 30, 30)
    assert t.value == pytest.approx(value, rel=1e-12) and t.se == pytest.approx(se, rel=1e-10)


def test_hutchpp_equals_the_reference():
    A, _ = spectrum_matrix(1.0)
    t = trace_estimate(lambda V: A @ V, DIM, method="hutch++", probes=31, seed=6)
    S, G = probes(6, 10, 10)
    An = A.numpy()
    Q = basis(An @ S)
    PG = G - Q @ (Q.T @ G)
    value, se = summary(np.trace(Q.T @ An @ Q) + np.einsum("ij,ij->j", PG, An @ PG))
    assert (t.matvecs, t.probes) == (30, 10)  # 31 rounded down to a multiple of 3
    assert t.value == pytest.approx(value, rel=1e-12) and t.se == pytest.approx(se, rel=1e-9)


def xtrace_reference(An: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Brute force: tᵢ from a fresh QR of A·W without column i."""
    out = []
    for i in range(W.shape[1]):
        Qi = basis(An @ np.delete(W, i, axis=1))
        Pw = W[:, i] - Qi @ (Qi.T @ W[:, i])
        out.append(np.trace(Qi.T @ An @ Qi) + Pw @ An @ Pw)
    return np.array(out)


def xdiag_reference(An: np.ndarray, W: np.ndarray) -> np.ndarray:
    out = []
    for i in range(W.shape[1]):
        Qi = basis(An @ np.delete(W, i, axis=1))
        w = W[:, i]
        rest = An @ w - Qi @ (Qi.T @ (An @ w))
        out.append(np.einsum("ij,ji->i", Qi, Qi.T @ An) + w * rest / w**2)
    return np.stack(out, 1)


def test_xtrace_equals_the_leave_one_out_reference():
    A, _ = spectrum_matrix(1.0)
    t = trace_estimate(lambda V: A @ V, DIM, method="xtrace", probes=20, seed=7)
    (W,) = probes(7, 10)
    terms = xtrace_reference(A.numpy(), W)
    value, se = summary(terms)
    assert (t.matvecs, t.probes) == (20, 10)
    np.testing.assert_allclose(t.terms, terms, rtol=1e-9)
    assert t.value == pytest.approx(value, rel=1e-12) and t.se == pytest.approx(se, rel=1e-9)


@pytest.mark.parametrize("method", ["hutchinson", "xdiag"])
def test_diagonals_equal_the_reference(method):
    A, _ = spectrum_matrix(0.5)
    An = A.numpy()
    d = diagonal_estimate(lambda V: A @ V, DIM, method=method, probes=24, seed=8)
    if method == "hutchinson":
        (G,) = probes(8, 24)
        per = G * (An @ G)
    else:
        (W,) = probes(8, 12)
        per = xdiag_reference(An, W)
    m = per.shape[1]
    assert isinstance(d, DiagonalEstimate) and (d.matvecs, d.probes) == (24, m)
    np.testing.assert_allclose(d.value.numpy(), per.mean(1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(d.se.numpy(), per.std(1, ddof=1) / np.sqrt(m), rtol=1e-8)


# -- the standard errors against the actual errors -------------------------------------


def errors(method: str, decay: float, budget: int = 30) -> tuple[np.ndarray, np.ndarray]:
    A, lam = spectrum_matrix(decay)
    runs = [
        trace_estimate(lambda V: A @ V, DIM, method=method, probes=budget, seed=s) for s in SEEDS
    ]
    return np.array([r.value for r in runs]) - lam.sum(), np.array([r.se for r in runs])


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
@pytest.mark.parametrize("decay", [0.5, 1.0])
def test_two_se_interval_covers_the_trace_about_95_percent(method, decay):
    err, se = errors(method, decay)
    covered = np.mean(np.abs(err) <= 2 * se)
    # Binomial(200, 0.95) lies in [0.915, 0.98] 95 % of the time; 30 probes give
    # t-distributed terms, so the nominal level is a little under 95 %.
    assert 0.88 <= covered <= 0.99, covered
    assert 0.8 < se.mean() / np.sqrt(np.mean(err**2)) < 1.2


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_xtrace_se_is_its_papers_estimate_and_runs_small():
    """Documented: the tᵢ share one sketch, so std/√m is 0.6–0.85 of the actual error."""
    err, se = errors("xtrace", 1.0)
    covered = np.mean(np.abs(err) <= 2 * se)
    ratio = se.mean() / np.sqrt(np.mean(err**2))
    assert 0.75 <= covered <= 0.97, covered
    assert 0.5 < ratio < 1.0, ratio


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_hutchpp_and_xtrace_beat_hutchinson_on_a_decaying_spectrum():
    rms = {m: np.sqrt(np.mean(errors(m, 2.0)[0] ** 2)) for m in ("hutchinson", "hutch++", "xtrace")}
    assert rms["hutch++"] < 0.2 * rms["hutchinson"], rms
    assert rms["xtrace"] < rms["hutch++"], rms


@pytest.mark.parametrize(
    ("method", "low", "high"), [("hutchinson", 0.9, 0.98), ("xdiag", 0.75, 0.93)]
)
def test_diagonal_se_covers_each_entry(method, low, high):
    """Per entry over 10 seeds × 200 entries; XDiag's s.e. runs small, as XTrace's (documented)."""
    A, _ = spectrum_matrix(0.5)
    covered = [
        ((d.value - A.diag()).abs() <= 2 * d.se).double().mean().item()
        for d in (
            diagonal_estimate(lambda V: A @ V, DIM, method=method, probes=40, seed=s)
            for s in range(10)
        )
    ]
    assert low <= np.mean(covered) <= high, covered


def test_estimates_are_exact_where_they_must_be():
    A = torch.diag(torch.arange(1.0, DIM + 1, dtype=torch.float64))
    t = trace_estimate(lambda V: A @ V, DIM, probes=5)
    assert t.value == pytest.approx(A.trace().item(), abs=1e-9) and t.se == 0.0
    d = diagonal_estimate(lambda V: A @ V, DIM, probes=5)
    torch.testing.assert_close(d.value, A.diag(), rtol=0, atol=1e-12)
    low = torch.randn(DIM, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    B = low @ low.T + torch.eye(DIM, dtype=torch.float64)  # rank 4 on the identity
    x = trace_estimate(lambda V: B @ V, DIM, method="hutch++", probes=30)
    assert x.value == pytest.approx(B.trace().item(), rel=1e-3)


# -- calls, seeds, random state ------------------------------------------------------


def test_blocks_and_single_vectors_give_the_same_estimate():
    A, _ = spectrum_matrix(1.0)
    shapes = []

    def one(v):
        shapes.append(tuple(v.shape))
        return A @ v

    whole = trace_estimate(lambda V: A @ V, DIM, method="xtrace", probes=10, seed=2)
    single = trace_estimate(one, DIM, method="xtrace", probes=10, seed=2, block_size=1)
    assert set(shapes) == {(DIM,)} and len(shapes) == 10
    assert single.value == pytest.approx(whole.value, rel=1e-12)
    assert single.se == pytest.approx(whole.se, rel=1e-9)


def test_seed_decides_the_probes_and_the_global_state_is_untouched():
    A, _ = spectrum_matrix(1.0)
    state = torch.random.get_rng_state()
    a = trace_estimate(lambda V: A @ V, DIM, seed=1)
    b = trace_estimate(lambda V: A @ V, DIM, seed=1)
    c = trace_estimate(lambda V: A @ V, DIM, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.value == b.value and a.value != c.value


def test_finding_fields_and_json():
    A, _ = spectrum_matrix(1.0)
    t = trace_estimate(lambda V: A @ V, DIM, method="hutch++", probes=30)
    assert isinstance(t, TraceEstimate) and t.kind == "trace_estimate"
    assert t.resolved is True and t.z_score == pytest.approx(t.value / t.se)
    data = json.loads(json.dumps(t.to_dict()))
    assert data["method"] == "hutch++" and data["matvecs"] == 30 and data["se"] == t.se
    assert t.sentence() == (
        f"trace ≈ {t.value:.4g} ± {t.se:.2g} (s.e. from 10 probes; hutch++, 30 matrix-vector "
        "products)"
    )
    small = diagonal_estimate(lambda V: A[:40, :40] @ V, 40, probes=10)
    assert len(json.loads(json.dumps(small.to_dict()))["value"]) == 40


def test_refusals_name_the_problem():
    A, _ = spectrum_matrix(1.0)
    f = lambda V: A @ V  # noqa: E731
    with pytest.raises(InputError, match="method='lanczos' is not a trace estimator"):
        trace_estimate(f, DIM, method="lanczos")
    with pytest.raises(InputError, match="not less than dim=200"):
        trace_estimate(f, DIM, probes=200)
    with pytest.raises(InputError, match=r"probes=2 must be an integer >= 3"):
        trace_estimate(f, DIM, method="hutch++", probes=2)
    with pytest.raises(InputError, match="returned shape"):
        trace_estimate(lambda V: (A @ V)[:10], DIM)
    with pytest.raises(InputTypeError, match="not a callable"):
        trace_estimate(A, DIM)
    J = torch.ones(DIM, DIM, dtype=torch.float64)  # rank one
    with pytest.raises(InputError, match="rank is below its 5 probes"):
        trace_estimate(lambda V: J @ V, DIM, method="xtrace", probes=10)


def test_docstrings_match_signatures(assert_docstring_matches_signature):
    assert_docstring_matches_signature(trace_estimate)
    assert_docstring_matches_signature(diagonal_estimate)
