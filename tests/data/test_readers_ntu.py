"""NTU RGB+D ``.skeleton`` reader, split helpers and missing-skeleton lists."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyg_sparse_stgcn.data import SkeletonFormatError
from pyg_sparse_stgcn.data.readers import (
    NTU60_MISSING_SKELETONS,
    NTU120_MISSING_SKELETONS,
    NTU120_XSUB_TRAIN_SUBJECTS,
    is_missing_skeleton,
    ntu_split,
    ntu_split_names,
    parse_ntu_name,
    read_ntu_skeleton,
)

REAL = {"S001C003P008R002A058": (70, 57, [[72057594037944738], [72057594037944734]]),
        "S001C001P001R001A011": (82, 10, [[72057594037931648]]),
        "S003C001P015R001A034": (71, 33, None)}


def _reference(text: str, max_body: int = 2):
    """Independent line-by-line reader, original ST-GCN style: the m-th body of a frame goes to slot m."""
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n")]
    pos = 0

    def nxt():
        nonlocal pos
        pos += 1
        return lines[pos - 1]

    T = int(nxt())
    out = np.zeros((max_body, T, 25, 3))
    ids = []
    for t in range(T):
        for m in range(int(nxt())):
            bid = int(nxt().split()[0])
            if bid not in ids:
                ids.append(bid)
            nj = int(nxt())
            for v in range(nj):
                vals = [float(x) for x in nxt().split()]
                if m < max_body:
                    out[m, t, v] = vals[:3]
    return out, ids


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files(realdata, name):
    T, label, ids = REAL[name]
    path = realdata / f"{name}.skeleton"
    raw = path.read_bytes()
    assert b"\r\n" in raw and raw.endswith(b"\r\n")  # the CRLF case is really exercised
    s = read_ntu_skeleton(path, with_extras=True)
    ref, ref_ids = _reference(raw.decode())
    M = len(ref_ids)
    assert s.keypoint.shape == (M, T, 25, 3) and s.keypoint.dtype == np.float32
    np.testing.assert_allclose(s.keypoint, ref[:M], rtol=1e-6, atol=1e-7)
    assert s.label == label and s.frame_dir == name and s.total_frames == T and s.layout == "nturgb+d"
    assert s.meta["body_ids"] == [[i] for i in ref_ids]
    if ids is not None:
        assert s.meta["body_ids"] == ids
    n = parse_ntu_name(name)
    assert (s.meta["setup"], s.meta["camera"], s.meta["performer"], s.meta["action"]) == (
        n.setup, n.camera, n.performer, n.action)
    assert set(np.unique(s.meta["tracking_state"])) <= {1, 2}
    # leaf joints (head=3, feet, hand tips, thumbs) carry a zero orientation quaternion
    assert (s.meta["orientation"][:, :, [3, 15, 19, 21, 22, 23, 24]] == 0).all()
    assert s.meta["color_xy"].max() <= 1920 and s.meta["depth_xy"].max() <= 512
    assert (s.meta["bodies_per_frame"] == M).all()


def test_ranges_match_formats_md(realdata):
    kp = np.concatenate([read_ntu_skeleton(p).keypoint.reshape(-1, 3)
                         for p in sorted(realdata.glob("*.skeleton"))])
    assert -0.63 < kp[:, 0].min() < -0.61 and 0.90 < kp[:, 0].max() < 0.92
    assert 2.33 < kp[:, 2].min() and kp[:, 2].max() < 4.14


def test_lf_line_endings_give_same_result(realdata, tmp_path):
    src = realdata / "S001C001P001R001A011.skeleton"
    lf = tmp_path / src.name
    lf.write_bytes(src.read_bytes().replace(b"\r\n", b"\n"))
    np.testing.assert_array_equal(read_ntu_skeleton(lf).keypoint, read_ntu_skeleton(src).keypoint)


def _frames(path):
    """Split a real file into per-frame blocks: list of lists of (body_line, joint_lines)."""
    lines = path.read_text().replace("\r\n", "\n").split("\n")
    T, pos, frames = int(lines[0]), 1, []
    for _ in range(T):
        nb = int(lines[pos])
        pos += 1
        bodies = []
        for _ in range(nb):
            bodies.append((lines[pos], lines[pos + 2: pos + 27]))
            pos += 27
        frames.append(bodies)
    return frames


def _write(path, frames):
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for body_line, joints in bodies:
            out += [body_line, "25", *joints]
    path.write_bytes(("\r\n".join(out) + "\r\n").encode())
    return path


def _with_id(body, new_id):
    line, joints = body
    return (" ".join([str(new_id)] + line.split()[1:]), joints)


def test_zero_body_frames_and_changing_counts(realdata, tmp_path):
    fr = _frames(realdata / "S001C003P008R002A058.skeleton")
    frames = [[], fr[0][:1], fr[1], [], fr[2][1:], fr[3]]  # 0, 1, 2, 0, 1 (second person only), 2 bodies
    s = read_ntu_skeleton(_write(tmp_path / "S001C003P008R002A058.skeleton", frames))
    assert s.keypoint.shape == (2, 6, 25, 3)
    assert (s.keypoint[:, [0, 3]] == 0).all()
    assert list(s.meta["bodies_per_frame"]) == [0, 1, 2, 0, 1, 2]
    full = read_ntu_skeleton(realdata / "S001C003P008R002A058.skeleton").keypoint
    np.testing.assert_array_equal(s.keypoint[0, 1], full[0, 0])
    np.testing.assert_array_equal(s.keypoint[1, 4], full[1, 2])  # tracked by id into the second slot
    assert (s.keypoint[0, 4] == 0).all()


def test_extra_bodies_dropped_by_motion_energy(realdata, tmp_path):
    fr = _frames(realdata / "S001C003P008R002A058.skeleton")
    still = _with_id(fr[0][1], 1234)  # a spurious body that never moves
    frames = [bodies + [(still[0], still[1])] if t % 2 == 0 else bodies for t, bodies in enumerate(fr)]
    s = read_ntu_skeleton(_write(tmp_path / "x.skeleton", frames))
    assert s.meta["dropped_body_ids"] == [1234]
    ref = read_ntu_skeleton(realdata / "S001C003P008R002A058.skeleton")
    kept = sorted(ids[0] for ids in s.meta["body_ids"])
    assert kept == sorted(ids[0] for ids in ref.meta["body_ids"])
    # slots are ordered by energy; compare as sets of sequences
    energy = [float(ref.keypoint[m].var(axis=0).sum()) for m in range(2)]
    order = np.argsort(energy)[::-1]
    np.testing.assert_array_equal(s.keypoint, ref.keypoint[order])
    assert s.label is None and "setup" not in s.meta  # a non-NTU file name gives no label
    # with room for three the still body is kept in a third slot
    assert read_ntu_skeleton(tmp_path / "x.skeleton", max_bodies=3).keypoint.shape[0] == 3


def test_id_change_continues_in_same_slot(realdata, tmp_path):
    fr = _frames(realdata / "S001C001P001R001A011.skeleton")
    frames = [bodies if t < 40 else [_with_id(bodies[0], 99)] for t, bodies in enumerate(fr)]
    s = read_ntu_skeleton(_write(tmp_path / "S001C001P001R001A011.skeleton", frames), max_bodies=1)
    ref = read_ntu_skeleton(realdata / "S001C001P001R001A011.skeleton")
    np.testing.assert_array_equal(s.keypoint, ref.keypoint)
    assert sorted(s.meta["body_ids"][0]) == sorted([99, ref.meta["body_ids"][0][0]])
    assert s.meta["dropped_body_ids"] == []


def test_same_id_twice_in_a_frame(realdata, tmp_path):
    fr = _frames(realdata / "S001C001P001R001A011.skeleton")
    frames = [bodies + bodies if t < 10 else bodies for t, bodies in enumerate(fr)]
    s = read_ntu_skeleton(_write(tmp_path / "S001C001P001R001A011.skeleton", frames))
    ref = read_ntu_skeleton(realdata / "S001C001P001R001A011.skeleton")
    assert s.keypoint.shape == (2,) + ref.keypoint.shape[1:]
    np.testing.assert_array_equal(s.keypoint[0], ref.keypoint[0])
    np.testing.assert_array_equal(s.keypoint[1, :10], ref.keypoint[0, :10])
    assert (s.keypoint[1, 10:] == 0).all() and s.meta["body_ids"] == ref.meta["body_ids"] * 2


def test_no_body_at_all(tmp_path):
    p = tmp_path / "S001C002P005R002A008.skeleton"
    p.write_bytes(b"3\r\n0\r\n0\r\n0\r\n")
    with pytest.raises(SkeletonFormatError, match="no frame holds a body"):
        read_ntu_skeleton(p)
    assert is_missing_skeleton(p, "ntu60")


def test_binary_garbage(tmp_path):
    p = tmp_path / "g.skeleton"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SkeletonFormatError, match="ASCII"):
        read_ntu_skeleton(p)


@settings(max_examples=25, deadline=None)
@given(counts=st.lists(st.integers(0, 2), min_size=1, max_size=8).filter(lambda c: sum(c) > 0),
       seed=st.integers(0, 2**31 - 1))
def test_roundtrip_property(tmp_path_factory, counts, seed):
    """Random body counts per frame (0, 1, 2) with fixed ids per position: reader == reference."""
    rng = np.random.default_rng(seed)
    out = [str(len(counts))]
    for nb in counts:
        out.append(str(nb))
        for m in range(nb):
            out.append(f"{72057594037900000 + m} 0 1 1 1 1 0 0.1 -0.2 2")
            out.append("25")
            for _ in range(25):
                xyz = rng.uniform(-2, 4, 3)
                out.append(" ".join(f"{x:.7f}" for x in xyz) + " 200 100 900 500 0.1 0.2 0.3 0.4 2")
    text = "\r\n".join(out) + "\r\n"
    p = tmp_path_factory.mktemp("ntu") / "h.skeleton"
    p.write_bytes(text.encode())
    s = read_ntu_skeleton(p)
    ref, ids = _reference(text)
    assert s.keypoint.shape == (len(ids), len(counts), 25, 3)
    np.testing.assert_allclose(s.keypoint, ref[: len(ids)], rtol=1e-6, atol=1e-6)


def test_missing_lists():
    assert len(NTU60_MISSING_SKELETONS) == 302 and len(NTU120_MISSING_SKELETONS) == 535
    assert NTU60_MISSING_SKELETONS < NTU120_MISSING_SKELETONS
    for name in ("S001C002P005R002A008", "S017C003P020R001A059", "S008C003P007R001A029"):
        assert name in NTU60_MISSING_SKELETONS
    for name in ("S019C001P046R001A075", "S032C003P067R002A077", "S029C003P051R002A110"):
        assert name in NTU120_MISSING_SKELETONS and name not in NTU60_MISSING_SKELETONS
    assert all(parse_ntu_name(n).setup <= 32 for n in NTU120_MISSING_SKELETONS)
    assert not is_missing_skeleton("S001C001P001R001A011.skeleton")
    with pytest.raises(ValueError, match="ntu60"):
        is_missing_skeleton("S001C001P001R001A011", "ntu90")


def test_splits():
    assert parse_ntu_name("/x/S012C003P025R002A060.skeleton").label == 59
    assert len(NTU120_XSUB_TRAIN_SUBJECTS) == 53
    assert ntu_split("S001C001P001R001A001", "ntu60-xsub") == "train"
    assert ntu_split("S001C001P003R001A001", "ntu60-xsub") == "val"
    assert ntu_split("S001C001P001R001A001", "ntu60-xview") == "val"
    assert ntu_split("S001C002P003R001A001", "ntu60-xview") == "train"
    assert ntu_split("S001C003P003R001A001", "ntu60-xview") == "train"
    assert ntu_split("S018C001P045R001A061", "ntu60-xsub") is None  # NTU-120 only
    assert ntu_split("S018C001P045R001A061", "ntu120-xsub") == "train"
    assert ntu_split("S018C001P044R001A061", "ntu120-xsub") == "val"
    assert ntu_split("S018C001P044R001A061", "ntu120-xset") == "train"
    assert ntu_split("S017C001P044R001A061", "ntu120-xset") == "val"
    assert ntu_split("S001C002P005R002A008", "ntu60-xview") is None  # missing skeleton
    assert ntu_split("S019C001P046R001A075", "ntu120-xset") is None
    got = ntu_split_names(["a/S001C001P001R001A001.skeleton", "S001C001P003R001A001", "S019C001P001R001A100"],
                          "ntu60-xsub")
    assert got == {"train": ["S001C001P001R001A001"], "val": ["S001C001P003R001A001"]}
    with pytest.raises(ValueError, match="ntu60-xsub"):
        ntu_split("S001C001P001R001A001", "ntu60-xset")
    with pytest.raises(ValueError, match="SsssCcccPpppRrrrAaaa"):
        parse_ntu_name("A001.skeleton")


def test_split_counts_over_full_grid():
    """Every (setup, camera, performer, replication) of one action: the rules take the expected shares."""
    names = [f"S{s:03d}C{c:03d}P{p:03d}R{r:03d}A001" for s in range(1, 33) for c in (1, 2, 3)
             for p in range(1, 107) for r in (1, 2)]
    xset = ntu_split_names(names, "ntu120-xset")
    assert len(xset["train"]) == 16 * 3 * 106 * 2 - sum(
        1 for n in NTU120_MISSING_SKELETONS if n.endswith("A001") and int(n[1:4]) % 2 == 0)
    xview = ntu_split_names(names, "ntu60-xview")
    assert all(parse_ntu_name(n).camera == 1 for n in xview["val"])
    assert all(parse_ntu_name(n).setup <= 17 for n in xview["train"] + xview["val"])
