"""One module per `llvbench` subcommand."""
from __future__ import annotations

from pathlib import Path


def check_output_folder(path: str | Path, option: str) -> None:
    """A folder a command will write into: it may not exist yet, but neither it nor a folder above
    it may be a file (which would end in a FileExistsError/NotADirectoryError half-way through)."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f" ({part} is a file)"
                raise ValueError(f"{option} {path} must be a folder, but it is a file{where}")
            return
