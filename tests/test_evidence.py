"""The stored same-picture evidence: packed and unpacked without losing what matching needs,
versioned, and read from the index instead of the files."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgsearch.copies import evidence, matching
from imgsearch.copies.verification import Verifier

from .conftest import scene


def feats(im: Image.Image) -> matching.Features:
    return matching.features(np.asarray(im.convert("RGB")))


def test_pack_and_unpack_keep_what_matching_needs():
    f = feats(scene(1))
    blob = evidence.pack(f)
    g = evidence.unpack(blob)
    assert g.size == f.size and g.frame == pytest.approx(f.frame) and g.content == f.content
    for a, b in ((f.direct, g.direct), (f.mirrored, g.mirrored)):
        np.testing.assert_array_equal(a.descriptors, b.descriptors)
        assert np.abs(a.points - b.points).max() <= 0.5 / 64  # 1/64 pixel fixed point
    assert g.grey.shape == f.grey.shape
    np.testing.assert_array_equal(g.grey, f.grey)  # lossless
    assert np.abs(g.chroma - f.chroma).max() <= 0.5 + 1e-4  # whole units of a* and b*
    assert len(blob) < f.grey.nbytes + 2 * 500 * 36 + 1024  # smaller than the arrays
    assert evidence.unpack(evidence.pack(g)).grey.shape == g.grey.shape


def test_stored_features_give_the_verdicts_of_fresh_ones():
    im = scene(2, 640, 480)
    copies = [ImageOps.mirror(im), im.rotate(90, expand=True),
              im.crop((100, 80, 540, 410)), ImageOps.expand(im, 40, fill="white")]
    stored = evidence.unpack(evidence.pack(feats(im)))
    for c in copies:
        fresh = feats(c)
        assert matching.match(feats(im), fresh).same
        assert matching.match(stored, fresh).same  # the query fresh, the candidate stored
        assert matching.match(stored, evidence.unpack(evidence.pack(fresh))).same  # both
    other = evidence.unpack(evidence.pack(feats(scene(3, 640, 480))))
    assert not matching.match(stored, other).same


def test_another_version_is_never_unpacked():
    blob = bytearray(evidence.pack(feats(scene(4))))
    blob[0] = evidence.FEATURES_VERSION + 1
    with pytest.raises(ValueError, match="version"):
        evidence.unpack(bytes(blob))
    assert evidence.read(None) is None


def test_compute_gives_none_for_a_file_it_cannot_decode(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a JPEG")
    assert evidence.compute(str(bad)) is None
    good = tmp_path / "good.png"
    scene(5).save(good)
    assert evidence.unpack(evidence.compute(str(good))).size[0] > 0


class FakeCatalog:
    def __init__(self, blobs):
        self.blobs = blobs

    def features(self, ids, version):
        return {i: self.blobs[i] for i in ids if i in self.blobs}

    def pairs(self, pairs, version):
        return {}


def test_the_verifier_reads_stored_features_and_decodes_only_the_others(tmp_path, caplog):
    paths = {}
    for i in (1, 2, 3):
        paths[i] = tmp_path / f"{i}.png"
        (scene(6) if i < 3 else scene(7)).save(paths[i])
    (tmp_path / "1.png").unlink()  # stored: its file is never read again
    blob = evidence.compute(str(paths[2]))
    stored = evidence.Stored(FakeCatalog({1: blob, 2: blob}))
    v = Verifier(lambda i: str(paths[i]), workers=1, stored=stored)
    with caplog.at_level("INFO"):
        assert v.match(1, 2).same  # both stored (1 holds 2's features: its file is gone)
        assert v.decoded == 0
        assert not v.match(1, 3).same  # 3 has none stored: decoded from its file
    assert v.decoded == 1
    assert "indexed without stored features" in caplog.text


def test_a_verdict_is_stored_at_full_precision():
    im = scene(8, 640, 480)
    m = matching.match(feats(im), feats(im.crop((100, 80, 540, 410))))
    back = evidence.unpack_match(evidence.pack_match(m))
    assert back.same and back.inliers == m.inliers and back.mirrored == m.mirrored
    assert back.homography == m.homography  # the map, to the bit: a keeper rests on it
    assert back.shared_a == pytest.approx(m.shared_a, abs=1e-6)
    assert evidence.unpack_match(evidence.pack_match(matching.NO_MATCH)) == matching.NO_MATCH


def test_pairs_are_matched_on_every_core_once_and_their_verdicts_stored(tmp_path,
                                                                         monkeypatch):
    from imgsearch.catalog import INDEXED, Catalog
    from imgsearch.copies import verification

    cat = Catalog(tmp_path / "c.db")
    # 1 and 2 are one picture (2 a mirror of 1), 3 and 4 another ...
    pictures = {i: scene(20 + (i - 1) // 2) for i in range(1, 9)}
    pictures.update({i: ImageOps.mirror(pictures[i]) for i in (1, 3, 5, 7)})
    blobs = {i: evidence.pack(feats(p)) for i, p in pictures.items()}
    cat.upsert_many([{"id": i, "path": f"/{i}.jpg", "size": 1, "mtime": 1.0,
                      "state": INDEXED, "gen": 1} for i in blobs], blobs, 1)
    pairs = [(a, b) for a in blobs for b in blobs if a < b]
    monkeypatch.setattr(verification, "PAIR_POOL_MIN", 1)
    v = Verifier(lambda i: f"/{i}.jpg", workers=2, stored=evidence.Stored(cat))
    seen = []
    v.prepare_pairs(pairs, lambda phase, done, total: seen.append((done, total)))
    assert v.verified == len(pairs) and seen[-1] == (len(pairs), len(pairs))
    proven = {p for p in pairs if v.match(*p).same}
    assert proven == {(1, 2), (3, 4), (5, 6), (7, 8)}
    assert v.match(2, 1).same and v.save() == len(pairs)
    again = Verifier(lambda i: f"/{i}.jpg", workers=2, stored=evidence.Stored(cat))
    again.prepare_pairs(pairs)
    assert again.verified == 0  # every verdict read from the index
    assert {p for p in pairs if again.match(*p).same} == proven


def test_a_refusal_by_keypoints_alone_is_matched_whole_when_a_pair_needs_it(tmp_path,
                                                                            monkeypatch):
    """A pair only local features proposed is judged by its keypoints (dense=False) and its
    refusal stored as such; asked whole later (a group's member, a close pair), it is
    matched again with dense maps, once, and that verdict stored over it."""
    from imgsearch.catalog import INDEXED, Catalog

    cat = Catalog(tmp_path / "c.db")
    blobs = {1: evidence.pack(feats(scene(30))), 2: evidence.pack(feats(scene(31)))}
    cat.upsert_many([{"id": i, "path": f"/{i}.jpg", "size": 1, "mtime": 1.0,
                      "state": INDEXED, "gen": 1} for i in blobs], blobs, 1)
    asked = []
    real = matching.match

    def spy(a, b, dense=True):
        asked.append(dense)
        return real(a, b, dense)

    monkeypatch.setattr(matching, "match", spy)

    def verifier():
        return Verifier(lambda i: f"/{i}.jpg", workers=1, stored=evidence.Stored(cat))

    v = verifier()
    v.prepare_pairs([(2, 1)], quick=[(1, 2)])
    assert asked == [False] and not v.prepared(1, 2).same and v.save() == 1
    assert cat.pairs([(1, 2)], evidence.KEYPOINTS_VERSION)
    assert not cat.pairs([(1, 2)], evidence.MATCH_VERSION)
    again = verifier()
    again.prepare_pairs([(1, 2)], quick=[(1, 2)])
    assert again.verified == 0  # the stored refusal serves a pair that may be quick
    assert not again.match(1, 2).same and again.verified == 1 and asked == [False, True]
    assert again.save() == 1 and cat.pairs([(1, 2)], evidence.MATCH_VERSION)
    third = verifier()
    third.prepare_pairs([(1, 2)])
    assert third.verified == 0 and asked == [False, True]  # whole now, never matched again
