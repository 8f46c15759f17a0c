"""Damaged curve files (issue 21 item 14): each header fault is one clear line.

A curve file is safetensors: tensors ``"<j>/<name>"`` and, in the metadata
key ``lossmap_curve``, a JSON header (format, kind, knots, names, points,
meta). Each test writes a good file, spoils one thing, and checks that
:meth:`Curve.load` raises lossmap's ``InputError`` (never ``KeyError`` or
``TypeError``) naming the file and the field, on one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lossmap.curves import Curve
from lossmap.errors import InputError

KEY = "lossmap_curve"


def good(kind: str = "polychain") -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and header of a 3-point curve over two tensors, as Curve.save writes them."""
    pts = [{"w": torch.full((2, 3), float(j)), "b": torch.full((3,), -float(j))} for j in range(3)]
    tensors = {f"{j}/{k}": v for j, p in enumerate(pts) for k, v in p.items()}
    header = {
        "format": "lossmap.curve/1",
        "kind": kind,
        "knots": [0.0, 0.25, 1.0],
        "names": ["w", "b"],
        "points": 3,
        "meta": {"made_by": "test"},
    }
    return tensors, header


def write(path: Path, tensors: dict, header=None, raw: str | None = None) -> Path:
    text = raw if raw is not None else json.dumps(header)
    save_file(tensors, str(path), metadata={KEY: text})
    return path


def refused(path: Path, *needles: str) -> str:
    with pytest.raises(InputError) as err:
        Curve.load(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def test_a_good_file_written_by_hand_reads(tmp_path):
    """The reference for every fault below: the same file unspoilt loads."""
    curve = Curve.load(write(tmp_path / "c.safetensors", *good()))
    assert curve.kind == "polychain" and curve.names == ["w", "b"] and len(curve) == 3
    assert curve.knots.tolist() == [0.0, 0.25, 1.0]
    assert torch.equal(curve.state(0.25)["b"], torch.full((3,), -1.0))


@pytest.mark.parametrize("field", ["kind", "points", "names", "knots", "meta", "format"])
def test_a_missing_field_is_named(tmp_path, field):
    tensors, header = good()
    del header[field]
    refused(
        write(tmp_path / "c.safetensors", tensors, header),
        repr(field),
        "missing" if field != "format" else "None",
    )


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("kind", "spline", "one of 'bezier', 'polychain'"),
        ("kind", 3, "one of 'bezier', 'polychain'"),
        ("points", "3", "a whole number"),
        ("points", 2.5, "a whole number"),
        ("points", True, "a whole number"),
        ("points", 1, "at least 2"),
        ("points", 10**12, "2,000,000,000,000 tensors"),
        ("names", "wb", "list of tensor names"),
        ("names", [1, 2], "list of tensor names"),
        ("names", [], "non-empty"),
        ("names", ["w", "b", "w"], "'w' more than once"),
        ("knots", "0,1", "list of numbers"),
        ("knots", [0.0, None, 1.0], "list of numbers"),
        ("knots", [0.0, 1.0], "knots"),  # too few for 3 points (the curve's own check)
        ("meta", ["x"], "JSON object"),
        ("format", 1, "'format' is 1"),
    ],
)
def test_a_field_of_the_wrong_type_or_value_is_named(tmp_path, field, value, needle):
    tensors, header = good()
    header[field] = value
    refused(write(tmp_path / "c.safetensors", tensors, header), needle)


def test_a_newer_format_says_upgrade(tmp_path):
    tensors, header = good()
    header["format"] = "lossmap.curve/2"
    refused(
        write(tmp_path / "c.safetensors", tensors, header), "'lossmap.curve/2'", "upgrade lossmap"
    )


def test_bad_json_and_a_header_that_is_not_an_object(tmp_path):
    tensors, _ = good()
    refused(write(tmp_path / "a.safetensors", tensors, raw="{not json"), "not valid JSON", KEY)
    refused(
        write(tmp_path / "b.safetensors", tensors, raw="[1, 2]"), "a JSON list", "not an object"
    )


def test_a_file_without_the_curve_header(tmp_path):
    tensors, _ = good()
    save_file(tensors, str(tmp_path / "plain.safetensors"))
    refused(tmp_path / "plain.safetensors", "no 'lossmap_curve' metadata", "Curve.save")


def test_names_covering_only_some_tensors_are_refused_naming_those_left_out(tmp_path):
    tensors, header = good()
    header["names"] = ["w"]  # 'b' of every control point would be dropped
    message = refused(
        write(tmp_path / "c.safetensors", tensors, header),
        "'names' leaves out",
        "'0/b'",
        "'1/b'",
        "'2/b'",
    )
    assert "'0/w'" not in message


def test_a_tensor_the_names_promise_but_the_file_lacks(tmp_path):
    tensors, header = good()
    del tensors["2/b"]
    header["names"] = ["w", "b"]
    refused(write(tmp_path / "c.safetensors", tensors, header), "tensors, but the file holds 5")
    tensors, header = good()
    tensors["2/bias"] = tensors.pop("2/b")
    refused(
        write(tmp_path / "d.safetensors", tensors, header), "'2/b'", "that the file does not hold"
    )


def test_control_points_that_differ_name_the_file(tmp_path):
    tensors, header = good()
    tensors["1/w"] = torch.zeros(3, 2)
    refused(write(tmp_path / "c.safetensors", tensors, header), "control point 1")


def test_a_bezier_file_needs_no_knots(tmp_path):
    tensors, header = good("bezier")
    del header["knots"]
    assert Curve.load(write(tmp_path / "c.safetensors", tensors, header)).kind == "bezier"
