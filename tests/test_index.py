import numpy as np
import pytest

from imgsearch.errors import IndexFileError
from imgsearch.index import VectorIndex


def data(n, d, seed=0, clusters=50):
    """Seeded vectors around ``clusters`` centres, like codes of real photos."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 3
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d))).astype(np.float32)


def brute_force(x, ids, q, k):
    d = np.linalg.norm(q[:, None, :] - x[None, :, :], axis=-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), ids[order]


def test_exact_search_equals_numpy_brute_force():
    x, q = data(2000, 16), data(50, 16, seed=1)
    ids = np.arange(2000) * 7 + 3
    index = VectorIndex.build(x, ids, exact_threshold=10_000, nprobe=1)
    assert index.index_type == "flat"
    dist, got = index.search(q, 10)
    want_d, want_i = brute_force(x, ids, q, 10)
    np.testing.assert_array_equal(got, want_i)
    np.testing.assert_allclose(dist, want_d, rtol=1e-4, atol=1e-4)


def recall_at_10(index, exact, q):
    _, approx = index.search(q, 10)
    _, truth = exact.search(q, 10)
    return np.mean([len(set(a) & set(t)) / 10 for a, t in zip(approx, truth)])


def test_ivf_above_threshold_reaches_stated_recall():
    # docs/BENCHMARKS.md states recall@10 >= 0.95 at the default nprobe (32)
    x, q = data(30_000, 32), data(200, 32, seed=1)
    ids = np.arange(30_000)
    ivf = VectorIndex.build(x, ids, exact_threshold=10_000, nprobe=32)
    exact = VectorIndex.build(x, ids, exact_threshold=10**9, nprobe=32)
    assert ivf.index_type == "ivf-flat" and ivf.ntotal == 30_000
    assert recall_at_10(ivf, exact, q) >= 0.95


@pytest.mark.parametrize("threshold", [10**9, 500])
def test_upsert_remove_and_ids(threshold):
    x = data(2000, 8)
    index = VectorIndex.build(x, np.arange(2000), exact_threshold=threshold, nprobe=64)
    assert index.index_type == ("ivf-flat" if threshold == 500 else "flat")
    assert index.remove([0, 1, 5000]) == 2
    index.upsert(x[10:12] + 100, [10, 11])  # replaced, not duplicated
    assert index.ntotal == 1998
    np.testing.assert_array_equal(index.ids(), np.arange(2, 2000))
    np.testing.assert_allclose(index.vectors([10]), x[10:11] + 100)
    _, got = index.search(x[10:11] + 100, 1)
    assert got[0, 0] == 10


def test_rebalance_switches_index_type_across_threshold():
    x = data(3000, 8)
    flat = VectorIndex.build(x[:100], np.arange(100), exact_threshold=1000, nprobe=8)
    flat.upsert(x[100:], np.arange(100, 3000))
    ivf = flat.rebalanced(exact_threshold=1000, nprobe=8)
    assert (flat.index_type, ivf.index_type, ivf.ntotal) == ("flat", "ivf-flat", 3000)
    np.testing.assert_array_equal(ivf.ids(), np.arange(3000))
    assert ivf.rebalanced(1000, 8) is ivf
    assert ivf.rebalanced(10_000, 8).index_type == "flat"


def test_short_lists_and_k_larger_than_index():
    index = VectorIndex.build(data(3, 4), [5, 6, 7], exact_threshold=100, nprobe=1)
    dist, ids = index.search(data(1, 4, seed=2), 10)
    assert ids.shape == (1, 3) and set(ids[0]) == {5, 6, 7}
    assert np.all(np.diff(dist[0]) >= 0)


def test_save_load_round_trip_and_corrupt_file(tmp_path):
    x = data(500, 8)
    index = VectorIndex.build(x, np.arange(500), exact_threshold=100, nprobe=4)
    index.save(tmp_path / "i.faiss")
    assert not list(tmp_path.glob(".*tmp"))  # written under a temporary name, then renamed
    again = VectorIndex.load(tmp_path / "i.faiss", nprobe=4)
    np.testing.assert_array_equal(again.search(x[:5], 5)[1], index.search(x[:5], 5)[1])
    (tmp_path / "bad.faiss").write_bytes(b"garbage" * 10)
    with pytest.raises(IndexFileError, match=r"unreadable.*--rebuild"):
        VectorIndex.load(tmp_path / "bad.faiss")
    with pytest.raises(IndexFileError, match="missing"):
        VectorIndex.load(tmp_path / "none.faiss")
