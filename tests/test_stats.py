import numpy as np
import pytest

from imgsearch.stats import clustered_error, paired, paired_lead


def test_a_paired_lead_is_computed_as_by_hand():
    # 4 held-out images, 3 copies each: A finds 3, 2, 3, 1 of them, B 2, 2, 1, 1
    lead, se = paired_lead([3, 2, 3, 1], [2, 2, 1, 1], 3)
    assert lead == pytest.approx(3 / 12)
    # per-image differences 1, 0, 2, 0 less 3 x 0.25 each: squares 0.0625 + 0.5625 + 1.5625
    # + 0.5625 = 2.75, times C / (C - 1) = 4 / 3, root, over the 12 copies
    assert se == pytest.approx(np.sqrt(2.75 * 4 / 3) / 12)


def test_a_lead_on_the_same_copies_has_less_noise_than_two_separate_errors():
    from imgsearch.stats import standard_error

    rng = np.random.default_rng(0)
    b = rng.integers(0, 13, 30)  # 30 images x 12 copies, some easy, some hard
    a = np.minimum(b + (np.arange(30) < 11), 12)  # A finds one copy more on 11 of them
    lead, se = paired_lead(a, b, 12)
    cluster = np.repeat(np.arange(30), 12)
    each = [standard_error(np.concatenate([[1] * k + [0] * (12 - k) for k in x]), cluster)
            for x in (a, b)]
    assert lead == pytest.approx(11 / 360) and se < np.hypot(*each) / 3


def test_paired_needs_the_same_copies():
    x = {"key": "k", "copies": 3, "per_image": [3, 2, 3, 1]}
    y = {"key": "k", "copies": 3, "per_image": [2, 2, 1, 1]}
    assert paired({"ae": x, "pca": y}, "ae", "pca") == paired_lead(x["per_image"],
                                                                  y["per_image"], 3)
    assert paired({"ae": x, "pca": {**y, "key": "other"}}, "ae", "pca") is None
    assert paired({"ae": x, "pca": None}, "ae", "pca") is None
    with pytest.raises(ValueError):
        paired_lead([1, 2], [1, 2, 3], 3)


def test_one_cluster_has_no_error():
    assert np.isnan(clustered_error(np.array([3.0]), np.array([4.0])))


def test_two_measures_are_weighed_image_by_image():
    from imgsearch.stats import combined

    copies = {"key": "c", "copies": 4, "per_image": [4, 2, 0]}
    shots = {"key": "s", "copies": 2, "per_image": [1, 2, 0]}
    base = {"key": "c", "copies": 4, "per_image": [2, 2, 0]}
    base_shots = {"key": "s", "copies": 2, "per_image": [0, 0, 0]}
    # each image's rate: the mean of its two hit rates: (1 + .5) / 2, (.5 + 1) / 2, 0
    score, se = combined([copies, shots])
    assert score == pytest.approx(0.5)
    assert se == pytest.approx(np.sqrt((0.25**2 * 2 + 0.5**2) * 3 / 2) / 3)
    lead, lead_se = paired({"a": [copies, shots], "b": [base, base_shots]}, "a", "b")
    # per image: (.5 + .5) / 2, (0 + 1) / 2, 0 -> 0.5, 0.5, 0
    assert lead == pytest.approx(1 / 3)
    assert lead_se == pytest.approx(np.sqrt(((1 / 6) ** 2 * 2 + (1 / 3) ** 2) * 3 / 2) / 3)
    # one method without the second measure: no paired lead
    assert paired({"a": [copies, shots], "b": [base]}, "a", "b") is None
