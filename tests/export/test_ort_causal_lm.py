"""export/ort_causal_lm.py's cache handling: the graph returns past + new keys / values, and the cache keeps those
tensors as they are from the second step on (no concatenated copy of the whole past per layer and step)."""

import torch
from transformers.cache_utils import DynamicCache

from hf_tformer_export.ort_causal_lm import cached_tensors, store_presents

LAYERS, SHAPE = 2, (1, 2, 0, 4)  # (batch, kv heads, tokens, head dim)


def presents(tokens: int) -> list[torch.Tensor]:
    return [torch.randn(SHAPE[0], SHAPE[1], tokens, SHAPE[3]) for _ in range(2 * LAYERS)]


def test_the_cache_takes_the_graphs_presents_without_copying_the_past():
    cache = DynamicCache()
    first = presents(5)
    store_presents(cache, first, past_length=0)  # the prompt: through the cache's own update
    assert cache.get_seq_length() == 5
    assert all(torch.equal(a, b) for a, b in zip(cached_tensors(cache, LAYERS, torch.Size(SHAPE)), first))
    second = presents(6)
    store_presents(cache, second, past_length=5)
    assert cache.get_seq_length() == 6
    kept = cached_tensors(cache, LAYERS, torch.Size(SHAPE))
    assert all(a is b for a, b in zip(kept, second)), "the cache copied the graph's presents"

