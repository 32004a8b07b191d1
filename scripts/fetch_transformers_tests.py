"""Fetch transformers' own common model tests for the installed transformers version.

tests/transformers_common/ runs transformers' ModelTesterMixin and ConfigTester on our models. They ship in the
transformers sdist on PyPI (tests/test_modeling_common.py, tests/test_configuration_common.py), not in the wheel, and
are not copied into this repository: this script downloads the sdist of the version installed in the running
interpreter (`pip download`) and extracts those two files into .transformers-tests/<version>/ (git-ignored).

Idempotent and offline once the folder is there:  .venv/bin/python scripts/fetch_transformers_tests.py
"""

import importlib.metadata
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

FILES = ("test_modeling_common.py", "test_configuration_common.py")
CACHE = Path(__file__).resolve().parent.parent / ".transformers-tests"


def fetch(version: str) -> Path:
    """.transformers-tests/<version>/ holding FILES (+ an empty __init__.py), downloaded only when missing."""
    target = CACHE / version
    if all((target / name).is_file() for name in (*FILES, "__init__.py")):
        return target
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             f"transformers=={version}", "--dest", download],
            check=True,
        )
        (sdist,) = Path(download).glob("transformers-*.tar.gz")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as archive:
            for name in FILES:
                member = archive.getmember(f"{sdist.name[: -len('.tar.gz')]}/tests/{name}")
                (target / name).write_bytes(archive.extractfile(member).read())
    # test_configuration_common imports "transformers" through this folder's __init__.py (it must exist).
    (target / "__init__.py").write_text("")
    return target


if __name__ == "__main__":
    print(f"[setup] transformers' common tests in {fetch(importlib.metadata.version('transformers'))}")
