"""Typed findings (issue 22 item 3), their one renderer, flat planes (issue 21 item 8) and the
words for a diverged centre (issue 21 item 15).

Numbers are asserted on fields; a few tests check the renderer's sentence for a known finding.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.analysis import (
    barrier,
    basin_width,
    convexity,
    findings,
    flatness,
    gap,
    grid_sharpness,
    minimum,
    samples_needed,
    sentence,
    slope_at_centre,
)
from lossmap.analysis.finding import Barrier, Evidence, Finding
from lossmap.scan.spec import ScanSpec
from lossmap.surface import Surface


def line(values, n=21, lo=-1.0, hi=1.0, done=None, **kw):
    spec = ScanSpec(grid=((lo, hi, n),), splits=tuple(values), metrics=("loss",))
    a = spec.coords()[0]
    vals = {
        f"{s}_loss": np.asarray(f(a) if callable(f) else f, float) * np.ones(n)
        for s, f in values.items()
    }
    return Surface(spec, vals, np.ones(n, bool) if done is None else done, **kw)


def plane(fn, n=11):
    spec = ScanSpec(grid=((-1, 1, n), (-1, 1, n)), splits=("train",), metrics=("loss",))
    A, B = np.meshgrid(*spec.coords(), indexing="ij")
    return Surface(spec, {"train_loss": fn(A, B) * np.ones((n, n))}, np.ones((n, n), bool))


# -- typed findings --------------------------------------------------------------------
def test_every_public_analysis_returns_a_frozen_finding_with_one_name_per_quantity():
    se = np.full(21, 0.01)
    surf = line(
        {"train": lambda a: 1 + (a - 0.3) ** 2, "test": lambda a: 1.2 + a**2},
        errors={"train_loss": se, "test_loss": se},
        samples={"train": 100, "test": 100},
    )
    interp = dataclasses.replace(
        surf,
        spec=dataclasses.replace(
            surf.spec, grid=((-0.5, 1.5, 21),), directions=({"kind": "interpolation"},)
        ),
    )
    got = [
        slope_at_centre(surf, "train_loss"),
        convexity(surf, "train_loss"),
        minimum(surf, "train_loss"),
        basin_width(surf, "train_loss", 0.1),
        grid_sharpness(surf, "train_loss", 0.3),
        gap(surf),
        flatness(surf, "train_loss"),
        barrier(interp, "train_loss"),
    ]
    for f in got:
        assert isinstance(f, Finding) and isinstance(f.evidence, Evidence)
        with pytest.raises(dataclasses.FrozenInstanceError):
            f.value = 0.0  # type: ignore[misc]
        d = f.to_dict()
        json.dumps(d, allow_nan=False)
        assert d["kind"] == f.kind and {"value", "se", "resolved", "evidence", "z_score"} <= set(d)
        # no aliases: the old duplicate keys are gone
        assert not {
            "violations",
            "min_second_difference",
            "deepest",
            "barrier",
            "t",
            "verdict",
            "message",
            "significant",
            "sharpness",
            "width",
            "gap",
        } & set(d)
    m = got[2]
    assert m.value == pytest.approx(1.09 - 1.0) and m.lowest == pytest.approx(1.0)
    assert m["lowest"] == m.lowest  # read-only access by field name
    with pytest.raises(KeyError, match="has no field 'drop'"):
        m["drop"]
    need = samples_needed(surf, "minimum")
    assert need.kind == "samples_needed" and json.dumps(need.to_dict(), allow_nan=False)


def test_findings_to_dict_keeps_every_finding_with_its_sentence():
    surf = line({"train": lambda a: 1 + a**2, "test": lambda a: 1.1 + a**2})
    found = findings(surf)
    d = found.to_dict()
    json.dumps(d, allow_nan=False)
    for v, entry in found.variables.items():
        assert (
            set(d["variables"][v])
            == set(entry)
            == {"slope", "convexity", "flatness", "minimum", "basin_width"}
        )
        for kind, f in entry.items():
            assert d["variables"][v][kind]["sentence"] == sentence(f)
            assert d["variables"][v][kind]["value"] == (
                None if f.value is None or not math.isfinite(f.value) else f.value
            )
    assert d["gap"]["value"] == pytest.approx(0.1) and d["gap"]["sentence"] == sentence(found.gap)
    # iterating gives every finding once: each variable's, then the gap and the unresolved
    every = [f for e in found.variables.values() for f in e.values()]
    assert list(found) == [*every, found.gap, *found.unresolved]
    with pytest.raises(TypeError, match="not a sequence: read its fields"):
        list(found.gap)


# -- the renderer ----------------------------------------------------------------------
def test_barrier_on_a_path_is_said_in_t_and_on_a_line_in_alpha():
    spec = ScanSpec(
        grid=((0, 1, 21),),
        splits=("train",),
        metrics=("loss",),
        path={"kind": "bezier", "control_points": 3},
    )
    t = spec.coords()[0]
    path = Surface(spec, {"train_loss": 1 + 4 * t * (1 - t)}, np.ones(21, bool))
    r = lm.barrier(path, "train_loss")
    assert r.value == pytest.approx(1.0) and r.at == 0.5 and r.evidence.coordinate == "t"
    text = sentence(r)
    assert text.startswith("a barrier of 1 above the chord at t = 0.5 (uncertainty not measured)")
    assert "alpha" not in text
    on_line = lm.barrier(
        dataclasses.replace(path, spec=dataclasses.replace(spec, path=None)), "train_loss"
    )
    assert on_line.evidence.coordinate == "alpha" and "at alpha = 0.5" in sentence(on_line)


def test_renderer_sentences_of_known_findings():
    f = Barrier(
        variable="v",
        value=0.25,
        se=0.1,
        resolved=True,
        at=0.4,
        chord=1.0,
        above_roundoff=True,
        monotone=True,
        start=0.0,
        evidence=Evidence(n=512, floor=1e-7, floor_measured=True, se_rule="conservative"),
    )
    assert sentence(f) == (
        "a barrier of 0.25 above the chord at alpha = 0.4 (± 0.1: s.e., "
        "conservative, n=512 samples; 2.5 s.e. from zero); it decreases "
        "monotonically from alpha = 0 (the worse end)"
    )
    measured = line(
        {"train": lambda a: 1 + 0.0031 * a + a**2},
        slopes={"train_loss": [{"slope": 0.0031, "se": 0.0002, "n": 512}]},
    )
    assert sentence(slope_at_centre(measured, "train_loss")) == (
        "on a slope: dL/dα = 0.0031 ± 0.0002 (s.e., n=512 samples), 15.5 s.e. from zero; "
        "the loss decreases towards negative alpha"
    )
    well = convexity(line({"train": lambda a: a**4 - a**2}, n=41), "train_loss")
    assert sentence(well).startswith(
        "this slice is not convex, so the surface is not convex: 17 second differences beyond "
        "round-off (deepest -5.0e-03, 1.67e+05× the round-off 3.0e-08); round-off assumed from "
        "float32 eps, not measured; the claim is about the empirical train loss on this scan's "
        "samples of the train split"
    )


# -- a diverged centre is not a missing one (issue 21 item 15) -------------------------
@pytest.mark.parametrize(
    ("value", "done", "words"),
    [
        (math.inf, True, "diverged at the centre (the loss is +inf there)"),
        (math.nan, True, "diverged at the centre (the loss is nan there)"),
        (math.nan, False, "the point at the centre is not computed yet"),
    ],
)
def test_a_diverged_centre_and_a_missing_one_are_different_findings(value, done, words):
    surf = line({"train": lambda a: 1 + a**2, "test": lambda a: 2 + a**2})
    surf.values["train_loss"][10] = value
    surf.done[10] = done
    state = "diverged" if done else "missing"
    s = slope_at_centre(surf, "train_loss")
    assert s.value is None and s.evidence.centre == state
    assert sentence(s) == f"the slope at the centre cannot be formed: {words}"
    assert "is missing" not in sentence(s)
    m = minimum(surf, "train_loss")
    assert m.value is None and m.evidence.centre == state and words in sentence(m)
    b = basin_width(surf, "train_loss", 0.1)
    assert b.value is None and sentence(b).endswith(f"undetermined, {words}")
    g = gap(surf)
    assert g.value is None and g.split_states == (state, "finite")
    said = "diverged (the loss is " if done else "is not computed yet"
    assert said in sentence(g)


def test_a_diverged_end_of_a_barrier_is_said_so():
    spec = ScanSpec(
        grid=((0, 1, 5),),
        splits=("train",),
        metrics=("loss",),
        path={"kind": "polychain", "control_points": 2},
    )
    L = np.array([1.0, 2.0, 3.0, 2.0, np.inf])
    r = lm.barrier(Surface(spec, {"train_loss": L}, np.ones(5, bool)), "train_loss")
    assert r.value is None and r.end_states == ("finite", "diverged")
    assert sentence(r) == ("undetermined: the end model at t = 1 diverged (the loss is +inf there)")


# -- flat planes (issue 21 item 8) -----------------------------------------------------
def test_a_surface_equal_to_round_off_is_reported_flat():
    flat = plane(lambda A, B: 2.5 + 1e-8 * A)  # below float32's ulp bound at 2.5 (~6e-7)
    f = flatness(flat, "train_loss")
    assert f.flat is True and f.value == pytest.approx(2e-8) and f.dims == 2
    assert f.bound == pytest.approx(2 * 2 * np.finfo(np.float32).eps * (2.5 + 1e-8))
    assert f.evidence.floor_measured is False
    lines = findings(flat).lines()
    assert ("warn", "train_loss", sentence(f)) in lines
    assert sentence(f).startswith("the plane is flat: all 121 values equal 2.5 to round-off")
    tilted = plane(lambda A, B: 2.5 + 1e-5 * A)
    assert flatness(tilted, "train_loss").flat is False
    assert not [x for x in findings(tilted).lines() if "flat" in x[2]]
    # a measured floor decides where there is one
    measured = dataclasses.replace(tilted, roundoff={"train_loss": 1e-5})
    assert flatness(measured, "train_loss").flat is True
    assert flatness(measured, "train_loss").bound == pytest.approx(4e-5)


class ZeroGate(nn.Module):
    """y = W x + (G x) · 0: moving G changes nothing at any point."""

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(4, 3)
        self.g = nn.Linear(4, 3)
        self.register_buffer("zero", torch.zeros(()))

    def forward(self, x):
        return self.w(x) + self.g(x) * self.zero


def test_a_direction_that_cannot_move_the_output_gives_a_flat_finding(tmp_path, capsys):
    from cli_run import run_cli

    torch.manual_seed(0)
    net = ZeroGate()
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    d = lm.random_direction(net, seed=0)
    only_g = lm.Direction(
        {k: (v if k.startswith("g.") else torch.zeros_like(v)) for k, v in d.items()}
    )
    path = tmp_path / "flat.lossmap"
    surf = lm.scan(
        net,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=only_g,
        grid=(-1, 1, 7),
        progress=False,
        store=path,
    )
    f = flatness(surf, "train_loss")
    assert f.flat is True and f.value == 0.0 and f.dims == 1
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert f"    train_loss · {sentence(f)}" in out and "the line is flat" in out
    moving = lm.scan(
        net,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=d,
        grid=(-1, 1, 7),
        progress=False,
    )
    assert flatness(moving, "train_loss").flat is False


class LM(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, ids):
        return self.net(input_ids=ids).logits


def ce(logits, labels):
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


@pytest.mark.hf
def test_a_fresh_lora_adapter_warns_before_the_scan_that_the_plane_is_flat():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LM(get_peft_model(GPT2LMHeadModel(cfg), LoraConfig(r=2, target_modules=["c_attn"])))
    model.eval()
    ids = torch.randint(0, 32, (4, 8))
    dirs = lm.random_directions(model, 2, seed=0, params="*lora_A*")
    assert all(all("lora_A" in k for k in d) for d in dirs)

    def plane_of_a():
        return lm.scan(
            model,
            ce,
            data={"train": (ids, ids)},
            directions=dirs,
            grid=[(-1, 1, 3), (-1, 1, 3)],
            metrics=["loss"],
            progress=False,
        )

    with pytest.warns(
        UserWarning,
        match="the plane is flat: the LoRA B matrices are zero, so "
        "moving A changes nothing; train the adapter first or include B",
    ):
        surf = plane_of_a()
    assert np.ptp(surf["train_loss"]) == 0.0 and flatness(surf, "train_loss").flat is True
    with torch.no_grad():  # a trained adapter: B is no longer zero, no warning
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn_like(p))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        moved = plane_of_a()
    assert flatness(moved, "train_loss").flat is False


def test_a_barrier_within_round_off_asks_for_no_more_samples():
    """More samples cannot lift an excess that round-off alone explains."""
    spec = ScanSpec(grid=((0, 1, 11),), splits=("train",), metrics=("loss",),
                    path={"kind": "polychain", "control_points": 2})
    t = spec.coords()[0]
    L = 1.0 + 1e-8 * np.sin(np.pi * t)  # far below float32's round-off at 1.0
    surf = Surface(spec, {"train_loss": L}, np.ones(11, bool),
                   errors={"train_loss": np.full(11, 1e-3)})
    r = lm.barrier(surf, "train_loss")
    assert r.value == pytest.approx(1e-8, rel=1e-3) and not r.above_roundoff and r.se > 0
    assert not [u for u in findings(surf).unresolved if u.finding == "barrier"]
    assert "within round-off" in sentence(r)


class _Lora(nn.Module):
    """A Linear with a LoRA adapter named as peft names it (B starts at zero)."""

    def __init__(self, adapter="default"):
        super().__init__()
        self.base = nn.Linear(4, 3)
        self.lora_A = nn.ModuleDict({adapter: nn.Linear(4, 2, bias=False)})
        self.lora_B = nn.ModuleDict({adapter: nn.Linear(2, 3, bias=False)})
        nn.init.zeros_(self.lora_B[adapter].weight)
        self.adapter = adapter

    def forward(self, x):
        return self.base(x) + self.lora_B[self.adapter](self.lora_A[self.adapter](x))


@pytest.mark.parametrize("adapter", ["default", "my_lora_A"])
def test_the_lora_warning_names_the_slice_and_points_at_the_users_line(adapter):
    torch.manual_seed(0)
    m = _Lora(adapter)
    X, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    dA = lm.random_direction(m, params="*lora_A*", seed=0)
    dB = lm.random_direction(m, params="*lora_B*", seed=1, norm="none")  # B moves off zero

    def flat_warnings(dirs):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            surf = lm.scan(m, nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=dirs,
                           grid=[(-1, 1, 3)] * len(dirs), progress=False)
        return [w for w in seen if "LoRA B matrices are zero" in str(w.message)], surf

    alone, surf = flat_warnings([dA, dA])
    assert len(alone) == 1 and str(alone[0].message).startswith("the plane is flat")
    assert alone[0].filename == __file__  # the user's call, not lossmap's
    assert np.ptp(surf["train_loss"]) == 0.0
    # with B moved by the other direction, only A's own axis is flat, and the plane is not
    mixed, surf = flat_warnings([dB, dA])
    assert len(mixed) == 1 and "line along direction 1 (the other coordinates at 0)" in str(
        mixed[0].message)
    assert np.ptp(surf["train_loss"][1, :]) == 0.0 and np.ptp(surf["train_loss"]) > 1e-3
