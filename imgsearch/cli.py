"""The imgsearch command line: the only module that prints, exits, or imports typer and rich."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from . import build, workspace
from .config import ALL_METHODS, BASELINE_METHODS, IndexConfig
from .errors import ImgSearchError, MethodNotBuilt
from .index import VectorIndex
from .ingest import ingest
from .search import Searcher

app = typer.Typer(help="Image similarity search over your own photo collection.",
                  no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True)

IndexOpt = Annotated[str, typer.Option(
    "--index", "-i", help="Index name (under $IMGSEARCH_HOME or ./indexes) or a folder path.")]
PREFERENCE = ("ae", "vae", "pca", "pixels")  # the default query method: first one built


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")]
         = False) -> None:
    """Image similarity search over your own photo collection."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors():
    """Turn library errors into one red line on stderr and exit code 1."""
    try:
        yield
    except ImgSearchError as e:
        raise fail(str(e)) from None


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=err, transient=False)


def _progress_fn(bar: Progress, task):
    def update(done: int, total: int) -> None:
        t = bar.tasks[task]
        rate = f"{t.speed:,.0f} img/s" if t.speed else ""
        bar.update(task, completed=done, total=total, rate=rate)
    return update


def parse_methods(value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    for m in names:
        workspace.check_method(m)
    return names


@app.command("index")
def index_cmd(
    photos: Annotated[Path, typer.Argument(help="Folder of photos, searched recursively.")],
    index: IndexOpt = workspace.DEFAULT_NAME,
    methods: Annotated[str, typer.Option(help="Comma-separated methods to build.")]
    = ",".join(BASELINE_METHODS),
    workers: Annotated[int, typer.Option(help="Decoding processes (0: one per CPU core).")] = 0,
    input_size: Annotated[int | None, typer.Option(
        help="Side of the cached square images, set when the index is created "
             "(default 64).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Re-fit every method and rebuild its index "
                                               "from the cached pixels.")] = False,
) -> None:
    """Ingest PHOTOS (new, changed and deleted files only) and bring every method's index up to date.

    Example: imgsearch index ~/Pictures --index holidays
    """
    with user_errors():
        wanted = parse_methods(methods)
        if workers < 0:
            raise ImgSearchError(f"--workers must be 0 or more, got {workers}")
        if not photos.exists():
            raise ImgSearchError(f"folder not found: {photos}")
        if not photos.is_dir():
            raise ImgSearchError(f"not a folder: {photos}")
        config = IndexConfig(input_size=input_size) if input_size is not None else None
        ws = workspace.Workspace.create(index, config)
        try:
            with progress_bar() as bar:
                task = bar.add_task("ingest", total=None, rate="")
                report = ingest(photos, ws.catalog, ws.pixels, workers or None,
                                _progress_fn(bar, task))
            built = []
            for m in wanted:
                if m not in BASELINE_METHODS:
                    raise MethodNotBuilt(f"method {m!r} needs a trained model: "
                                         f"run `imgsearch train --model {m}` first")
                with progress_bar() as bar:
                    task = bar.add_task(f"encode {m}", total=None, rate="")
                    built.append(build.sync_method(ws, m, rebuild=rebuild,
                                                   on_progress=_progress_fn(bar, task)))
        except KeyboardInterrupt:
            raise fail("interrupted; everything committed so far is kept. Re-run the same "
                       "command to resume.", 130) from None
        finally:
            ws.close()
    err.print(
        f"[bold]{report.root}[/bold]: {report.scanned} files, {report.added} new, "
        f"{report.updated} changed, {report.unchanged} unchanged, {report.reused} reused by "
        f"content hash, {report.removed} removed, {len(report.failed)} failed "
        f"({report.seconds:.1f}s)", highlight=False, soft_wrap=True)
    for b in built:
        err.print(f"  {b.method}: {b.total} codes ({b.kind}), {b.encoded} encoded, "
                  f"{b.removed} removed ({b.seconds:.1f}s)", highlight=False, soft_wrap=True)
    if report.failed:
        err.print(f"[yellow]{len(report.failed)} file(s) could not be read:[/yellow]")
        for path, reason in report.failed[:20]:
            err.print(f"  {path}: {reason}", highlight=False, markup=False, soft_wrap=True)
        if len(report.failed) > 20:
            err.print(f"  ... and {len(report.failed) - 20} more "
                      f"(`sqlite-utils rows {ws.root / ws.CATALOG} images --where "
                      f"\"state='failed'\"`)", highlight=False, markup=False, soft_wrap=True)
    err.print(f"index ready: {ws.root}", highlight=False, soft_wrap=True)


def open_searcher(ws: workspace.Workspace, method: str) -> Searcher:
    workspace.check_method(method)
    if ws.method_state(method) is None:
        built = ", ".join(ws.built_methods()) or "none"
        raise MethodNotBuilt(f"method {method!r} is not built in index {ws.root} "
                             f"(built: {built})")
    index = VectorIndex.load(ws.index_path(method), ws.config.ivf_nprobe)
    return Searcher(ws.catalog, build.open_embedder(ws, method), index, ws.config.input_size)


@app.command("query")
def query_cmd(
    image: Annotated[Path, typer.Argument(help="The query image.")],
    index: IndexOpt = workspace.DEFAULT_NAME,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of neighbours.")] = 10,
    method: Annotated[str | None, typer.Option(
        help=f"One of {', '.join(ALL_METHODS)}; default: the first built of "
             f"{', '.join(PREFERENCE)}.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    montage: Annotated[Path | None, typer.Option(
        help="Write a PNG contact sheet of the query and its neighbours.")] = None,
) -> None:
    """Find the images most like IMAGE.

    Example: imgsearch query face.jpg -k 5 --method pca --montage face-neighbours.png
    """
    with user_errors():
        if k <= 0:
            raise ImgSearchError(f"-k must be at least 1, got {k}")
        if method is not None:
            workspace.check_method(method)
        ws = workspace.Workspace.open(index)
        try:
            if method is None:
                method = next((m for m in PREFERENCE if ws.method_state(m)), None)
                if method is None:
                    raise MethodNotBuilt(f"index {ws.root} has no method built; "
                                         "run `imgsearch index PHOTOS_DIR`")
            searcher = open_searcher(ws, method)
            pixels = searcher.load_query(image)
            hits = searcher.search_pixels(pixels, k)
            if montage is not None:
                from .viz import query_montage

                query_montage(image, pixels, hits, method, montage)
        finally:
            ws.close()
    if as_json:
        print(json.dumps({"query": str(image), "method": method,
                          "results": [h.as_dict() for h in hits]}))
        return
    table = Table(title=f"{image} ({method})")
    table.add_column("rank", justify="right")
    table.add_column("distance", justify="right")
    table.add_column("path", overflow="fold")
    for h in hits:
        table.add_row(str(h.rank), f"{h.distance:.4f}", h.path)
    out.print(table)
    if montage is not None:
        err.print(f"montage written to {montage}", highlight=False, soft_wrap=True)


@app.command("info")
def info_cmd(
    index: IndexOpt = workspace.DEFAULT_NAME,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show what an index holds: counts, methods built, input size, index kinds, size on disk.

    Example: imgsearch info --index holidays
    """
    with user_errors():
        ws = workspace.Workspace.open(index)
        try:
            counts = ws.catalog.counts()
            methods = {m: ws.method_state(m) for m in ws.built_methods()}
            info = {"index": str(ws.root), "counts": counts,
                    "input_size": ws.config.input_size, "methods": methods,
                    "disk_bytes": ws.disk_bytes(), "schema_version": ws.catalog.version}
        finally:
            ws.close()
    if as_json:
        print(json.dumps(info))
        return
    out.print(f"[bold]{info['index']}[/bold]  input {ws.config.input_size}x"
              f"{ws.config.input_size}, {info['disk_bytes'] / 2**20:.1f} MiB on disk")
    out.print("images: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    table = Table()
    for col in ("method", "codes", "dim", "index"):
        table.add_column(col)
    for m, st in methods.items():
        table.add_row(m, str(st["count"]), str(st["dim"]), st["kind"])
    out.print(table if methods else "no method built yet")
