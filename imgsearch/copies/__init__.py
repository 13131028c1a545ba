"""Copies: finding the images of an index that are copies of one picture, proving them by
geometry, choosing which to keep, and moving the others aside.

Imports point one way: groups -> keeper, candidates, calibration, verification -> matching.

- ``groups``: groups of near-duplicates around their originals, and in an index (``in_index``).
- ``candidates``: candidate pairs from codes (FAISS neighbours) and from views of the pixels.
- ``calibration``: a method's duplicate threshold, calibrated on the collection itself.
- ``keeper``: which member of a group to keep (by default the original) and why.
- ``moves``: moving the non-keepers aside, with a log that ``undo`` reads; never deleting.
- ``verification``: pairs of indexed images verified by geometry, features computed once.
- ``matching``: the same picture, proven by geometry (ORB keypoints, a homography, the
  share of each picture the other explains).
- ``review``: pairs the user marked as not duplicates.
"""
