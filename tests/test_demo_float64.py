"""The demo's θ0 line (issue 15): its float32 convexity verdict agrees with a float64 rescan.

The same θ0 (Flax's init, as the demo draws it), the same direction rule and the same
Fashion-MNIST samples (a smaller subset than the demo's 512, to keep the suite fast).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap import models
from lossmap.analysis.convexity import convexity
from lossmap.data import fashion_mnist

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_theta0_line_verdict_float32_equals_float64():
    X, y = fashion_mnist("train")
    theta0 = models.fashion_cnn(dropout=0.0, seed=0, init="flax").state_dict()
    d = lm.random_directions(theta0, 2, norm="layer", ignore=None, seed=0)[0]
    kw = dict(grid=(-0.3, 0.3, 31), samples=256, seed=0, progress=False)
    verdicts = {}
    for dtype in (torch.float32, torch.float64):
        model = models.fashion_cnn(dropout=0.0, seed=0).to(dtype)
        centre = {k: v.to(dtype) for k, v in theta0.items()}
        direction = lm.Direction({k: v.to(dtype) for k, v in d.items()}, d.meta)
        surf = lm.scan(model, nn.CrossEntropyLoss(), data={"train": (X.to(dtype), y)},
                       centre=centre, directions=direction, **kw)
        verdicts[dtype] = (convexity(surf, "train_loss"), surf["train_loss"])
    r32, v32 = verdicts[torch.float32]
    r64, v64 = verdicts[torch.float64]
    assert np.abs(v32 - v64).max() < 1e-5  # the same line, to float32 round-off
    assert r32["convex"] is r64["convex"], (r32["verdict"], r64["verdict"])
    assert r32["convex"] is False  # θ0's line bends: a negative second difference is real
    D64 = np.diff(v64, 2)
    assert (D64 < 0).any()  # float64 sees the non-convexity the float32 verdict reports
