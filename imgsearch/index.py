"""The vector index: codes under their catalog ids in FAISS, exact below a size threshold and
IVF above it.

The exact index is ``IndexIDMap2(IndexFlatL2)``. Above ``exact_threshold`` vectors it is replaced
by ``IndexIVFFlat`` (ids stored natively, a hash-table direct map so ids can be removed and
reconstructed), whose recall@10 against the exact index is measured in scripts/bench_index.py.
Files are written to a temporary name and renamed. Search runs on the GPU when faiss sees one.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from .errors import IndexFileError
from .store import replacing

LOG = logging.getLogger(__name__)

IVF_TRAIN = 100_000  # codes sampled to train the IVF coarse quantizer


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_ids(ids) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64)


class VectorIndex:
    """Codes keyed by catalog id; L2 distance."""

    def __init__(self, index: faiss.Index, use_gpu: bool | None = None):
        self.index = index
        self.use_gpu = faiss.get_num_gpus() > 0 if use_gpu is None else use_gpu
        self._gpu: faiss.Index | None = None

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatL2(dim)))

    @classmethod
    def for_size(cls, dim: int, n: int, exact_threshold: int, nprobe: int,
                 train: np.ndarray | None = None) -> VectorIndex:
        """An empty index for ``n`` codes: exact up to ``exact_threshold``, else IVF trained on
        ``train`` (a sample of the codes)."""
        if n <= exact_threshold:
            return cls.empty(dim)
        nlist = int(np.clip(4 * math.sqrt(n), 1, max(1, len(train) // 39)))  # >= 39 per list
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
        ivf.train(_as_f32(train))
        ivf.nprobe = nprobe
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        LOG.info("IVF index: %d lists, nprobe %d, for %d vectors", nlist, nprobe, n)
        return cls(ivf)

    @classmethod
    def build(cls, codes: np.ndarray, ids, exact_threshold: int, nprobe: int) -> VectorIndex:
        """Exact index for up to ``exact_threshold`` codes, IVF above."""
        codes, ids = _as_f32(codes), _as_ids(ids)
        sample = codes[np.random.default_rng(0).permutation(len(codes))[:IVF_TRAIN]]
        out = cls.for_size(codes.shape[1], len(codes), exact_threshold, nprobe, sample)
        out.add(codes, ids)
        return out

    @property
    def index_type(self) -> str:
        """The structure: "flat" (exact) or "ivf"."""
        return "ivf" if isinstance(self.index, faiss.IndexIVF) else "flat"

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return self.index.d

    def ids(self) -> np.ndarray:
        """Every id held, sorted."""
        if self.index_type == "flat":
            return np.sort(faiss.vector_to_array(self.index.id_map))
        invlists = self.index.invlists
        parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                 for i in range(self.index.nlist) if invlists.list_size(i)]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, codes) of everything held, in storage order, read in bulk."""
        if self.index_type == "flat":
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            return ids, self.index.index.reconstruct_n(0, self.ntotal)
        invlists, d = self.index.invlists, self.dim
        id_parts, code_parts = [], []
        for i in range(self.index.nlist):
            n = invlists.list_size(i)
            if n:
                id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(i), n).copy())
                raw = faiss.rev_swig_ptr(invlists.get_codes(i), n * invlists.code_size)
                code_parts.append(np.frombuffer(raw.copy(), np.float32).reshape(n, d))
        if not id_parts:
            return np.empty(0, np.int64), np.empty((0, d), np.float32)
        return np.concatenate(id_parts), np.concatenate(code_parts)

    def vectors(self, ids) -> np.ndarray:
        """The stored codes of ``ids`` (each must be present)."""
        return np.stack([self.index.reconstruct(int(i)) for i in _as_ids(ids)])

    # -- updates --------------------------------------------------------------------------
    def remove(self, ids) -> int:
        ids = _as_ids(ids)
        self._gpu = None
        return int(self.index.remove_ids(ids)) if ids.size else 0

    def add(self, codes: np.ndarray, ids) -> None:
        """Add codes under new ids."""
        self._gpu = None
        if len(ids):
            self.index.add_with_ids(_as_f32(codes), _as_ids(ids))

    def upsert(self, codes: np.ndarray, ids) -> None:
        """Add codes under ``ids``, replacing any held under the same ids."""
        self.remove(ids)
        self.add(codes, ids)

    def rebalanced(self, exact_threshold: int, nprobe: int) -> VectorIndex:
        """This index, or a rebuilt one if it has crossed the exact/IVF threshold."""
        want_ivf = self.ntotal > exact_threshold
        if want_ivf == (self.index_type == "ivf") or self.ntotal == 0:
            return self
        ids = self.ids()
        return VectorIndex.build(self.vectors(ids), ids, exact_threshold, nprobe)

    # -- search ---------------------------------------------------------------------------
    def _searcher(self) -> faiss.Index:
        if not self.use_gpu:
            return self.index
        if self._gpu is None:
            try:
                self._gpu = faiss.index_cpu_to_all_gpus(self.index)
            except (RuntimeError, AttributeError) as e:
                LOG.warning("GPU search unavailable (%s); searching on the CPU", e)
                self.use_gpu = False
                return self.index
        return self._gpu

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, dim) -> distances (Q, k) as L2 (not squared), ids (Q, k); -1 pads short lists."""
        k = min(k, self.ntotal)
        if k <= 0:
            q = len(queries)
            return np.empty((q, 0), np.float32), np.empty((q, 0), np.int64)
        d2, ids = self._searcher().search(_as_f32(queries), k)
        return np.sqrt(np.maximum(d2, 0)), ids

    # -- files ----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        with replacing(path) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: Path, nprobe: int | None = None) -> VectorIndex:
        path = Path(path)
        if not path.exists():
            raise IndexFileError(f"index file {path} is missing; re-run `imgsearch index`")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise IndexFileError(
                f"index file {path} is unreadable; re-run `imgsearch index PHOTOS_DIR --rebuild`"
            ) from e
        if nprobe is not None and isinstance(index, faiss.IndexIVF):
            index.nprobe = nprobe
        return cls(index)
