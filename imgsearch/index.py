"""The vector index: codes under their catalog ids in FAISS, its structure chosen by the bytes
of its codes and a memory budget, the way autofaiss chooses.

- ``flat``: exact search (``IndexIDMap2(IndexFlatL2)``), while a query scans at most
  EXACT_BYTES of codes (100,000 codes of 256 floats: 8,333 of `pixels`' 3,072) and there are at
  most ``exact_max`` codes.
- ``ivf-flat``: an inverted file of full codes (4 bytes a dimension), when they fit the budget;
- ``ivf-sq8``: of codes quantised to a byte a dimension, when those fit;
- ``ivf-pq``: of product-quantised codes (``m`` bytes a code), the largest ``m`` that fits.

An inverted file has about 4 sqrt(N) lists; how many a query visits (``nprobe``) is tuned when
the index is built: the smallest that reaches recall@10 >= RECALL_TARGET against exact search
on a sample of the codes, a figure kept with the index. Every structure stores ids natively
with a hash-table direct map, so codes can be added, replaced and removed by id. Files are
written to a temporary name and renamed; they can be read memory-mapped, so the first query of
a process does not wait for the whole file. Search runs on the GPU when faiss sees one.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .errors import ImgSearchError, IndexFileError
from .store import replacing

LOG = logging.getLogger(__name__)

IVF_TRAIN = 100_000  # codes sampled to train the IVF coarse quantizer (at least 39 a list)
RECALL_TARGET = 0.95
#: The most code bytes an exact search scans: 100,000 codes of 256 floats, which a cold
#: `imgsearch query` searches in well under a second on a laptop (docs/BENCHMARKS.md); wider
#: codes switch to an inverted file at fewer codes.
EXACT_BYTES = 4 * 256 * 100_000
NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_ids(ids) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64)


def default_memory() -> int:
    """A quarter of the machine's memory, in bytes: the default budget of a vector index."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 16 GiB
        return 4 * 2**30


@dataclass(frozen=True)
class IndexPlan:
    """The structure chosen for a number of codes: type, inverted lists, PQ bytes a code."""

    index_type: str
    nlist: int = 0
    pq_m: int = 0

    def code_bytes(self, dim: int) -> int:
        """Memory a code takes in the index, its id included."""
        per = {"flat": 4 * dim, "ivf-flat": 4 * dim, "ivf-sq8": dim, "ivf-pq": self.pq_m}
        return per[self.index_type] + 8 + (16 if self.index_type != "flat" else 0)

    def factory(self) -> str:
        return {"flat": "Flat", "ivf-flat": f"IVF{self.nlist},Flat",
                "ivf-sq8": f"IVF{self.nlist},SQ8",
                "ivf-pq": f"IVF{self.nlist},PQ{self.pq_m}"}[self.index_type]


def list_count(n: int) -> int:
    """Inverted lists for n codes: about 4 sqrt(n), and at least 39 codes a list (FAISS's
    minimum for training its k-means)."""
    return int(max(1, min(4 * math.sqrt(max(n, 1)), max(1, n // 39))))


def plan_index(n: int, dim: int, memory: int | None = None, exact_max: int = 100_000
               ) -> IndexPlan:
    """The most accurate structure for ``n`` codes of ``dim`` floats within ``memory`` bytes:
    exact while the codes take at most EXACT_BYTES (and number at most ``exact_max``), then an
    inverted file of full, 8-bit or PQ codes."""
    memory = default_memory() if memory is None else memory
    if (n <= exact_max and 4 * dim * n <= EXACT_BYTES
            and IndexPlan("flat").code_bytes(dim) * n <= memory):
        return IndexPlan("flat")
    nlist = list_count(n)
    for t in ("ivf-flat", "ivf-sq8"):
        if IndexPlan(t, nlist).code_bytes(dim) * n <= memory:
            return IndexPlan(t, nlist)
    for m in (64, 48, 32, 24, 16, 12, 8, 4):  # bytes a code; a divisor of dim
        if dim % m == 0 and IndexPlan("ivf-pq", nlist, m).code_bytes(dim) * n <= memory:
            return IndexPlan("ivf-pq", nlist, m)
    raise ImgSearchError(f"{n:,} codes of {dim} dimensions do not fit in {memory / 2**20:,.0f} "
                         "MiB even product-quantised to 4 bytes; raise --index-memory")


class GroundTruth:
    """The exact k nearest codes of a sample of queries, kept up to date as the codes stream
    past a batch at a time (so the reference never needs all codes in memory at once)."""

    def __init__(self, queries: np.ndarray, k: int = 10, own=None):
        """``own``: the ids of the queries where they are codes of the index themselves;
        each query's own id is then left out of its neighbours, here and when an index is
        measured against them (a query trivially finds itself, which would inflate recall)."""
        self.queries, self.k = _as_f32(queries), k
        self.own = None if own is None else _as_ids(own)
        self.dist = np.full((len(queries), k), np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def add(self, codes: np.ndarray, ids) -> None:
        codes, ids = _as_f32(codes), _as_ids(ids)
        if not len(codes):
            return
        extra = 0 if self.own is None else 1
        d, pos = faiss.knn(self.queries, codes, min(self.k + extra, len(codes)))
        got = ids[pos]
        if self.own is not None:
            d = np.where(got == self.own[:, None], np.inf, d)
            got = np.where(got == self.own[:, None], -1, got)
        dist = np.concatenate([self.dist, d], 1)
        cand = np.concatenate([self.ids, got], 1)
        order = np.argsort(dist, axis=1, kind="stable")[:, : self.k]
        self.dist = np.take_along_axis(dist, order, 1)
        self.ids = np.take_along_axis(cand, order, 1)

    def without_own(self, found: np.ndarray) -> np.ndarray:
        """The first k ids of each row of ``found`` (k + 1 per query, best first) that are
        not the query's own id."""
        if self.own is None:
            return found[:, : self.k]
        out = np.full((len(found), self.k), -1, np.int64)
        for i, (row, own) in enumerate(zip(found, self.own)):
            kept = row[row != own][: self.k]
            out[i, : len(kept)] = kept
        return out


class VectorIndex:
    """Codes keyed by catalog id; L2 distance."""

    def __init__(self, index: faiss.Index, use_gpu: bool | None = None,
                 recall: float | None = None):
        self.index = index
        self.use_gpu = faiss.get_num_gpus() > 0 if use_gpu is None else use_gpu
        self._gpu: faiss.Index | None = None
        self.recall = recall  # recall@10 against exact search, measured when tuned

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        """An exact index (its recall is 1 by construction)."""
        return cls(faiss.IndexIDMap2(faiss.IndexFlatL2(dim)), recall=1.0)

    @classmethod
    def create(cls, plan: IndexPlan, dim: int, train: np.ndarray | None = None
               ) -> VectorIndex:
        """An empty index of ``plan``, an inverted file trained on ``train``, a sample of
        the codes it will hold."""
        if plan.index_type == "flat":
            return cls.empty(dim)
        ivf = faiss.index_factory(dim, plan.factory())
        LOG.info("training a %s index (%d lists) on %d codes", plan.index_type, plan.nlist,
                 len(train))
        ivf.train(_as_f32(train))
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.nprobe = min(32, plan.nlist)
        return cls(ivf)

    @classmethod
    def exact(cls, codes: np.ndarray, ids) -> VectorIndex:
        """An exact index holding ``codes`` under ``ids``."""
        out = cls.empty(np.asarray(codes).shape[1])
        out.add(codes, ids)
        return out

    def tune(self, truth: GroundTruth, target: float = RECALL_TARGET) -> float:
        """Set nprobe to the smallest that reaches ``target`` recall@k against ``truth``
        (else the best); returns the recall reached and keeps it in ``self.recall``."""
        if not isinstance(self.index, faiss.IndexIVF):
            self.recall = 1.0
            return 1.0
        k = truth.k
        best = (0.0, 1)
        for nprobe in [p for p in NPROBES if p <= self.index.nlist] or [1]:
            self.index.nprobe = nprobe
            got = truth.without_own(self.index.search(truth.queries, k + 1)[1])
            hits = [len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist()))
                    for a, b in zip(got, truth.ids)]
            recall = float(np.mean(hits)) / k
            if recall > best[0]:
                best = (recall, nprobe)
            if recall >= target:
                break
        self.recall, self.index.nprobe = best
        LOG.info("%s: nprobe %d reaches recall@%d %.4f", self.index_type, best[1], k, best[0])
        return best[0]

    @property
    def index_type(self) -> str:
        """The structure: flat, ivf-flat, ivf-sq8 or ivf-pq."""
        if isinstance(self.index, faiss.IndexIVFPQ):
            return "ivf-pq"
        if isinstance(self.index, faiss.IndexIVFScalarQuantizer):
            return "ivf-sq8"
        if isinstance(self.index, faiss.IndexIVF):
            return "ivf-flat"
        return "flat"

    @property
    def nprobe(self) -> int | None:
        return self.index.nprobe if isinstance(self.index, faiss.IndexIVF) else None

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
        """(ids, codes) of everything held, read in bulk (quantised codes decoded: close to,
        not equal to, the codes added)."""
        if self.index_type == "flat":
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            return ids, self.index.index.reconstruct_n(0, self.ntotal)
        if self.index_type != "ivf-flat":
            ids = self.ids()
            if not len(ids):
                return ids, np.empty((0, self.dim), np.float32)
            return ids, self.index.reconstruct_batch(ids)
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
        ids = _as_ids(ids)
        if not len(ids):
            return np.empty((0, self.dim), np.float32)
        return self.index.reconstruct_batch(ids)

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

    @property
    def plan(self) -> IndexPlan:
        """This index's structure (its list count aside)."""
        return IndexPlan(self.index_type, 0,
                         self.index.pq.M if self.index_type == "ivf-pq" else 0)

    def matches(self, plan: IndexPlan) -> bool:
        """Whether this index has the structure ``plan`` asks for (list counts may differ
        as the collection grows: an inverted file keeps working with more codes a list)."""
        return (plan.index_type, plan.pq_m) == (self.plan.index_type, self.plan.pq_m)

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
        with replacing(path, need=self.ntotal * self.plan.code_bytes(self.dim)) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: Path, mmap: bool = False) -> VectorIndex:
        """The index in ``path``, with the nprobe it was tuned to (an exact one with its
        recall of 1; an inverted file's measured recall is kept in its MethodState);
        ``mmap``: the file's pages are read when a search touches them (a reader's first
        query does not wait for the whole file)."""
        path = Path(path)
        if not path.exists():
            raise IndexFileError(f"index file {path} is missing; re-run `imgsearch index`")
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mmap else 0)
        except RuntimeError as e:
            raise IndexFileError(
                f"index file {path} is unreadable; re-run `imgsearch index PHOTOS_DIR --rebuild`"
            ) from e
        return cls(index, recall=None if isinstance(index, faiss.IndexIVF) else 1.0)
