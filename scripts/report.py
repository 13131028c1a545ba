"""What the benchmark and evaluation scripts share: writing a run's results beside its table,
a running `imgsearch serve` to measure or photograph, and the default the product's rule
picks among the methods a script evaluated (``default_choice``)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def beside(out: Path, suffix: str) -> Path:
    """OUT with ``suffix`` added to its name ("-recall.png", ".json"), a dot in the name kept
    (``with_suffix`` would cut "results-w0.01" at its dot)."""
    return out.with_name(out.name + suffix)


def write_report(out: Path, text: str, data: dict, table: str = ".txt", indent: int = 1
                 ) -> None:
    """OUT.txt (or ``table``: ".md") holding ``text`` and OUT.json holding ``data``, with the
    command that made them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    beside(out, table).write_text(text.rstrip("\n") + "\n")
    beside(out, ".json").write_text(json.dumps({**data, "command": " ".join(sys.argv)},
                                                   indent=indent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(index: str | Path, seconds: float = 60, clean: bool = False
            ) -> Iterator[tuple[str, int]]:
    """`imgsearch serve --index INDEX` on a free local port, answering; yields (host, port)
    and stops it after. ``clean``: fail if the server logged a traceback (a request crashed).
    Its output goes to a file, never a pipe that a busy server could fill and block on."""
    import tempfile

    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "imgsearch", "serve", "--index",
                                 str(index), "--port", str(port)], stdout=log,
                                stderr=subprocess.STDOUT, text=True)

        def output() -> str:
            log.seek(0)
            return log.read()

        try:
            end = time.monotonic() + seconds
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"imgsearch serve exited with {proc.returncode}: "
                                       f"{output()}")
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info",
                                           timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > end:
                        raise RuntimeError(f"imgsearch serve did not answer within "
                                           f"{seconds:.0f} s: {output()}") from None
                    time.sleep(0.2)
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if clean:
            assert "Traceback" not in output(), output()


def single_query_ms(index, queries: np.ndarray, k: int = 10) -> float:
    """Median milliseconds of searching ``index`` (an imgsearch VectorIndex) for one query at
    a time, as `imgsearch query` does."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def default_choice(check, embedders: dict, labelled: dict[str, dict[str, float]], by: str
                   ) -> dict | None:
    """The method the product's rule (methods.choose: the copies and the other shots of
    ``check``'s held-out images weighed together, paired) picks among the product's methods
    that a script evaluated (``labelled``: method -> its figures by the labels), against the
    best of them by the labels' ``by`` figure, and the loss on each figure. None without a
    self-check or with fewer than two such methods."""
    from imgsearch import methods
    from imgsearch.stats import combined

    product = [m for m in labelled if m in methods.names()]
    if check is None or len(product) < 2:
        return None
    outcomes = {}
    for m in product:
        encode = embedders[m].encode
        shots = check.shots
        outcomes[m] = [check.outcome(check.hits(*check.codes(encode))),
                       shots.outcome(shots.hits(*shots.codes(encode)))]
    choice = methods.choose_measured(outcomes, len(check.database), 20)
    best = max(product, key=lambda m: labelled[m][by])
    return {"default": choice.method, "because": choice.reason, "lead": choice.lead,
            "scores": {m: combined(v)[0] for m, v in outcomes.items()}, "best_by_labels": best,
            "by": by,
            "loss": {k: labelled[best][k] - labelled[choice.method][k]
                     for k in labelled[best]}}


def choice_line(d: dict) -> str:
    """One line of ``default_choice``'s answer, for a results table."""
    loss = ", ".join(f"{v:.4f} {k}" for k, v in d["loss"].items())
    return (f"The product's default among them: {d['default']} ({d['because']}); best by the "
            f"labels ({d['by']}): {d['best_by_labels']}; loss {loss}.")
