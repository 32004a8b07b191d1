"""Atomic output folders: build in a hidden temporary folder beside the destination, rename into place at the end.

A failure anywhere leaves the destination as it was (absent, or the user's old folder) and no temporary folder.
An existing destination is replaced only with force=True. Used by conversion and by the ONNX export.
"""

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def check_destination(destination: Path, force: bool) -> None:
    """Raise ValueError early, before any work, if `destination` exists and force is off."""
    if destination.exists() and not force:
        raise ValueError(f"{destination} exists; pass --force (force=True) to replace it.")


@contextmanager
def staged_folder(destination: Path, force: bool) -> Iterator[Path]:
    """Yield an empty folder on the destination's filesystem; on a clean exit it becomes `destination`."""
    check_destination(destination, force)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        yield staging
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
