"""The same picture, proven by geometry: local features matched between two images, one
geometric map fitted by RANSAC, and the share of each picture that the other explains.

Codes say two images *look* alike; this module says whether one is a copy of the other.

1. **Features** (``features``): ORB keypoints (Rublee et al., "ORB: an efficient alternative
   to SIFT or SURF", ICCV 2011; OpenCV's implementation) of the image reduced to MATCH_SIDE
   pixels on its long side, and of its mirror image, since binary descriptors are not
   mirror-invariant. ORB is oriented and multi-scale, so quarter turns, small rotations and
   crops down to half the side are matched; a small grey copy of the picture is kept for step 3.
2. **Geometry** (``match``): descriptors matched both ways with Lowe's ratio test
   (Lowe, "Distinctive image features from scale-invariant keypoints", IJCV 2004), then a
   homography fitted with RANSAC (Fischler and Bolles, CACM 1981), for the image and for its
   mirror. A homography covers crops, scaling, any rotation, borders (a crop the other way),
   a photo pasted into a larger picture or a screenshot, and a photo of a photo at an angle.
3. **Shared area** (``_shared``): the other picture is warped through the fitted map onto each
   picture's grid of cells, and a cell is *explained* when its content agrees (local normalised
   cross-correlation, or both cells flat at the same level) after the overlap's brightness and
   contrast are matched. So a caption, a sticker or a moved object makes its cells disagree.
   ``shared_a`` is the share of picture a's area that b explains, ``shared_b`` the converse:
   a crop is explained whole by its original (shared 1.0 on the crop's side), and the original
   only over the crop's area.

Two images are the **same picture** when the map rests on at least MIN_INLIERS inlier matches
and explains at least MIN_SHARED of one of them. That is what tells two photos of one scene
from a copy: a stereo pair or a second shot of a calibration board fits a homography on one
plane (a wall, the board), but the rest of the picture (the objects off that plane, the board
that moved) does not agree, so neither picture is explained as a whole. A picture with too
little texture for MIN_INLIERS matches is compared through the plain resize of one frame onto
the other (same aspect ratio only), and needs the stricter MIN_SHARED_PLAIN.

A copy also covers at least MIN_COVER of the other picture: crops are promised down to half
the side (a quarter of the area), so an object that fills a small part of a scene (a box and a
photo of a room holding it) is another photo, not a crop of it.

The thresholds are set from measurements (docs/RESULTS.md, "Verified copies"): the share of
the edited copies of scripts/evaluate_copy_detection.py that pass, and of distinct photos and
same-scene shots (the demo's calibration boards, stereo pairs) that do not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

LOG = logging.getLogger(__name__)

MATCH_SIDE = 512  # keypoints are found on the image reduced to this long side
N_FEATURES = 500
MIN_SIDE = 384  # a smaller image is enlarged to this long side first (more keypoints)
GREY_SIDE = 192  # the grey picture that shared areas are measured on
HUE_SIDE = 32  # the colour picture that hues are compared on
CELL = 8  # cells of CELL x CELL grey pixels: the resolution of a shared area
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 0.012  # inlier reprojection error, as a share of the long side (6 px at 512)
MIN_INLIERS = 15
FEW_KEYPOINTS = 150  # a picture with fewer keypoints is always compared by dense maps too
MIN_SHARED = 0.75  # a copy explains at least this share of one of the two pictures
MIN_SHARED_PLAIN = 0.9  # the same, through the plain frame-to-frame map
CELL_NCC = 0.5  # a textured cell agrees at this correlation
FLAT_STD = 0.12  # a cell is flat below this standard deviation (overlap-normalised units)
FLAT_LEVEL = 0.3  # two flat cells agree within this difference of level
DETAIL_STD = 0.1  # a cell has detail above this high-pass standard deviation
MIN_CELLS = 24  # a picture compared on fewer cells proves nothing
MIN_TEXTURED = 0.3  # a dense map must be proven on this share of textured cells
HUE_CHROMA = 12.0  # Lab chroma above which a pixel has a hue
MIN_HUE_COS = 0.8  # mean cosine of the hue difference of a copy (about 37 degrees)
MAX_LEVEL = 0.3  # a copy's mean grey level moves at most this much (of black to white)
MIN_COVER = 0.15  # a copy covers at least this share of the other picture: a crop to 39% of
#                   the side (crops to 50% are promised); an object small in a scene is not
MIN_DENSE_NCC = 0.5  # a dense map is judged only where the pictures correlate this much
SEARCH_SIDE = 96  # template placement searches the larger picture at this long side ...
SCALES = np.linspace(0.4, 0.95, 12)  # ... for the smaller at these shares of the largest fit


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # (N, 2) float32, x and y in the matched image's pixels
    descriptors: np.ndarray  # (N, 32) uint8, ORB


@dataclass(frozen=True)
class Features:
    """What matching needs of one picture: about 68 KB for a 3:2 photo (keypoints and
    descriptors of both orientations 40 KB, the grey picture 23 KB, the colours 5 KB)."""

    size: tuple[int, int]  # (width, height) of the image keypoints were found on, less its
    #                        uniform margins (the frame every map and share refers to)
    direct: Keypoints
    mirrored: Keypoints  # of the mirror image, x measured in the mirror image
    grey: np.ndarray  # (h, w) uint8, long side GREY_SIDE
    chroma: np.ndarray  # (h, w, 2) float32: Lab a* and b*, long side HUE_SIDE
    content: float = 1.0  # share of the file's area left after its uniform margins
    frame: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # that part, x0 y0 x1 y1
    #                                                                  in the file's unit frame

    @property
    def aspect(self) -> float:
        return self.size[0] / self.size[1]


@dataclass(frozen=True)
class Match:
    """The verdict on a pair (a, b) and its evidence."""

    same: bool
    inliers: int  # RANSAC inliers of the map (0 for the plain frame-to-frame map)
    shared_a: float  # share of a's area that b explains
    shared_b: float  # share of b's area that a explains
    mirrored: bool  # b matched as a mirror image
    homography: tuple[float, ...] | None  # 3x3, row-major: b's pixels -> a's, in each
    #                                        one's own [0, 1] x [0, 1] frame
    detail_a: float = 0.0  # share of a's detailed cells that b explains (borders have none)
    detail_b: float = 0.0

    @property
    def shared(self) -> float:
        return max(self.shared_a, self.shared_b)


NO_MATCH = Match(False, 0, 0.0, 0.0, False, None)


def _cv2():
    import cv2

    cv2.setNumThreads(1)  # callers parallelise over pairs; OpenCV's own pool only contends
    return cv2


def _orb(grey: np.ndarray) -> Keypoints:
    cv2 = _cv2()
    orb = cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=10)
    kps, desc = orb.detectAndCompute(grey, None)
    if desc is None or not kps:
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    return Keypoints(np.array([k.pt for k in kps], np.float32), desc)


def features(rgb: np.ndarray) -> Features:
    """Features of an (H, W, 3) uint8 RGB image (any size: it is reduced to MATCH_SIDE),
    uniform margins left out (content_box)."""
    cv2 = _cv2()
    rgb = np.ascontiguousarray(rgb)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    y0, y1, x0, x1 = content_box(grey)
    content = (y1 - y0) * (x1 - x0) / grey.size
    gh, gw = grey.shape
    rgb, grey = rgb[y0:y1, x0:x1], np.ascontiguousarray(grey[y0:y1, x0:x1])
    h, w = grey.shape
    c = HUE_SIDE / max(h, w)
    tiny = cv2.resize(rgb, (max(1, round(w * c)), max(1, round(h * c))),
                      interpolation=cv2.INTER_AREA)
    chroma = lab_ab(tiny.astype(np.float32) / 255.0)
    f = min(1.0, MATCH_SIDE / max(h, w)) if max(h, w) >= MIN_SIDE else MIN_SIDE / max(h, w)
    if f != 1.0:
        grey = cv2.resize(grey, (max(1, round(w * f)), max(1, round(h * f))),
                          interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    h, w = grey.shape
    g = GREY_SIDE / max(h, w)
    small = cv2.resize(grey, (max(1, round(w * g)), max(1, round(h * g))),
                       interpolation=cv2.INTER_AREA)
    return Features((w, h), _orb(grey), _orb(np.ascontiguousarray(grey[:, ::-1])), small,
                    np.ascontiguousarray(chroma), content,
                    (x0 / gw, y0 / gh, x1 / gw, y1 / gh))


_SRGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],  # IEC 61966-2-1, D65
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]], np.float32)
_D65 = np.array([0.950456, 1.0, 1.088754], np.float32)


def lab_ab(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 2): the CIE 1976 L*a*b* a* and b* of an (h, w, 3) sRGB picture in [0, 1], by the
    formulas OpenCV's RGB2Lab documents (sRGB gamma, D65 white). In numpy: OpenCV's first Lab
    conversion in a process builds tables for 90 ms, a tenth of a cold query; this takes 1 ms
    on the HUE_SIDE picture (within 0.3 of OpenCV's values)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (linear @ _SRGB_TO_XYZ.T) / _D65
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
                    -1).astype(np.float32)


def content_box(grey: np.ndarray, tol: float = 4.0) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the picture less its uniform margins (a white border, the bars of a
    letterbox), so that a bordered copy is matched as the picture it frames. Margins are
    trimmed only where at least half of each side remains."""
    g = grey.astype(np.float32)
    h, w = g.shape

    def margin(lines: np.ndarray) -> int:  # leading lines within tol of the first line's level
        level = np.median(lines[0])
        flat = (np.abs(lines - level).max(axis=1) <= tol)
        return int(np.argmin(flat)) if not flat.all() else len(lines)

    y0, x0 = margin(g), margin(g.T)
    y1, x1 = h - margin(g[::-1]), w - margin(g.T[::-1])
    if y1 - y0 < h / 2 or x1 - x0 < w / 2:
        return 0, h, 0, w
    return y0, y1, x0, x1


def load_features(source, side: int = MATCH_SIDE) -> Features:
    """Features of an image file (a path or a file object), decoded upright as the index
    decodes it (images.open_upright: JPEGs draft-decoded near ``side``)."""
    from ..images import open_upright

    return features(np.asarray(open_upright(source, side), np.uint8))


# -- geometry ------------------------------------------------------------------------------
def _frame(size: tuple[int, int]) -> np.ndarray:
    """The map from an image's pixels to its [0, 1] x [0, 1] frame."""
    return np.diag([1.0 / size[0], 1.0 / size[1], 1.0])


def _mirror() -> np.ndarray:
    """x -> 1 - x in the unit frame."""
    return np.array([[-1.0, 0, 1], [0, 1, 0], [0, 0, 1]])


def _matches(a: Keypoints, b: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    """Matched point pairs (pa, pb): each of a's descriptors with its nearest in b (Hamming
    distance, FAISS's exact binary search: a third of OpenCV's brute-force matcher's time),
    where it passes the ratio test (one way: RANSAC and the shared area weed out the rest)."""
    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    import faiss

    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(b.descriptors))
    d, nearest = index.search(np.ascontiguousarray(a.descriptors), 2)
    ia = np.flatnonzero(d[:, 0] < RATIO * d[:, 1])
    return a.points[ia], b.points[nearest[ia, 0]]


def _homography(pa: np.ndarray, pb: np.ndarray, side: int) -> tuple[np.ndarray | None, int]:
    """The homography taking pb to pa (pixels) by RANSAC, and its inlier count."""
    if len(pa) < MIN_INLIERS:
        return None, 0
    cv2 = _cv2()
    h, mask = cv2.findHomography(pb, pa, cv2.USAC_MAGSAC, RANSAC_PX * side, maxIters=2000,
                                 confidence=0.995)
    if h is None or mask is None:
        return None, 0
    return h, int(mask.sum())


def _sane(h: np.ndarray) -> bool:
    """A map a copy can come from: orientation kept (a mirror is matched as such), and the
    scale, in the unit frames, between 1/10 and 10 in area."""
    a = h[:2, :2] / h[2, 2]
    det = float(np.linalg.det(a))
    return 0.01 < det < 100 and abs(h[2, 0]) + abs(h[2, 1]) < 2 * abs(h[2, 2])


# -- shared area ---------------------------------------------------------------------------
def _pixel_map(unit_b_to_a: np.ndarray, shape_a: tuple, shape_b: tuple) -> np.ndarray:
    """The map between unit frames as one between the pixels of arrays of these shapes."""
    return (np.linalg.inv(_frame((shape_a[1], shape_a[0]))) @ unit_b_to_a
            @ _frame((shape_b[1], shape_b[0])))


def _warp(b: np.ndarray, m: np.ndarray, shape_a: tuple, outside: float = 0.0,
          nearest: bool = False) -> np.ndarray:
    """``b`` warped by the pixel map ``m`` onto an array of ``shape_a``; ``outside`` where
    b does not reach."""
    cv2 = _cv2()
    return cv2.warpPerspective(b, m, (shape_a[1], shape_a[0]),
                               flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=outside)


def _shared(a: np.ndarray, b: np.ndarray, unit_b_to_a: np.ndarray
            ) -> tuple[float, float, float, float, float]:
    """Share of grey picture ``a``'s area whose cells agree with ``b`` warped onto it by the
    map between their unit frames, the share that agrees in cells with detail, the share
    of a's cells with detail that agree (a white border has none), how far the mean grey
    levels of the overlap lie apart (0 to 1), and the share of a's area that b covers."""
    cv2 = _cv2()
    m = _pixel_map(unit_b_to_a, a.shape, b.shape)
    # compared at the coarser of the two resolutions: where b is enlarged onto a (a crop's
    # original, a pasted copy's page), a is reduced as much
    s = float(np.sqrt(abs(np.linalg.det(m[:2, :2] / m[2, 2]))))
    if s > 1.0:
        a = cv2.resize(a, (max(CELL, round(a.shape[1] / s)), max(CELL, round(a.shape[0] / s))),
                       interpolation=cv2.INTER_AREA)
        m = np.diag([1 / s, 1 / s, 1.0]) @ m
    a = cv2.GaussianBlur(a.astype(np.float32) / 255.0, (3, 3), 0.8)
    b = cv2.GaussianBlur(b.astype(np.float32) / 255.0, (3, 3), 0.8)
    ha, wa = a.shape
    warped = _warp(b, m, a.shape, outside=-1.0)
    inside = _warp(np.ones_like(b), m, a.shape, nearest=True) > 0.5
    if inside.sum() < 16:
        return 0.0, 0.0, 0.0, 1.0, 0.0
    level = abs(float(a[inside].mean() - warped[inside].mean()))
    # brightness and contrast matched over the overlap (grey and jittered copies agree)
    x = (a - a[inside].mean()) / (a[inside].std() + 1e-3)
    y = (warped - warped[inside].mean()) / (warped[inside].std() + 1e-3)
    ch, cw = ha // CELL, wa // CELL
    if ch * cw < MIN_CELLS:
        return 0.0, 0.0, 0.0, level, float(inside.mean())

    def cells(v: np.ndarray) -> np.ndarray:  # (ch, cw, CELL * CELL)
        v = v[: ch * CELL, : cw * CELL].reshape(ch, CELL, cw, CELL)
        return v.transpose(0, 2, 1, 3).reshape(ch, cw, CELL * CELL)

    cx, cy, cin = cells(x), cells(y), cells(inside.astype(np.float32))
    # detail: what is left after a blur of a cell's size (a ramp or a gradient has none)
    dx = cells(x - cv2.GaussianBlur(x, (0, 0), CELL / 2)).std(-1)
    dy = cells(y - cv2.GaussianBlur(y, (0, 0), CELL / 2)).std(-1)
    covered = cin.mean(-1) >= 0.75
    mx, my = cx.mean(-1, keepdims=True), cy.mean(-1, keepdims=True)
    sx, sy = cx.std(-1), cy.std(-1)
    ncc = ((cx - mx) * (cy - my)).mean(-1) / (sx * sy + 1e-6)
    flat = (sx < FLAT_STD) & (sy < FLAT_STD)
    textured = (sx >= FLAT_STD) & (sy >= FLAT_STD)
    agree = covered & ((flat & (np.abs(mx - my)[..., 0] < FLAT_LEVEL))
                       | (textured & (ncc >= CELL_NCC)))
    # the cells cover the picture but for its last partial row and column
    area = CELL * CELL / (ha * wa)
    detail = (dx >= DETAIL_STD) & (dy >= DETAIL_STD)
    own = dx >= DETAIL_STD  # a's cells with detail, wherever b is
    return (float(agree.sum() * area), float((agree & textured & detail).sum() * area),
            float((agree & own).sum() / own.sum()) if own.any() else 0.0, level,
            float(covered.mean()))


def _same_hue(a: np.ndarray, b: np.ndarray, unit_b_to_a: np.ndarray) -> bool:
    """Whether the hues of two aligned colour pictures agree where both have colour: a
    grey copy has no hue to disagree, a recoloured picture (a wallpaper's blue and orange
    variants) does."""
    warped = _warp(b, _pixel_map(unit_b_to_a, a.shape, b.shape), a.shape)
    ca, cb = np.linalg.norm(a, axis=-1), np.linalg.norm(warped, axis=-1)
    both = (ca > HUE_CHROMA) & (cb > HUE_CHROMA)
    if both.sum() < 0.1 * both.size:
        return True
    cos = (a[both] * warped[both]).sum(-1) / (ca[both] * cb[both])
    return float(cos.mean()) >= MIN_HUE_COS


def _verdict(a: Features, b: Features, unit: np.ndarray, inliers: int, mirrored: bool,
             searched: bool = False) -> Match:
    """The shares explained through ``unit`` (b's unit frame -> a's) and the verdict."""
    bg = np.ascontiguousarray(b.grey[:, ::-1] if mirrored else b.grey)
    # ``unit`` maps the mirror image's frame when mirrored: so does the grey picture given
    (sa, ta, da, level, ca), (sb, tb, db, _, cb) = (_shared(a.grey, bg, unit),
                                                    _shared(bg, a.grey, np.linalg.inv(unit)))
    if inliers:
        same = max(sa, sb) >= MIN_SHARED
    else:  # a dense map: stricter; a searched placement is proven on detail, not flat areas
        need = MIN_TEXTURED if searched else 0.0
        same = (sa >= MIN_SHARED_PLAIN and ta >= need) or (sb >= MIN_SHARED_PLAIN and tb >= need)
    same = same and level <= MAX_LEVEL  # a dark and a light variant are not one picture
    same = same and min(ca, cb) >= MIN_COVER  # a box is not a copy of a scene holding it
    if same:
        hb = np.ascontiguousarray(b.chroma[:, ::-1] if mirrored else b.chroma)
        same = _same_hue(a.chroma, hb, unit)
    full = unit @ _mirror() if mirrored else unit  # b's own frame -> a's
    return Match(same, inliers, sa, sb, mirrored,
                 tuple(float(v) for v in (full / full[2, 2]).reshape(-1)), da, db)


def match(a: Features, b: Features, dense: bool = True) -> Match:
    """Whether b is the same picture as a (a copy, an edit, a crop, a mirror ... of it), with
    the inliers and the shared areas; the best evidence of the maps tried.

    Dense maps (``_dense_maps``: template matching, 5 ms a pair, most of a refused pair's
    cost) are tried where keypoints prove nothing, if ``dense`` or if either picture has fewer
    than FEW_KEYPOINTS keypoints. ``dense=False`` is for a pair whose codes do not put the
    pictures close (candidates.proposed): a proven copy is proven either way, and a refusal
    is then a refusal by keypoints alone."""
    best = NO_MATCH
    side = max(*a.size, *b.size)
    for mirrored in (False, True):
        kb = b.mirrored if mirrored else b.direct
        pa, pb = _matches(a.direct, kb)
        h, inliers = _homography(pa, pb, side)
        if h is None or inliers < MIN_INLIERS or not _sane(h):
            continue
        unit = _frame(a.size) @ h @ np.linalg.inv(_frame(b.size))
        m = _verdict(a, b, unit, inliers, mirrored)
        if (m.same, m.shared, m.inliers) > (best.same, best.shared, best.inliers):
            best = m
        if m.same:
            break
    few = min(len(a.direct.points), len(b.direct.points)) < FEW_KEYPOINTS
    if not best.same and (dense or few):
        # too few keypoints (little texture, small or repetitive pictures): dense maps, each
        # judged only where the pictures correlate at all through it (most pairs do not)
        for unit, mirrored, searched in _dense_maps(a, b):
            m = _verdict(a, b, unit, 0, mirrored, searched)
            if (m.same, m.shared) > (best.same, best.shared):
                best = m
            if m.same:
                break
    return best


def _dense_maps(a: Features, b: Features):
    """Maps (b's unit frame -> a's, mirrored, searched) found without keypoints: the plain
    resize of one frame onto the other (same aspect ratio), then the best placement of each
    picture inside the other at scales from SCALES (a crop, a border, a photo pasted into a
    page), by normalised cross-correlation of the grey pictures (template matching). Only
    maps through which the pictures correlate by MIN_DENSE_NCC are given."""
    for mirrored in (False, True):
        bg = b.grey[:, ::-1] if mirrored else b.grey
        # the plain map between the pictures less their margins (a copy with a border added),
        # and between the files' frames (a copy whose margins were trimmed a little apart)
        maps = []
        if abs(np.log(a.aspect / b.aspect)) < 0.02:
            maps.append(np.eye(3))
        if abs(np.log(_file_aspect(a) / _file_aspect(b))) < 0.02:
            x0, y0, x1, y1 = b.frame
            if mirrored:  # the mirror image's margins
                x0, x1 = 1 - x1, 1 - x0
            maps.append(np.linalg.inv(_in_file(a.frame)) @ _in_file((x0, y0, x1, y1)))
        for unit in maps:
            if _correlation(a.grey, bg, unit) >= MIN_DENSE_NCC:
                yield unit, mirrored, False
    for big, small, inside in ((a, b, True), (b, a, False)):
        unit, score = _placement(big.grey, small.grey)
        if unit is not None and score >= MIN_DENSE_NCC:  # small's frame -> big's
            yield (unit if inside else np.linalg.inv(unit)), False, True


def _correlation(a: np.ndarray, b: np.ndarray, unit_b_to_a: np.ndarray) -> float:
    """Normalised cross-correlation of grey picture a and b warped onto it, over their
    overlap, at SEARCH_SIDE: a cheap first look at a dense map."""
    cv2 = _cv2()
    f = SEARCH_SIDE / max(a.shape)
    small = cv2.resize(a, (max(1, round(a.shape[1] * f)), max(1, round(a.shape[0] * f))),
                       interpolation=cv2.INTER_AREA).astype(np.float32)
    m = _pixel_map(unit_b_to_a, small.shape, b.shape)
    warped = _warp(b.astype(np.float32), m, small.shape)
    inside = _warp(np.ones(b.shape, np.float32), m, small.shape, nearest=True) > 0.5
    if inside.sum() < 16:
        return -1.0
    x, y = small[inside] - small[inside].mean(), warped[inside] - warped[inside].mean()
    return float((x * y).sum() / (np.sqrt((x * x).sum() * (y * y).sum()) + 1e-6))


def _in_file(frame: tuple[float, float, float, float]) -> np.ndarray:
    """The map from a picture's unit frame (less its margins) to its file's unit frame."""
    x0, y0, x1, y1 = frame
    return np.array([[x1 - x0, 0, x0], [0, y1 - y0, y0], [0, 0, 1.0]])


def _file_aspect(f: Features) -> float:
    x0, y0, x1, y1 = f.frame
    return f.aspect * (y1 - y0) / (x1 - x0)


def _placement(big: np.ndarray, small: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The map from ``small``'s unit frame to ``big``'s at which small best matches a part of
    big (template matching over SCALES), or None where no scale fits, and its correlation."""
    cv2 = _cv2()
    f = SEARCH_SIDE / max(big.shape)
    bg = cv2.resize(big, (max(1, round(big.shape[1] * f)), max(1, round(big.shape[0] * f))),
                    interpolation=cv2.INTER_AREA).astype(np.float32)
    H, W = bg.shape
    fit = min(W / small.shape[1], H / small.shape[0])
    best = (-2.0, None)
    for s in SCALES:
        w, h = round(small.shape[1] * fit * s), round(small.shape[0] * fit * s)
        if w < 8 or h < 8 or w > W or h > H:
            continue
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        if t.std() < 1.0:
            continue  # a blank template fits anywhere
        r = cv2.matchTemplate(bg, t, cv2.TM_CCOEFF_NORMED)
        _, score, _, (x, y) = cv2.minMaxLoc(r)
        if score > best[0]:
            best = (score, np.array([[w / W, 0, x / W], [0, h / H, y / H], [0, 0, 1.0]]))
    return best[1], best[0]


def reverse(m: Match) -> Match:
    """The match of (b, a) from that of (a, b)."""
    h = None
    if m.homography is not None:
        inv = np.linalg.inv(np.array(m.homography).reshape(3, 3))
        h = tuple(float(v) for v in (inv / inv[2, 2]).reshape(-1))
    return Match(m.same, m.inliers, m.shared_b, m.shared_a, m.mirrored, h, m.detail_b,
                 m.detail_a)


def corners(m: Match) -> np.ndarray | None:
    """(4, 2): the corners of picture b's unit frame in picture a's, through the match's map
    (None without one, or where b's frame crosses the horizon of a's)."""
    if m.homography is None:
        return None
    h = np.array(m.homography).reshape(3, 3)
    xyw = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float) @ h.T
    return None if (xyw[:, 2] <= 0).any() else xyw[:, :2] / xyw[:, 2:3]


SEAM_PX = 2.0  # the seam is read this many grey pixels either side of b's outline
SEAM_RATIO = 2.5  # a pasted picture's outline steps this many times more than beside it


def seam(a: Features, m: Match) -> bool:
    """Whether picture b sits in picture a as something pasted: the grey level steps across
    b's outline in a (where it runs inside a) SEAM_RATIO times more than it changes just
    inside and just outside of it. A crop's outline runs through its original's continuous
    content; a copy pasted into a larger picture, a turned copy on a black canvas, leave a
    seam."""
    xy = corners(m)
    if xy is None:
        return False
    g = a.grey.astype(np.float32)
    h, w = g.shape
    px = xy * [w, h]
    centre = px.mean(0)
    steps, beside = [], []
    for p, q in zip(px, np.roll(px, -1, axis=0)):
        length = float(np.linalg.norm(q - p))
        if length < 4:
            continue
        t = np.linspace(0.05, 0.95, max(8, int(length / 2)))[:, None]
        pts = p + t * (q - p)
        normal = np.array([-(q - p)[1], (q - p)[0]]) / length
        if normal @ (pts.mean(0) - centre) < 0:
            normal = -normal  # pointing out of b
        d = SEAM_PX * normal

        v = [_sample(g, pts + k * d) for k in (-1.5, -0.5, 0.5, 1.5)]
        ok = np.all([x >= 0 for x in v], axis=0)  # both sides inside a
        if ok.sum() < 4:
            continue
        steps.append(np.abs(v[2] - v[1])[ok])
        beside.append(0.5 * (np.abs(v[1] - v[0]) + np.abs(v[3] - v[2]))[ok])
    if not steps:
        return False
    step, near = float(np.median(np.concatenate(steps))), float(np.median(np.concatenate(beside)))
    return step >= 4.0 and step >= SEAM_RATIO * near


def _sample(g: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Grey levels of ``g`` at points (N, 2), bilinear; -1 outside."""
    xy = xy.astype(np.float32)
    return _cv2().remap(g, xy[:, :1].copy(), xy[:, 1:].copy(), _cv2().INTER_LINEAR,
                        borderMode=_cv2().BORDER_CONSTANT, borderValue=-1.0).reshape(-1)


def footprint(m: Match, side: int = 32) -> np.ndarray | None:
    """(side, side) bool: where picture b lies in picture a's unit frame through the match's
    map (None without one). Its mean is the share of a that b covers: 1 for a downscale, the
    crop's share for a crop, less than 1 for a picture pasted into a larger one."""
    xy = corners(m)
    if xy is None:
        return None
    mask = np.zeros((side, side), np.uint8)
    _cv2().fillConvexPoly(mask, np.round(xy * side).astype(np.int32), 1)
    return mask.astype(bool)


def colourful(f: Features) -> bool:
    """Whether the picture has colour (a grey copy of a colour photo has none)."""
    return bool((np.linalg.norm(f.chroma, axis=-1) > HUE_CHROMA).mean() >= 0.05)
