"""Interpolation, planes through three models, and trajectory PCA on known geometry."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import lossmap as lm
from lossmap.errors import InputError


def bn_net(seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.5, 2)
    return m.eval()


def test_interpolation_endpoints_are_the_models():
    a, b = bn_net(0), bn_net(1)
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    d = lm.interpolation(a, b)
    assert "1.running_mean" in d and "1.num_batches_tracked" not in d  # buffers move too
    surf = lm.scan(
        a,
        nn.CrossEntropyLoss(),
        data={"t": (X, y)},
        directions=d,
        centre=a,
        grid=(-0.5, 1.5, 41),
        progress=False,
    )
    alpha = surf.coords["alpha"]
    i0, i1 = np.flatnonzero(np.isclose(alpha, 0)), np.flatnonzero(np.isclose(alpha, 1))
    assert i0.size == 1 and i1.size == 1
    with torch.no_grad():
        la = nn.functional.cross_entropy(a(X), y).item()
        lb = nn.functional.cross_entropy(b(X), y).item()
    assert surf["t_loss"][i0[0]] == pytest.approx(la, rel=1e-5)
    assert surf["t_loss"][i1[0]] == pytest.approx(lb, rel=1e-5)


def test_plane_puts_each_model_at_its_coordinates():
    a, b, c = bn_net(0), bn_net(1), bn_net(2)
    d1, d2 = found = lm.plane(a, b, c)
    coords = found.coords
    pa = {k: v for k, v in d1.items() if "running" not in k}
    pb = {k: v for k, v in d2.items() if "running" not in k}
    assert abs(lm.Direction(pa).cosine(pb)) < 1e-6
    assert coords["a"] == (0.0, 0.0) and coords["b"] == (1.0, 0.0) and coords["c"][1] == 1.0
    sa, sc = a.state_dict(), c.state_dict()
    ac = coords["c"][0]
    for k in d1:  # a + α_c·d1 + 1·d2 == c, buffers included
        torch.testing.assert_close(sa[k] + ac * d1[k] + d2[k], sc[k], rtol=1e-5, atol=1e-6)
    X, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    surf = lm.scan(
        a,
        nn.CrossEntropyLoss(),
        data={"t": (X, y)},
        directions=[d1, d2],
        centre=a,
        grid=[(ac - 1.0, ac, 2), (0.0, 1.0, 2)],
        progress=False,
    )
    with torch.no_grad():
        lc = nn.functional.cross_entropy(c(X), y).item()
    assert surf["t_loss"][1, 1] == pytest.approx(lc, rel=1e-5)  # (α_c, 1) is model c


def test_plane_rejects_degenerate_models():
    a, b = bn_net(0), bn_net(1)
    with pytest.raises(InputError, match="identical"):
        lm.plane(a, a, b)
    mid = {
        k: (a.state_dict()[k] + b.state_dict()[k]) / 2 if v.is_floating_point() else v
        for k, v in a.state_dict().items()
    }
    with pytest.raises(InputError, match="on the line"):
        lm.plane(a, b, mid)


def test_pca_recovers_a_known_plane(tmp_path):
    g = torch.Generator().manual_seed(0)
    final = {
        "w": torch.randn(20, 5, generator=g, dtype=torch.float64),
        "b": torch.randn(5, generator=g, dtype=torch.float64),
    }
    u = torch.linalg.qr(torch.randn(105, 2, generator=g, dtype=torch.float64))[0]  # orthonormal
    t = torch.linspace(0, 1, 12, dtype=torch.float64)
    true = torch.stack([3 * (1 - t) ** 2, 1.5 * torch.sin(3 * t) * (1 - t)], 1)  # (12, 2)
    steps = []
    for k in range(12):
        flat = u @ true[k]
        steps.append({"w": final["w"] + flat[:100].reshape(20, 5), "b": final["b"] + flat[100:]})
    steps[-1] = final
    for k, s in enumerate(steps):  # through files: the lazy, bounded-memory path
        save_file(
            {n: v.contiguous() for n, v in s.items()}, str(tmp_path / f"e{k:03d}.safetensors")
        )
    dirs = lm.pca_directions(tmp_path, 2)
    ratio = dirs.explained_variance_ratio
    assert ratio.sum() == pytest.approx(1.0, abs=1e-10)  # the path lies in the plane
    U = torch.stack([torch.cat([d["w"].reshape(-1), d["b"]]) for d in dirs], 1)
    # same plane: projector onto span(U) equals projector onto span(u)
    torch.testing.assert_close(U @ U.T, u @ u.T, atol=1e-10, rtol=0)
    coords = lm.project(tmp_path, dirs)
    recon = coords @ U.T.numpy()
    np.testing.assert_allclose(recon, (true @ u.T).numpy(), atol=1e-10)
    assert np.allclose(coords[-1], 0)
    axes = lm.fitted_grid(coords, margin=0.1, n=11)
    for (lo, hi, n), col in zip(axes, coords.T, strict=True):
        assert lo < col.min() and hi > col.max() and n == 11
    # in-memory steps give the same answer
    ratio2 = lm.pca_directions(steps, 2).explained_variance_ratio
    np.testing.assert_allclose(ratio2, ratio, atol=1e-12)


def test_pca_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        lm.pca_directions(tmp_path / "nope")
    with pytest.raises(InputError, match="at least 3"):
        lm.pca_directions(tmp_path)
