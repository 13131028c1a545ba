"""The imgsearch command line: the only module that prints, exits, or imports typer and rich."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from . import build, methods, workspace
from .config import IndexConfig, TrainConfig
from .engine import ENGINES, engine_for
from .errors import ImgSearchError, MethodNotBuilt
from .fitting import model_config, self_check, train_config, train_method
from .ingest import ScanRules, check_folder
from .pipeline import update_index
from .search import VERIFY_TOP, Searcher, features_soon, region_margin, verify_hits

app = typer.Typer(help="Image similarity search over your own photo collection.",
                  no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True)

IndexOpt = Annotated[str, typer.Option(
    "--index", "-i", help="Index name (under $IMGSEARCH_HOME or ./indexes) or a folder path.")]
WaitOpt = Annotated[bool, typer.Option(
    "--wait", help="If another process is updating the index, wait for it instead of "
                   "stopping with an error.")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")]
         = False) -> None:
    """Image similarity search over your own photo collection."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)


def printable(path: str) -> str:
    """A path fit for the terminal: bytes that are not UTF-8 shown as U+FFFD, newlines as \\n.
    (--json keeps the exact name: json escapes the surrogates that carry such bytes.)"""
    text = os.fsencode(path).decode("utf-8", "replace")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False,
              soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors():
    """Turn library errors into one red line on stderr and exit code 1."""
    try:
        yield
    except ImgSearchError as e:
        raise fail(str(e)) from None


class RateColumn(ProgressColumn):
    """Images (or training steps) per second, computed when the bar is drawn."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit", "img")
        return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else "",
                    style="progress.data.speed")


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                    RateColumn(), TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=err)


def say_when_queries_work(progress, ws: workspace.Workspace, index: str):
    """``progress``, which also says, once, when a model starts training while other methods
    are built already, that queries work now and how to run one."""
    said = []

    def report(phase: str, done: int, total: int | None, note: str = "") -> None:
        if phase.startswith("train ") and not said:  # once: models train last (pipeline.plan)
            said.append(phase)  # so what is built now is all that answers while they train
            built = ws.built_methods()
        else:
            built = []
        if built:
            err.print(f"queries work now with {', '.join(built)} while "
                      f"{phase.removeprefix('train ')} trains: imgsearch query PHOTO "
                      f"--index {index}  (`imgsearch info --index {index}` shows the "
                      "training)", highlight=False, soft_wrap=True)
        progress(phase, done, total, note)
    return report


LINE_SECONDS = 5.0  # a plain progress line per phase at most this often


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return (f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else
            f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


class ProgressLines:
    """progress(phase, done, total, note) as plain lines, for a log rather than a terminal:
    one line per phase every LINE_SECONDS at most, and one when it ends, with the count, the
    rate and the time left."""

    def __init__(self, write, clock=time.monotonic) -> None:
        self.write, self.clock = write, clock
        self.phases: dict[str, list] = {}  # phase -> [start, last line, done, total, note]

    def __call__(self, phase: str, done: int, total: int | None, note: str = "") -> None:
        now = self.clock()
        p = self.phases.setdefault(phase, [now, -float("inf"), 0, total, ""])
        if p[1] == float("inf"):
            return  # its last line is printed
        p[2:] = [done, total, note]
        finished = total is not None and done >= total
        if finished or now - p[1] >= LINE_SECONDS:
            p[1] = now if not finished else float("inf")  # one line at the end, not more
            self.write(self.line(phase, now))

    def line(self, phase: str, now: float) -> str:
        start, _, done, total, note = self.phases[phase]
        unit = ("steps" if phase.startswith("train") else "pairs" if phase.endswith("verifying")
                else "images")
        rate = done / (now - start) if now > start and done else 0.0
        text = f"{phase}: {done:,}" + (f"/{total:,}" if total is not None else "") + f" {unit}"
        if rate:
            text += f", {rate:,.1f}/s"
        if total is not None and done >= total:
            text += f", done in {_duration(now - start)}"
        elif rate and total is not None:
            text += f", ETA {_duration((total - done) / rate)}"
        return text + (f", {note}" if note else "")

    def finish(self) -> None:
        """The last line of every phase that did not end with one."""
        now = self.clock()
        for phase, p in self.phases.items():
            if p[1] != float("inf"):
                self.write(self.line(phase, now))


@contextmanager
def progress_bars():
    """A progress(phase, done, total, note) callback that draws one bar per phase on a
    terminal, and prints plain lines (ProgressLines) when stderr is a log, a pipe or CI. The
    bars appear with the first report, so an error raised before any work prints alone."""
    if not err.is_terminal:
        lines = ProgressLines(lambda text: err.print(text, highlight=False, soft_wrap=True))
        try:
            yield lines
        finally:
            lines.finish()
        return
    bar = progress_bar()
    tasks: dict[str, object] = {}

    def progress(phase: str, done: int, total: int | None, note: str = "") -> None:
        if not tasks:
            bar.start()
        if phase not in tasks:
            unit = ("step" if phase.startswith("train") else "pair"
                    if phase.endswith("verifying") else "img")
            tasks[phase] = bar.add_task(phase, total=total, note=note, unit=unit)
        bar.update(tasks[phase], completed=done, total=total, note=note)

    try:
        yield progress
    finally:
        if tasks:
            bar.stop()


def parse_size(value: str) -> int:
    """"2G", "500M", "64k" or a number of bytes -> bytes."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(float(text))
    except ValueError:
        raise ImgSearchError(f"cannot read {value!r} as a size: write e.g. 2G or 500M") from None


def parse_methods(value: str) -> list[str]:
    names = [m.strip() for m in value.split(",") if m.strip()]
    for m in names:
        methods.get(m)
    return names


def parse_widths(text: str | None) -> tuple[int, ...] | None:
    """--widths "64,128,256" as channel counts; a typo is refused in one line."""
    if text is None:
        return None
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise ImgSearchError(f"--widths must be comma-separated channel counts such as "
                             f"64,128,256,256, got {text!r}") from None


def print_build(b) -> None:
    err.print(f"  {b.method}: {b.total} codes ({b.index_type}), {b.encoded} encoded, "
              f"{b.removed} removed ({b.action}, {b.seconds:.1f}s)", highlight=False,
              soft_wrap=True)


@app.command("index")
def index_cmd(
    photos: Annotated[Path, typer.Argument(help="Folder of photos, searched recursively.")],
    index: IndexOpt = workspace.DEFAULT_NAME,
    methods_opt: Annotated[str, typer.Option(
        "--methods", help=f"Comma-separated methods to build, of {', '.join(methods.names())}.")]
    = "pixels,pca,ae",
    model: Annotated[Path | None, typer.Option(
        help="Use this trained checkpoint (of a learned method) instead of training one.")]
    = None,
    train_steps: Annotated[int | None, typer.Option(
        help="Training steps for a model the index does not have yet (default: 20 epochs of "
             "the collection, and at least 300 steps on a small collection).")] = None,
    train_epochs: Annotated[int | None, typer.Option(
        help="Epochs of training for a model the index does not have yet, exactly (no "
             "300-step minimum then).")] = None,
    train_minutes: Annotated[float, typer.Option(
        help="A cap on training time: where the steps would not fit, training ends sooner "
             "and `info` says it was cut short (0: no cap).")] = 15.0,
    workers: Annotated[int, typer.Option(help="Decoding processes (0: one per CPU core).")] = 0,
    exclude: Annotated[list[str] | None, typer.Option(
        help="Leave out files and folders matching this glob, by name or by path relative to "
             "PHOTOS (repeatable): --exclude '*.png' --exclude Screenshots "
             "--exclude 'trips/2019/*'.")] = None,
    include_hidden: Annotated[bool, typer.Option(
        help="Also index hidden files and folders (names starting with a dot).")] = False,
    max_megapixels: Annotated[float, typer.Option(
        help="Record images bigger than this as failed instead of reading them (0: no "
             "limit).")] = 0.0,
    index_memory: Annotated[str | None, typer.Option(
        help="Memory budget of each method's vector index, e.g. 2G or 500M (default: a "
             "quarter of this machine's memory); it decides exact, IVF, SQ8 or PQ.")] = None,
    input_size: Annotated[int | None, typer.Option(
        help="Side of the cached square images, set when the index is created "
             "(default 64).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Re-fit every method and rebuild its index "
                                               "from the cached pixels; a corrupt catalog is "
                                               "moved aside and the folder ingested anew.")]
    = False,
    duplicates: Annotated[bool, typer.Option(
        "--duplicates/--no-duplicates", help="Find the groups of duplicates last, verifying "
        "only pairs not verified before, and keep them for `imgsearch duplicates` and the "
        "page (the features every photo needs for them are stored either way).")] = True,
    wait: WaitOpt = False,
    engine_name: Annotated[str, typer.Option(
        "--engine", help=f"Where photos are decoded and codes encoded: {' or '.join(ENGINES)} "
                         "(a Ray cluster; pip install 'imgsearch\\[ray]'). Training, and "
                         "writing the index, always happen here.")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="The Ray cluster for --engine ray: HOST:PORT of its head, or auto (default: "
             "$RAY_ADDRESS, else the cluster last started on this machine, else a new local "
             "one).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print what the run did as one JSON object (times per phase "
                       "included).")] = False,
) -> None:
    """Ingest PHOTOS (new, changed and deleted files only) and bring every method up to date.

    A method the index has not learned yet (ae, vae) is trained first, within
    --train-minutes; later runs encode new photos with the same model.

    Example: imgsearch index ~/Pictures --index holidays
    """
    with user_errors():
        wanted = parse_methods(methods_opt)
        if workers < 0:
            raise ImgSearchError(f"--workers must be 0 or more, got {workers}")
        if max_megapixels < 0:
            raise ImgSearchError(f"--max-megapixels must be 0 or more, got {max_megapixels:g}")
        if train_minutes < 0 or any(v is not None and v < 1 for v in (train_epochs,
                                                                       train_steps)):
            raise ImgSearchError("--train-minutes must be 0 or more, --train-epochs and "
                                 "--train-steps at least 1")
        if input_size is not None and not (16 <= input_size <= 1024 and input_size % 16 == 0):
            raise ImgSearchError(f"--input-size must be a multiple of 16 from 16 to 1024, "
                                 f"got {input_size}")
        check_folder(photos)  # before an index folder is created for nothing
        engine = engine_for(engine_name, ray_address)  # Ray installed? (connects on first use)
        config = (IndexConfig(input_size=input_size, pixel_size=min(32, input_size))
                  if input_size is not None else None)
        ws = workspace.Workspace.create(index, config)
        try:
            with engine, progress_bars() as bars:
                progress = say_when_queries_work(bars, ws, index)
                result = update_index(
                    ws, photos, wanted, model=model, rebuild=rebuild,
                    training={"max_minutes": train_minutes, **epochs_exactly(train_epochs),
                              **_given(steps=train_steps)},
                    workers=workers or None, wait=None if wait else 0, progress=progress,
                    rules=ScanRules(tuple(exclude or ()), include_hidden, max_megapixels),
                    index_memory=parse_size(index_memory) if index_memory else None,
                    engine=engine, duplicates=duplicates)
        except KeyboardInterrupt:
            raise fail("interrupted; everything committed so far is kept. Re-run the same "
                       "command to resume.", 130) from None
        finally:
            ws.close()
    if as_json:
        print(json.dumps(result.as_dict()))
    for note in result.notes:
        err.print(f"[yellow]{note}[/yellow]", highlight=False, soft_wrap=True)
    report = result.ingest
    err.print(
        f"[bold]{report.root}[/bold]: {report.scanned} files, {report.added} new, "
        f"{report.updated} changed, {report.unchanged} unchanged, {report.reused} reused by "
        f"content hash, {report.removed} removed, {len(report.failed)} failed "
        f"({report.seconds:.1f}s)", highlight=False, soft_wrap=True)
    for b in result.built:
        print_build(b)
    if report.features:
        err.print(f"  features stored for {report.features} image(s) indexed without them",
                  highlight=False)
    if result.duplicates is not None:
        d = result.duplicates
        err.print(f"  duplicates ({d['method']}): {d['groups']} group(s), {d['duplicates']} "
                  f"duplicate(s), kept with the index ({d['seconds']:.1f}s; `imgsearch "
                  "duplicates` shows them)", highlight=False)
    if report.failed:
        err.print(f"[yellow]{len(report.failed)} file(s) could not be read:[/yellow]")
        for path, reason in report.failed[:20]:
            err.print(f"  {printable(path)}: {reason}", highlight=False, markup=False,
                      soft_wrap=True)
        if len(report.failed) > 20:
            err.print(f"  ... and {len(report.failed) - 20} more "
                      f"(`sqlite-utils rows {ws.root / ws.CATALOG} images --where "
                      f"\"state='failed'\"`)", highlight=False, markup=False, soft_wrap=True)
    err.print(f"index ready: {ws.root}", highlight=False, soft_wrap=True)


def open_searcher(ws: workspace.Workspace, method: str):
    """The method's searcher (its embedder and index, loaded together while no writer swaps
    them) and its state."""
    loaded = build.load_method(ws, methods.get(method).name)
    return (Searcher(ws.catalog, loaded.embedder, loaded.index, ws.config.input_size),
            loaded.state)


@app.command("query")
def query_cmd(
    image: Annotated[Path, typer.Argument(help="The query image.")],
    index: IndexOpt = workspace.DEFAULT_NAME,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of neighbours.")] = 10,
    method: Annotated[str | None, typer.Option(
        help=f"One of {', '.join(methods.names())}; default: the index's preferred method "
             "(`imgsearch info`).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    montage: Annotated[Path | None, typer.Option(
        help="Write a PNG contact sheet of the query and its neighbours.")] = None,
    regions: Annotated[bool | None, typer.Option(
        "--regions/--no-regions", help="Also search with crops of the query, to find a photo "
        "pasted into a larger picture (default: on where the index calibrated it).")] = None,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help=f"Verify the first {VERIFY_TOP} candidates by geometry "
        "and put the proven copies of the query first.")] = True,
) -> None:
    """Find the images most like IMAGE.

    Example: imgsearch query face.jpg -k 5 --method pca --montage face-neighbours.png
    """
    with user_errors():
        if k <= 0:
            raise ImgSearchError(f"-k must be at least 1, got {k}")
        if method is not None:
            methods.get(method)
        if verify and image.is_file():
            query_features = features_soon(image)  # in a thread, beside the search
        ws = workspace.Workspace.open(index)
        try:
            method = method or ws.preferred_method()
            searcher, state = open_searcher(ws, method)
            margin = region_margin(state.query_margin, regions)
            images = searcher.load_query(image, regions=margin is not None)
            hits = searcher.search_query(images, max(k, VERIFY_TOP) if verify else k, margin,
                                         turns=verify)
            if verify:
                from .copies.evidence import Stored

                hits = verify_hits(query_features.result(), hits, k,
                                   stored=Stored(ws.catalog))
            pixels = images[0]  # the whole query, for the montage
            if montage is not None:
                from .viz import query_montage

                query_montage(image, pixels, hits, method, montage)
            training = ws.training()
        finally:
            ws.close()
    if as_json:
        print(json.dumps({"query": str(image), "method": method, "regions": margin is not None,
                          "verified": verify, "results": [h.as_dict() for h in hits],
                          "training": training}))
        return
    table = Table(title=f"{printable(str(image))} ({method})")
    table.add_column("rank", justify="right")
    table.add_column("distance", justify="right")
    table.add_column("copy", justify="right")
    table.add_column("path", overflow="fold")
    for h in hits:
        copy = f"yes, {h.shared:.0%}" if h.verified else "" if h.verified is None else "no"
        table.add_row(str(h.rank), f"{h.distance:.4f}", copy, printable(h.path))
    out.print(table)
    for m, t in training.items():
        err.print(f"{m}: {training_line(t)}", highlight=False, soft_wrap=True)
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
            info = {"index": str(ws.root), **ws.summary(), "disk_bytes": ws.disk_bytes(),
                    "schema_version": ws.catalog.version}
            counts, built = info["counts"], info["methods"]
            preferred, because = info["preferred"], info["preferred_because"]
        finally:
            ws.close()
    if as_json:
        print(json.dumps(info))
        return
    out.print(f"[bold]{info['index']}[/bold]  input {ws.config.input_size}x"
              f"{ws.config.input_size}, {info['disk_bytes'] / 2**20:.1f} MiB on disk")
    out.print("images: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    table = Table()
    for col in ("method", "codes", "dim", "index type", "recall@10", "self-check recall@1",
                "other shots recall@1", "duplicates within"):
        table.add_column(col)
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for m, st in built.items():
        kind = st["index_type"] + (f", nprobe {st['nprobe']}" if st["nprobe"] else "")
        table.add_row(m + (" (preferred)" if m == info["preferred"] else ""), str(st["count"]),
                      str(st["dim"]), kind, fmt(st["recall"], ".3f"),
                      fmt(st["selfcheck"], ".3f") + (f" ± {st['selfcheck_se']:.3f}"
                                                     if st.get("selfcheck_se") else ""),
                      f"{st['shots']['score']:.3f} ± {st['shots']['se']:.3f}"
                      if st.get("shots") else "-",
                      fmt(st["duplicate_threshold"], ".4g"))
    out.print(table if built else "no method built yet")
    for m, st in built.items():
        if st.get("reconstruction"):
            out.print(f"{m}: {reconstruction_line(st['reconstruction'])}", highlight=False)
    for m, st in built.items():
        if st.get("training") and m not in info["training"]:
            out.print(f"{m}: {trained_line(st['training'])}", highlight=False)
    for m, t in info["training"].items():
        out.print(f"{m}: {training_line(t)}", highlight=False)
    if preferred:
        out.print(f"queries use {preferred} by default: {because}", highlight=False)


def reconstruction_line(r: dict) -> str:
    """What ``imgsearch info`` says of a method's held-out reconstructions."""
    pca = (f"; PCA at {r['pca_dim']}-d on the same training images: {r['pca_psnr']:.1f} dB"
           if r.get("pca_psnr") is not None else "")
    return (f"reconstructs {r['images']} held-out images at PSNR {r['psnr']:.1f} dB "
            f"({r['size']}x{r['size']}){pca}")


@app.command("check")
def check_cmd(
    index: IndexOpt = workspace.DEFAULT_NAME,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check that the catalog, the pixel cache and every method's index agree (exit 1 if not).

    Example: imgsearch check --index holidays
    """
    from dataclasses import asdict

    from .integrity import check

    with user_errors():
        ws = workspace.Workspace.open(index)
        try:
            result = check(ws)
        finally:
            ws.close()
    if as_json:
        print(json.dumps(asdict(result) | {"ok": result.ok}))
    else:
        for m in result.methods:
            out.print(f"{m.method}: {m.codes} codes, synced to generation {m.gen} "
                      f"({m.pending} catalog rows changed since)", highlight=False)
        if result.lacking_features:
            out.print(f"{result.lacking_features} indexed images have no stored features: "
                      "the next `imgsearch index` computes them", highlight=False)
        for p in result.all_problems():
            out.print(f"[red]problem:[/red] {p}", highlight=False)
        out.print("ok" if result.ok else "run `imgsearch index PHOTOS_DIR --rebuild` to "
                  "rebuild the method indexes from the catalog", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


def _train(ws: workspace.Workspace, method: str, train_cfg: TrainConfig, settings: dict,
           fresh: bool = False, post: str | None = None):
    """Train ``method`` on the index with progress bars; returns (history, build report)."""
    model_cfg = model_config(ws, method, **settings)
    with progress_bars() as progress:
        history, report = train_method(ws, method, model_cfg, train_cfg, check=self_check(ws),
                                       fresh=fresh, progress=progress, post=post)
    for h in history[-3:]:
        check = f", self-check {h.selfcheck:.3f}" if h.selfcheck is not None else ""
        err.print(f"  {method} epoch {h.epoch}: train loss {h.train_loss:.5g}, "
                  f"validation loss {h.val_loss:.5g}{check}, {h.images_per_s:,.0f} img/s",
                  highlight=False, soft_wrap=True)
    return history, report


@app.command("duplicates")
def duplicates_cmd(
    index: IndexOpt = workspace.DEFAULT_NAME,
    method: Annotated[str | None, typer.Option(
        help="Whose codes to compare (default: the index's preferred method).")] = None,
    threshold: Annotated[str | None, typer.Option(
        help="Code distance within which pairs are candidates (with --verify, pairs whose "
             "local features match are candidates too): a distance (0.4) or a "
             "multiple of the calibrated one (2x). Default: calibrated on the collection "
             "when the method was built (`imgsearch info` shows it).")] = None,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="Prove every pair by geometry (matched keypoints, a "
        "fitted homography, the share of each picture the other explains); --no-verify "
        "groups by code distance alone.")] = True,
    keep: Annotated[str, typer.Option(
        help="Which member of a group to keep: original (the picture the others were made "
             "from), largest, oldest, newest, or a glob of paths to keep ('*.heic').")]
    = "original",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV: one row per image.")]
    = False,
    montage: Annotated[Path | None, typer.Option(
        help="Write one contact sheet per group into this folder.")] = None,
    move_to: Annotated[Path | None, typer.Option(
        help="Move every non-keeper into this folder (relative paths kept), log the moves, "
             "and update the index.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Move without asking.")] = False,
    undo: Annotated[Path | None, typer.Option(
        help="Put back the files a --move-to log lists, and update the index.")] = None,
    wait: WaitOpt = False,
) -> None:
    """Find groups of near-duplicates: copies, resized, cropped, mirrored, rotated, captioned,
    bordered or re-saved versions, each pair proven by geometry. Each group names a keeper
    (by default the original: the picture the others were made from) and why.

    Nothing is ever deleted: --move-to moves the others aside, with a log that --undo reads.

    Example: imgsearch duplicates --montage dups/ --move-to ~/duplicates
    """
    from .copies import kept
    from .copies import moves as moving

    with user_errors():
        if as_json and as_csv:
            raise ImgSearchError("--json and --csv: choose one")
        given, times = parse_threshold(threshold)
        if method is not None:
            methods.get(method)
        ws = workspace.Workspace.open(index)
    try:
        with user_errors():
            if undo is not None:
                if not undo.is_file():
                    raise ImgSearchError(f"move log not found: {undo}")
                back = moving.undo(undo)
                err.print(f"put back {back} file(s) listed in {undo}", highlight=False)
                _reindex(ws, wait)
                return
            with progress_bars() as progress:
                found = kept.find(ws, method or ws.preferred_method(), given, times,
                                  verify=verify, keep=keep, progress=progress)
            moves = (moving.plan_moves(found.groups, ws.catalog.root or "/", move_to)
                     if move_to is not None else [])
        _show_duplicates(found, as_json, as_csv)
        if montage is not None:
            from .viz import group_sheet

            for n, g in enumerate(found.groups, 1):
                group_sheet(g, montage / f"group-{n:04d}.png")
            err.print(f"{len(found.groups)} contact sheet(s) written to {montage}",
                      highlight=False)
        if moves:
            if not yes and not typer.confirm(
                    f"Move {len(moves)} file(s) into {move_to}?", err=True):
                raise fail("nothing moved", 1)
            log = moving.new_log(move_to)
            with user_errors():
                moved = moving.move(moves, log)
            err.print(f"moved {moved} file(s) into {move_to}; undo with `imgsearch duplicates "
                      f"--index {index} --undo {log}`", highlight=False, soft_wrap=True)
            with user_errors():
                _reindex(ws, wait)
    finally:
        ws.close()


def parse_threshold(value: str | None) -> tuple[float | None, float]:
    """--threshold: (a distance, 1.0) or (None, a multiple of the calibrated one)."""
    if value is None:
        return None, 1.0
    text = value.strip().lower()
    try:
        x = float(text[:-1] if text.endswith("x") else text)
    except ValueError:
        raise ImgSearchError(f"--threshold takes a distance (0.4) or a multiple of the "
                             f"calibrated one (2x), got {value!r}") from None
    if x < 0 or (text.endswith("x") and x == 0):
        raise ImgSearchError(f"--threshold must be more than 0, got {value!r}")
    return (None, x) if text.endswith("x") else (x, 1.0)


def _show_duplicates(found, as_json: bool, as_csv: bool) -> None:
    if as_json:
        print(json.dumps(found.as_dict()))
        return
    if as_csv:
        import csv
        import sys

        w = csv.writer(sys.stdout)
        w.writerow(["group", "role", "id", "path", "distance", "shared", "inliers", "width",
                    "height", "bytes", "reason"])
        for n, g in enumerate(found.groups, 1):
            for role, m in [("keep", g.keeper)] + [("duplicate", m) for m in g.others]:
                w.writerow([n, role, m.id, m.path, f"{m.distance:.6g}",
                            "" if m.shared is None else f"{m.shared:.3f}",
                            "" if m.inliers is None else m.inliers, m.width, m.height,
                            m.size, g.keeper_reason if role == "keep" else ""])
        return
    n_dups = sum(len(g.others) for g in found.groups)
    err.print(f"{found.method}: {len(found.groups)} group(s), {n_dups} duplicate(s) among "
              f"{found.images} images (threshold {found.threshold:.4g}, "
              f"{found.threshold_from}; "
              f"{'verified by geometry' if found.verified else 'not verified'})",
              highlight=False)
    table = Table()
    for col in ("group", "", "distance", "shared", "size", "path"):
        table.add_column(col, overflow="fold" if col == "path" else None)
    for n, g in enumerate(found.groups, 1):
        for role, m in [("keep", g.keeper)] + [("", m) for m in g.others]:
            size = f"{m.width}x{m.height}" if m.width else "?"
            shared = (g.keeper_reason if role else
                      "" if m.shared is None else f"{m.shared:.0%} ({m.inliers} inliers)")
            table.add_row(str(n), role, f"{m.distance:.4f}", shared, size, printable(m.path))
    if found.groups:
        out.print(table)


def _reindex(ws: workspace.Workspace, wait: bool) -> None:
    """Bring the index up to date with its folder after files moved (a normal re-index)."""
    root = ws.catalog.root
    if root is None or not Path(root).is_dir():
        err.print("run `imgsearch index PHOTOS_DIR` to update the index", highlight=False)
        return
    with progress_bars() as progress:
        result = update_index(ws, Path(root), ws.built_methods(), wait=None if wait else 0,
                              progress=progress)
    r = result.ingest
    err.print(f"index updated: {r.removed} removed, {r.added} new", highlight=False)


@app.command("serve")
def serve_cmd(
    index: IndexOpt = workspace.DEFAULT_NAME,
    host: Annotated[str, typer.Option(
        help="Address to listen on; 127.0.0.1 keeps the page on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve a local web page of the index: the collection, its neighbours by every method,
    search by upload, duplicates and a map.

    Example: imgsearch serve --index holidays, then open http://127.0.0.1:8000
    """
    import uvicorn

    from .server import create_app

    with user_errors():
        if not 0 < port < 65536:
            raise ImgSearchError(f"--port must be from 1 to 65535, got {port}")
        web = create_app(workspace.resolve(index))
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/yellow] listening on {host}: anyone who can reach this "
                  "machine can browse your photos", highlight=False)
    err.print(f"serving {workspace.resolve(index)} at http://{host}:{port} (Ctrl-C stops)",
              highlight=False, soft_wrap=True)
    uvicorn.run(web, host=host, port=port, log_level="warning")


@app.command("map")
def map_cmd(
    out_png: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    index: IndexOpt = workspace.DEFAULT_NAME,
    method: Annotated[str | None, typer.Option(
        help="Whose codes place the photos (default: the index's preferred method).")] = None,
    n: Annotated[int, typer.Option("-n", help="At most this many photos (a seeded sample).")]
    = 1000,
    size: Annotated[int, typer.Option(help="Side of the picture in pixels.")] = 2400,
) -> None:
    """Draw a 2-D map of the collection: small thumbnails placed by a t-SNE of their codes,
    so that similar photos sit together.

    Example: imgsearch map --out map.png -n 2000
    """
    from .viz import layout, map_picture, save_png

    with user_errors():
        if n < 2 or size < 200:
            raise ImgSearchError("-n must be at least 2 and --size at least 200")
        if method is not None:
            methods.get(method)
        ws = workspace.Workspace.open(index)
        try:
            chosen = method or ws.preferred_method()
            ids, xy = layout(ws, chosen, n)
            pixels = ws.cache.read(ids)
            save_png(map_picture(pixels, xy, size, title=f"{ws.root.name}: {len(ids)} photos "
                                 f"by {chosen}"), out_png)
        finally:
            ws.close()
    err.print(f"map of {len(ids)} photos written to {out_png}", highlight=False, soft_wrap=True)


def training_line(t: dict) -> str:
    """A training run that has not finished (Workspace.training), in words."""
    step, work, best = t.get("step", 0), t.get("work"), t.get("best_selfcheck")
    where = f"step {step:,}" + (f" of {work:,}" if work else "")
    best = f", best self-check so far {best:.3f}" if best is not None else ""
    if t.get("state") == "training":
        return f"training, {where}{best}; the other methods answer queries meanwhile"
    return (f"training interrupted at {where}{best}; `imgsearch index` resumes it "
            "(`imgsearch train --fresh` starts anew)")


def trained_line(t: dict) -> str:
    """How a learned method's training went, in words: the steps of the planned work, and
    whether the time cap cut it short."""
    steps, work, minutes = t.get("steps", 0), t.get("work", 0), t.get("minutes", 0)
    line = f"trained {steps:,} of {work:,} steps in {minutes:.1f} min"
    if t.get("capped"):
        line += (f", cut short by the {t.get('cap_minutes', 0):g}-minute cap (--train-minutes"
                 " raises it)")
    return line


def _given(**values) -> dict:
    """The options the user gave (not None): they override the method's recipe."""
    return {k: v for k, v in values.items() if v is not None}


def epochs_exactly(epochs: int | None) -> dict:
    """Training settings for epochs asked for on the command line: that many, and no
    minimum number of steps that would silently add more; none when not asked."""
    return {} if epochs is None else {"epochs": epochs, "min_steps": 0}


@app.command("train")
def train_cmd(
    model: Annotated[str, typer.Option(
        "--model", "-m", help=f"The learned method: {', '.join(methods.names(learned=True))}.")]
    = "ae",
    index: IndexOpt = workspace.DEFAULT_NAME,
    epochs: Annotated[int | None, typer.Option(
        help="Epochs in all, exactly (a resumed run continues); --min-steps applies only if "
             "given too.")] = None,
    min_steps: Annotated[int | None, typer.Option(
        help="Small collections: train at least this many steps (default 300 when --epochs "
             "is not given).")] = None,
    steps: Annotated[int | None, typer.Option(
        help="Train exactly this many steps in all (instead of epochs).")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="A cap on this run's time: where the steps would not fit, the schedule ends "
             "sooner and `info` says so (0: none; default 15).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW peak learning rate.")] = None,
    patience: Annotated[int | None, typer.Option(
        help="Stop after this many self-checks without improvement (0: never).")] = None,
    invariance: Annotated[str | None, typer.Option(
        help="Pull the codes of two edited views of each image together: vicreg, infonce, "
             "byol (towards a moving average of the model) or none.")] = None,
    local_views: Annotated[int | None, typer.Option(
        help="Small crops of each image pulled towards its two views (multi-crop).")] = None,
    clean_weight: Annotated[float | None, typer.Option(
        help="Weight of reconstructing the clean image from itself beside the views.")] = None,
    invariant_dims: Annotated[int | None, typer.Option(
        help="The invariance term sees only the code's first N dimensions; the rest are "
             "free for reconstruction (0: the whole code).")] = None,
    view_reconstruction: Annotated[bool | None, typer.Option(
        "--view-reconstruction/--no-view-reconstruction",
        help="Each view reconstructs the clean image (off: the views are only encoded, and "
             "--clean-weight must be positive).")] = None,
    decoder_refine: Annotated[int | None, typer.Option(
        help="Residual convolutions each decoder block adds before its deconvolution.")]
    = None,
    encoder_refine: Annotated[int | None, typer.Option(
        help="Residual convolutions each encoder block adds before its pooling.")] = None,
    widths: Annotated[str | None, typer.Option(
        help="The encoder's channels per block, comma-separated (one pooling each), e.g. "
             "64,128,256,256.")] = None,
    decoder_linear: Annotated[bool | None, typer.Option(
        "--decoder-linear/--no-decoder-linear",
        help="AE: a linear map from the code to the output beside the deconvolutions.")]
    = None,
    invariance_weight: Annotated[float | None, typer.Option(
        help="Weight of the invariance term beside reconstruction.")] = None,
    koleo: Annotated[float | None, typer.Option(
        help="Weight of the KoLeo term that spreads codes apart (SSCD).")] = None,
    augment: Annotated[str | None, typer.Option(
        help="Edits for the views: auto, photo or small (grey or small images).")] = None,
    post: Annotated[str | None, typer.Option(
        help="Retrieval-time processing of the codes, any of flip,center,whiten,l2 "
             "(whiten=P: partly, P in 0..1), or none.")] = None,
    beta: Annotated[float | None, typer.Option(
        help="VAE: weight of the KL term (beta-VAE); with --kl tc, of the total "
             "correlation.")] = None,
    kl: Annotated[str | None, typer.Option(
        help="VAE: closed (beta * KL) or tc (beta-TCVAE: alpha MI + beta TC + gamma "
             "dimension-wise KL).")] = None,
    alpha: Annotated[float | None, typer.Option(
        help="beta-TCVAE: weight of the mutual information.")] = None,
    gamma: Annotated[float | None, typer.Option(
        help="beta-TCVAE: weight of the dimension-wise KL.")] = None,
    tied: Annotated[bool | None, typer.Option(
        "--tied/--untied", help="AE: the decoder's linear layer is the encoder's, "
                                "transposed.")] = None,
    tied_convs: Annotated[bool | None, typer.Option(
        "--tied-convs/--untied-convs", help="AE: the deconvolutions use the encoder's "
                                            "kernels too.")] = None,
    adversarial_weight: Annotated[float | None, typer.Option(
        help="AAE: weight of the encoder's loss against the discriminator.")] = None,
    denoise: Annotated[str | None, typer.Option(
        help="Input corruption: none, gaussian, mask, or edits (photo edits).")] = None,
    noise: Annotated[float | None, typer.Option(help="Gaussian std or mask probability.")]
    = None,
    sparse: Annotated[str | None, typer.Option(help="AE sparsity: none, l1 or kl.")] = None,
    sparse_weight: Annotated[float | None, typer.Option(help="Weight of the sparsity term.")]
    = None,
    contractive: Annotated[float | None, typer.Option(
        help="AE: weight of the encoder Jacobian's squared Frobenius norm.")] = None,
    unpool: Annotated[str | None, typer.Option(
        help="AE decoder: fixed (from the code alone) or switches (encoder's argmax).")]
    = None,
    dropout: Annotated[float | None, typer.Option(
        help="Dropout2d after every encoder block.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    fresh: Annotated[bool, typer.Option(help="Discard the saved checkpoint; start anew.")]
    = False,
    wait: WaitOpt = False,
) -> None:
    """Train a learned method's model on the index's cached pixels, then index its codes.

    Every setting left out is the method's recipe (README: "choosing a model"). An
    interrupted run resumes from its last checkpoint when run again.

    Example: imgsearch train --model vae --beta 0.5 --max-minutes 10
    """
    with user_errors():
        learned = methods.names(learned=True)
        if model not in learned:
            raise ImgSearchError(f"--model must be {', '.join(learned[:-1])} or {learned[-1]}, "
                                 f"got {model!r}")
        if any(v is not None and v < 1 for v in (epochs, batch_size, steps)) or (
                lr is not None and lr <= 0) or (max_minutes is not None and max_minutes < 0):
            raise ImgSearchError("--epochs, --steps and --batch-size must be at least 1, --lr "
                                 "positive, --max-minutes 0 or more")
        settings = _given(denoise=denoise, noise=noise, dropout=dropout, sparse=sparse,
                          sparse_weight=sparse_weight, contractive_weight=contractive,
                          unpool=unpool, beta=beta, invariance=invariance,
                          invariance_weight=invariance_weight, koleo_weight=koleo, kl=kl,
                          local_views=local_views, clean_weight=clean_weight,
                          invariant_dims=invariant_dims,
                          view_reconstruction=view_reconstruction,
                          decoder_refine=decoder_refine, decoder_linear=decoder_linear,
                          encoder_refine=encoder_refine, widths=parse_widths(widths),
                          alpha=alpha, gamma=gamma, tied=tied, tied_convs=tied_convs,
                          adversarial_weight=adversarial_weight)
        overrides = _given(min_steps=min_steps, steps=steps, max_minutes=max_minutes,
                           batch_size=batch_size, lr=lr, patience=patience, augment=augment)
        overrides = {**epochs_exactly(epochs), **overrides}  # a --min-steps given still counts
        if post is not None:
            from .methods.postprocess import parse

            parse(post)  # a typo is refused now, not after the training run
        ws = workspace.Workspace.open(index)
        try:
            with ws.writing("imgsearch train", None if wait else 0):
                cfg = train_config(model, device=device, **overrides)
                _, report = _train(ws, model, cfg, settings, fresh, post)
        except ValueError as e:
            raise ImgSearchError(str(e)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; the last checkpoint is kept. Re-run the same command to "
                       "resume.", 130) from None
        finally:
            ws.close()
    err.print(f"{model}: {report.total} codes ({report.index_type}) in {ws.root}",
              highlight=False, soft_wrap=True)


def _sample_ids(ws: workspace.Workspace, n: int, seed: int, among: list[int] | None = None
                ) -> list[int]:
    ids = ws.catalog.indexed_ids() if among is None else among
    if not ids:
        raise ImgSearchError(f"index {ws.root} has no indexed images")
    return build.sample_ids(ids, n, seed)


@app.command("reconstruct")
def reconstruct_cmd(
    out_png: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    index: IndexOpt = workspace.DEFAULT_NAME,
    n: Annotated[int, typer.Option("-n", help="Number of images.")] = 8,
    seed: Annotated[int, typer.Option(help="Which images: a seeded random choice.")] = 0,
) -> None:
    """Draw originals and their reconstructions by every built method that can draw them:
    images the self-check held out of training (any images of a collection too small to
    hold some out), each method labelled with its PSNR on all of them (PCA refitted without
    them, as `info` measures it).

    Example: imgsearch reconstruct -n 8 --out grid.png
    """
    from .fitting import drawn_psnr, held_out, held_out_pca
    from .methods.postprocess import unwrap
    from .viz import image_grid, save_png

    with user_errors():
        if n < 1:
            raise ImgSearchError(f"-n must be at least 1, got {n}")
        ws = workspace.Workspace.open(index)
        try:
            held = held_out(ws, ws.catalog.indexed_ids())[0]
            ids = _sample_ids(ws, n, seed, held or None)
            images = ws.cache.read(ids)
            rows, said = [("held-out" if held else "original", images)], []
            every_held = ws.cache.read(held) if held else None  # what each PSNR is of
            drawable = [m for m in methods.names() if methods.get(m).reconstructs]
            for m in drawable:
                state = ws.method_state(m)
                if state is not None:
                    emb = unwrap(build.open_embedder(ws, m))  # its raw codes
                    if held and not methods.get(m).learned:  # the index's PCA saw them
                        emb = held_out_pca(ws, emb.dim)
                    label = f"{m} ({emb.dim}-d)"
                    if held:
                        score = drawn_psnr(emb, every_held, ws.config.pixel_size)
                        label += f"\n{score:.1f} dB"
                        said.append(f"{m} {score:.1f} dB")
                    rows.append((label, emb.reconstruct(images)))
            if len(rows) == 1:
                raise MethodNotBuilt(f"index {ws.root} has none of {', '.join(drawable)} built")
            save_png(image_grid(rows), out_png)
        finally:
            ws.close()
    psnrs = f" (PSNR on the held-out images at the pixel size: {', '.join(said)})" if said else ""
    err.print(f"reconstructions written to {out_png}{psnrs}", highlight=False, soft_wrap=True)


@app.command("sample")
def sample_cmd(
    out_png: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    index: IndexOpt = workspace.DEFAULT_NAME,
    n: Annotated[int, typer.Option("-n", help="Samples from the prior.")] = 16,
    between: Annotated[tuple[Path, Path] | None, typer.Option(
        help="Two images to interpolate between (default: two chosen at random).")] = None,
    steps: Annotated[int, typer.Option(help="Interpolation steps.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    method: Annotated[str | None, typer.Option(
        help="A method with a prior to sample: "
             f"{', '.join(m for m in methods.names() if methods.get(m).samples)} "
             "(default: the first built).")] = None,
) -> None:
    """Draw samples from a generative method's prior N(0, I) through its decoder, and an
    interpolation between two images' codes.

    Example: imgsearch sample --out samples.png --between a.jpg b.jpg
    """
    import numpy as np

    from .images import load_image
    from .methods.postprocess import unwrap
    from .viz import image_grid, save_png

    samplers = [m for m in methods.names() if methods.get(m).samples]
    with user_errors():
        if n < 1 or steps < 2:
            raise ImgSearchError("-n must be at least 1 and --steps at least 2")
        if method is not None and not methods.get(method).samples:
            raise ImgSearchError(f"--method must be one of {', '.join(samplers)}, got {method!r}")
        ws = workspace.Workspace.open(index)
        try:
            built = [m for m in ([method] if method else samplers) if ws.method_state(m)]
            if not built:
                want = method or samplers[0]
                raise MethodNotBuilt(f"method {want!r} is not built in index {ws.root}; run "
                                     f"`imgsearch train --model {want}`")
            vae = unwrap(build.open_embedder(ws, built[0]))  # mu, not post codes
            rng = np.random.default_rng(seed)
            samples = vae.decode(rng.standard_normal((n, vae.dim)).astype(np.float32))
            if between:
                pair = []
                for p in between:
                    if not p.is_file():
                        raise ImgSearchError(f"image not found: {p}")
                    pair.append(load_image(p, ws.config.input_size)[0])
                ends = np.stack(pair)
            else:
                ends = ws.cache.read(_sample_ids(ws, 2, seed))
            mu = vae.encode(ends)  # (2, dim)
            t = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
            path = vae.decode((1 - t) * mu[0] + t * mu[1])
            rows = [("prior", samples[i : i + 8]) for i in range(0, n, 8)]
            rows += [("a -> b", path), ("a, b", ends)]
            save_png(image_grid(rows), out_png)
        finally:
            ws.close()
    err.print(f"samples written to {out_png}", highlight=False, soft_wrap=True)
