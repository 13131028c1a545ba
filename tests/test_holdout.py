"""The self-check's draw: held-out images chosen by content, whatever their ids or order."""

from imgsearch.holdout import MIN_IMAGES, split


def keys(n, offset=0):
    return [f"{i + offset:040x}" for i in range(n)]


def test_a_stable_tenth_by_content_and_none_for_tiny_collections():
    assert split(keys(MIN_IMAGES - 1)) == ([], [])
    ids = keys(2000)
    held, rest = split(ids)
    assert 150 < len(held) < 250 and not set(held) & set(rest)
    assert len(held) + len(rest) == 2000
    grown = keys(3000)
    held_then = {ids[p] for p in held}
    assert held_then <= {grown[p] for p in split(grown)[0]}  # images added later change nothing


def test_the_same_photos_are_held_out_whatever_their_order():
    ids = keys(500)
    shuffled = ids[::-1]  # another engine numbered them the other way round
    assert {ids[p] for p in split(ids)[0]} == {shuffled[p] for p in split(shuffled)[0]}


def test_caps_on_held_and_distractors():
    held, rest = split(keys(400), max_held=5, max_distractors=30)
    assert len(held) == 5 and len(rest) == 30
    assert len(split(keys(25), fraction=0.0)[0]) == 10  # 40% of a small collection


def test_a_small_collection_holds_out_enough_to_score():
    from imgsearch.holdout import MIN_HELD

    assert MIN_HELD == 40 and len(split(keys(100))[0]) == MIN_HELD  # not 10: too few for a
    #                                                                    steady paired lead
    assert len(split(keys(30))[0]) == 12  # at most 40% of the collection
    assert len(split(keys(3000))[0]) > MIN_HELD  # the tenth, when it is more
    # another salt, another draw of the same collection
    assert split(keys(100), salt="1")[0] != split(keys(100))[0]
