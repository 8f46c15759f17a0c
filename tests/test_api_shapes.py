"""One shape for every direction builder (issue 22 item 4).

Every builder returns directions ``lm.scan`` takes as they are — one
``Direction``, or a ``Directions`` tuple whose extras (``coords``,
``explained_variance_ratio``, ``eigenvalues``) are named attributes — and the
scan of a builder's result equals the scan of its directions given one by one.
The 0.1 shapes (``d1, d2, coords = lm.plane(...)``, ``dirs, ratio =
lm.pca_directions(...)``, ``values, dirs = lm.hessian_eigenpairs(...)``,
``hessian_eigenpairs(k=)``, ``lm.align(..., return_perms=True)``) still work
for one release, with a DeprecationWarning.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.align import permutations

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)


def scan(directions, centre=None, n: int = 2):
    return lm.scan(
        net(0) if centre is None else centre,
        nn.CrossEntropyLoss(),
        data={"train": data()},
        directions=directions,
        grid=[(-1, 1, 3)] * n,
        progress=False,
        metrics=("loss",),
    )


def assert_same(a: lm.Surface, b: lm.Surface) -> None:
    np.testing.assert_array_equal(a["train_loss"], b["train_loss"])


def trajectory() -> list[dict]:
    g = torch.Generator().manual_seed(1)
    base = net(0).state_dict()
    return [
        {k: v + 0.1 * t * torch.randn(v.shape, generator=g) for k, v in base.items()}
        for t in range(5)
    ]


def hessian(**kw):
    return lm.hessian_eigenpairs(net(0), nn.CrossEntropyLoss(), data(), **kw)


BUILDERS = {
    "random_directions": lambda: lm.random_directions(net(0), 2, seed=0),
    "plane": lambda: lm.plane(net(0), net(1), net(2)),
    "pca_directions": lambda: lm.pca_directions(trajectory(), 2),
    "hessian_eigenpairs": lambda: hessian(n=2),
}


@pytest.mark.parametrize("builder", BUILDERS)
def test_every_builder_result_is_scanned_as_it_is(builder):
    result = BUILDERS[builder]()
    assert isinstance(result, lm.Directions) and len(result) == 2
    assert all(isinstance(d, lm.Direction) for d in result)
    centre = net(0) if builder != "pca_directions" else None
    explicit = scan([result[0], result[1]], centre)
    assert_same(scan(result, centre), explicit)
    d1, d2 = tuple(result)
    assert_same(scan([d1, d2], centre), explicit)


def test_a_single_direction_builder_is_scanned_as_it_is():
    d = lm.interpolation(net(0), net(1))
    assert_same(scan(d, n=1), scan([d], n=1))
    r = lm.random_direction(net(0), seed=0)
    assert_same(scan(r, n=1), scan(lm.random_directions(net(0), 1, seed=0), n=1))


def test_the_extras_are_named_and_in_each_direction():
    plane = BUILDERS["plane"]()
    assert plane.coords["b"] == (1.0, 0.0) and plane[1].meta["coords"] == plane.coords
    pca = BUILDERS["pca_directions"]()
    assert pca.explained_variance_ratio.shape == (2,)
    assert [d.meta["explained_variance_ratio"] for d in pca] == list(pca.explained_variance_ratio)
    h = BUILDERS["hessian_eigenpairs"]()
    assert [d.meta["eigenvalue"] for d in h] == list(h.eigenvalues)
    assert h.eigenvalues[0] >= h.eigenvalues[1]
    with pytest.raises(AttributeError, match="its extras: coords"):
        _ = plane.eigenvalues
    again = pickle.loads(pickle.dumps(plane))  # a plain Directions: extras, no 0.1 reading
    assert again.coords == plane.coords and len(again) == 2


def test_new_forms_say_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        _d1, _d2 = lm.plane(net(0), net(1), net(2))
        for builder in BUILDERS.values():
            list(builder())
            [*builder()]
            _first, *_rest = builder()
        assert len(hessian(n=3)) == 3


def test_old_plane_unpacking_warns_and_gives_the_old_values():
    new = lm.plane(net(0), net(1), net(2))
    with pytest.warns(DeprecationWarning, match=r"lm\.plane.*result\.coords"):
        d1, d2, coords = lm.plane(net(0), net(1), net(2))
    assert coords == new.coords
    assert d1.fingerprint() == new[0].fingerprint() and d2.fingerprint() == new[1].fingerprint()


def test_old_pca_unpacking_warns_and_gives_the_old_values():
    new = lm.pca_directions(trajectory(), 3)
    with pytest.warns(DeprecationWarning, match="result.explained_variance_ratio"):
        dirs, ratio = lm.pca_directions(trajectory(), 3)  # three directions, two names: 0.1
    assert isinstance(dirs, list) and [d.fingerprint() for d in dirs] == [
        d.fingerprint() for d in new
    ]
    np.testing.assert_array_equal(ratio, new.explained_variance_ratio)


def test_two_directions_into_two_names_are_the_directions_with_a_visible_warning():
    """``d1, d2 = lm.pca_directions(traj)`` (n=2) reads both ways: the new reading wins,
    and a FutureWarning (shown by default) tells a 0.1 caller what changed."""
    new = lm.pca_directions(trajectory(), 2)
    with pytest.warns(FutureWarning, match=r"these are the 2 directions.*explained_variance"):
        d1, d2 = lm.pca_directions(trajectory(), 2)
    assert [d1.fingerprint(), d2.fingerprint()] == [d.fingerprint() for d in new]
    with pytest.warns(FutureWarning, match="eigenvalues"):
        e1, e2 = hessian(n=2)
    assert [e1.fingerprint(), e2.fingerprint()] == [d.fingerprint() for d in hessian(n=2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # indexing, or passing it on, says nothing
        _ = new[0], new[1], list(new)


def test_old_hessian_forms_warn_and_give_the_old_values():
    new = hessian(n=3)
    with pytest.warns(DeprecationWarning, match="result.eigenvalues"):
        vals, dirs = hessian(n=3)
    np.testing.assert_array_equal(vals, new.eigenvalues)
    assert [d.fingerprint() for d in dirs] == [d.fingerprint() for d in new]
    with pytest.warns(DeprecationWarning, match=r"k=\.\.\.\) is deprecated: use n="):
        old = hessian(k=2)
    np.testing.assert_array_equal(old.eigenvalues, hessian(n=2).eigenvalues)


def test_align_returns_the_module_and_its_permutations_apart():
    a, b = net(0), net(1)
    aligned = lm.align(a, b)
    assert isinstance(aligned, nn.Module)
    perms = permutations(aligned)
    torch.testing.assert_close(aligned[0].weight, b[0].weight[perms["0"]], rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="permutations"):
        _old, old_perms = lm.align(a, b, return_perms=True)
    assert old_perms.keys() == perms.keys()
    assert all(torch.equal(old_perms[k], perms[k]) for k in perms)
    with pytest.raises(lm.InputError, match=r"not returned by lm\.align"):
        permutations(net(2))
