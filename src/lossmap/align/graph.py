"""The permutation structure of a model, read off its ``torch.fx`` graph.

Every channel (hidden unit) a layer produces is a *unit*. The walk over the
graph (:func:`infer_structure`) gives the channel axis of each tensor a
:class:`Space`: the units along it, in order. Layers that produce channels
(Linear, Conv) make new units; norms, activations, pooling and dropout pass
their input's units through; a residual addition says that the units of its
two operands are the same units (a union-find over units); a ``Flatten`` from
(N, C, H, W) to (N, C·H·W) keeps the units, each now a block of H·W features;
zero-padding the channels (ResNet's option-A shortcut) adds units that hold
zeros. The rules for each operation are in :mod:`.ops`.

Units that occur in exactly the same tensors can be permuted among themselves
without changing the function; they form one :class:`PermGroup`. Units that
reach the model's input or output are fixed and never move.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch.fx as fx

from ..errors import InputError


@dataclass(frozen=True)
class Space:
    """The units along the channel axis of one tensor.

    ``slots[i]`` is the unit of channel ``i``; each unit spans ``block``
    consecutive entries of the axis (1, or H·W after a flatten; None while the
    size is not known yet: the next Linear tells it).
    """

    slots: np.ndarray  # (n,) unit ids
    axis: int  # the channel axis: 1 (channels first, conv) or -1 (features last, linear)
    ndim: int | None  # the tensor's rank, where known
    block: int | None = 1

    @property
    def n(self) -> int:
        """Number of channels."""
        return len(self.slots)

    def first(self) -> int | None:
        """The channel axis counted from the front (None if the rank is unknown and it is last)."""
        if self.ndim is not None:
            return self.axis % self.ndim
        return 1 if self.axis == 1 else None

    def last(self) -> int | None:
        """The channel axis counted from the back (negative; None if unknown)."""
        if self.ndim is not None:
            return self.axis % self.ndim - self.ndim
        return -1 if self.axis == -1 else None


@dataclass(frozen=True)
class Fixed:
    """A tensor whose channels never move: the input, constants, results invariant to units."""

    ndim: int | None = None


class Units:
    """Union-find over units; a unit made by ``new`` remembers the node that made it."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._fixed: set[int] = set()

    def new(self, n: int) -> np.ndarray:
        start = len(self._parent)
        self._parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    def find(self, u: int) -> int:
        root = u
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[u] != root:
            self._parent[u], u = root, self._parent[u]
        return root

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self._parent[max(rx, ry)] = min(rx, ry)

    def fix(self, slots: np.ndarray) -> None:
        self._fixed.update(slots.tolist())

    def roots(self, slots: np.ndarray) -> list[int]:
        return [self.find(u) for u in slots.tolist()]

    def fixed_roots(self) -> set[int]:
        return {self.find(u) for u in self._fixed}


@dataclass(frozen=True)
class AxisRef:
    """Where a group's units sit along one axis of one parameter or buffer.

    Unit ``i`` of the group is channel ``index[i]`` of dimension ``dim`` of the
    state entry ``key``; it spans entries ``index[i]·block … index[i]·block + block − 1``.
    """

    key: str
    dim: int
    index: np.ndarray  # (m,)
    block: int
    buffer: bool  # running statistics: permuted, not matched


@dataclass(frozen=True)
class Site:
    """A tensor of the forward pass that holds a group's units (for activation matching)."""

    node: str
    axis: int  # the channel axis of that tensor (may be negative)
    index: np.ndarray  # (m,) the group's channels along it


@dataclass(frozen=True)
class PermGroup:
    """Units that are permuted together: one permutation of ``size`` elements.

    ``name`` is the layer that first produces them; the group's units are in
    that layer's channel order.
    """

    name: str
    size: int
    axes: tuple[AxisRef, ...]
    sites: tuple[Site, ...]


@dataclass(frozen=True)
class Structure:
    """Every permutation group of a model, and the size of each permuted axis."""

    groups: tuple[PermGroup, ...]
    # (key, dim) -> (channels, block): the axis has channels·block entries
    axes: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    def by_axis(self) -> dict[tuple[str, int], list[tuple[int, AxisRef]]]:
        """(key, dim) -> [(group number, its AxisRef)] over every group touching that axis."""
        out: dict[tuple[str, int], list[tuple[int, AxisRef]]] = defaultdict(list)
        for gi, g in enumerate(self.groups):
            for ax in g.axes:
                out[(ax.key, ax.dim)].append((gi, ax))
        return dict(out)


def layer_of(node: fx.Node) -> str:
    """The layer a node belongs to: its module path, or the innermost module calling it.

    ``""`` for an operation in the top-level model's own ``forward``.
    """
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack)) if stack else ""  # "": the model's own forward


class Recorder:
    """What the walk learns: every tensor's space, and the space of each parameter axis."""

    def __init__(self, alias: dict[str, str]) -> None:
        self.units = Units()
        self.alias = alias  # state key -> the first key holding the same tensor
        self.nodes: list[tuple[str, str, Space]] = []  # (node name, layer, space), graph order
        self.axes: dict[tuple[str, int], Space | Fixed] = {}
        self.buffers: set[str] = set()

    def node(self, node: fx.Node, value: object) -> None:
        if isinstance(value, Space):
            self.nodes.append((node.name, layer_of(node), value))

    def axis(self, key: str, dim: int, value: Space | Fixed, *, buffer: bool = False) -> None:
        """Say that dimension ``dim`` of state entry ``key`` is indexed by ``value``'s channels."""
        key = self.alias.get(key, key)
        if buffer:
            self.buffers.add(key)
        before = self.axes.get((key, dim))
        if before is None:
            self.axes[(key, dim)] = value
            return
        # the same tensor used twice (a layer called twice, tied weights): one set of units
        for one, other in ((before, value), (value, before)):
            if isinstance(one, Fixed) and isinstance(other, Space):
                self.units.fix(other.slots)
                self.axes[(key, dim)] = one
                return
        if isinstance(before, Space) and isinstance(value, Space):
            if before.n != value.n or before.block != value.block:
                raise InputError(
                    f"align cannot handle {key!r}: it is used twice with different channel "
                    f"layouts ({before.n}x{before.block} and {value.n}x{value.block} entries); "
                    "align such a model by hand"
                )
            self.units.union(before.slots, value.slots)

    def structure(self) -> Structure:
        """Group units by the tensors they occur in; fixed and lone units are left out."""
        units = self.units
        spaces: list[tuple[tuple, Space]] = [(("node", name), sp) for name, _, sp in self.nodes]
        spaces += [(("axis", key, dim), sp) for (key, dim), sp in self.axes.items()
                   if isinstance(sp, Space)]
        roots = [units.roots(sp.slots) for _, sp in spaces]
        signature: dict[int, list[int]] = defaultdict(list)
        for sid, rs in enumerate(roots):
            for r in dict.fromkeys(rs):
                signature[r].append(sid)
        fixed = units.fixed_roots()
        members: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for r, sids in signature.items():
            if r not in fixed:
                members[tuple(sids)].append(r)
        groups: list[tuple[int, PermGroup]] = []
        names: dict[str, int] = {}
        for sids, rs in members.items():
            group = self._group(sids, set(rs), spaces, roots)
            if group is None:
                continue
            count = names[group.name] = names.get(group.name, 0) + 1
            if count > 1:
                group = PermGroup(f"{group.name}#{count}", group.size, group.axes, group.sites)
            groups.append((sids[0], group))
        groups.sort(key=lambda t: t[0])
        sizes = {key: (sp.n, sp.block) for key, sp in self.axes.items() if isinstance(sp, Space)}
        return Structure(tuple(g for _, g in groups), sizes)

    def _group(self, sids: tuple[int, ...], rs: set[int], spaces: list, roots: list
               ) -> PermGroup | None:
        if len(rs) < 2:
            return None  # one unit: nothing to permute
        home = sids[0]  # the first tensor in graph order holding these units
        home_roots = roots[home]
        order = sorted(rs, key=home_roots.index)
        axes: list[AxisRef] = []
        sites: list[Site] = []
        for sid in sids:
            tag, sp = spaces[sid]
            where = _positions(roots[sid], order)
            if tag[0] == "axis":
                _, key, dim = tag
                if where is None:
                    raise InputError(
                        f"align cannot handle {key!r}: the same hidden unit reaches its "
                        f"dimension {dim} twice (e.g. torch.cat([x, x])); align it by hand"
                    )
                axes.append(AxisRef(key, dim, where, int(sp.block), key in self.buffers))
            elif where is not None and sp.block == 1 and (sp.first() or sp.last()) is not None:
                axis = sp.first() if sp.first() is not None else sp.last()
                sites.append(Site(tag[1], int(axis), where))
        if not any(not ax.buffer for ax in axes):
            return None  # no weights move with these units
        name = self.nodes[home][1] if spaces[home][0][0] == "node" else spaces[home][0][1]
        return PermGroup(name, len(order), tuple(axes), tuple(sites))


def _positions(roots: list[int], order: list[int]) -> np.ndarray | None:
    """Where each unit of ``order`` sits in ``roots`` (None if one occurs twice)."""
    wanted = set(order)
    first: dict[int, int] = {}
    for i, r in enumerate(roots):
        if r in first:
            if r in wanted:
                return None
        else:
            first[r] = i
    return np.array([first[r] for r in order], dtype=np.int64)
