r"""The embedded ``demo`` dataset: SYNTHETIC skeleton actions, generated procedurally (no files shipped).

:func:`generate_demo` writes the original ST-GCN Kinetics-skeleton release layout into a cache directory::

    <root>/kinetics_train/<video_id>.json   <root>/kinetics_train_label.json
    <root>/kinetics_val/<video_id>.json     <root>/kinetics_val_label.json
    <root>/demo_meta.json                   (generator settings; written last, marks a complete cache)
    <root>/README.txt                       (says the data is synthetic)

Each per-video JSON has the real format (``{"data": [{"frame_index": 1-based, "skeleton": [{"pose": 36
values, "score": 18 values}, ...]}, ...], "label": ..., "label_index": ...}``), OpenPose-18 joints with
coordinates normalised by the frame size (340 × 256, as in the Kinetics-skeleton release), printed with 3
decimals, so the ``demo`` dataset is read back through the real Kinetics reader
(:func:`~pyg_sparse_stgcn.data.readers.read_kinetics_json`).

The :data:`DEMO_CLASSES` (8 actions, every label name starts with ``"synthetic"``) come in pairs whose
time-averaged poses are equal (arms raised together vs alternately; waving the right hand vs shaking the
right fist up and down; squatting vs marching in place; swaying vs twisting the trunk: the same joints
through the same mean positions, in phase or in anti-phase, about another joint or another axis): a
linear classifier on the time-averaged pose stays far below 80 %, while the per-frame joint relations and
their dynamics — what an ST-GCN sees — separate them.
Per video the generator varies body proportions and size, speed (a period of 12–24 frames) and phase,
camera placement (position, yaw, roll, a slow pan), Gaussian jitter, dropped joints (score 0, coordinates 0)
and occlusions, distractor persons (0–2, lower confidences), and empty frames (leading, trailing and
isolated); ``num_empty`` videos per split have no skeleton at all and are marked ``"has_skeleton": false``
in the label file, exactly like the 110 such entries of the real release (the dataset skips and lists them).

Defaults (sized for ``make demo``: ST-GCN on 2 CPU cores, a dense and a 95 %-sparse run in a few minutes):
``num_train=320``, ``num_val=160`` (40 + 20 per class, before the empty ones), ``T`` drawn from 32–48
frames; use ``clip_len=32`` and ``num_person=2``. Generating the default size takes about a second.
Everything is a deterministic function of ``seed``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["generate_demo", "demo_is_complete", "DEMO_CLASSES", "DEMO_FRAME_SIZE", "DEMO_VERSION"]

#: Action names (index = ``label_index``). All synthetic.
DEMO_CLASSES: tuple[str, ...] = (
    "synthetic: raise both arms together",
    "synthetic: raise arms alternately",
    "synthetic: wave right hand",
    "synthetic: shake right fist up and down",
    "synthetic: squat",
    "synthetic: march in place",
    "synthetic: sway side to side",
    "synthetic: twist the trunk",
)
#: ``(width, height)`` of the virtual frames, as in the Kinetics-skeleton release.
DEMO_FRAME_SIZE: tuple[int, int] = (340, 256)
#: Bumped whenever the generator's output changes (a cache of another version is regenerated).
DEMO_VERSION = 7

_META = "demo_meta.json"

# body proportions, as fractions of the standing height
_TORSO, _HEAD, _SHOULDER, _HIP = 0.30, 0.11, 0.11, 0.07
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.17, 0.16, 0.245, 0.245


def _direction(abd: np.ndarray, flex: np.ndarray, side: float) -> np.ndarray:
    """Unit limb direction from abduction (0 = hanging down, π = straight up, in the frontal plane) and
    flexion (towards the front); ``side`` +1 = the person's left (+x), -1 = right."""
    ca, sa, cf, sf = np.cos(abd), np.sin(abd), np.cos(flex), np.sin(flex)
    return np.stack([side * sa * cf, -ca * cf, sf], axis=-1)


def _rot_x(a: np.ndarray) -> np.ndarray:  # pitch (about the lateral axis), (T, 3, 3)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_z(a: np.ndarray) -> np.ndarray:  # roll (about the viewing axis), (T, 3, 3)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _motion(action: int, phase: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Joint angles per frame for one action (radians; ``dy`` and ``dx`` in body heights).

    Actions come in pairs that move the same joints through the same positions, in phase or in anti-phase,
    so the pair has one time-averaged pose: ``0/1`` arms up-down in phase or in anti-phase, ``2/3`` the
    right forearm swinging about the elbow or the whole right arm moving about the shoulder, ``4/5`` legs
    bending in phase or in anti-phase, ``6/7`` trunk swinging (roll vs twist).
    """
    T = phase.shape[0]
    z = np.zeros(T)
    amp = rng.uniform(0.8, 1.1)
    m: dict[str, Any] = {  # angle arrays; a few actions set a constant (a float)
        "arm_abd_l": z + 0.15, "arm_abd_r": z + 0.15, "arm_flex_l": z.copy(), "arm_flex_r": z.copy(),
        "fore_abd_l": z + 0.1, "fore_abd_r": z + 0.1, "fore_flex_l": z + 0.2, "fore_flex_r": z + 0.2,
        "leg_abd_l": z + 0.05, "leg_abd_r": z + 0.05, "leg_flex_l": z.copy(), "leg_flex_r": z.copy(),
        "shin_flex_l": z.copy(), "shin_flex_r": z.copy(), "pitch": z.copy(), "roll": z.copy(),
        "twist": z.copy(), "dy": z.copy(), "dx": z.copy(),
    }
    s = np.sin(phase)
    if action in (0, 1):  # both arms up and down in the frontal plane, in phase or in anti-phase
        c, a = 1.2, 0.85 * amp
        m["arm_abd_l"], m["arm_abd_r"] = c + a * s, (c + a * s if action == 0 else c - a * s)
        m["fore_abd_l"], m["fore_abd_r"] = m["arm_abd_l"] + 0.15, m["arm_abd_r"] + 0.15
        m["fore_flex_l"] = m["fore_flex_r"] = z + 0.1
    elif action in (2, 3):  # right arm out, forearm up: the forearm swings sideways about the elbow (wave)
        # or the whole arm moves up and down about the shoulder with the forearm kept upright (shake the
        # fist); the left arm hangs
        a = 0.45 * amp
        m["arm_abd_r"] = 1.45 + (0.0 if action == 2 else a * s)
        m["fore_abd_r"] = np.pi - 0.15 + (a * s if action == 2 else 0.0)
        m["arm_flex_r"] = z + 0.2
        m["fore_flex_r"] = z + 0.1
    elif action in (4, 5):  # legs bend: both together (squat) or alternately (march in place)
        b = (1 - np.cos(phase)) / 2 * amp
        left, right = b, (b if action == 4 else amp - b)
        for tag, v, other in (("l", left, right), ("r", right, left)):
            m[f"leg_flex_{tag}"] = 1.1 * v
            m[f"shin_flex_{tag}"] = -0.9 * v
            m[f"arm_flex_{tag}"] = 0.9 * (other if action == 5 else v)
            m[f"fore_flex_{tag}"] = m[f"arm_flex_{tag}"] + 0.3
        m["pitch"] = 0.25 * (left + right) / 2
    elif action in (6, 7):  # trunk swings: sideways roll (sway) or about the vertical (twist)
        if action == 6:
            m["roll"] = 0.3 * amp * s
            m["dx"] = -0.04 * amp * s
            m["arm_abd_l"], m["arm_abd_r"] = 0.3 + 0.25 * amp * s, 0.3 - 0.25 * amp * s
        else:
            m["twist"] = 0.6 * amp * s
            m["arm_abd_l"] = m["arm_abd_r"] = z + 0.3
            m["arm_flex_l"], m["arm_flex_r"] = 0.45 * amp * s, -0.45 * amp * s
        m["fore_abd_l"], m["fore_abd_r"] = m["arm_abd_l"] + 0.1, m["arm_abd_r"] + 0.1
        m["fore_flex_l"], m["fore_flex_r"] = m["arm_flex_l"] + 0.2, m["arm_flex_r"] + 0.2
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(f"unknown demo action {action}")
    return m


def _rot_y(a: np.ndarray) -> np.ndarray:  # twist (about the vertical axis), (T, 3, 3)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _pose3d(m: dict[str, np.ndarray], prop: dict[str, float]) -> np.ndarray:
    """OpenPose-18 joints ``(T, 18, 3)`` in body heights: x = the person's left, y = up, z = towards the
    camera; ankles on the ground."""
    T = m["dy"].shape[0]
    ex, ey, ez = np.eye(3)
    J = np.zeros((T, 18, 3))
    # legs from the pelvis (the pelvis sits at the origin first)
    for side, hip, knee, ankle, tag in ((-1.0, 8, 9, 10, "r"), (1.0, 11, 12, 13, "l")):
        J[:, hip] = side * _HIP * prop["hip"] * ex
        J[:, knee] = J[:, hip] + _THIGH * prop["leg"] * _direction(m[f"leg_abd_{tag}"], m[f"leg_flex_{tag}"],
                                                                   side)
        J[:, ankle] = J[:, knee] + _SHIN * prop["leg"] * _direction(m[f"leg_abd_{tag}"] * 0.5,
                                                                    m[f"shin_flex_{tag}"], side)
    # upper body in the trunk frame, then pitched and rolled about the pelvis
    up = np.zeros((T, 18, 3))
    up[:, 1] = _TORSO * prop["torso"] * ey
    for side, sho, elb, wri, tag in ((-1.0, 2, 3, 4, "r"), (1.0, 5, 6, 7, "l")):
        up[:, sho] = up[:, 1] + side * _SHOULDER * prop["shoulder"] * ex
        up[:, elb] = up[:, sho] + _UPPER_ARM * prop["arm"] * _direction(m[f"arm_abd_{tag}"],
                                                                        m[f"arm_flex_{tag}"], side)
        up[:, wri] = up[:, elb] + _FOREARM * prop["arm"] * _direction(m[f"fore_abd_{tag}"],
                                                                      m[f"fore_flex_{tag}"], side)
    head = up[:, 1] + _HEAD * prop["head"] * ey
    up[:, 0] = head + 0.03 * ez
    for j, (dx, dy_, dz) in {14: (-0.022, 0.022, 0.02), 15: (0.022, 0.022, 0.02), 16: (-0.05, 0.012, -0.02),
                              17: (0.05, 0.012, -0.02)}.items():
        up[:, j] = head + np.array([dx, dy_, dz]) * prop["head"] / 0.11 * _HEAD
    # roll, forward pitch (tilts the trunk towards +z) and twist of the trunk
    rot = _rot_z(m["roll"]) @ _rot_x(-m["pitch"]) @ _rot_y(m["twist"])
    upper = [0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17]
    J[:, upper] = np.einsum("tij,tvj->tvi", rot, up[:, upper])
    # ground contact: the lower ankle on y = 0, then the jump/sway offsets
    ground = np.minimum(J[:, 10, 1], J[:, 13, 1])
    J[..., 1] -= ground[:, None]
    J[..., 1] += m["dy"][:, None]
    J[..., 0] += m["dx"][:, None]
    return J


def _project(J: np.ndarray, cam: dict[str, Any], T: int) -> np.ndarray:
    """Camera: yaw about the vertical, orthographic projection, roll, pan; returns pixels ``(T, 18, 2)``."""
    yaw = cam["yaw"]
    c, s = np.cos(yaw), np.sin(yaw)
    x = c * J[..., 0] + s * J[..., 2]
    y = J[..., 1]
    # image x to the right = the person's left when facing the camera; image y downwards
    px = x * cam["height_px"]
    py = -(y - 0.5) * cam["height_px"]
    cr, sr = np.cos(cam["roll"]), np.sin(cam["roll"])
    px, py = cr * px - sr * py, sr * px + cr * py
    pan = np.linspace(0.0, 1.0, T)[:, None] * cam["pan"]
    return np.stack([px + cam["cx"] + pan, py + cam["cy"]], axis=-1)


def _person(action: int, T: int, rng: np.random.Generator, distractor: bool) -> tuple[np.ndarray, np.ndarray]:
    """One person's pixels ``(T, 18, 2)`` and scores ``(T, 18)``."""
    W, H = DEMO_FRAME_SIZE
    prop = {k: rng.uniform(0.9, 1.1) for k in ("torso", "head", "shoulder", "hip", "arm", "leg")}
    period = rng.uniform(12, 24)
    phase = 2 * np.pi * np.arange(T) / period + rng.uniform(0, 2 * np.pi)
    if distractor:  # an idle bystander: small sway
        m = _motion(6, phase, rng)
        m["roll"] *= 0.15
        m["dx"] *= 0.15
        for k in ("arm_abd_l", "arm_abd_r", "fore_abd_l", "fore_abd_r"):
            m[k] = np.full(T, 0.15)
    else:
        m = _motion(action, phase, rng)
    J = _pose3d(m, prop)
    height = rng.uniform(0.55, 0.85) * H * (rng.uniform(0.5, 0.8) if distractor else 1.0)
    cam = {"yaw": rng.uniform(-0.4, 0.4), "roll": rng.uniform(-0.06, 0.06), "height_px": height,
           "cx": rng.uniform(0.35, 0.65) * W if not distractor else rng.choice([0.12, 0.88]) * W,
           "cy": H / 2 + rng.uniform(-0.06, 0.06) * H, "pan": rng.uniform(-0.03, 0.03) * W}
    px = _project(J, cam, T)
    px += rng.normal(0.0, rng.uniform(0.002, 0.006) * height, size=px.shape)  # detector jitter
    base = rng.uniform(0.45, 0.75) if distractor else rng.uniform(0.6, 0.9)
    score = base + rng.normal(0.0, 0.06, size=(T, 18)) - np.r_[np.zeros(14), np.full(4, 0.15)]
    score = np.clip(score, 0.05, 0.99)
    if distractor:
        score *= 0.6
    # dropped joints: random flicker plus one occlusion run
    drop = rng.random((T, 18)) < rng.uniform(0.0, 0.12)
    if rng.random() < 0.5:
        start, length = rng.integers(0, T), rng.integers(3, 12)
        part = rng.choice([[3, 4], [6, 7], [9, 10], [12, 13], [14, 16], [15, 17]])
        drop[start:start + length, part] = True
    score[drop] = 0.0
    px[drop] = 0.0
    return px, score


def _video(action: int, rng: np.random.Generator, T: int, label_index: int) -> dict[str, Any]:
    W, H = DEMO_FRAME_SIZE
    people = [_person(action, T, rng, distractor=False)]
    n_distractors = rng.choice(3, p=[0.5, 0.35, 0.15])
    visible = [np.ones(T, bool)]
    for _ in range(n_distractors):
        people.append(_person(action, T, rng, distractor=True))
        vis = np.zeros(T, bool)
        a, b = sorted(rng.integers(0, T + 1, size=2))
        vis[a:max(b, a + 3)] = True
        visible.append(vis)
    empty = rng.random(T) < 0.03
    if rng.random() < 0.3:
        empty[: rng.integers(1, 6)] = True
    if rng.random() < 0.3:
        empty[T - rng.integers(1, 6):] = True
    data = []
    for t in range(T):
        skeletons = []
        if not empty[t]:
            order = rng.permutation(len(people))  # OpenPose does not sort persons by confidence
            for p in order:
                if not visible[p][t]:
                    continue
                px, sc = people[p]
                pose = np.stack([px[t, :, 0] / W, px[t, :, 1] / H], axis=-1).reshape(-1)
                skeletons.append({"pose": np.round(pose, 3).tolist(), "score": np.round(sc[t], 3).tolist()})
        data.append({"frame_index": t + 1, "skeleton": skeletons})
    return {"data": data, "label": DEMO_CLASSES[label_index], "label_index": int(label_index)}


def _meta(seed: int, num_train: int, num_val: int, num_empty: int, min_frames: int,
          max_frames: int) -> dict[str, Any]:
    return {"synthetic": True, "version": DEMO_VERSION, "seed": seed, "num_train": num_train,
            "num_val": num_val, "num_empty": num_empty, "min_frames": min_frames, "max_frames": max_frames,
            "classes": list(DEMO_CLASSES), "frame_size": list(DEMO_FRAME_SIZE)}


def demo_is_complete(root: str | os.PathLike, **settings: Any) -> bool:
    """Whether ``root`` holds a complete demo cache generated with these settings (see
    :func:`generate_demo`)."""
    path = Path(root) / _META
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()) == _meta(**{**_DEFAULTS, **settings})
    except (OSError, ValueError):
        return False


_DEFAULTS: dict[str, int] = {"seed": 0, "num_train": 320, "num_val": 160, "num_empty": 2, "min_frames": 32,
                             "max_frames": 48}


def _write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def generate_demo(root: str | os.PathLike, seed: int = 0, num_train: int = 320, num_val: int = 160,
                  num_empty: int = 2, min_frames: int = 32, max_frames: int = 48,
                  overwrite: bool = False) -> Path:
    r"""Writes the SYNTHETIC demo dataset (Kinetics-skeleton release layout) under ``root``.

    Videos are split evenly over :data:`DEMO_CLASSES` (class ``i % 8``), the first ``num_empty`` of each split
    being skeleton-less (``"has_skeleton": false``). A complete cache with the same settings is reused
    unless ``overwrite``. Files are written into a temporary directory first and moved into place; the
    ``demo_meta.json`` marker comes last.

    Args:
        root (str or PathLike): Target directory.
        seed (int, optional): Seed; the output is a deterministic function of it. (default: :obj:`0`)
        num_train (int, optional): Training videos. (default: :obj:`320`)
        num_val (int, optional): Validation videos. (default: :obj:`160`)
        num_empty (int, optional): Skeleton-less videos per split. (default: :obj:`2`)
        min_frames (int, optional): Shortest video. (default: :obj:`32`)
        max_frames (int, optional): Longest video. (default: :obj:`48`)
        overwrite (bool, optional): Regenerate even if a matching cache exists. (default: :obj:`False`)

    Returns:
        pathlib.Path: ``root``.
    """
    for name, v in (("num_train", num_train), ("num_val", num_val)):
        if not isinstance(v, (int, np.integer)) or v < len(DEMO_CLASSES):
            raise ValueError(f"generate_demo: {name} must be an int >= {len(DEMO_CLASSES)}, got {v!r}")
    if not isinstance(num_empty, (int, np.integer)) or not 0 <= num_empty < min(num_train, num_val):
        raise ValueError(f"generate_demo: num_empty must be an int in [0, min(num_train, num_val)), "
                         f"got {num_empty!r}")
    if not 8 <= min_frames <= max_frames:
        raise ValueError(f"generate_demo: need 8 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    settings = {"seed": int(seed), "num_train": int(num_train), "num_val": int(num_val),
                "num_empty": int(num_empty), "min_frames": int(min_frames), "max_frames": int(max_frames)}
    root = Path(root)
    if not overwrite and demo_is_complete(root, **settings):
        return root
    root.mkdir(parents=True, exist_ok=True)
    (root / _META).unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-tmp-", dir=root))
    try:
        split_seeds = np.random.SeedSequence(int(seed)).spawn(2)
        for (split, n), ss in zip((("train", num_train), ("val", num_val)), split_seeds):
            folder = tmp / f"kinetics_{split}"
            folder.mkdir()
            labels: dict[str, Any] = {}
            for i, vss in enumerate(ss.spawn(n)):
                rng = np.random.default_rng(vss)
                action = i % len(DEMO_CLASSES)
                vid = f"synthetic_{split}_{i:05d}"
                T = int(rng.integers(min_frames, max_frames + 1))
                if i < num_empty:
                    video = {"data": [{"frame_index": t + 1, "skeleton": []} for t in range(T)],
                             "label": DEMO_CLASSES[action], "label_index": action}
                else:
                    video = _video(action, rng, T, action)
                _write_json(folder / f"{vid}.json", video)
                labels[vid] = {"has_skeleton": i >= num_empty, "label": DEMO_CLASSES[action],
                               "label_index": action}
            _write_json(tmp / f"kinetics_{split}_label.json", labels, indent=4)
        (tmp / "README.txt").write_text(
            "SYNTHETIC skeleton data generated by pyg_sparse_stgcn.data.readers.demo.generate_demo "
            f"(seed={seed}). Not real recordings; for demos and smoke tests only.\n")
        for name in ("kinetics_train", "kinetics_val"):
            if (root / name).exists():
                shutil.rmtree(root / name)
        for name in ("kinetics_train", "kinetics_val", "kinetics_train_label.json", "kinetics_val_label.json",
                     "README.txt"):
            os.replace(tmp / name, root / name)
        meta_tmp = tmp / _META
        with open(meta_tmp, "w") as f:
            json.dump(_meta(**settings), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(meta_tmp, root / _META)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
