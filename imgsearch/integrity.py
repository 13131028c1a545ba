"""Check that an index's catalog, image cache and every method's FAISS index agree.

The invariant, for a method whose index is synced to ingest generation G (its state.json):
every catalog row last changed at or before G is in the FAISS index if and only if it is
indexed, and the FAISS index holds no id the catalog does not know. Rows changed after G are
pending: the next ``imgsearch index`` encodes or removes them. ``imgsearch check`` runs this;
the crash tests run it after every kill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .build import load_method
from .catalog import INDEXED
from .copies.evidence import FEATURES_VERSION
from .errors import ImgSearchError
from .workspace import Workspace


@dataclass
class MethodCheck:
    method: str
    gen: int
    codes: int
    pending: int  # rows changed after the index's generation
    problems: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    index: str
    catalog_gen: int
    counts: dict[str, int]
    methods: list[MethodCheck]
    problems: list[str]
    lacking_features: int = 0  # indexed images with no stored features: the next
    #                            `imgsearch index` computes them (an index made before them)

    @property
    def ok(self) -> bool:
        return not self.problems and all(not m.problems for m in self.methods)

    def all_problems(self) -> list[str]:
        return self.problems + [f"{m.method}: {p}" for m in self.methods for p in m.problems]


def _check_method(ws: Workspace, method: str, rows: dict[int, tuple[str, int]]) -> MethodCheck:
    loaded = load_method(ws, method)
    state, embedder, index = loaded.state, loaded.embedder, loaded.index
    gen = state.gen
    out = MethodCheck(method, gen, index.ntotal, sum(g > gen for _, g in rows.values()))
    held = set(index.ids().tolist())
    if len(held) != index.ntotal:
        out.problems.append(f"{index.ntotal - len(held)} duplicate ids in the FAISS index")
    if state.count != index.ntotal:
        out.problems.append(f"state.json says {state.count} codes, index holds "
                            f"{index.ntotal}")
    if index.dim != embedder.dim:
        out.problems.append(f"index has {index.dim}-d codes, the embedder makes {embedder.dim}")
    unknown = sorted(held - rows.keys())
    if unknown:
        out.problems.append(f"{len(unknown)} ids not in the catalog (first: {unknown[:5]})")
    synced = {i: s for i, (s, g) in rows.items() if g <= gen}
    missing = sorted(i for i, s in synced.items() if s == INDEXED and i not in held)
    stale = sorted(i for i, s in synced.items() if s != INDEXED and i in held)
    if missing:
        out.problems.append(f"{len(missing)} indexed images have no code (first: {missing[:5]})")
    if stale:
        out.problems.append(f"{len(stale)} failed or removed images still have codes "
                            f"(first: {stale[:5]})")
    return out


def check(ws: Workspace) -> CheckReport:
    """Every disagreement between the catalog, the image cache and the method indexes."""
    cat = ws.catalog
    rows = {r.id: (r.state, r.gen) for r in cat.rows()}
    problems = []
    indexed = np.array([i for i, (s, _) in rows.items() if s == INDEXED], dtype=np.int64)
    if len(indexed) and len(ws.cache) <= int(indexed.max()):
        problems.append(f"image cache {ws.cache.path} holds {len(ws.cache)} images, "
                        f"catalog ids go up to {int(indexed.max())}")
    methods = []
    for m in ws.built_methods():
        try:
            methods.append(_check_method(ws, m, rows))
        except ImgSearchError as e:
            methods.append(MethodCheck(m, -1, 0, 0, [str(e)]))
    return CheckReport(str(ws.root), cat.gen, cat.counts(), methods, problems,
                       len(cat.lacking_features(FEATURES_VERSION)))
