"""Pairs marked as not duplicates: recorded, read back, normalised, written atomically."""

import json
import threading

import pytest

from imgsearch import store
from imgsearch.copies import review
from imgsearch.errors import ImgSearchError, IndexFileError


def test_dismiss_then_dismissed_round_trip(tmp_path):
    assert review.dismissed(tmp_path) == set()  # nothing recorded yet: no file needed
    assert review.dismiss(tmp_path, [9, 3, 5]) == 3
    assert review.dismissed(tmp_path) == {(3, 5), (3, 9), (5, 9)}
    assert review.dismiss(tmp_path, [5, 9, 12]) == 2  # (5, 9) was recorded already
    assert review.dismissed(tmp_path) == {(3, 5), (3, 9), (5, 9), (5, 12), (9, 12)}
    assert review.dismiss(tmp_path, [3, 9]) == 0


def test_pairs_are_normalised_and_the_file_sorted(tmp_path):
    review.dismiss(tmp_path, [40, 7, 7, 12])  # any order, repeats
    data = json.loads((tmp_path / review.FILE).read_text())
    assert data == {"pairs": [[7, 12], [7, 40], [12, 40]]}
    (tmp_path / review.FILE).write_text(json.dumps({"pairs": [[12, 7]]}))  # edited by hand
    assert review.dismissed(tmp_path) == {(7, 12)}


@pytest.mark.parametrize("ids", [[], [4], [4, 4]])
def test_a_group_of_fewer_than_two_photos_is_refused(tmp_path, ids):
    with pytest.raises(ImgSearchError, match="two photos or more"):
        review.dismiss(tmp_path, ids)
    assert not (tmp_path / review.FILE).exists()


def test_the_file_is_replaced_atomically(tmp_path, monkeypatch):
    review.dismiss(tmp_path, [1, 2])
    before = (tmp_path / review.FILE).read_bytes()

    def crash(src, dst):
        raise OSError("killed before the rename")

    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(OSError, match="killed before the rename"):
        review.dismiss(tmp_path, [3, 4])
    assert (tmp_path / review.FILE).read_bytes() == before  # the old file, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    assert review.dismissed(tmp_path) == {(1, 2)}


def test_concurrent_dismissals_all_count(tmp_path):
    groups = [[10 * n, 10 * n + 1] for n in range(16)]
    threads = [threading.Thread(target=review.dismiss, args=(tmp_path, g)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert review.dismissed(tmp_path) == {(a, b) for a, b in groups}


def test_an_unreadable_file_names_the_fix(tmp_path):
    (tmp_path / review.FILE).write_text("{not json")
    with pytest.raises(IndexFileError, match="delete it to forget"):
        review.dismissed(tmp_path)
