"""Top eigenvalues of lm.curvature_operator against PyHessian and hessian-eigenthings.

The same model, data and loss go to each library; the peers run on a deep
copy of the model (PyHessian writes gradients into it). The peers compute in
the model's float32, lossmap in float64 (``dtype=``): agreement to 1e-4
relative is far above either's round-off.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph:UserWarning"),
]


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    X, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    return net, X, y


def ours(case, kind, k=3):
    net, X, y = case
    op = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), kind=kind, dtype=torch.float64)
    return op.eigenpairs(k, tol=0).eigenvalues


def test_top_hessian_eigenvalues_match_pyhessian(case):
    import pyhessian

    net, X, y = case
    torch.manual_seed(0)  # PyHessian draws its start vectors from the global generator
    h = pyhessian.hessian(copy.deepcopy(net), nn.CrossEntropyLoss(), data=(X, y), cuda=False)
    theirs, _ = h.eigenvalues(maxIter=1000, tol=1e-8, top_n=3)
    np.testing.assert_allclose(ours(case, "hessian"), theirs, rtol=1e-4)


@pytest.mark.parametrize("kind", ["hessian", "ggn", "empirical_fisher"])
def test_top_eigenvalues_match_hessian_eigenthings(case, kind):
    import hessian_eigenthings as he

    net, X, y = case
    net = copy.deepcopy(net)
    ce = nn.CrossEntropyLoss()
    if kind == "hessian":
        op = he.HessianOperator(net, [(X, y)], he.supervised_loss(ce))
    elif kind == "ggn":
        op = he.GGNOperator(net, [(X, y)], he.supervised_forward, he.supervised_loss_of_output(ce))
    else:
        op = he.EmpiricalFisherOperator(net, [(X, y)], he.supervised_per_sample_loss(ce))
    found = he.lanczos(op, k=3, which="LA", max_iter=40, reorthogonalize=True, tol=1e-10, seed=0)
    theirs = np.sort(np.asarray(found.eigenvalues, dtype=np.float64))[::-1]
    np.testing.assert_allclose(ours(case, kind), theirs, rtol=1e-4)
