import numpy as np
import pytest

from imgsearch.evaluate import (
    average_precision,
    knn_accuracy,
    mean_average_precision,
    precision_at_k,
    recall_at_k,
    relevance,
)

# Two hand-built rankings of 5 neighbours; 3 relevant items exist per query in the database.
REL = np.array([[1, 0, 1, 0, 0],
                [0, 1, 1, 0, 1]], dtype=bool)


def test_precision_and_recall_by_hand():
    assert precision_at_k(REL, 1) == pytest.approx((1 + 0) / 2)
    assert precision_at_k(REL, 3) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert precision_at_k(REL) == pytest.approx((2 / 5 + 3 / 5) / 2)
    assert recall_at_k(REL, [3, 3], 3) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert recall_at_k(REL, [3, 3]) == pytest.approx((2 / 3 + 3 / 3) / 2)


def test_average_precision_by_hand():
    # query 0: hits at ranks 1 and 3 -> (1/1 + 2/3) / 2 retrieved, or / 3 in the database
    # query 1: hits at ranks 2, 3, 5 -> (1/2 + 2/3 + 3/5) / 3
    ap_retrieved = average_precision(REL)
    np.testing.assert_allclose(ap_retrieved, [(1 + 2 / 3) / 2, (1 / 2 + 2 / 3 + 3 / 5) / 3])
    ap_database = average_precision(REL, n_relevant=[3, 3])
    np.testing.assert_allclose(ap_database, [(1 + 2 / 3) / 3, (1 / 2 + 2 / 3 + 3 / 5) / 3])
    np.testing.assert_allclose(average_precision(REL, k=2), [1.0, 0.5])
    assert mean_average_precision(REL, [3, 3]) == pytest.approx(ap_database.mean())


def test_perfect_and_empty_rankings():
    assert mean_average_precision(np.ones((3, 4), bool), [4, 4, 4]) == 1.0
    assert mean_average_precision(np.zeros((2, 4), bool)) == 0.0


def test_relevance_and_knn_accuracy():
    neighbours = np.array([[1, 2, 2, 3], [0, 0, 1, 1], [5, 4, 4, 5]])
    queries = np.array([2, 1, 5])
    assert relevance(neighbours, queries).sum() == 2 + 2 + 2
    # k=4: 2 wins (right); tie 0/1 -> 0, reached first (wrong); tie 5/4 -> 5 (right)
    assert knn_accuracy(neighbours, queries, 4) == pytest.approx(2 / 3)
    # k=1: 1, 0, 5 -> only the last is right; k=3: 2 (right), 0 (wrong), 4 (wrong)
    assert knn_accuracy(neighbours, queries, 1) == pytest.approx(1 / 3)
    assert knn_accuracy(neighbours, queries, 3) == pytest.approx(1 / 3)


def test_shape_checks():
    with pytest.raises(ValueError):
        precision_at_k(np.ones(3, bool))
    with pytest.raises(ValueError):
        precision_at_k(REL, 6)


def test_psnr_known_answer():
    from imgsearch.evaluate import psnr

    a = np.zeros((2, 4, 4, 3))
    b = np.full_like(a, 0.1)  # MSE 0.01: 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == 100.0  # exact: capped, so that JSON can hold it
    with pytest.raises(ValueError):
        psnr(a, b[:1])
