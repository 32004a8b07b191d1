"""Output folders that never cost the user a file: checked, claimed for the whole run, built aside, swapped in.

Used by conversion, the way back (--to-native), the ONNX export and the demo. A run
1. refuses a destination that is, contains or lies inside a source folder, that is the working directory, the home
   folder or one of their ancestors, a file, a symbolic link, or an existing folder without --force; with --force an
   existing folder is replaced only if it is empty or holds an output (config.json or *.onnx at its top level, or the
   caller's own markers): a folder of unrelated files is never deleted;
2. claims the destination with an exclusive lock, `.NAME.hf-tformer-lock` beside it (flock: the kernel drops it when
   the process dies), held from before any work to the end: a second writer is refused, naming the first one's pid;
3. while holding it, cleans what killed runs left beside the destination (`.NAME.hf-tformer-staging-PID-*`,
   `.NAME.hf-tformer-old-PID-*` of dead pids), putting back an old folder a run died while swapping out;
4. builds the output in `.NAME.hf-tformer-staging-PID-*` beside the destination (same file system) and moves it into
   place: onto a free name with rename, over an existing folder with renameat2(RENAME_EXCHANGE), one atomic swap,
   where Linux offers it; else the old folder is renamed aside, the new one renamed in (the old one renamed back if
   that fails), and only then is the old one deleted. The destination is never deleted before its replacement is in
   place; a failure leaves it as it was, and no staging folder.
"""

import ctypes
import errno
import fcntl
import functools
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

# What marks an existing folder as an output that --force may replace: a transformers checkpoint, an ONNX export.
OUTPUT_MARKERS = ("config.json", "*.onnx")
_TAG = "hf-tformer"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DestinationBusyError(ValueError):
    """Another process holds the destination's lock."""


def check_destination(destination: Path, force: bool, sources: Iterable[Path] = (),
                      markers: Sequence[str] = OUTPUT_MARKERS) -> None:
    """Raise ValueError, naming the paths and the fix, unless `destination` may be written (see the module doc)."""
    destination = Path(destination)
    target = destination.resolve()  # symlinks and `..` resolved: `out/../src` is `src`
    for source in sources:
        if not Path(source).is_dir():  # a Hub repo id: its snapshot folder is checked once resolved
            continue
        folder = Path(source).resolve()
        relation = ("is" if target == folder else "contains" if target in folder.parents
                    else "is inside" if folder in target.parents else None)
        if relation:
            raise ValueError(f"{destination} {relation} the source folder {source}: writing there would overwrite "
                             "the source. Choose a destination folder outside it.")
    for name, folder in (("working directory", Path.cwd().resolve()), ("home folder", Path.home().resolve())):
        if target == folder or target in folder.parents:
            raise ValueError(f"{destination} is the {name} {folder} or contains it: it cannot be replaced by an "
                             f"output folder. Name a new folder, e.g. {destination / 'converted'}.")
    if destination.is_symlink():
        raise ValueError(f"{destination} is a symbolic link (to {os.readlink(destination)}): name a real folder.")
    if not destination.exists():
        return
    if not destination.is_dir():
        raise ValueError(f"{destination} is a file, not a folder: name a folder to write (the file is left alone).")
    if not force:
        raise ValueError(f"{destination} exists; pass --force (force=True) to replace it.")
    if not is_output_folder(destination, markers):
        raise ValueError(f"{destination} is not an output folder (it holds none of {', '.join(markers)}): --force "
                         "replaces only a checkpoint or export. Choose a new or empty folder, or delete this one "
                         "yourself if you mean to.")


def is_output_folder(folder: Path, markers: Sequence[str] = OUTPUT_MARKERS) -> bool:
    """True for an empty folder or one holding a marker at its top level (what --force may replace)."""
    return next(folder.iterdir(), None) is None or any(next(folder.glob(marker), None) for marker in markers)


@dataclass
class Destination:
    """A destination claimed for this run (see claim_destination)."""

    given: Path  # as the user wrote it: what messages name
    path: Path  # absolute: what the run writes, locks and renames
    force: bool
    sources: tuple[Path, ...]
    markers: tuple[str, ...]

    def check(self, sources: Iterable[Path] = ()) -> None:
        """check_destination against the claim's sources and `sources` (e.g. a Hub snapshot resolved later)."""
        check_destination(self.given, self.force, (*self.sources, *sources), self.markers)

    @contextmanager
    def staged(self, sources: Iterable[Path] = ()) -> Iterator[Path]:
        """Yield an empty folder beside the destination; on a clean exit it replaces the destination."""
        self.check(sources)
        staging = Path(tempfile.mkdtemp(prefix=_hidden(self.path, f"staging-{os.getpid()}-"), dir=self.path.parent))
        try:
            yield staging
            self.check(sources)  # the destination may have changed while we worked
            _move_into_place(staging, self.path)
        except OSError as error:
            if error.errno in _NO_SPACE:  # named by the destination, not by a file in the hidden staging folder
                raise OSError(error.errno, os.strerror(error.errno), str(self.given)) from error
            raise
        except Exception as error:  # safetensors reports a full disk as its own error type
            if "No space left on device" in str(error) or "StorageFull" in str(error):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.given)) from error
            raise
        finally:
            if staging.exists():  # a failed run's output, or (after an exchange) the replaced folder
                shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def claim_destination(destination: Path, force: bool, sources: Iterable[Path] = (),
                      markers: Sequence[str] = OUTPUT_MARKERS) -> Iterator[Destination]:
    """Check `destination`, then hold its lock until the block ends; raise DestinationBusyError (a ValueError) if
    another process holds it. Enter this before any work; build the output with `.staged()` inside it."""
    claim = Destination(Path(destination), Path(os.path.abspath(destination)), force, tuple(map(Path, sources)),
                        tuple(markers))
    claim.check()  # refuse before creating anything
    created = _make_parent(claim.path.parent)
    try:
        with _lock(claim.path):
            _clean_leftovers(claim.path)
            claim.check()  # a put-back old folder now exists
            yield claim
    finally:
        if created is not None and not claim.path.exists():
            _remove_empty_folders(created, claim.path.parent)


@contextmanager
def staged_folder(destination: Path, force: bool, sources: Iterable[Path] = (),
                  markers: Sequence[str] = OUTPUT_MARKERS) -> Iterator[Path]:
    """claim_destination and staged() in one: for a caller whose work all happens inside the block."""
    with claim_destination(destination, force, sources, markers) as claim, claim.staged() as staging:
        yield staging


def _hidden(destination: Path, kind: str) -> str:
    return f".{destination.name}.{_TAG}-{kind}"


@contextmanager
def _lock(destination: Path) -> Iterator[None]:
    path = destination.parent / _hidden(destination, "lock")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:  # permission refused, a read-only or full file system: name the folder
            raise type(error)(error.errno, error.strerror, str(destination.parent)) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DestinationBusyError(f"another hf-tformer process is writing {destination} (pid {holder}); wait "
                                       "for it to finish or choose another destination.") from None
        try:  # the last holder unlinks the file: our lock counts only if it is on the file still at `path`
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding the lock, so no one else's file
        os.close(fd)


def _clean_leftovers(destination: Path) -> None:
    """Remove the staging / swapped-out folders of dead runs; put back an old folder whose run died mid-swap."""
    pattern = re.compile(re.escape(_hidden(destination, "")) + r"(staging|old)-(\d+)-[A-Za-z0-9_]+")
    for path in sorted(destination.parent.iterdir()):
        found = pattern.fullmatch(path.name)
        if not found or not path.is_dir() or path.is_symlink() or _alive(int(found.group(2))):
            continue
        if found.group(1) == "old" and not os.path.lexists(destination):
            os.rename(path, destination)  # the run moved the user's folder aside, then died: give it back
        else:
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _move_into_place(staging: Path, destination: Path) -> None:
    if not os.path.lexists(destination):
        if not _renameat2(staging, destination, _RENAME_NOREPLACE):
            os.rename(staging, destination)
        return
    if _renameat2(staging, destination, _RENAME_EXCHANGE):
        return  # `staging` now holds the old folder; staged() deletes it
    aside = staging.with_name(staging.name.replace(f"{_TAG}-staging-", f"{_TAG}-old-", 1))
    os.rename(destination, aside)
    try:
        os.rename(staging, destination)
    except BaseException:
        os.rename(aside, destination)
        raise
    shutil.rmtree(aside, ignore_errors=True)


_AT_FDCWD, _RENAME_NOREPLACE, _RENAME_EXCHANGE = -100, 1, 2


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """Linux renameat2(2); False where the C library, kernel or file system lacks it (the caller falls back)."""
    function = _libc_renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    if code == errno.EEXIST:
        raise ValueError(f"{target} appeared while this run was writing it; nothing was replaced. Run again "
                         "(with --force to replace it).")
    raise OSError(code, os.strerror(code), str(target))


@functools.cache
def _libc_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _make_parent(parent: Path) -> Optional[Path]:
    """Create `parent` and its missing ancestors; return the topmost one created (None if it existed)."""
    missing = [folder for folder in (parent, *parent.parents) if not folder.exists()]
    parent.mkdir(parents=True, exist_ok=True)  # an error names the folder it could not create
    return missing[-1] if missing else None


def _remove_empty_folders(top: Path, parent: Path) -> None:
    """Undo _make_parent after a failed run: remove `parent` up to `top` while they are empty."""
    for folder in (parent, *parent.parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return
