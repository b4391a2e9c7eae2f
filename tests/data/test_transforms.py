"""Transforms: PYSKL semantics checked against independent reference computations written here."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from pyg_sparse_stgcn.data import SkeletonData
from pyg_sparse_stgcn.data.transforms import (
    Compose,
    FormatGCNInput,
    GenSkeFeat,
    JointToBone,
    PadTo,
    PreNormalize2D,
    PreNormalize3D,
    RandomGaussianNoise,
    RandomRot,
    RandomScale,
    ToMotion,
    UniformSample,
    UniformSampleFrames,
    build_pipeline,
    build_transform,
    results_to_data,
)
from pyg_sparse_stgcn.graph import get_layout


def _ntu_like(M=2, T=20, seed=0):
    rng = np.random.default_rng(seed)
    kp = rng.normal(size=(M, T, 25, 3)).astype(np.float32) + np.array([0.0, 0.0, 3.0], np.float32)
    return kp


# --- PreNormalize3D ---------------------------------------------------------------------------------------
def test_prenormalize3d_rigid_centred_and_aligned():
    kp = _ntu_like(2, 12)
    kp[1, :3] = 0  # second person absent in 3 frames -> person 0 stays first
    kp[0, 5] = 0  # person 0 absent in frame 5 -> the frame is dropped
    out = PreNormalize3D()({"keypoint": kp.copy(), "total_frames": 12})
    y = out["keypoint"]
    keep = [t for t in range(12) if t != 5]
    assert y.shape == (2, 11, 25, 3) and y.dtype == np.float32 and out["total_frames"] == 11
    # centre: joint 1 of person 0 in the first kept frame is at the origin
    np.testing.assert_allclose(y[0, 0, 1], 0, atol=1e-5)
    # rigid: all pairwise distances inside each kept frame of person 0 are preserved
    ref = kp[0, keep]
    d_ref = np.linalg.norm(ref[:, :, None] - ref[:, None], axis=-1)
    d_out = np.linalg.norm(y[0][:, :, None] - y[0][:, None], axis=-1)
    np.testing.assert_allclose(d_out, d_ref, atol=1e-4)
    # the shoulder vector (right 8 - left 4) points along +x
    v = y[0, 0, 8] - y[0, 0, 4]
    np.testing.assert_allclose(v / np.linalg.norm(v), [1, 0, 0], atol=1e-5)
    # zero (absent) joints stay zero
    assert np.all(y[1, :2] == 0)


def test_prenormalize3d_spine_along_z_when_shoulders_orthogonal():
    # a rigidly rotated T-pose: spine 0->1 and shoulders 4<->8 orthogonal, so both alignments hold exactly
    base = np.zeros((25, 3))
    base[1] = [0, 0.3, 0]
    base[4], base[8] = [0.2, 0.5, 0], [-0.2, 0.5, 0]
    base[2:4] = [[0, 0.6, 0], [0, 0.7, 0]]
    base[5:8] = [[0.3 + 0.1 * i, 0.5, 0] for i in range(3)]
    base[9:25] = np.random.default_rng(1).normal(size=(16, 3)) * 0.1 + [0, 0.2, 0]
    R = Rotation.from_euler("xyz", [0.3, -0.7, 1.1]).as_matrix()
    kp = ((base @ R.T) + [0.5, 0.1, 3.0])[None, None].astype(np.float32)
    y = PreNormalize3D()({"keypoint": np.repeat(kp, 4, axis=1), "total_frames": 4})["keypoint"]
    spine = y[0, 0, 1] - y[0, 0, 0]
    np.testing.assert_allclose(spine / np.linalg.norm(spine), [0, 0, 1], atol=1e-5)
    sh = y[0, 0, 8] - y[0, 0, 4]
    np.testing.assert_allclose(sh / np.linalg.norm(sh), [1, 0, 0], atol=1e-5)


def test_prenormalize3d_longer_track_first_and_empty_input():
    kp = _ntu_like(2, 10)
    kp[0, 4:] = 0  # person 0 only in 4 frames, person 1 in all 10
    y = PreNormalize3D()({"keypoint": kp.copy(), "total_frames": 10})
    assert y["keypoint"].shape[1] == 10
    # the longer track (old person 1) is now first; rigid per frame
    d0 = np.linalg.norm(kp[1, 7, 3] - kp[1, 7, 11])
    assert np.isclose(np.linalg.norm(y["keypoint"][0, 7, 3] - y["keypoint"][0, 7, 11]), d0, atol=1e-5)
    zeros = np.zeros((1, 5, 25, 3), np.float32)
    assert PreNormalize3D()({"keypoint": zeros, "total_frames": 5})["keypoint"] is zeros
    with pytest.raises(ValueError, match="C=3"):
        PreNormalize3D()({"keypoint": np.ones((1, 3, 25, 2), np.float32)})


# --- PreNormalize2D ---------------------------------------------------------------------------------------
def test_prenormalize2d_fix_and_auto_match_formulas():
    rng = np.random.default_rng(0)
    kp = rng.uniform(0, 300, size=(2, 6, 17, 2)).astype(np.float32)
    sc = rng.uniform(0, 1, size=(2, 6, 17)).astype(np.float32)
    sc[0, 0, :3] = 0.0
    out = PreNormalize2D()({"keypoint": kp.copy(), "keypoint_score": sc.copy(), "img_shape": (240, 320)})
    y = out["keypoint"]
    assert y.shape == (2, 6, 17, 3) and "keypoint_score" not in out
    ref_x, ref_y = (kp[..., 0] - 160) / 160, (kp[..., 1] - 120) / 120
    mask = sc > 0.01
    np.testing.assert_allclose(y[..., 0], np.where(mask, ref_x, 0), atol=1e-6)
    np.testing.assert_allclose(y[..., 1], np.where(mask, ref_y, 0), atol=1e-6)
    np.testing.assert_array_equal(y[..., 2], sc)
    auto = PreNormalize2D(mode="auto")({"keypoint": kp.copy(), "keypoint_score": sc.copy()})["keypoint"]
    xs, ys = kp[..., 0][mask], kp[..., 1][mask]
    ex = (kp[..., 0] - (xs.max() + xs.min()) / 2) / (xs.max() - xs.min()) * 2
    ey = (kp[..., 1] - (ys.max() + ys.min()) / 2) / (ys.max() - ys.min()) * 2
    np.testing.assert_allclose(auto[..., 0], np.where(mask, ex, 0), atol=1e-5)
    np.testing.assert_allclose(auto[..., 1], np.where(mask, ey, 0), atol=1e-5)
    assert np.abs(auto[..., :2][mask]).max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="mode"):
        PreNormalize2D(mode="bad")


# --- UniformSampleFrames ----------------------------------------------------------------------------------
def _pyskl_test_clips(num_frames, clip_len, num_clips, seed):
    """Reference: PYSKL's documented test-time sampling, written with numpy's global RNG as PYSKL does."""
    np.random.seed(seed)
    out = []
    for i in range(num_clips):
        n = int((np.random.rand() * 0 + 1) * num_frames)
        off = np.random.randint(num_frames - n + 1)
        if n < clip_len:
            start = i if n < num_clips else i * n // num_clips
            inds = np.arange(start, start + clip_len)
        elif n < 2 * clip_len:
            basic = np.arange(clip_len)
            chosen = np.random.choice(clip_len + 1, n - clip_len, replace=False)
            offset = np.zeros(clip_len + 1, dtype=np.int64)
            offset[chosen] = 1
            inds = basic + np.cumsum(offset)[:-1]
        else:
            bids = np.array([j * n // clip_len for j in range(clip_len + 1)])
            inds = bids[:clip_len] + np.random.randint(np.diff(bids))
        out.append(inds + off)
    return np.mod(np.concatenate(out), num_frames)


@pytest.mark.parametrize("num_frames", [1, 5, 16, 20, 31, 32, 100])
@pytest.mark.parametrize("num_clips", [1, 3])
def test_uniform_sample_test_mode_matches_reference(num_frames, num_clips):
    s = UniformSampleFrames(16, num_clips=num_clips, seed=255, test_mode=True)
    np.testing.assert_array_equal(s.frame_indices(num_frames, test_mode=True),
                                  _pyskl_test_clips(num_frames, 16, num_clips, 255))
    state = np.random.get_state()[1].copy()
    s.frame_indices(num_frames, test_mode=True)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched


def test_uniform_sample_train_structure_and_selection():
    np.random.seed(3)
    s = UniformSampleFrames(10)
    for n in (3, 10, 15, 19, 20, 57):
        for _ in range(20):
            inds = s.frame_indices(n)
            assert inds.shape == (10,) and inds.min() >= 0 and inds.max() < n
            if n >= 20:  # one frame per segment
                b = np.array([i * n // 10 for i in range(11)])
                assert np.all((inds >= b[:-1]) & (inds < b[1:]))
            elif n >= 10:
                assert np.all(np.diff(inds) >= 1)  # strictly increasing, no repeats
            else:
                assert np.all(np.diff(inds) % n == 1 % n)  # a looping window
    kp = np.arange(2 * 30 * 3 * 2, dtype=np.float32).reshape(2, 30, 3, 2)
    out = UniformSample(8, num_clips=2, test_mode=False)({"keypoint": kp, "total_frames": 30})
    assert out["keypoint"].shape == (2, 16, 3, 2) and out["num_clips"] == 2
    np.testing.assert_array_equal(out["keypoint"], kp[:, out["frame_inds"]])
    draws = {tuple(UniformSampleFrames(8).frame_indices(30)) for _ in range(10)}
    assert len(draws) > 1  # training sampling is random


def test_uniform_sample_p_interval_and_errors():
    np.random.seed(0)
    s = UniformSampleFrames(5, p_interval=(0.5, 1.0))
    for _ in range(30):
        inds = s.frame_indices(100)
        assert inds.max() - inds.min() < 100
    for bad in ({"clip_len": 0}, {"clip_len": 4, "num_clips": 0}, {"clip_len": 4, "p_interval": (0.9, 0.5)}):
        with pytest.raises(ValueError):
            UniformSampleFrames(**bad)
    with pytest.raises(ValueError, match="0 frames"):
        UniformSampleFrames(4).frame_indices(0)


# --- PadTo ------------------------------------------------------------------------------------------------
def test_padto_loop_and_zero():
    kp = np.random.default_rng(0).normal(size=(1, 4, 3, 2)).astype(np.float32)
    loop = PadTo(10)({"keypoint": kp.copy(), "total_frames": 4})
    np.testing.assert_array_equal(loop["keypoint"], kp[:, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]])
    zero = PadTo(10, mode="zero")({"keypoint": kp.copy(), "total_frames": 4})["keypoint"]
    np.testing.assert_array_equal(zero[:, :4], kp)
    assert np.all(zero[:, 4:] == 0) and loop["total_frames"] == 10
    with pytest.raises(ValueError, match="more than length"):
        PadTo(3)({"keypoint": kp})


# --- augmentation -----------------------------------------------------------------------------------------
def test_random_rot_matrix_matches_scipy_and_applies():
    theta = np.array([0.2, -0.1, 0.25])
    np.testing.assert_allclose(RandomRot.rot3d(theta), Rotation.from_euler("xyz", -theta).as_matrix(),
                               atol=1e-12)
    kp = _ntu_like(1, 5)
    np.random.seed(7)
    out = RandomRot(0.3)({"keypoint": kp.copy()})["keypoint"]
    np.random.seed(7)
    ang = np.random.uniform(-0.3, 0.3, size=3)
    np.testing.assert_allclose(out, kp @ Rotation.from_euler("xyz", -ang).as_matrix().T, atol=1e-5)
    # 2-D with a score channel: rotates (x, y), keeps the score
    kp2 = np.random.default_rng(1).normal(size=(1, 5, 18, 3)).astype(np.float32)
    out2 = RandomRot(0.3, dims=2)({"keypoint": kp2.copy()})["keypoint"]
    np.testing.assert_array_equal(out2[..., 2], kp2[..., 2])
    np.testing.assert_allclose(np.linalg.norm(out2[..., :2], axis=-1), np.linalg.norm(kp2[..., :2], axis=-1),
                               atol=1e-5)


def test_random_scale_per_axis():
    kp = _ntu_like(1, 5)
    np.random.seed(2)
    out = RandomScale(0.2)({"keypoint": kp.copy()})["keypoint"]
    ratio = out / kp
    for c in range(3):
        assert np.allclose(ratio[..., c], ratio[0, 0, 0, c], atol=1e-5)
        assert 0.8 - 1e-6 <= ratio[0, 0, 0, c] <= 1.2 + 1e-6
    with pytest.raises(ValueError, match="scale"):
        RandomScale((0.1, 0.2))({"keypoint": kp})


def test_random_gaussian_noise_scaled_and_zero_frames_kept():
    kp = _ntu_like(1, 8)
    kp[0, 3] = 0
    np.random.seed(0)
    out = RandomGaussianNoise(sigma=0.01)({"keypoint": kp.copy()})["keypoint"]
    assert out.dtype == np.float32 and out.shape == kp.shape
    assert np.all(out[0, 3] == 0)
    diag = np.linalg.norm(kp[0, 0].max(0) - kp[0, 0].min(0))
    moved = np.linalg.norm(out[0, 0] - kp[0, 0], axis=-1)
    assert 0 < moved.mean() < 5 * 0.01 * diag


# --- features ---------------------------------------------------------------------------------------------
def _parents(layout):
    lay = get_layout(layout)
    par = {c: p for c, p in lay.inward}
    return [par.get(v, v) for v in range(lay.num_nodes)]


def test_joint_to_bone_reference_3d_and_2d():
    kp = _ntu_like(2, 4)
    bone = JointToBone("nturgb+d")({"keypoint": kp})["keypoint"]
    par = _parents("nturgb+d")
    for v in range(25):
        np.testing.assert_allclose(bone[..., v, :], kp[..., v, :] - kp[..., par[v], :], atol=1e-6)
    assert np.all(bone[..., 20, :] == 0)  # the centre joint is its own parent
    kp2 = np.random.default_rng(0).uniform(size=(1, 3, 18, 3)).astype(np.float32)
    b2 = JointToBone("openpose")({"keypoint": kp2})["keypoint"]
    par = _parents("openpose")
    for v in range(18):
        np.testing.assert_allclose(b2[..., v, :2], kp2[..., v, :2] - kp2[..., par[v], :2], atol=1e-6)
        np.testing.assert_allclose(b2[..., v, 2], (kp2[..., v, 2] + kp2[..., par[v], 2]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="V=25"):
        JointToBone("openpose")({"keypoint": kp})


def test_to_motion_reference():
    kp = _ntu_like(2, 6)
    m = ToMotion("nturgb+d")({"keypoint": kp})["motion"]
    np.testing.assert_allclose(m[:, :5], kp[:, 1:] - kp[:, :5], atol=1e-6)
    assert np.all(m[:, 5] == 0)
    kp2 = np.random.default_rng(0).uniform(size=(1, 4, 17, 3)).astype(np.float32)
    m2 = ToMotion("coco")({"keypoint": kp2})["motion"]
    np.testing.assert_allclose(m2[:, :3, :, 2], (kp2[:, :3, :, 2] + kp2[:, 1:, :, 2]) / 2, atol=1e-6)


def test_genskefeat_concatenation_and_score_merge():
    kp = _ntu_like(1, 5)
    out = GenSkeFeat("nturgb+d", feats="j+b+jm+bm")({"keypoint": kp.copy()})["keypoint"]
    par = _parents("nturgb+d")
    b = kp - kp[:, :, par]
    jm = np.zeros_like(kp)
    jm[:, :-1] = kp[:, 1:] - kp[:, :-1]
    bm = np.zeros_like(b)
    bm[:, :-1] = b[:, 1:] - b[:, :-1]
    np.testing.assert_allclose(out, np.concatenate([kp, b, jm, bm], -1), atol=1e-5)
    kp2 = np.random.default_rng(0).uniform(size=(2, 3, 17, 2)).astype(np.float32)
    sc = np.random.default_rng(1).uniform(size=(2, 3, 17)).astype(np.float32)
    res = GenSkeFeat("coco", feats=["j"])({"keypoint": kp2, "keypoint_score": sc})
    np.testing.assert_array_equal(res["keypoint"], np.concatenate([kp2, sc[..., None]], -1))
    assert "keypoint_score" not in res
    for bad in ("x", "j+j", "", ["j", "q"]):
        with pytest.raises(ValueError, match="feats"):
            GenSkeFeat("coco", feats=bad)


def test_format_gcn_input_pad_crop_clips():
    kp = np.random.default_rng(0).normal(size=(1, 6, 3, 2)).astype(np.float32)
    out = FormatGCNInput(num_person=2)({"keypoint": kp.copy()})["keypoint"]
    assert out.shape == (2, 6, 3, 2) and np.all(out[1] == 0)
    out = FormatGCNInput(num_person=3, mode="loop")({"keypoint": kp.copy()})["keypoint"]
    np.testing.assert_array_equal(out[2], kp[0])
    three = np.random.default_rng(0).normal(size=(3, 6, 3, 2)).astype(np.float32)
    clips = FormatGCNInput(2)({"keypoint": three, "num_clips": 3})["keypoint"]
    assert clips.shape == (3, 2, 2, 3, 2)
    np.testing.assert_array_equal(clips[1, 0], three[0, 2:4])
    with pytest.raises(ValueError, match="num_clips"):
        FormatGCNInput(2)({"keypoint": three, "num_clips": 4})


# --- Compose, registry, pipelines -------------------------------------------------------------------------
def test_compose_on_skeleton_data_and_specs():
    data = results_to_data({"keypoint": _ntu_like(1, 30), "label": 4, "frame_dir": "s"})
    pipe = Compose([{"type": "PreNormalize3D"}, GenSkeFeat("nturgb+d", "j+b"),
                    {"type": "UniformSample", "clip_len": 8, "test_mode": True}, FormatGCNInput(2)])
    out = pipe(data)
    assert isinstance(out, SkeletonData) and out.x.shape == (2, 8, 25, 6) and out.x.dtype == torch.float32
    assert int(out.y) == 4 and out.frame_dir == "s" and out.num_nodes == 25
    with pytest.raises(ValueError, match="unknown transform"):
        build_transform({"type": "Nope"})
    with pytest.raises(ValueError, match="bad arguments"):
        build_transform({"type": "PadTo", "lenght": 3})
    with pytest.raises(ValueError, match="results dict"):
        PadTo(3)([1, 2])


@pytest.mark.parametrize("kind,C,V,layout", [("3d", 3, 25, None), ("2d", 2, 17, None),
                                              ("2d-normalized", 2, 18, None), ("3d", 3, 20, "nw-ucla")])
def test_build_pipeline_kinds(kind, C, V, layout):
    rng = np.random.default_rng(0)
    res = {"keypoint": rng.normal(size=(1, 23, V, C)).astype(np.float32) + 1, "total_frames": 23, "label": 1}
    if C == 2:
        res["keypoint_score"] = rng.uniform(size=(1, 23, V)).astype(np.float32)
        res["img_shape"] = (256, 340)
    train = build_pipeline(kind, "j+b", 16, layout=layout, augment=True)
    out = train(dict(res))["keypoint"]
    assert out.shape == (2, 16, V, 6) and out.dtype == np.float32
    test = build_pipeline(kind, "j", 16, train=False, num_clips=4, layout=layout)
    a, b = test(dict(res))["keypoint"], test(dict(res))["keypoint"]
    assert a.shape == (4, 2, 16, V, 3)
    np.testing.assert_array_equal(a, b)  # seeded test sampling
    with pytest.raises(ValueError, match="kind"):
        build_pipeline("4d")


# --- hypothesis: shapes and dtypes are kept ---------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 3), T=st.integers(1, 40), clip=st.integers(1, 20), nclip=st.integers(1, 3),
       feats=st.sampled_from(["j", "b", "jm", "bm", "j+b", "j+b+jm+bm"]), seed=st.integers(0, 2**16),
       zero_frames=st.integers(0, 5), dtype=st.sampled_from([np.float16, np.float32, np.float64]))
def test_pipelines_keep_shapes_and_dtypes(M, T, clip, nclip, feats, seed, zero_frames, dtype):
    rng = np.random.default_rng(seed)
    kp = rng.normal(size=(M, T, 25, 3)).astype(dtype)
    kp[:, T - min(zero_frames, T - 1):] = 0
    np.random.seed(seed)
    nf = len(feats.split("+"))
    for train in (True, False):
        pipe = build_pipeline("3d", feats, clip, train=train, num_clips=1 if train else nclip, augment=train)
        out = pipe({"keypoint": kp.copy(), "total_frames": T})["keypoint"]
        expect = (2, clip, 25, 3 * nf) if train or nclip == 1 else (nclip, 2, clip, 25, 3 * nf)
        assert out.shape == expect and out.dtype == np.float32 and np.isfinite(out).all()
    kp2 = rng.uniform(0, 300, size=(M, T, 17, 2)).astype(dtype)
    sc = rng.uniform(size=(M, T, 17)).astype(dtype)
    for t in (RandomRot(dims=2), RandomScale(dims=2), RandomGaussianNoise(dims=2), PreNormalize2D()):
        out = t({"keypoint": kp2.astype(np.float32), "keypoint_score": sc})
        assert out["keypoint"].shape[:3] == (M, T, 17) and out["keypoint"].dtype == np.float32


# --- PyG's transform contract, the registry, pipelines from spec lists ------------------------------------
def _results_2d(M=1, T=20, V=18, seed=0):
    rng = np.random.default_rng(seed)
    kp = rng.uniform(-0.5, 0.5, size=(M, T, V, 3)).astype(np.float32)
    kp[..., 2] = rng.uniform(0, 1, size=(M, T, V)).astype(np.float32)
    return {"keypoint": kp, "total_frames": T, "label": 3, "frame_dir": "v"}


def _contract_cases():
    from pyg_sparse_stgcn.data.transforms import TRANSFORMS

    args = {"PreNormalize3D": {}, "PreNormalize2D": {}, "UniformSampleFrames": {"clip_len": 8},
            "PadTo": {"length": 40}, "RandomRot": {}, "RandomScale": {}, "RandomGaussianNoise": {},
            "JointToBone": {}, "ToMotion": {}, "GenSkeFeat": {"feats": "j+b+jm+bm"},
            "FormatGCNInput": {"num_person": 3},
            "Compose": {"transforms": [{"type": "PreNormalize3D"}, {"type": "GenSkeFeat", "feats": "j+bm"},
                                       {"type": "UniformSample", "clip_len": 8}, {"type": "FormatGCNInput"}]}}
    assert set(TRANSFORMS) == set(args) | {"UniformSample"}
    return sorted(args.items())


def test_every_registered_transform_is_a_pyg_transform_and_leaves_its_input_alone():
    from torch_geometric.transforms import BaseTransform

    for name, kw in _contract_cases():
        t = build_transform({"type": name, **kw})
        assert isinstance(t, BaseTransform) and type(t).__name__ == name
        kp = _ntu_like(2, 30, seed=1)
        res = {"keypoint": kp, "total_frames": 30, "label": 2, "frame_dir": "s"}
        before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in res.items()}
        np.random.seed(0)
        out = t(res)
        assert out is not res, name  # PyG's __call__ hands forward() a shallow copy
        assert res.keys() == before.keys() and res["keypoint"] is kp, name
        np.testing.assert_array_equal(kp, before["keypoint"], err_msg=name)
        data = results_to_data(res)
        x0, keys0 = data.x.clone(), set(data.keys())
        np.random.seed(0)
        out_d = t(data)
        assert isinstance(out_d, SkeletonData) and out_d is not data, name
        assert torch.equal(data.x, x0) and set(data.keys()) == keys0 and int(data.y) == 2, name
        np.testing.assert_array_equal(out_d.x.numpy(), out["keypoint"].astype(np.float32), err_msg=name)


def test_registry_unknown_type_lists_the_valid_ones():
    from pyg_sparse_stgcn.data.transforms import TRANSFORMS, register_transform

    with pytest.raises(ValueError, match=r"unknown transform type 'Nope'; valid: .*PreNormalize3D.*UniformSample"):
        TRANSFORMS.get("Nope")
    assert TRANSFORMS.get("UniformSample") is UniformSampleFrames is UniformSample
    with pytest.raises(ValueError, match="registered twice"):
        register_transform()(PadTo)


def test_feats_choices_defined_once():
    from pyg_sparse_stgcn.data.transforms import FEATS, STREAMS, parse_feats

    assert STREAMS == ("j", "b", "jm", "bm") and FEATS[:4] == STREAMS
    assert {"j+b", "b+j", "j+b+jm+bm", "bm+jm"} <= set(FEATS) and len(FEATS) == len(set(FEATS)) == 4 + 12 + 24 + 24
    for f in FEATS:
        assert parse_feats(f) == tuple(f.split("+"))
        GenSkeFeat("nturgb+d", f)
    for bad in ("j+j", "x", "", "j+"):
        assert bad not in FEATS
        with pytest.raises(ValueError, match="feats"):
            parse_feats(bad)


def test_pipeline_from_a_config_list_equals_the_standard_one():
    from pyg_sparse_stgcn.data.transforms import standard_pipeline

    # PYSKL-style lists, written here as a configuration would hold them
    ntu_test = [{"type": "PreNormalize3D", "zaxis": [0, 1], "xaxis": [8, 4], "center": 1},
                {"type": "GenSkeFeat", "dataset": "nturgb+d", "feats": "j+b"},
                {"type": "UniformSampleFrames", "clip_len": 16, "num_clips": 2, "seed": 255, "test_mode": True},
                {"type": "FormatGCNInput", "num_person": 2}]
    kinetics_train = [{"type": "RandomScale", "scale": 0.1, "dims": 2},
                      {"type": "RandomRot", "theta": 0.1, "dims": 2},
                      {"type": "GenSkeFeat", "dataset": "openpose", "feats": "j"},
                      {"type": "UniformSampleFrames", "clip_len": 16, "num_clips": 1, "seed": 255,
                       "test_mode": False},
                      {"type": "FormatGCNInput", "num_person": 2}]
    assert standard_pipeline("3d", "j+b", 16, train=False, num_clips=2) == ntu_test
    assert standard_pipeline("2d-normalized", "j", 16, augment=True) == kinetics_train
    for specs, kw, res in ((ntu_test, dict(kind="3d", feats="j+b", clip_len=16, train=False, num_clips=2),
                            {"keypoint": _ntu_like(2, 37), "total_frames": 37}),
                           (kinetics_train, dict(kind="2d-normalized", feats="j", clip_len=16, augment=True),
                            _results_2d(2, 37))):
        from_list = build_pipeline(specs)
        standard = build_pipeline(**kw)
        assert repr(from_list) == repr(standard)
        np.random.seed(11)
        a = from_list(res)["keypoint"]
        np.random.seed(11)
        b = standard(res)["keypoint"]
        np.testing.assert_array_equal(a, b)
    mixed = build_pipeline([{"type": "PreNormalize3D"}, GenSkeFeat("nturgb+d", "j"), {"type": "PadTo", "length": 40}])
    assert mixed({"keypoint": _ntu_like(1, 30), "total_frames": 30})["keypoint"].shape == (1, 40, 25, 3)
    with pytest.raises(ValueError, match="bad arguments for transform GenSkeFeat"):
        build_pipeline([{"type": "GenSkeFeat", "stream": "j"}])


def _bone_reference(kp, layout, score_channel):
    """Bones written out joint by joint (parent from the layout's inward edges; the centre is its own)."""
    par = _parents(layout)
    out = np.zeros_like(kp)
    for v in range(kp.shape[2]):
        out[..., v, :2] = kp[..., v, :2] - kp[..., par[v], :2]
        if kp.shape[-1] == 3:
            out[..., v, 2] = (kp[..., v, 2] + kp[..., par[v], 2]) / 2 if score_channel else \
                kp[..., v, 2] - kp[..., par[v], 2]
    return out


def test_standard_2d_pipelines_bit_identical_to_reference():
    """The test pipelines of the two 2-D kinds against values computed here, step by step, bit for bit."""
    res = _results_2d(1, 20)
    kp = res["keypoint"]
    out = build_pipeline("2d-normalized", "j+b", 8, train=False)(dict(res))
    inds = _pyskl_test_clips(20, 8, 1, 255)
    feat = np.concatenate([kp, _bone_reference(kp, "openpose", True)], -1)[:, inds]
    ref = np.concatenate([feat, np.zeros_like(feat)], 0)  # the second person is zero padding
    assert out["keypoint"].dtype == np.float32
    np.testing.assert_array_equal(out["keypoint"], ref)
    data_out = build_pipeline("2d-normalized", "j+b", 8, train=False)(results_to_data(res))
    np.testing.assert_array_equal(data_out.x.numpy(), ref)
    assert int(data_out.y) == 3 and data_out.frame_dir == "v"
    # "2d": pixel coordinates + keypoint_score, img_shape (h, w) = (240, 320)
    rng = np.random.default_rng(5)
    px = rng.uniform(0, 320, size=(2, 25, 17, 2)).astype(np.float32)
    sc = rng.uniform(0, 1, size=(2, 25, 17)).astype(np.float32)
    sc[0, 3, :4] = 0.005
    res2 = {"keypoint": px, "keypoint_score": sc, "img_shape": (240, 320), "total_frames": 25}
    out2 = build_pipeline("2d", "j+jm", 10, train=False)(dict(res2))["keypoint"]
    x = (px[..., 0] - np.float32(160)) / np.float32(160)
    y = (px[..., 1] - np.float32(120)) / np.float32(120)
    keep = sc > 0.01
    j = np.stack([np.where(keep, x, 0), np.where(keep, y, 0), sc], -1).astype(np.float32)
    jm = np.zeros_like(j)
    jm[:, :-1, :, :2] = j[:, 1:, :, :2] - j[:, :-1, :, :2]
    jm[:, :-1, :, 2] = (j[:, :-1, :, 2] + j[:, 1:, :, 2]) / 2
    ref2 = np.concatenate([j, jm], -1)[:, _pyskl_test_clips(25, 10, 1, 255)]
    np.testing.assert_array_equal(out2, ref2)


def test_standard_3d_pipeline_matches_reference():
    """PreNormalize3D (centre joint 1 of person 0 at the origin, spine 0->1 along +z, shoulders 4->8 along
    +x; rigid), then joints + bone motion, seeded sampling and person padding, against a scipy-built
    reference."""
    base = np.zeros((25, 3))
    base[1] = [0, 0.3, 0]
    base[4], base[8] = [0.2, 0.5, 0], [-0.2, 0.5, 0]
    base[20] = [0, 0.45, 0]
    rest = [v for v in range(25) if v not in (0, 1, 4, 8, 20)]
    base[rest] = np.random.default_rng(1).normal(size=(len(rest), 3)) * 0.2 + [0, 0.2, 0]
    T = 30
    moves = np.random.default_rng(2).normal(size=(T, 25, 3)) * 0.01
    moves[0] = 0
    R = Rotation.from_euler("xyz", [0.3, -0.7, 1.1]).as_matrix()
    kp = (((base + moves) @ R.T) + [0.5, 0.1, 3.0])[None].astype(np.float32)
    out = build_pipeline("3d", "j+bm", 12, train=False, num_person=2)({"keypoint": kp, "total_frames": T})
    # reference: undo R exactly, centre on joint 1, then turn the spine (+y in `base`) to +z and the shoulder
    # vector 4 -> 8 (-x in `base`) to +x
    to_canonical = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])  # base y -> +z, base -x -> +x
    centre = kp[0, 0, 1].astype(np.float64)
    j = ((kp[0].astype(np.float64) - centre) @ R) @ to_canonical.T
    np.testing.assert_allclose(j[0, 1] - j[0, 0], [0, 0, 0.3], atol=1e-5)
    par = _parents("nturgb+d")
    b = j - j[:, par]
    bm = np.zeros_like(b)
    bm[:-1] = b[1:] - b[:-1]
    inds = _pyskl_test_clips(T, 12, 1, 255)
    ref = np.zeros((2, 12, 25, 6))
    ref[0] = np.concatenate([j, bm], -1)[inds]
    assert out["keypoint"].shape == (2, 12, 25, 6)
    np.testing.assert_allclose(out["keypoint"], ref, atol=2e-5)
