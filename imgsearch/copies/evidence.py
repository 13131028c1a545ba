"""The same-picture evidence of one image, computed once while it is decoded at index time and
stored with it: its matching.Features in a compact, versioned byte format.

What is stored, and why (docs/BENCHMARKS.md, "Stored features", measures size and cost):

- the ORB keypoints of the picture and of its mirror image (matching.py finds a mirrored
  copy only through the mirror image's descriptors), at most STORED_KEYPOINTS of each (as
  many as matching finds: fewer lose copies, docs/BENCHMARKS.md), positions as 16-bit fixed
  point (1/64 pixel; matching's tolerance is 6 pixels), descriptors as they are (32 bytes);
- the grey picture that shared areas and dense maps are measured on (long side GREY_SIDE),
  losslessly (PNG): a JPEG of quality 90 saved 6 KiB a photo but lost 0.4 points of the copies
  proven between two stored pictures (docs/BENCHMARKS.md);
- the colour picture hues are compared on (HUE_SIDE), as whole units of Lab a* and b* (the
  hue test's chroma threshold is 12 of them);
- the frame: the picture's size, and where its content lies in the file (content_box).

``pack`` and ``unpack`` are exact inverses up to that rounding, tested; a blob of another
FEATURES_VERSION is never unpacked (the next ``imgsearch index`` computes it again).
"""

from __future__ import annotations

import logging
import struct

import numpy as np

from . import matching
from .matching import Features, Keypoints, Match

LOG = logging.getLogger(__name__)

FEATURES_VERSION = 1
#: The version of a stored verdict on a pair (pack_match): raise it with any change to
#: matching.py's rules or to FEATURES_VERSION, and every pair is verified again.
MATCH_VERSION = 2
#: The version under which a refusal by keypoints alone is stored (matching.match with
#: dense=False): a pair proposed later by codes close enough is matched again, whole.
KEYPOINTS_VERSION = 1000 + MATCH_VERSION
STORED_KEYPOINTS = 500  # of each orientation (matching.N_FEATURES finds at most 500)
GREY_QUALITY = 100  # JPEG quality of the stored grey picture; 100: lossless (PNG)
_XY = 64.0  # fixed point of keypoint positions: 1/64 pixel, up to 1023 pixels
_HEAD = struct.Struct("<BHHHHBBfffffI")  # version, n direct, n mirrored, width, height,
#                                          chroma h, w, content, frame (4), grey bytes


def pack(f: Features) -> bytes:
    """The compact bytes of ``f`` (keypoints beyond STORED_KEYPOINTS dropped)."""
    import cv2

    d, m = _cap(f.direct), _cap(f.mirrored)
    ok, grey = (cv2.imencode(".png", f.grey, [cv2.IMWRITE_PNG_COMPRESSION, 9])
                if GREY_QUALITY >= 100 else  # lossless
                cv2.imencode(".jpg", f.grey, [cv2.IMWRITE_JPEG_QUALITY, GREY_QUALITY]))
    if not ok:
        raise ValueError("the grey picture could not be encoded")
    ch, cw = f.chroma.shape[:2]
    head = _HEAD.pack(FEATURES_VERSION, len(d.points), len(m.points), *f.size, ch, cw,
                      f.content, *f.frame, len(grey))
    chroma = np.clip(np.round(f.chroma), -128, 127).astype(np.int8)
    return b"".join([head, _xy(d), d.descriptors.tobytes(), _xy(m), m.descriptors.tobytes(),
                     grey.tobytes(), chroma.tobytes()])


def _open(blob: bytes):
    """(head, take): the head of a stored blob (``_HEAD``'s fields) and ``take(dtype,
    shape)``, which reads the parts after it in ``pack``'s order; ValueError for bytes of
    another version."""
    if not blob or blob[0] != FEATURES_VERSION:
        raise ValueError(f"stored features of version {blob[0] if blob else None}, this "
                         f"imgsearch reads version {FEATURES_VERSION}")
    at = _HEAD.size

    def take(dtype, shape) -> np.ndarray:
        nonlocal at
        count = int(np.prod(shape))
        out = np.frombuffer(blob, dtype, count=count, offset=at).reshape(shape)
        at += count * np.dtype(dtype).itemsize
        return out

    return _HEAD.unpack_from(blob), take


def unpack(blob: bytes) -> Features:
    """The Features that ``pack`` stored; ValueError for bytes of another version."""
    import cv2

    (_, nd, nm, w, h, ch, cw, content, x0, y0, x1, y1, ng), take = _open(blob)

    def keypoints(n: int) -> Keypoints:
        xy = take(np.uint16, (n, 2)).astype(np.float32) / _XY
        return Keypoints(xy, take(np.uint8, (n, 32)).copy())

    direct, mirrored = keypoints(nd), keypoints(nm)
    grey = cv2.imdecode(take(np.uint8, (ng,)), cv2.IMREAD_GRAYSCALE)
    chroma = take(np.int8, (ch, cw, 2)).astype(np.float32)
    return Features((w, h), direct, mirrored, grey, chroma, content, (x0, y0, x1, y1))


_MATCH = struct.Struct("<?H2f??9d2f")  # same, inliers, shared a b, mirrored, has a map, map,
#                                       detail a b


def pack_match(m: Match) -> bytes:
    """The bytes of a verdict (the map at full precision: a keeper is decided on it)."""
    h = m.homography if m.homography is not None else (0.0,) * 9
    return _MATCH.pack(m.same, m.inliers, m.shared_a, m.shared_b, m.mirrored,
                       m.homography is not None, *h, m.detail_a, m.detail_b)


def unpack_match(blob: bytes) -> Match:
    same, inliers, sa, sb, mirrored, has, *rest = _MATCH.unpack(blob)
    h, (da, db) = tuple(rest[:9]), rest[9:]
    return Match(same, inliers, sa, sb, mirrored, h if has else None, da, db)


def descriptors(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(direct, mirrored): the ORB descriptors ((n, 32) uint8) of both orientations in a
    stored blob, read without unpacking the rest (candidates.votes reads every image's)."""
    (_, nd, nm, *_), take = _open(blob)
    take(np.uint16, (nd, 2))  # positions: not needed here
    direct = take(np.uint8, (nd, 32))
    take(np.uint16, (nm, 2))
    return direct, take(np.uint8, (nm, 32))


def _cap(k: Keypoints) -> Keypoints:
    """The first STORED_KEYPOINTS keypoints, in matching's order (RANSAC draws from it)."""
    if len(k.points) <= STORED_KEYPOINTS:
        return k
    return Keypoints(k.points[:STORED_KEYPOINTS], k.descriptors[:STORED_KEYPOINTS])


def _xy(k: Keypoints) -> bytes:
    return np.clip(np.round(k.points * _XY), 0, 65535).astype(np.uint16).tobytes()


def file_features(source) -> Features | None:
    """matching.load_features of an image file (a path or a file object), or None where it
    is gone or cannot be decoded for them (it is then never a proven copy of anything)."""
    try:
        return matching.load_features(source)
    except Exception as e:  # noqa: BLE001 - a file gone or unreadable since it was indexed
        LOG.debug("no features for %s: %s", getattr(source, "name", source), e)
        return None


def compute(source) -> bytes | None:
    """The packed features of an image file (file_features), or None."""
    f = file_features(source)
    return None if f is None else pack(f)


def read(blob: bytes | None) -> Features | None:
    """The features of a stored blob, None for an image stored without any."""
    return None if blob is None else unpack(blob)


class Stored:
    """The stored features of catalog ids, read from ``catalog`` (catalog.Catalog) in
    batches: ``get(ids)`` -> {id: Features or None} for the ids that have them stored (None:
    stored as having none); ids indexed without features are left out, for the caller to
    decode from their files."""

    def __init__(self, catalog):
        self.catalog = catalog
        self.path = getattr(catalog, "path", None)  # the catalog file a worker can open

    def lacking(self, ids) -> set[int]:
        """The ``ids`` indexed without stored features (ids only: no blob is read)."""
        return set(ids) & set(self.catalog.lacking_features(FEATURES_VERSION))

    def matches(self, pairs) -> dict[tuple[int, int], tuple[Match, bool]]:
        """(a, b) -> (stored verdict, whole) on each of ``pairs`` (a < b) that has one; whole:
        found with dense maps allowed, else a refusal by keypoints alone."""
        pairs = list(pairs)
        out = {k: (unpack_match(b), False)
               for k, b in self.catalog.pairs(pairs, KEYPOINTS_VERSION).items()}
        out.update((k, (unpack_match(b), True))
                   for k, b in self.catalog.pairs(pairs, MATCH_VERSION).items())
        return out

    def save_matches(self, matches: dict[tuple[int, int], tuple[Match, bool]]) -> None:
        """Store verdicts on pairs (a < b): (verdict, whole) as ``matches`` gives them."""
        for whole, version in ((True, MATCH_VERSION), (False, KEYPOINTS_VERSION)):
            self.catalog.set_pairs({k: (m.same, pack_match(m)) for k, (m, w) in
                                    matches.items() if w == whole}, version)

    def descriptors(self, ids) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """id -> (direct, mirrored) ORB descriptors (``descriptors``) of the ``ids`` stored
        with features (an image stored as having none has none: it is left out)."""
        return self._each(ids, lambda blob: None if blob is None else descriptors(blob),
                          keep_none=False)

    def get(self, ids) -> dict[int, Features | None]:
        return self._each(ids, read)

    def _each(self, ids, reader, keep_none: bool = True) -> dict:
        """id -> ``reader(blob)`` of the ``ids`` with stored features; a damaged blob is
        left out (its image decoded from the file instead), and so is a None unless
        ``keep_none``."""
        out = {}
        for i, blob in self.catalog.features(ids, FEATURES_VERSION).items():
            try:
                value = reader(blob)
            except ValueError as e:  # damaged bytes
                LOG.warning("stored features of image %d are unreadable (%s)", i, e)
                continue
            if value is not None or keep_none:
                out[i] = value
        return out
