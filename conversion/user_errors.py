"""Errors a user can fix: checks of what the user hands us, and how the command lines print such errors.

The command lines (`hf-tformer convert`, `hf-tformer export onnx`, python -m hf_tformer_conversion /
hf_tformer_export) print a known user error as one line, `error: ...`, naming the path and the fix, and exit 1:
a ValueError (ours, json's, huggingface_hub's), a permission refused, a full disk or a read-only file system. A
missing path or a file where a folder belongs is one of our ValueErrors (check_folder), raised before any work: a
FileNotFoundError from deeper down is a bug (e.g. a module file missing from a cache) and keeps its traceback, as
does anything else.
"""

import errno
import json
import sys
from pathlib import Path
from typing import Callable, Optional


def check_folder(path: Path, fix: str) -> Path:
    """`path` if it is a folder; else a ValueError saying what is there instead, and `fix`."""
    path = Path(path)
    if path.is_dir():
        return path
    found = "is a file, not a folder" if path.exists() else "does not exist"
    raise ValueError(f"{path} {found}; {fix}")


def read_config_json(folder: Path, fix: str) -> dict:
    """`folder`/config.json as a dict; a ValueError naming the file and `fix` if it is missing or not a JSON object."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ValueError(f"{folder} has no config.json; {fix}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); repair it, or save the checkpoint again with "
                         "save_pretrained().") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not an object; save the checkpoint again "
                         "with save_pretrained().")
    return config


def user_error_message(error: BaseException) -> Optional[str]:
    """The one-line message for an error the user can fix; None for anything else (let its traceback show)."""
    if isinstance(error, ValueError):
        return str(error)
    if not isinstance(error, OSError):
        return None
    path = error.filename or "the destination"
    if isinstance(error, PermissionError):
        return f"permission denied: {path}; choose a folder you can write to, or change its permissions."
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device (or quota) of {path}; nothing was written there. Free some space or "
                "choose a destination on another disk.")
    if error.errno == errno.EROFS:
        return f"{path} is on a read-only file system; choose a destination you can write to."
    return None


def report_user_errors(run: Callable[[], int]) -> int:
    """run(), with a user error printed as `error: ...` on stderr and exit status 1."""
    try:
        return run()
    except (ValueError, OSError) as error:
        message = user_error_message(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
