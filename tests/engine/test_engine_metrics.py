"""Metrics, multi-clip averaging, score files and J/B/JM/BM fusion against reference computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyg_sparse_stgcn.engine.evaluate import fuse_score_files, predict, save_scores
from pyg_sparse_stgcn.engine.metrics import (
    average_clips,
    classification_metrics,
    confusion_matrix,
    fuse_scores,
    mean_class_accuracy,
    top_k_accuracy,
)


def ref_topk(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    hits = 0
    for s, y in zip(scores, labels):
        order = sorted(range(len(s)), key=lambda c: -s[c])  # distinct scores: ties do not arise
        hits += y in order[:k]
    return hits / len(labels)


def ref_mean_class(scores: np.ndarray, labels: np.ndarray) -> float:
    pred = scores.argmax(1)
    accs = [np.mean(pred[labels == c] == c) for c in np.unique(labels)]
    return float(np.mean(accs))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), c=st.integers(2, 9), seed=st.integers(0, 10_000))
def test_topk_and_mean_class_match_reference(n, c, seed):
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n * c).reshape(n, c).astype(np.float32)  # distinct values
    labels = rng.integers(0, c, n)
    s, y = torch.from_numpy(scores), torch.from_numpy(labels)
    for k in (1, 2, 5):
        assert top_k_accuracy(s, y, k) == pytest.approx(ref_topk(scores, labels, k))
    assert mean_class_accuracy(s, y) == pytest.approx(ref_mean_class(scores, labels))
    cm = confusion_matrix(s.argmax(1), y, c)
    assert cm.sum() == n and cm.trace().item() == pytest.approx(top_k_accuracy(s, y, 1) * n)
    # monotone in k, all fractions
    assert 0 <= top_k_accuracy(s, y, 1) <= top_k_accuracy(s, y, 2) <= top_k_accuracy(s, y, c) == 1.0


def test_confusion_matrix_layout():
    cm = confusion_matrix(torch.tensor([0, 2, 2, 1]), torch.tensor([0, 1, 2, 1]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]  # row = true class, column = prediction


def test_mean_class_accuracy_differs_from_top1_on_imbalance():
    y = torch.tensor([0, 0, 0, 0, 1])
    s = torch.tensor([[1.0, 0.0]] * 5)
    assert top_k_accuracy(s, y) == pytest.approx(0.8)
    assert mean_class_accuracy(s, y) == pytest.approx(0.5)


def test_average_clips_prob_is_softmax_mean():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3 * 4, 5, generator=g)
    got = average_clips(logits, 4, "prob")
    ref = np.stack([np.mean([np.exp(r) / np.exp(r).sum() for r in logits[i * 4:(i + 1) * 4].numpy()], 0)
                    for i in range(3)])
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5)
    np.testing.assert_allclose(average_clips(logits, 4, "score").numpy(),
                               logits.view(3, 4, 5).mean(1).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="num_clips"):
        average_clips(logits, 5)
    with pytest.raises(ValueError, match="prob"):
        average_clips(logits, 4, "max")


def test_predict_multiclip_averages_per_sample():
    class M(torch.nn.Module):
        def forward(self, x):  # (N, nc, M, T, V, C) -> (N*nc, 3)
            return x.flatten(2)[..., :3].reshape(-1, 3)

    x = torch.randn(4, 2, 1, 1, 1, 3)
    y = torch.tensor([0, 1, 2, 0])
    scores, labels, ids = predict(M(), [(x[:2], y[:2]), (x[2:], y[2:])])
    ref = x.view(4, 2, 3).softmax(-1).mean(1)
    torch.testing.assert_close(scores, ref)
    assert labels.tolist() == y.tolist() and ids == ["0", "1", "2", "3"]


def test_fusion_2211_against_manual(tmp_path):
    g = torch.Generator().manual_seed(1)
    n, c = 20, 6
    labels = torch.randint(0, c, (n,), generator=g)
    ids = [f"s{i}" for i in range(n)]
    streams = [torch.rand(n, c, generator=g).softmax(1) for _ in range(4)]
    paths = []
    for k, s in enumerate(streams):
        perm = torch.randperm(n, generator=g)  # files may list samples in different orders
        p = tmp_path / f"{k}.pt"
        save_scores(p, s[perm], labels[perm], [ids[i] for i in perm])
        paths.append(p)
    out = fuse_score_files(paths)  # 4 streams: PYSKL 2:2:1:1 by default
    order = [ids.index(i) for i in out["ids"]]  # fused rows follow the first file's order
    ref = (2 * streams[0] + 2 * streams[1] + streams[2] + streams[3])[order]
    torch.testing.assert_close(out["scores"], ref)
    assert out["labels"].tolist() == labels[order].tolist()
    assert out["top1"] == pytest.approx(top_k_accuracy(ref, labels[order]))
    assert [s["coefficient"] for s in out["streams"]] == [2.0, 2.0, 1.0, 1.0]
    torch.testing.assert_close(fuse_scores(streams[:2], [1, 3]), streams[0] + 3 * streams[1])


def test_fusion_rejects_mismatched_files(tmp_path):
    save_scores(tmp_path / "a.pt", torch.rand(3, 2), torch.tensor([0, 1, 0]), ["a", "b", "c"])
    save_scores(tmp_path / "b.pt", torch.rand(3, 2), torch.tensor([0, 1, 0]), ["a", "b", "d"])
    save_scores(tmp_path / "c.pt", torch.rand(3, 2), torch.tensor([1, 1, 0]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="different samples"):
        fuse_score_files([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(ValueError, match="labels"):
        fuse_score_files([tmp_path / "a.pt", tmp_path / "c.pt"])
    with pytest.raises(ValueError, match="no score file"):
        fuse_score_files([tmp_path / "a.pt", tmp_path / "zz"])


def test_classification_metrics_validates_input():
    with pytest.raises(ValueError, match="labels must lie"):
        classification_metrics(torch.rand(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"\(N, num_classes\)"):
        classification_metrics(torch.rand(2), torch.tensor([0, 1]))
