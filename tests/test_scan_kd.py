"""Scans of 3 to 6 directions: brute force at random points, slices, designs, the dry run."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

import lossmap as lm
from lossmap.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def setup(dtype=torch.float64, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype)
    return model, X, y


def brute(model, X, y, dirs, coef):
    """Loss and accuracy at c + Σ aᵢ dᵢ: the weights formed by hand, one forward, float64."""
    state = {k: v.detach().double().clone() for k, v in model.named_parameters()}
    for a, d in zip(coef, dirs, strict=True):
        for k in state:
            if k in d:
                state[k] += float(a) * d[k].double()
    with torch.no_grad():
        out = functional_call(model.double(), state, (X.double(),))
    loss = float(nn.functional.cross_entropy(out, y))
    acc = float((out.argmax(1) == y).double().mean())
    return loss, acc


def scan(model, X, y, dirs, grid, **kw):
    return lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=list(dirs),
        grid=grid,
        progress=False,
        **kw,
    )


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_3d_scan_equals_brute_force_at_random_points(strategy):
    model, X, y = setup()
    dirs = lm.random_directions(model, 3, seed=4)
    grid = [(-1.0, 1.0, 5), (0.2, 1.4, 4), (-2.0, -0.5, 3)]  # not cubic; two ranges without 0
    surf = scan(model, X, y, dirs, grid, strategy=strategy)
    assert surf.dims == ("alpha", "beta", "gamma")
    assert surf["train_loss"].shape == (5, 4, 3) and surf.complete
    axes = [np.linspace(lo, hi, n) for lo, hi, n in grid]
    rng = np.random.default_rng(0)
    for flat in rng.choice(5 * 4 * 3, size=12, replace=False):
        idx = np.unravel_index(flat, (5, 4, 3))
        coef = [axes[k][i] for k, i in enumerate(idx)]
        loss, acc = brute(model, X, y, dirs, coef)
        np.testing.assert_allclose(surf["train_loss"][idx], loss, rtol=1e-12)
        assert surf["train_accuracy"][idx] == acc
    np.testing.assert_array_equal(surf.points()[7], [axes[0][0], axes[1][2], axes[2][1]])


def test_six_directions_and_the_limits():
    model, X, y = setup(n=16)
    dirs = list(lm.random_directions(model, 7, seed=0))
    surf = scan(model, X, y, dirs[:6], [(-1, 1, 2)] * 6, metrics=("loss",))
    assert surf.dims == ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
    coef = surf.points()[37]
    loss, _ = brute(model, X, y, dirs[:6], coef)
    np.testing.assert_allclose(surf["train_loss"].reshape(-1)[37], loss, rtol=1e-12)
    with pytest.raises(InputError, match="a scan takes 1 to 6"):
        scan(model, X, y, dirs, [(-1, 1, 2)] * 7)
    with pytest.raises(InputError, match="2 grid axes for 3 directions"):
        scan(model, X, y, dirs[:3], [(-1, 1, 3)] * 2)


def test_2d_slice_of_a_3d_store_equals_the_plane_scanned_directly(tmp_path):
    model, X, y = setup()
    d1, d2, d3 = lm.random_directions(model, 3, seed=1)
    grid = [(-1.0, 1.0, 5), (-0.5, 1.0, 4)]
    scan(model, X, y, [d1, d2, d3], [*grid, (-1.0, 1.0, 5)], store=tmp_path / "cube.lossmap")
    cube = lm.load(tmp_path / "cube.lossmap")
    plane = scan(model, X, y, [d1, d2], grid)
    cut = cube.sel(gamma=0.0)
    assert cut.dims == ("alpha", "beta") and cut.spec.grid == plane.spec.grid
    assert cut.spec.directions == plane.spec.directions
    for v in plane.values:
        np.testing.assert_allclose(cut[v], plane[v], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(cut.errors[v], plane.errors[v], rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(cut.paired[v], plane.paired[v], rtol=1e-9, atol=1e-15)
    assert cut.fingerprints == {k: v for k, v in plane.fingerprints.items()}
    np.testing.assert_array_equal(cube.isel(gamma=2)["train_loss"], cut["train_loss"])
    # off the centre: the plane around c + 0.5·d3, which paired errors are not about
    moved = {k: v.detach() + 0.5 * d3[k] for k, v in model.state_dict().items() if k in d3}
    shifted = scan(model, X, y, [d1, d2], grid, centre=moved)
    off = cube.sel(gamma=0.5)
    np.testing.assert_allclose(off["train_loss"], shifted["train_loss"], rtol=1e-12)
    assert off.paired is None and off.meta["slice"]["gamma"] == 0.5
    assert cube.sel(gamma=0.45, method="nearest").meta["slice"]["gamma"] == 0.5
    with pytest.raises(InputError, match=r"not a grid value of gamma.*nearest is 0\.5"):
        cube.sel(gamma=0.45)
    with pytest.raises(InputError, match=r"surf\.sel\(gamma=0\)"):
        lm.plot.plot_contour(cube)
    with pytest.raises(InputError, match=r"surf\.sel\(gamma=0\)"):
        lm.analysis.convexity(cube, "train_loss")
    lm.plot.plot_contour(cut)  # the slice is what plots take


@pytest.mark.parametrize("kind", ["sobol", "lhs"])
def test_designs_are_reproducible_by_seed_and_inside_the_box(kind, tmp_path):
    from lossmap.scan.design import Design

    box = [(-1.0, 0.5), (0.0, 2.0), (-3.0, -2.0), (-1.0, 1.0), (0.1, 0.2)]
    a = Design(kind, points=64, box=box, seed=3).spec_parts(5)
    pts = lm.ScanSpec(grid=a[0], splits=("train",), metrics=("loss",), design=a[1]).points()
    again = lm.ScanSpec(grid=a[0], splits=("train",), metrics=("loss",), design=a[1]).points()
    other = Design(kind, points=64, box=box, seed=4).spec_parts(5)
    other_pts = lm.ScanSpec(
        grid=other[0], splits=("train",), metrics=("loss",), design=other[1]
    ).points()
    lo, hi = np.array(box).T
    assert pts.shape == (64, 5)
    assert ((pts >= lo) & (pts <= hi)).all()
    np.testing.assert_array_equal(pts, again)
    assert not np.allclose(pts, other_pts)
    # every 1/64 slice of each axis holds exactly one point (Sobol at 2^6 points, and LHS)
    cells = np.floor((pts - lo) / (hi - lo) * 64).astype(int)
    for j in range(5):
        assert sorted(cells[:, j]) == list(range(64))
    # a scan of the design: its points, stored and read back, and the values there
    model, X, y = setup(n=24)
    dirs = lm.random_directions(model, 5, seed=2)
    surf = scan(
        model, X, y, dirs, lm.design(kind, points=64, box=box, seed=3), store=tmp_path / "d.lossmap"
    )
    back = lm.load(tmp_path / "d.lossmap")
    assert back.dims == ("point",) and back.complete
    np.testing.assert_array_equal(back.points(), pts)
    np.testing.assert_array_equal(back.to_xarray()["gamma"].values, pts[:, 2])
    for i in (0, 17, 63):
        loss, _ = brute(model, X, y, dirs, pts[i])
        np.testing.assert_allclose(surf["train_loss"][i], loss, rtol=1e-12)
    with pytest.raises(InputError, match=r"(sobol|lhs) design"):
        lm.plot.plot_line(back)


def test_design_checks():
    with pytest.raises(InputError, match="not one of sobol, lhs"):
        lm.design("halton", points=8, box=(-1, 1))
    model, X, y = setup(n=8)
    dirs = lm.random_directions(model, 3, seed=0)
    with pytest.raises(InputError, match="2 box axes for 3 directions"):
        scan(model, X, y, dirs, lm.design("lhs", points=8, box=[(-1, 1), (-1, 1)]))
    with pytest.warns(UserWarning, match="balanced only at powers of 2"):
        scan(model, X, y, dirs, lm.design("sobol", points=12, box=(-1, 1)))


def test_dry_run_counts_points_and_sizes_the_store_exactly(tmp_path):
    model, X, y = setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dirs = list(lm.random_directions(model, 3, seed=5))
    store = tmp_path / "cube.lossmap"
    kw = dict(
        data={"train": (X, y)},
        directions=dirs,
        grid=[(-1, 1, 7), (-1, 1, 6), (0, 1, 5)],
        metrics=("loss",),
    )  # a loss is never a whole number: the size is exact
    est = lm.estimate(model, nn.CrossEntropyLoss(), store=store, seconds=0.1, **kw)
    assert not store.exists()  # nothing written there
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (est.points, est.todo, est.shape) == (210, 210, (7, 6, 5))
    assert est.seconds_per_point > 0 and est.seconds > est.setup_seconds >= 0
    assert est.timed >= 1
    lm.scan(model, nn.CrossEntropyLoss(), store=store, progress=False, **kw)
    assert os.path.getsize(store) == est.store_bytes
    again = lm.estimate(model, nn.CrossEntropyLoss(), store=store, seconds=0.05, **kw)
    assert again.todo == 0 and again.points == 210
    assert "210 points (7 x 6 x 5; alpha, beta, gamma)" in str(est)
    four = lm.estimate(
        model,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=list(lm.random_directions(model, 4, seed=0)),
        grid=[(-1, 1, 11)] * 4,
        seconds=0.05,
    )
    assert four.points == 14641 and four.store_bytes is None


def test_progressive_order_in_4d_starts_with_the_centre_then_the_corners():
    from lossmap.scan.spec import progressive_order

    order = progressive_order((5, 5, 5, 5), (2, 2, 2, 2))
    assert sorted(order.tolist()) == list(range(625))  # every point once
    assert order[0] == np.ravel_multi_index((2, 2, 2, 2), (5,) * 4)
    corners = {
        np.ravel_multi_index(c, (5,) * 4)
        for c in np.ndindex(2, 2, 2, 2)
        for c in [tuple(4 * i for i in c)]
    }
    assert set(order[1:17].tolist()) == corners  # level 0: the 16 corners, then finer levels
    coarse = np.array(np.unravel_index(order[:81], (5,) * 4)).T  # levels 0 and 1: the 3^4 grid
    assert set(np.unique(coarse)) == {0, 2, 4}


@pytest.mark.jax
def test_jax_3d_scan_agrees_with_pytorch():
    import jax
    import jax.numpy as jnp

    from test_jax_backend import MLP, classification, to_torch_names, torch_twin

    net = MLP()
    variables = net.init(jax.random.key(1), jnp.ones((1, 5)))
    X, y = classification()
    grid = [(-1.0, 1.0, 4), (-0.5, 1.5, 3), (0.0, 1.0, 3)]
    dirs = lm.random_directions((net, variables), 3, norm="filter", ignore=None, seed=3)
    surf = lm.scan(
        (net, variables),
        lm.jax.cross_entropy,
        data={"train": (X, y)},
        directions=dirs,
        grid=grid,
        batch_size=16,
        progress=False,
    )
    ref = lm.scan(
        torch_twin(variables),
        nn.CrossEntropyLoss(),
        data={"train": (torch.from_numpy(X), torch.from_numpy(y))},
        directions=[to_torch_names(d) for d in dirs],
        grid=grid,
        progress=False,
    )
    assert surf.dims == ("alpha", "beta", "gamma")
    np.testing.assert_allclose(surf["train_loss"], ref["train_loss"], rtol=1e-4)


def test_batches_of_several_inputs_in_3d_equal_brute_force():
    """The evaluator of structured batches (tuples, dicts) takes k coefficients per point."""
    from test_batches import TwoInputs

    net = TwoInputs().double()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(5, 4, generator=g, dtype=torch.float64),
                torch.randn(5, 2, generator=g, dtype=torch.float64),
                torch.randint(0, 3, (5,), generator=g)) for _ in range(3)]  # fmt: skip
    dirs = lm.random_directions(net, 3, seed=3)
    grid = [(-1.0, 1.0, 3), (-0.5, 0.5, 2), (0.0, 1.0, 2)]
    surf = lm.scan(
        net,
        nn.CrossEntropyLoss(),
        data={"train": batches},
        directions=list(dirs),
        grid=grid,
        progress=False,
    )
    assert surf.dims == ("alpha", "beta", "gamma")
    for flat, coef in enumerate(surf.points()):
        state = {k: v.detach().clone() for k, v in net.named_parameters()}
        for a, d in zip(coef, dirs, strict=True):
            for k in state:
                state[k] += float(a) * d[k].double()
        with torch.no_grad():
            per = torch.cat([nn.functional.cross_entropy(functional_call(net, state, (x1, x2)), y,
                                                         reduction="none")
                             for x1, x2, y in batches])  # fmt: skip
        np.testing.assert_allclose(
            surf["train_loss"].reshape(-1)[flat], float(per.mean()), rtol=1e-12
        )
