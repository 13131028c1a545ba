import numpy as np
import pytest

from imgsearch.errors import IndexFileError
from imgsearch.index import GroundTruth, IndexPlan, VectorIndex, plan_index


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
    index = VectorIndex.exact(x, ids)
    assert index.index_type == "flat" and index.recall == 1.0
    dist, got = index.search(q, 10)
    want_d, want_i = brute_force(x, ids, q, 10)
    np.testing.assert_array_equal(got, want_i)
    np.testing.assert_allclose(dist, want_d, rtol=1e-4, atol=1e-4)


def recall_at_10(index, exact, q):
    _, approx = index.search(q, 10)
    _, truth = exact.search(q, 10)
    return np.mean([len(set(a) & set(t)) / 10 for a, t in zip(approx, truth)])


def inverted(x, ids, exact_max):
    """The index the planner chooses for these codes, built as a build does: trained on the
    codes, filled, its nprobe tuned against exact search for a sample of them."""
    plan = plan_index(len(x), x.shape[1], exact_max=exact_max)
    index = VectorIndex.create(plan, x.shape[1], x)
    index.add(x, ids)
    pick = np.random.default_rng(0).choice(len(x), 200, replace=False)
    truth = GroundTruth(x[pick], own=np.asarray(ids)[pick])
    truth.add(x, ids)
    index.tune(truth)
    return index


def test_ivf_above_threshold_reaches_stated_recall():
    # the planner's rule: nprobe tuned to recall@10 >= 0.95 on codes of the index; checked
    # here on 200 codes of the same collection that are not in it (new photos like the rest)
    both = data(30_200, 32)
    x, q = both[:30_000], both[30_000:]
    ids = np.arange(30_000)
    ivf = inverted(x, ids, exact_max=10_000)
    assert ivf.index_type == "ivf-flat" and ivf.ntotal == 30_000 and ivf.recall >= 0.95
    assert recall_at_10(ivf, VectorIndex.exact(x, ids), q) >= 0.95


@pytest.mark.parametrize("threshold", [10**9, 500])
def test_upsert_remove_and_ids(threshold):
    x = data(2000, 8)
    index = inverted(x, np.arange(2000), exact_max=threshold)
    assert index.index_type == ("ivf-flat" if threshold == 500 else "flat")
    if index.nprobe is not None:
        index.index.nprobe = index.index.nlist  # every list: the replaced code must be found
    assert index.remove([0, 1, 5000]) == 2
    index.upsert(x[10:12] + 100, [10, 11])  # replaced, not duplicated
    assert index.ntotal == 1998
    np.testing.assert_array_equal(index.ids(), np.arange(2, 2000))
    np.testing.assert_allclose(index.vectors([10]), x[10:11] + 100)
    _, got = index.search(x[10:11] + 100, 1)
    assert got[0, 0] == 10


def test_an_index_matches_the_plan_of_its_size_until_it_crosses_a_threshold():
    x = data(3000, 8)
    flat = VectorIndex.exact(x[:100], np.arange(100))
    assert flat.matches(plan_index(100, 8, exact_max=1000))
    flat.upsert(x[100:], np.arange(100, 3000))  # grown past the exact threshold
    grown = plan_index(3000, 8, exact_max=1000)
    assert grown.index_type == "ivf-flat" and not flat.matches(grown)
    ivf = inverted(x, np.arange(3000), exact_max=1000)
    assert ivf.matches(grown) and ivf.matches(plan_index(9000, 8, exact_max=1000))
    assert not ivf.matches(plan_index(900, 8, exact_max=1000))  # shrunk below it
    assert not ivf.matches(IndexPlan("ivf-pq", 16, 4))


def test_short_lists_and_k_larger_than_index():
    index = VectorIndex.exact(data(3, 4), [5, 6, 7])
    dist, ids = index.search(data(1, 4, seed=2), 10)
    assert ids.shape == (1, 3) and set(ids[0]) == {5, 6, 7}
    assert np.all(np.diff(dist[0]) >= 0)


def test_save_load_round_trip_and_corrupt_file(tmp_path):
    x = data(500, 8)
    index = inverted(x, np.arange(500), exact_max=100)
    index.save(tmp_path / "i.faiss")
    assert not list(tmp_path.glob(".*tmp"))  # written under a temporary name, then renamed
    again = VectorIndex.load(tmp_path / "i.faiss")
    assert again.nprobe == index.nprobe and again.recall is None  # its recall: in its state
    np.testing.assert_array_equal(again.search(x[:5], 5)[1], index.search(x[:5], 5)[1])
    (tmp_path / "bad.faiss").write_bytes(b"garbage" * 10)
    with pytest.raises(IndexFileError, match=r"unreadable.*--rebuild"):
        VectorIndex.load(tmp_path / "bad.faiss")
    with pytest.raises(IndexFileError, match="missing"):
        VectorIndex.load(tmp_path / "none.faiss")


def test_ground_truth_leaves_each_query_out_of_its_own_neighbours():
    rng = np.random.default_rng(3)
    codes = rng.normal(size=(300, 8)).astype(np.float32)
    ids = np.arange(300, dtype=np.int64) + 1
    picked = np.array([0, 7, 150, 299])
    truth = GroundTruth(codes[picked], k=5, own=ids[picked])
    for s in range(0, 300, 64):  # streamed a batch at a time, as a build does
        truth.add(codes[s : s + 64], ids[s : s + 64])
    dist = ((codes[picked][:, None, :] - codes[None, :, :]) ** 2).sum(-1)
    dist[np.arange(len(picked)), picked] = np.inf  # brute force without the query itself
    expect = ids[np.argsort(dist, axis=1)[:, :5]]
    assert (truth.ids == expect).all()
    assert truth.without_own(np.c_[ids[picked], expect]).tolist() == expect.tolist()


def test_plan_index_by_size_and_memory():
    from imgsearch.errors import ImgSearchError
    from imgsearch.index import IndexPlan, plan_index

    gib = 2**30
    assert plan_index(50_000, 256, gib) == IndexPlan("flat")
    big = plan_index(1_000_000, 256, 8 * gib)  # above the exact threshold, full codes fit
    assert big.index_type == "ivf-flat" and big.nlist == 4000
    assert plan_index(1_000_000, 256, gib // 2).index_type == "ivf-sq8"  # 1.0 GB won't fit
    pq = plan_index(1_000_000, 256, 64 * 2**20)
    assert pq.index_type == "ivf-pq" and pq.pq_m == 32  # the most bytes a code that fit
    assert pq.code_bytes(256) * 1_000_000 <= 64 * 2**20
    assert plan_index(50_000, 256, 10 * 2**20).index_type != "flat"  # exact would not fit
    with pytest.raises(ImgSearchError, match="--index-memory"):
        plan_index(1_000_000, 256, 2**20)


def test_exact_search_is_planned_by_bytes_not_count():
    """A query scans at most EXACT_BYTES exactly: 100,000 codes of 256 floats, but only 8,333
    of `pixels`' 3,072, so its cold query stays sub-second at 100,000 photos."""
    from imgsearch.index import EXACT_BYTES, plan_index

    gib = 2**30
    assert plan_index(100_000, 256, 8 * gib).index_type == "flat"
    assert plan_index(8_000, 3072, 8 * gib).index_type == "flat"
    wide = plan_index(100_000, 3072, 8 * gib)
    assert wide.index_type == "ivf-flat"
    assert 4 * 3072 * 100_000 > EXACT_BYTES >= 4 * 256 * 100_000


@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-sq8", "ivf-pq"])
def test_every_inverted_kind_adds_removes_tunes_and_reloads(kind, tmp_path):
    from imgsearch.index import IndexPlan

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(40, 32)).astype(np.float32) * 4
    codes = (centres[rng.integers(0, 40, 3000)] + rng.normal(size=(3000, 32))).astype(
        np.float32)
    ids = np.arange(3000, dtype=np.int64) + 10
    index = VectorIndex.create(IndexPlan(kind, nlist=16, pq_m=8), 32, codes)
    assert index.index_type == kind
    index.add(codes[:2500], ids[:2500])
    index.add(codes[2500:], ids[2500:])  # incremental
    pick = rng.choice(3000, 100, replace=False)
    truth = GroundTruth(codes[pick], own=ids[pick])
    truth.add(codes, ids)
    recall = index.tune(truth)
    assert recall == index.recall and index.nprobe is not None
    assert recall >= (0.95 if kind != "ivf-pq" else 0.5)  # PQ's 8 bytes a code are lossy
    gone = ids[:100]
    assert index.remove(gone) == 100 and index.ntotal == 2900
    _, found = index.search(codes[:100], 10)
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    index.upsert(codes[2000:2005], ids[200:205])  # replaced, under the same ids
    assert index.ntotal == 2900
    _, top = index.search(codes[2000:2005], 2)  # each now has a twin (quantised alike)
    assert all({int(a), int(b)} <= set(row.tolist())
               for a, b, row in zip(ids[200:205], ids[2000:2005], top))
    index.save(tmp_path / "i.faiss")
    for mmap in (False, True):
        back = VectorIndex.load(tmp_path / "i.faiss", mmap=mmap)
        assert back.index_type == kind and back.ntotal == 2900 and back.nprobe == index.nprobe
        assert (back.search(codes[300:310], 5)[1] == index.search(codes[300:310], 5)[1]).all()
