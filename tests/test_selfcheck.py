"""The label-free self-check: edited copies of held-out images found among the collection."""

import numpy as np
import pytest

from imgsearch.methods.baselines import pixel_vectors
from imgsearch.selfcheck import EDITS, SelfCheck, edited_copies, nearest_neighbours

from .conftest import pattern


def images(n, size=32, offset=0):
    return np.stack([pattern(i + offset, size) for i in range(n)])


def test_edited_copies_are_distinct_edits_of_their_originals():
    x = images(5)
    copies, origin, single = edited_copies(x, 3, seed=1)
    assert single.all() and copies.shape == (15, 32, 32, 3) and copies.dtype == np.uint8
    assert origin.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    for i in range(5):  # three different edits of the same picture
        own = copies[origin == i].astype(int)
        assert len({c.tobytes() for c in own}) == 3
        assert np.abs(own - x[i]).mean() < np.abs(own - x[(i + 1) % 5]).mean()
    again, _, _ = edited_copies(x, 3, seed=1)
    np.testing.assert_array_equal(copies, again)  # seeded
    grey, _, _ = edited_copies(x[..., :1], 2)
    assert grey.shape == (10, 32, 32, 1)
    assert "mirror" in EDITS and "caption" in EDITS


def test_more_copies_than_edits_add_the_edits_at_other_strengths():
    x = images(4)
    copies, origin, single = edited_copies(x, 20, seed=2)
    assert copies.shape == (80, 32, 32, 3) and np.bincount(origin).tolist() == [20] * 4
    assert single.sum() == 4 * len(EDITS) and (~single).sum() == 4 * (20 - len(EDITS))
    for i in range(4):  # every copy of an image a different edit
        assert len({c.tobytes() for c in copies[origin == i]}) == 20
    # the usual edits are drawn as they were with 12 copies: the scores kept agree
    few, _, _ = edited_copies(x, len(EDITS), seed=2)
    np.testing.assert_array_equal(copies[single], few)
    grey, _, one = edited_copies(x[..., :1], 12)  # the 9 usual grey edits, as ever
    assert grey.shape == (36, 32, 32, 1) and one.all()
    grey, _, one = edited_copies(x[..., :1], 16)
    assert grey.shape == (64, 32, 32, 1) and (~one).sum() == 4 * 7


def test_score_is_recall_at_1_and_separates_good_codes_from_useless_ones():
    held, others = images(8), images(30, offset=100)
    check = SelfCheck(held, others, copies=4)
    pixels = check(lambda im: pixel_vectors(im, 8))
    constant = check(lambda im: np.zeros((len(im), 4), np.float32))
    assert pixels > 0.6  # distinct pictures: most copies are nearest their original
    assert constant == pytest.approx((check.truth == 0).mean())  # every tie goes to row 0


def test_nearest_neighbours_is_exact():
    rng = np.random.default_rng(0)
    db, q = rng.normal(size=(50, 6)).astype(np.float32), rng.normal(size=(9, 6))
    want = np.argmin(((q[:, None] - db[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest_neighbours(db, q.astype(np.float32), chunk=4), want)




def test_the_standard_error_counts_each_held_out_image_once():
    from imgsearch.stats import standard_error

    # 20 images x 10 copies, half the images found on every copy, half on none: as noisy as
    # 20 coin flips, not 200
    cluster = np.repeat(np.arange(20), 10)
    together = (cluster % 2 == 0).astype(float)
    assert standard_error(together, cluster) == pytest.approx(
        np.sqrt(0.25 / 20) * np.sqrt(20 / 19), rel=1e-6)
    # the same hits spread evenly over the images: no spread between them at all
    spread = (np.arange(200) % 2 == 0).astype(float)
    assert standard_error(spread, cluster) == pytest.approx(0.0, abs=1e-12)


def test_measure_gives_the_score_and_its_error():
    held, others = images(30), images(40, offset=100)
    check = SelfCheck(held, others, copies=6)
    encode = lambda im: pixel_vectors(im, 8)  # noqa: E731
    score, se = check.measure(encode)
    assert score == check(encode) and 0 < score <= 1
    assert 0 <= se < 0.2


def test_an_outcome_keeps_each_held_out_images_hits_under_the_copies_key():
    held, others = images(30), images(40, offset=100)
    check = SelfCheck(held, others, copies=6)
    hits = check.hits(*check.codes(lambda im: pixel_vectors(im, 8)))
    out = check.outcome(hits)
    assert out["copies"] == 6 and len(out["per_image"]) == 30
    assert sum(out["per_image"]) == hits.sum() and max(out["per_image"]) <= 6
    # the key names the copies and the images searched: the same check gives the same key,
    # other copies (another seed) or other distractors another one
    assert SelfCheck(held, others, copies=6).key == out["key"]
    assert SelfCheck(held, others, copies=6, seed=1).key != out["key"]
    assert SelfCheck(held, others[:20], copies=6).key != out["key"]


def test_a_small_collection_gets_twice_the_copies():
    from imgsearch.selfcheck import COPIES, SMALL_HELD, copies_for

    assert copies_for(40) == 2 * COPIES and copies_for(SMALL_HELD) == COPIES
    check = SelfCheck(images(5), images(10, offset=100))
    assert check.copies == 2 * COPIES and check.usual.sum() == 5 * COPIES


def test_other_shots_are_searched_for_their_scenes_anchor():
    from imgsearch.selfcheck import SHOTS, Shots

    held, others = images(10), images(20, offset=100)
    shots = Shots(held, others)  # few held out: two rounds of shots, as twice the copies
    assert shots.queries.shape == (10 * 2 * len(SHOTS), 32, 32, 3)
    assert shots.copies == 2 * len(SHOTS) and Shots(held, others, rounds=1).copies == len(SHOTS)
    assert len(shots.database) == 30 and shots.held == 10
    # no shot is its anchor, nor the held-out image itself
    anchors = shots.database[shots.truth].astype(int)
    assert (np.abs(shots.queries.astype(int) - anchors).mean(axis=(1, 2, 3)) > 1).all()
    pixels = shots(lambda im: pixel_vectors(im, 8))
    useless = shots(lambda im: np.random.default_rng(0).random((len(im), 4)))
    assert pixels > useless + 0.2
    # the self-check's shots are those of its own held-out images and distractors
    check = SelfCheck(held, others, copies=4)
    assert check.shots.key == shots.key and Shots(held, others, seed=1).key != shots.key
