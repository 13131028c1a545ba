"""Where the expensive work of an index run is done: reading and decoding photos, and encoding
cached pixels into codes. One small interface, two implementations, chosen by a flag
(``imgsearch index --engine local|ray``), as clip-retrieval's distributor does:

- ``LocalEngine``: this machine, exactly as before: a pool of worker processes for reading
  (``reading.read_all``), the method's embedder in this process for encoding.
- ``RayEngine``: a Ray cluster (or a local Ray instance). Reading is a Ray Data pipeline of
  tasks over the file list; encoding is a pool of Ray actors, each holding the method's
  embedder, loaded once per actor (one GPU per actor when the cluster has GPUs).

Either way the driver, this process, stays the single writer: it writes the image cache, the
catalog and the vector indexes, in order, through the same crash-safe code (ingest.py,
build.py). Workers only return whole results (a file's pixels, a batch's codes), so a failed
or killed worker, which Ray retries, never leaves half a row behind. Training is not an
engine's job: it runs in the driver (fitting.train_method).

Ray is imported only inside ``RayEngine``, so ``import imgsearch`` and every query never load
it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import methods
from .config import IndexConfig
from .errors import EngineError, ImgSearchError
from .methods import Embedder
from .reading import read_all, read_one
from .store import MethodState
from .workspace import Workspace

LOG = logging.getLogger(__name__)

ENGINES = ("local", "ray")
INSTALL_HINT = "--engine ray needs Ray: pip install 'imgsearch[ray]'"

#: One file for a worker to read (reading.read_one): path, cache side, known hashes of files of
#: its size (hash -> catalog id), megapixel limit.
ReadTask = tuple[str, int, dict[str, int], float]
#: Catalog ids and their cached pixels: (ids, (B, S, S, 3) uint8).
Batch = tuple[list[int], np.ndarray]


class Engine(ABC):
    """Runs the reading and the encoding of an index run; the caller writes the results."""

    name: str

    @abstractmethod
    def read(self, tasks: list[ReadTask], workers: int | None = None) -> Iterator[dict]:
        """What ``reading.read_one`` returns for each task, one result per task, in any
        order; ``workers``: parallel readers (None: one per core)."""

    @abstractmethod
    def encode(self, method: str, embedder: Embedder, folder: Path | None,
               config: IndexConfig, batches: Iterable[Batch]
               ) -> Iterator[tuple[list[int], np.ndarray]]:
        """(ids, codes) of every batch, in the order of ``batches``; ``embedder`` is
        ``method``'s, saved in ``folder`` (where a cluster engine loads it from; the local
        engine needs no folder)."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release what the engine holds (workers, a connection)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalEngine(Engine):
    """This machine: a pool of worker processes reads, this process encodes."""

    name = "local"

    def read(self, tasks: list[ReadTask], workers: int | None = None) -> Iterator[dict]:
        return read_all(tasks, workers)

    def encode(self, method: str, embedder: Embedder, folder: Path | None,
               config: IndexConfig, batches: Iterable[Batch]
               ) -> Iterator[tuple[list[int], np.ndarray]]:
        for ids, pixels in batches:
            yield ids, embedder.encode(pixels)


LOCAL = LocalEngine()


def engine_for(name: str, address: str | None = None) -> Engine:
    """The engine called ``name`` (``ENGINES``); ``address``: the Ray cluster to use."""
    if name == "local":
        if address is not None:
            raise ImgSearchError("--ray-address needs --engine ray")
        return LOCAL
    if name == "ray":
        return RayEngine(address)
    raise ImgSearchError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


def method_files(folder: Path) -> dict[str, bytes]:
    """The files of the embedder saved in method folder ``folder``, by name (not its vector
    index nor its state): what a worker needs to open the embedder elsewhere."""
    skip = {Workspace.INDEX_FILE, MethodState.FILE}
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.name not in skip and not p.name.startswith(".")}


# -- test hook -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """Test hook: makes the first ``times`` Ray tasks of ``stage`` (``read`` or ``encode``)
    fail, by raising (``raise``) or by killing their worker process (``exit``). Attempts are
    counted with marker files ``PATH.0``, ``PATH.1``, ... (created atomically), so they are
    counted across worker processes and retries."""

    path: str
    stage: str = "read"
    kind: str = "raise"
    times: int = 1

    def strike(self, stage: str) -> None:
        if stage != self.stage:
            return
        for k in range(self.times):
            try:
                os.close(os.open(f"{self.path}.{k}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            if self.kind == "exit":
                os._exit(1)
            raise RuntimeError(f"injected fault {k + 1} of {self.times} in {stage}")


# -- Ray -----------------------------------------------------------------------------------
RETRIES = 3  # retries of a task that raised; restarts of a killed actor
READ_CHUNK = 64  # files per Ray Data read task (16 read at 0.37 of the local rate, 64 at
#                   0.44: 10k photos on 2 cores, docs/BENCHMARKS.md)
READ_WINDOW = 50_000  # files per Ray Data dataset: bounds the task list in the object store
IN_FLIGHT_PER_ACTOR = 2  # encoding batches queued per actor (one running, one waiting)


def shipped_code() -> dict:
    """The runtime environment of the Ray job an engine starts: this imgsearch package,
    shipped from the driver to every worker, so that none runs another version's code. (Its
    dependencies must be installed on every node.)"""
    return {"py_modules": [str(Path(__file__).resolve().parent)]}


def _import_ray():
    """Ray and Ray Data, or EngineError with the line that says how to install them."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise EngineError(INSTALL_HINT) from None
    return ray


def _read_batch(batch: dict, fault: Fault | None = None) -> dict:
    """A Ray Data task: ``reading.read_one`` over a block of pickled tasks."""
    if fault is not None:
        fault.strike("read")
    return {"result": [pickle.dumps(read_one(pickle.loads(t))) for t in batch["task"]]}


def open_saved(method: str, files: dict[str, bytes], config: IndexConfig) -> Embedder:
    """``method``'s embedder from its saved files (``method_files``), through a temporary
    folder, with ``methods.open_embedder`` (a learned method's torch model, as the driver's
    own encoding uses)."""
    folder = Path(tempfile.mkdtemp(prefix=f"imgsearch-{method}-"))
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return methods.open_embedder(method, folder, config)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _EncodingActor:
    """A Ray actor holding one method's embedder, opened once, at its first batch (and again
    after a restart). The saved files come as an object reference inside a list, so that Ray
    hands over the reference, not the files, with every batch."""

    def __init__(self, method: str, config: IndexConfig, fault: Fault | None = None):
        self.method, self.config, self.fault = method, config, fault
        self.embedder: Embedder | None = None

    def encode(self, files: list, pixels: np.ndarray) -> np.ndarray:
        if self.embedder is None:
            import ray

            self.embedder = open_saved(self.method, ray.get(files[0]), self.config)
        if self.fault is not None:
            self.fault.strike("encode")
        return self.embedder.encode(pixels)


class RayEngine(Engine):
    """A Ray cluster reads the photos (Ray Data tasks) and encodes them (an actor pool).

    ``address``: the cluster, as ``ray.init`` takes it (None: ``$RAY_ADDRESS``, else the Ray
    instance started last on this machine, else a new local one). A Ray instance this engine
    started or connected to is shut down by ``close``, and its workers run this driver's
    imgsearch code (``shipped_code``); a Ray the caller initialised is left alone, and its
    job's environment applies. ``actors``: encoding actors (None: one per GPU for a learned
    method on a cluster with GPUs, else one per CPU). Photos must be readable at the same path
    on every node; the index folder stays on the driver's machine.
    """

    name = "ray"

    def __init__(self, address: str | None = None, actors: int | None = None,
                 fault: Fault | None = None):
        self.ray = _import_ray()
        self.address, self.actors, self.fault = address, actors, fault
        self._owns = False
        # the last encoding pool: ((method, digest of its files), their object ref, actors).
        # Kept for the next call with the same files, so an IVF build's two passes (training
        # sample, then every code) share it; released before anything else runs, since its
        # idle actors hold their CPUs or GPUs
        self._pool: tuple[tuple[str, str], object, list] | None = None

    def _connect(self):
        ray = self.ray
        if not ray.is_initialized():
            LOG.info("connecting to Ray at %s", self.address or "$RAY_ADDRESS or local")
            t0 = time.perf_counter()
            try:
                ray.init(address=self.address, runtime_env=shipped_code(),
                         logging_level=logging.WARNING, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                reason = _line(e).split(" Last connection error")[0]
                raise EngineError(
                    f"cannot connect to Ray at {self.address or 'local'} ({reason}); is its "
                    "head running, and does this machine have the cluster's token "
                    "(RAY_AUTH_MODE=token, and the head's ~/.ray/auth_token)?") from e
            self._owns = True
            res = ray.cluster_resources()
            LOG.info("Ray ready in %.1f s: %d nodes, %g CPUs, %g GPUs", time.perf_counter() - t0,
                     len(ray.nodes()), res.get("CPU", 0), res.get("GPU", 0))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the CLI draws its own; and no note saying so:
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        ctx.execution_options.preserve_order = True  # catalog ids as a one-worker local run
        ctx.retried_map_errors, ctx.max_map_retries = True, RETRIES  # a task that raised
        # a task whose worker died (a node lost) is retried by Ray Data until it succeeds
        if not LOG.isEnabledFor(logging.INFO):
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        return ray

    def _release(self) -> None:
        """Kill the kept encoding actors, if any."""
        if self._pool is not None and self.ray.is_initialized():
            for actor in self._pool[2]:
                self.ray.kill(actor)
        self._pool = None

    def close(self) -> None:
        self._release()
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns = False

    # -- reading ----------------------------------------------------------------------------
    def read(self, tasks: list[ReadTask], workers: int | None = None) -> Iterator[dict]:
        """Ray Data tasks of READ_CHUNK files each, retried when they raise (RETRIES times)
        or their worker dies; results come back in the order of ``tasks``."""
        if not tasks:
            return
        ray = self._connect()
        self._release()  # the read tasks need the CPUs
        for start in range(0, len(tasks), READ_WINDOW):
            window = tasks[start : start + READ_WINDOW]
            blocks = -(-len(window) // READ_CHUNK)
            ds = ray.data.from_items([{"task": pickle.dumps(t)} for t in window],
                                     override_num_blocks=blocks)
            pool = ray.data.TaskPoolStrategy(size=workers) if workers else None  # --workers
            ds = ds.map_batches(_read_batch, batch_size=None, fn_kwargs={"fault": self.fault},
                                num_cpus=1, compute=pool)
            seen = 0
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for data in batch["result"]:
                        seen += 1
                        yield pickle.loads(data)
            except Exception as e:
                if _is_ray_error(ray, e):
                    raise EngineError(f"Ray: reading photos failed after {RETRIES} retries: "
                                      f"{_line(e)}") from e
                raise
            if seen != len(window):
                raise EngineError(f"Ray: {seen} results for {len(window)} files")

    # -- encoding ---------------------------------------------------------------------------
    def _actor_options(self, method: str) -> tuple[int, dict]:
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if methods.get(method).learned else 0
        count = self.actors or gpus or max(1, int(resources.get("CPU", 1)))
        options = {"num_cpus": 1, "max_restarts": RETRIES, "max_task_retries": RETRIES}
        if gpus:
            options["num_gpus"] = 1
        return count, options

    def encode(self, method: str, embedder: Embedder, folder: Path | None,
               config: IndexConfig, batches: Iterable[Batch]
               ) -> Iterator[tuple[list[int], np.ndarray]]:
        """A pool of actors, started as batches arrive (at most one per GPU or CPU), each
        opening ``method``'s embedder once from a copy of ``folder``'s files (a learned
        method's torch model, on the actor's GPU if it has one), as this process opens it, so
        that the codes are the ones it would compute; a killed actor is restarted and its batch
        retried. The pool is kept for the next call with the same method and files, and released
        by any other call and by ``close``.
        Batches go round the pool, IN_FLIGHT_PER_ACTOR per actor, and come back in order."""
        if folder is None:
            raise EngineError("the Ray engine encodes with an embedder saved in a folder; "
                              "none was given")
        ray = self._connect()
        count, options = self._actor_options(method)
        actor_class = ray.remote(**options)(_EncodingActor)
        contents = method_files(folder)
        key = (method, hashlib.sha256(pickle.dumps(sorted(contents.items()))).hexdigest())
        if self._pool is None or self._pool[0] != key:  # another method, or retrained
            self._release()
            self._pool = (key, ray.put(contents), [])
        _, files, pool = self._pool
        pending: deque = deque()
        for i, (ids, pixels) in enumerate(batches):
            if len(pool) < count:
                pool.append(actor_class.remote(method, config, self.fault))
                LOG.info("started encoding actor %d of at most %d for %s (%s)", len(pool),
                         count, method, "1 GPU" if "num_gpus" in options else "1 CPU")
            call = pool[i % len(pool)].encode.options(retry_exceptions=True)
            pending.append((ids, call.remote([files], pixels)))
            if len(pending) >= count * IN_FLIGHT_PER_ACTOR:
                yield self._take(pending)
        while pending:
            yield self._take(pending)

    def _take(self, pending: deque) -> tuple[list[int], np.ndarray]:
        ids, ref = pending.popleft()
        try:
            codes = self.ray.get(ref)
        except Exception as e:
            if _is_ray_error(self.ray, e):
                raise EngineError(f"Ray: encoding failed after {RETRIES} retries: "
                                  f"{_line(e)}") from e
            raise
        if len(codes) != len(ids):
            raise EngineError(f"Ray: {len(codes)} codes for {len(ids)} images")
        return ids, codes


def _is_ray_error(ray, e: BaseException) -> bool:
    """Whether ``e`` comes from Ray (a task, an actor, or Ray Data), not from this process."""
    return isinstance(e, ray.exceptions.RayError) or type(e).__module__.startswith("ray.")


def _line(e: BaseException) -> str:
    """One line for an error Ray raised: the worker's own exception (Ray wraps it, with its
    traceback and advice, in several layers), as ``Type: first line of its message``."""
    chain = [e]
    while len(chain) < 16:
        inner = getattr(chain[-1], "cause", None) or chain[-1].__cause__
        if not isinstance(inner, BaseException) or inner in chain:
            break
        chain.append(inner)
    for x in reversed(chain):  # the deepest exception that is not one of Ray's wrappers
        if not type(x).__module__.startswith("ray."):
            return _first_line(x)
    for x in chain:  # only wrappers came back: the worker's error is in a traceback's text
        for line in str(x).splitlines():
            m = _RAISED.match(line.strip())
            if m and not m.group(1).startswith(("Ray", "UserCode")):
                return line.strip()
    return _first_line(chain[-1])


_RAISED = re.compile(r"^(\w+(?:Error|Exception)): \S")


def _first_line(e: BaseException) -> str:
    name = type(e).__name__.split("(")[-1].rstrip(")")  # RayTaskError(RuntimeError)
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return f"{name}: {lines[0]}" if lines else name
