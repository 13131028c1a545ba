"""The planner: bring an index up to date with a folder of photos, deciding once per method
what to do, then doing it.

    update_index(ws, photos, ["pixels", "pca", "ae"]) -> IndexReport

For each method the plan is one of:
- ``import``: a model trained elsewhere (``model=PATH``) becomes the method's embedder;
- ``train``: a learned method with no trained model is trained on the cached pixels;
- ``fit``: a baseline not built yet (or ``rebuild``) is fitted on the cached pixels;
- ``encode``: a learned method's saved model re-encodes every image (``rebuild``, or no index);
- ``sync``: only the catalog rows changed since the method's generation are encoded or removed.

Progress is reported through one callback, ``progress(phase, done, total, note)``; the CLI
draws it as bars. Nothing here prints.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import methods
from .build import BuildReport, StreamedBuild, Streams, build_method, sync_method
from .catalog import INDEXED
from .engine import LOCAL, Engine
from .errors import CatalogError
from .fitting import (
    Progress,
    assess,
    encode_phase,
    import_model,
    model_config,
    prepare,
    quiet,
    self_check,
    train_config,
    train_method,
)
from .ingest import IngestReport, ScanRules, ingest
from .workspace import Workspace

if TYPE_CHECKING:
    from .selfcheck import SelfCheck

LOG = logging.getLogger(__name__)

ACTIONS = ("import", "train", "fit", "encode", "sync")


@dataclass(frozen=True)
class Step:
    """What the planner decided for one method, and why."""

    method: str
    action: str  # one of ACTIONS
    reason: str


@dataclass
class IndexReport:
    """What one update_index run did."""

    root: str
    ingest: IngestReport
    built: list[BuildReport] = field(default_factory=list)  # one per planned step
    recovered: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings worth showing the user
    seconds: float = 0.0  # the whole update
    duplicates: dict | None = None  # the groups found and kept (copies/kept.py): method,
    #                                 groups, duplicates, seconds

    def as_dict(self) -> dict:
        """JSON-ready: ``imgsearch index --json`` prints it."""
        ingested = asdict(self.ingest)
        ingested["failed"] = [{"path": p, "reason": r} for p, r in self.ingest.failed]
        return {"root": self.root, "seconds": self.seconds, "ingest": ingested,
                "methods": [asdict(b) for b in self.built], "recovered": self.recovered,
                "notes": self.notes, "duplicates": self.duplicates}


# -- the plan ------------------------------------------------------------------------------
def plan(ws: Workspace, wanted: list[str], imported: str | None = None,
         rebuild: bool = False) -> list[Step]:
    """One step per method: the imported method first, then ``wanted`` in order, but every
    model to train last, so that the other methods answer queries while it trains."""
    steps = [Step(imported, "import", "a model trained elsewhere was given")] if imported else []
    for name in wanted:
        if name == imported:
            continue
        spec = methods.get(name)
        built = not rebuild and ws.method_state(name) is not None  # rebuild: state unread
        if spec.learned and not ws.has_model(name):
            steps.append(Step(name, "train", "no trained model yet"))
        elif spec.learned and (rebuild or not built):
            steps.append(Step(name, "encode", "rebuild asked for" if rebuild else
                              "trained model without a vector index"))
        elif rebuild or not built:
            steps.append(Step(name, "fit", "rebuild asked for" if rebuild else "not built yet"))
        else:
            steps.append(Step(name, "sync", "built: encode only what changed"))
    return sorted(steps, key=lambda s: s.action == "train")  # stable: the order kept otherwise


# -- the whole update ----------------------------------------------------------------------
def run_step(ws: Workspace, step: Step, check: SelfCheck | None, training: dict | None = None,
             imported=None, progress: Progress = quiet, memory: int | None = None,
             engine: Engine = LOCAL, stream: StreamedBuild | None = None,
             settings: dict | None = None) -> BuildReport:
    """Carry out one planned step, scored on ``check`` (the run's self-check; unused by a
    sync) (``training``: TrainConfig overrides of the recipe, ``settings`` of its model
    settings; ``memory``: the vector index's
    budget in bytes, default a quarter of the machine's); the codes are encoded on
    ``engine``, fitting and training run here. ``stream``: the step's build, already fitted
    and fed while the photos decoded; it is completed, or the step done the usual way if
    it cannot be."""
    t0 = time.perf_counter()
    m, phase = step.method, encode_phase(progress, step.method)
    embedder = stream.complete() if stream is not None else None
    if embedder is not None:  # fitted and encoded while the photos decoded
        report = stream.write(assess(ws, check, embedder, m))
        phase(report.encoded, report.encoded)
    elif step.action == "sync":
        report = sync_method(ws, m, phase, memory, engine)
    elif step.action == "train":
        report = train_method(ws, m, model_config(ws, m, **(settings or {})),
                              train_config(m, **(training or {})),
                              check=check, progress=progress, memory=memory, engine=engine)[1]
    else:
        if step.action == "import":
            embedder = prepare(ws, m, imported)
        elif step.action == "fit":
            embedder = prepare(ws, m, methods.get(m).create(ws.config))
        else:  # encode: the saved model, its post-processing fitted anew on the collection
            from .build import open_embedder

            embedder = prepare(ws, m, open_embedder(ws, m))
        report = build_method(ws, m, embedder, step.action, phase,
                              assess(ws, check, embedder, m), memory, engine)
    # the whole step: training, fitting and the self-check included
    return replace(report, seconds=time.perf_counter() - t0)


def update_methods(ws: Workspace, wanted: list[str], *, imported=None, rebuild: bool = False,
                   training: dict | None = None, progress: Progress = quiet,
                   memory: int | None = None, engine: Engine = LOCAL,
                   streams: Streams | None = None, settings: dict | None = None
                   ) -> list[BuildReport]:
    """Plan and carry out every method in ``wanted`` (and an ``imported`` model's method) on
    the catalog as it is, encoding on ``engine``; the caller holds the write lock. Returns a
    report per step. ``streams``: the builds that ran while the photos decoded (streamed)."""
    steps = plan(ws, wanted, imported.name if imported is not None else None, rebuild)
    LOG.info("plan: %s", "; ".join(f"{s.method}: {s.action} ({s.reason})" for s in steps))
    check = self_check(ws) if any(s.action != "sync" for s in steps) else None
    builds = streams.builds if streams is not None else {}
    return [run_step(ws, s, check, training, imported, progress, memory, engine,
                     builds.get(s.method) if s.action == "fit" else None, settings)
            for s in steps]


def streamed(ws: Workspace, wanted: list[str], imported: str | None, rebuild: bool,
             memory: int | None, engine: Engine = LOCAL) -> Streams | None:
    """The builds that can run while the photos decode: on an index with nothing indexed
    yet, every method the plan fits whose registry entry streams (the baselines), so that
    the first index is ready about when the last photo is decoded. The local engine's only:
    on a cluster, its actors encode (engine.py), not this process."""
    if ws.catalog.counts()[INDEXED] or engine.name != "local":  # a cluster's actors encode
        return None
    names = [s.method for s in plan(ws, wanted, imported, rebuild)
             if s.action == "fit" and methods.get(s.method).streams]
    return Streams({m: StreamedBuild(ws, m, memory) for m in names}) if names else None


def _warm_self_check() -> None:
    """Import the self-check (and torch with it) while the photos decode: in a thread,
    started once the worker processes are running, so that none is forked mid-import."""
    def load() -> None:
        from . import selfcheck  # noqa: F401

    threading.Thread(target=load, name="imgsearch-warm", daemon=True).start()


def update_index(ws: Workspace, photos: Path, wanted: list[str], *, model: Path | None = None,
                 training: dict | None = None, workers: int | None = None,
                 rules: ScanRules | None = None, index_memory: int | None = None,
                 rebuild: bool = False, wait: float | None = 0,
                 progress: Progress = quiet, engine: Engine = LOCAL,
                 settings: dict | None = None, duplicates: bool = True) -> IndexReport:
    """Ingest ``photos`` (new, changed and deleted files only; the files ``rules`` keep) and
    bring every method in ``wanted`` up to date, holding the index's write lock throughout.

    A learned method with no model is trained by its recipe, ``training`` overriding its
    TrainConfig settings (the time budget, say) and ``settings`` its model settings (a
    variant of the recipe, as `imgsearch train` takes them); ``model`` imports a
    checkpoint trained elsewhere instead; ``rebuild`` re-fits every method from the cache (and
    moves a corrupt catalog aside, ingesting the folder anew). ``engine`` reads the photos
    and encodes the codes (engine.py: this machine, or a Ray cluster); this process writes the
    catalog, the image cache and the vector indexes, and trains. ``duplicates``: find the
    groups of duplicates last and keep them (find_duplicates).
    """
    for name in wanted:
        methods.get(name)
    t0 = time.perf_counter()
    with ws.writing("imgsearch index", wait) as recovered:
        notes = []
        if rebuild:
            try:
                ws.catalog  # noqa: B018 - opening it is the check
            except CatalogError as e:
                moved = ws.reset_catalog()
                notes.append(f"{e}; moved it to {moved} and ingesting the folder anew")
                LOG.warning("%s", notes[-1])
        imported = import_model(ws, model) if model is not None else None  # before any work
        streams = streamed(ws, wanted, imported.name if imported is not None else None,
                           rebuild, index_memory, engine)

        def on_ingest(done: int, total: int) -> None:
            if done == 1 and streams is not None:  # a first index: its self-check follows
                _warm_self_check()
            progress("ingest", done, total, "")

        ingested = ingest(photos, ws.catalog, ws.cache, workers, on_ingest,
                          rules or ScanRules(), engine, streams,
                          lambda done, total: progress("features", done, total, ""))
        built = update_methods(ws, wanted, imported=imported, rebuild=rebuild,
                               training=training, progress=progress, memory=index_memory,
                               engine=engine, streams=streams, settings=settings)
        found = find_duplicates(ws, progress) if duplicates else None
    return IndexReport(str(ws.root), ingested, built, recovered, notes,
                       time.perf_counter() - t0, found)


def find_duplicates(ws: Workspace, progress: Progress = quiet) -> dict | None:
    """The last step of an index run: the groups of duplicates of the preferred method,
    found (only pairs not verified before are matched) and kept with the index, so that
    `imgsearch duplicates` and the page read them at once (copies/kept.py)."""
    from .copies import kept

    if not ws.built_methods():
        return None
    t0 = time.perf_counter()
    method = ws.preferred_method()
    found = kept.at_index_time(ws, method, lambda phase, done, total: progress(
        f"duplicates: {phase}", done, total, ""))
    if found is None:
        return None
    return {"method": method, "groups": len(found.groups),
            "duplicates": sum(len(g.others) for g in found.groups),
            "seconds": round(time.perf_counter() - t0, 3)}
