"""Skeleton layouts: joints, bones (``inward`` child→parent pairs), centre joint and a 2-D drawing template.

The built-in layouts follow PYSKL / mmaction2 (``openpose``, ``nturgb+d``, ``coco``, ``handmp``) and the usual
definitions of the other skeletons (``nw-ucla`` = Kinect v1 SDK order, ``openpose-body25``). Custom skeletons
come from :meth:`Layout.from_dict`, which validates them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Layout", "get_layout", "register_layout", "available_layouts"]


@dataclass(frozen=True)
class Layout:
    """A skeleton layout.

    Args:
        name (str): Registry name.
        num_nodes (int): Number of joints :math:`V`.
        inward (tuple of (int, int)): Bones as 0-based ``(child, parent)`` pairs (PYSKL's ``inward``).
        center (int): The centre joint used by the ``stgcn_spatial`` partition.
        joint_names (tuple of str): One name per joint.
        template_xy (numpy.ndarray): :math:`(V, 2)` drawing coordinates (x right, y up) of a standing pose.
    """

    name: str
    num_nodes: int
    inward: tuple[tuple[int, int], ...]
    center: int
    joint_names: tuple[str, ...]
    template_xy: np.ndarray = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self.name, self.num_nodes, self.inward, self.center, self.joint_names, self.template_xy)

    @property
    def outward(self) -> tuple[tuple[int, int], ...]:
        """Bones as ``(parent, child)`` pairs."""
        return tuple((j, i) for i, j in self.inward)

    @property
    def self_link(self) -> tuple[tuple[int, int], ...]:
        return tuple((i, i) for i in range(self.num_nodes))

    @property
    def neighbor(self) -> tuple[tuple[int, int], ...]:
        return self.inward + self.outward

    def bone_pairs(self) -> tuple[tuple[int, int], ...]:
        """``(joint, parent)`` for every joint, the centre paired with itself (PYSKL ``JointToBone`` order)."""
        parent = {c: p for c, p in self.inward}
        return tuple((v, parent.get(v, v)) for v in range(self.num_nodes))

    def is_bone(self, i: int, j: int) -> bool:
        """Whether joints ``i`` and ``j`` are connected by a bone (either direction)."""
        return (i, j) in self._bone_set or (j, i) in self._bone_set

    @property
    def _bone_set(self) -> frozenset[tuple[int, int]]:
        return frozenset(self.inward)

    @classmethod
    def from_dict(cls, spec: Mapping) -> Layout:
        """Build a custom layout.

        ``spec`` holds ``num_node`` (or ``num_nodes``), ``inward`` (0-based ``(child, parent)`` pairs) and
        ``center``; optionally ``name``, ``joint_names`` and ``template_xy``. The bones must connect every joint,
        lie in range, and hold no self loops or duplicates; otherwise :class:`ValueError` names the field.
        """
        if not isinstance(spec, Mapping):
            raise ValueError(f"Layout.from_dict expects a mapping, got {type(spec).__name__}")
        unknown = set(spec) - {"name", "num_node", "num_nodes", "inward", "center", "joint_names", "template_xy"}
        if unknown:
            raise ValueError(f"Layout.from_dict: unknown field(s) {sorted(unknown)}; valid fields are name, "
                             "num_node, inward, center, joint_names, template_xy")
        num = spec.get("num_node", spec.get("num_nodes"))
        if num is None:
            raise ValueError("Layout.from_dict: field 'num_node' (number of joints) is required")
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise ValueError(f"Layout.from_dict: 'num_node' must be a positive int, got {num!r}")
        num = int(num)
        if "inward" not in spec:
            raise ValueError("Layout.from_dict: field 'inward' (list of (child, parent) joint pairs) is required")
        try:
            inward = tuple((int(a), int(b)) for a, b in spec["inward"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"Layout.from_dict: 'inward' must be a list of (child, parent) int pairs ({err})") \
                from None
        center = spec.get("center")
        if center is None:
            raise ValueError("Layout.from_dict: field 'center' (index of the centre joint) is required")
        if isinstance(center, bool) or not isinstance(center, (int, np.integer)):
            raise ValueError(f"Layout.from_dict: 'center' must be an int joint index, got {center!r}")
        name = str(spec.get("name", "custom"))
        names = tuple(spec.get("joint_names") or (f"joint_{i}" for i in range(num)))
        xy = spec.get("template_xy")
        xy = _circle_template(num) if xy is None else np.asarray(xy, dtype=np.float64)
        return cls(name, num, inward, int(center), names, xy)

    def to_dict(self) -> dict:
        return {"name": self.name, "num_node": self.num_nodes, "inward": [list(p) for p in self.inward],
                "center": self.center, "joint_names": list(self.joint_names),
                "template_xy": self.template_xy.tolist()}


def _validate(name, num, inward, center, names, xy) -> None:
    where = f"layout {name!r}"
    if not 0 <= center < num:
        raise ValueError(f"{where}: 'center' must be in [0, {num - 1}], got {center}")
    seen = set()
    for k, (i, j) in enumerate(inward):
        if not (0 <= i < num and 0 <= j < num):
            raise ValueError(f"{where}: inward[{k}] = ({i}, {j}) has a joint outside [0, {num - 1}]")
        if i == j:
            raise ValueError(f"{where}: inward[{k}] = ({i}, {j}) is a self loop")
        if (i, j) in seen or (j, i) in seen:
            raise ValueError(f"{where}: inward[{k}] = ({i}, {j}) is a duplicate bone")
        seen.add((i, j))
    if len(names) != num:
        raise ValueError(f"{where}: 'joint_names' has {len(names)} names for {num} joints")
    if xy.shape != (num, 2):
        raise ValueError(f"{where}: 'template_xy' must have shape ({num}, 2), got {tuple(xy.shape)}")
    # connectivity
    adj: dict[int, set[int]] = {i: set() for i in range(num)}
    for i, j in inward:
        adj[i].add(j)
        adj[j].add(i)
    stack, reached = [center], {center}
    while stack:
        for n in adj[stack.pop()]:
            if n not in reached:
                reached.add(n)
                stack.append(n)
    if len(reached) != num:
        missing = sorted(set(range(num)) - reached)
        raise ValueError(f"{where}: the bones do not connect every joint; not reachable from the centre: {missing}")


def _circle_template(num: int) -> np.ndarray:
    ang = np.linspace(0, 2 * np.pi, num, endpoint=False)
    return np.stack([np.cos(ang), np.sin(ang)], axis=1)


_REGISTRY: dict[str, Layout] = {}
_ALIASES = {"ntu": "nturgb+d", "ntu-rgb+d": "nturgb+d", "kinect-v1": "nw-ucla", "body25": "openpose-body25",
            "openpose18": "openpose", "coco17": "coco"}


def register_layout(layout: Layout, overwrite: bool = False) -> Layout:
    """Add a layout to the registry so that :func:`get_layout` (and every ``layout=`` argument) finds it."""
    if layout.name in _REGISTRY and not overwrite:
        raise ValueError(f"layout {layout.name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[layout.name] = layout
    return layout


def available_layouts() -> list[str]:
    return sorted(_REGISTRY)


def get_layout(layout: str | Layout | Mapping) -> Layout:
    """Return a :class:`Layout` from a registry name, a ``Layout`` or a custom dict (see :meth:`Layout.from_dict`)."""
    if isinstance(layout, Layout):
        return layout
    if isinstance(layout, Mapping):
        return Layout.from_dict(layout)
    if not isinstance(layout, str):
        raise ValueError(f"layout must be a name, a Layout or a dict, got {type(layout).__name__}")
    key = _ALIASES.get(layout.lower(), layout.lower())
    if key not in _REGISTRY:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(available_layouts())} "
                         "(or a dict for Layout.from_dict)")
    return _REGISTRY[key]


def _make(name: str, inward: Sequence[tuple[int, int]], center: int, names: Sequence[str],
          xy: Sequence[tuple[float, float]]) -> None:
    register_layout(Layout(name, len(names), tuple((int(p[0]), int(p[1])) for p in inward), center, tuple(names),
                           np.asarray(xy, dtype=np.float64)))


# --- OpenPose-18 (Kinetics-skeleton, ST-GCN): centre = neck -----------------------------------------------
_make(
    "openpose",
    [(4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2), (5, 1), (2, 1),
     (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)],
    1,
    ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
     "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
     "right_eye", "left_eye", "right_ear", "left_ear"],
    [(0, 1.62), (0, 1.45), (-0.2, 1.45), (-0.45, 1.45), (-0.7, 1.45), (0.2, 1.45), (0.45, 1.45), (0.7, 1.45),
     (-0.12, 0.95), (-0.12, 0.5), (-0.12, 0.05), (0.12, 0.95), (0.12, 0.5), (0.12, 0.05), (-0.04, 1.67),
     (0.04, 1.67), (-0.09, 1.64), (0.09, 1.64)],
)

# --- NTU RGB+D (Kinect v2, 25 joints): centre = spine at shoulder level (joint 21, 1-based) ---------------
_NTU_PAIRS_1BASED = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
                     (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
                     (20, 19), (22, 8), (23, 8), (24, 12), (25, 12)]
_make(
    "nturgb+d",
    [(i - 1, j - 1) for i, j in _NTU_PAIRS_1BASED],
    20,
    ["spine_base", "spine_mid", "neck", "head", "left_shoulder", "left_elbow", "left_wrist", "left_hand",
     "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip", "left_knee", "left_ankle",
     "left_foot", "right_hip", "right_knee", "right_ankle", "right_foot", "spine_shoulder", "left_hand_tip",
     "left_thumb", "right_hand_tip", "right_thumb"],
    [(0, 0.95), (0, 1.2), (0, 1.5), (0, 1.65), (0.2, 1.42), (0.42, 1.42), (0.62, 1.42), (0.7, 1.42),
     (-0.2, 1.42), (-0.42, 1.42), (-0.62, 1.42), (-0.7, 1.42), (0.1, 0.92), (0.12, 0.5), (0.12, 0.08),
     (0.16, 0.0), (-0.1, 0.92), (-0.12, 0.5), (-0.12, 0.08), (-0.16, 0.0), (0, 1.42), (0.78, 1.42),
     (0.7, 1.48), (-0.78, 1.42), (-0.7, 1.48)],
)

# --- COCO-17 (HRNet 2-D poses in PYSKL): centre = nose ------------------------------------------------------
_make(
    "coco",
    [(15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6), (5, 0), (6, 0),
     (1, 0), (3, 1), (2, 0), (4, 2)],
    0,
    ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
     "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
     "left_ankle", "right_ankle"],
    [(0, 1.62), (0.04, 1.67), (-0.04, 1.67), (0.09, 1.64), (-0.09, 1.64), (0.2, 1.45), (-0.2, 1.45),
     (0.45, 1.45), (-0.45, 1.45), (0.7, 1.45), (-0.7, 1.45), (0.12, 0.95), (-0.12, 0.95), (0.12, 0.5),
     (-0.12, 0.5), (0.12, 0.05), (-0.12, 0.05)],
)

# --- Kinect v1 (NW-UCLA, UTKinect; MSR Action3D after reordering): centre = spine -------------------------
_KINECT_V1_PAIRS_1BASED = [(1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
                           (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
                           (20, 19)]
_make(
    "nw-ucla",
    [(i - 1, j - 1) for i, j in _KINECT_V1_PAIRS_1BASED],
    1,
    ["hip_center", "spine", "shoulder_center", "head", "left_shoulder", "left_elbow", "left_wrist",
     "left_hand", "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip", "left_knee",
     "left_ankle", "left_foot", "right_hip", "right_knee", "right_ankle", "right_foot"],
    [(0, 0.95), (0, 1.2), (0, 1.45), (0, 1.65), (0.2, 1.42), (0.42, 1.42), (0.62, 1.42), (0.7, 1.42),
     (-0.2, 1.42), (-0.42, 1.42), (-0.62, 1.42), (-0.7, 1.42), (0.1, 0.92), (0.12, 0.5), (0.12, 0.08),
     (0.16, 0.0), (-0.1, 0.92), (-0.12, 0.5), (-0.12, 0.08), (-0.16, 0.0)],
)

# --- OpenPose BODY_25: centre = neck ------------------------------------------------------------------------
_make(
    "openpose-body25",
    [(0, 1), (2, 1), (3, 2), (4, 3), (5, 1), (6, 5), (7, 6), (8, 1), (9, 8), (10, 9), (11, 10), (12, 8),
     (13, 12), (14, 13), (15, 0), (16, 0), (17, 15), (18, 16), (19, 14), (20, 19), (21, 14), (22, 11),
     (23, 22), (24, 11)],
    1,
    ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
     "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
     "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel",
     "right_big_toe", "right_small_toe", "right_heel"],
    [(0, 1.62), (0, 1.45), (-0.2, 1.45), (-0.45, 1.45), (-0.7, 1.45), (0.2, 1.45), (0.45, 1.45), (0.7, 1.45),
     (0, 0.95), (-0.12, 0.95), (-0.12, 0.5), (-0.12, 0.05), (0.12, 0.95), (0.12, 0.5), (0.12, 0.05),
     (-0.04, 1.67), (0.04, 1.67), (-0.09, 1.64), (0.09, 1.64), (0.2, 0.0), (0.25, 0.0), (0.1, -0.02),
     (-0.2, 0.0), (-0.25, 0.0), (-0.1, -0.02)],
)

# --- MediaPipe hand (21): centre = wrist --------------------------------------------------------------------
_FINGERS = ["thumb", "index", "middle", "ring", "pinky"]
_HAND_NAMES = ["wrist"] + [f"{f}_{p}" for f, parts in zip(_FINGERS, [["cmc", "mcp", "ip", "tip"]] +
                                                            [["mcp", "pip", "dip", "tip"]] * 4) for p in parts]
_HAND_XY = [(0.0, 0.0)]
for _f, _x in enumerate([-0.5, -0.2, 0.0, 0.2, 0.4]):
    for _k in range(4):
        _thumb = _f == 0
        _HAND_XY.append((_x * (1 + 0.15 * _k) - (0.25 * _k if _thumb else 0),
                         0.35 + 0.22 * _k - (0.2 if _thumb else 0)))
_make(
    "handmp",
    [(1, 0), (2, 1), (3, 2), (4, 3), (5, 0), (6, 5), (7, 6), (8, 7), (9, 0), (10, 9), (11, 10), (12, 11),
     (13, 0), (14, 13), (15, 14), (16, 15), (17, 0), (18, 17), (19, 18), (20, 19)],
    0,
    _HAND_NAMES,
    _HAND_XY,
)
