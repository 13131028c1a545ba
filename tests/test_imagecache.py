import numpy as np
import pytest

from imgsearch.errors import CacheMiss
from imgsearch.imagecache import ImageCache


def test_write_read_by_id(tmp_path):
    cache = ImageCache(tmp_path / "p.u8", 4)
    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    cache.write(3, a)
    cache.write(1, a[::-1].copy())
    assert len(cache) == 4
    out = cache.read([3, 1])
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], a[::-1])
    batches = list(cache.batches([1, 3, 3], batch_size=2))
    assert [len(b) for b in batches] == [2, 1]


def test_rejects_wrong_size_and_unknown_ids(tmp_path):
    cache = ImageCache(tmp_path / "p.u8", 4)
    with pytest.raises(ValueError):
        cache.write(0, np.zeros((3, 3, 3), np.uint8))
    cache.write(0, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(CacheMiss, match=r"no pixels for catalog id 5; re-run `imgsearch index "
                       r"PHOTOS_DIR --rebuild`"):
        cache.read([5])
