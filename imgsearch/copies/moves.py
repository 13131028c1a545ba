"""Moving the non-keepers of groups aside, never deleting them: ``plan_moves`` says where
each goes, ``move`` moves them after writing a log (``new_log``), and ``undo`` puts back the
files a log lists.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ImgSearchError
from ..store import replacing

if TYPE_CHECKING:
    from .groups import Group


def plan_moves(groups: list[Group], root: str | Path, dest: str | Path
               ) -> list[tuple[str, str]]:
    """(from, to) for every non-keeper: into ``dest``, keeping its path relative to ``root``
    (the indexed folder). Refused if ``dest`` is inside ``root`` (the next run would index the
    moved files again) or a target exists."""
    root, dest = Path(root).resolve(), Path(dest).resolve()
    if dest == root or root in dest.parents:
        raise ImgSearchError(f"--move-to {dest} is inside the indexed folder {root}; the moved "
                             "files would be indexed again. Choose a folder outside it")
    moves = []
    for g in groups:
        for m in g.others:
            src = Path(m.path)
            try:
                rel = src.resolve().relative_to(root)
            except ValueError:  # a file reached through a symlink from outside the folder
                rel = Path(*src.resolve().parts[1:])
            target = dest / rel
            if target.exists():
                raise ImgSearchError(f"{target} exists already; nothing was moved")
            moves.append((str(src), str(target)))
    return moves


#: The name of a move log (new_log): a second move in the same second gets a suffix.
MOVE_LOG = re.compile(r"imgsearch-moves-\d{8}-\d{6}(-\d+)?\.jsonl")


def new_log(dest: Path) -> Path:
    """A move log in ``dest`` that does not exist yet: imgsearch-moves-DATE-TIME.jsonl, with
    a suffix where two moves fall in the same second (the second would overwrite the first's
    undo)."""
    stamp = time.strftime("imgsearch-moves-%Y%m%d-%H%M%S")
    log, n = Path(dest) / f"{stamp}.jsonl", 2
    while log.exists():
        log, n = Path(dest) / f"{stamp}-{n}.jsonl", n + 1
    return log


def move(moves: list[tuple[str, str]], log: Path) -> int:
    """Move every file, after writing ``log`` (one JSON object a line: from, to) so that
    ``undo(log)`` can put them back. Never deletes. Returns how many were moved."""
    import json

    log.parent.mkdir(parents=True, exist_ok=True)
    with replacing(log) as tmp:
        tmp.write_text("".join(json.dumps({"from": a, "to": b}) + "\n" for a, b in moves))
    done = 0
    for src, dst in moves:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, dst)
        done += 1
    return done


def undo(log: Path) -> int:
    """Put back the files a ``move`` log lists (those still at their new place and whose old
    place is free). Returns how many were put back."""
    import json

    back = 0
    for line in Path(log).read_text().splitlines():
        entry = json.loads(line)
        src, dst = Path(entry["from"]), Path(entry["to"])
        if dst.exists() and not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(dst), str(src))
            back += 1
    return back
