"""README's CPU decoding recipe, `model.forward = torch.compile(model.forward, dynamic=False)` with a static cache:
repeated generate() calls of one shape compile once (pretrained.allocate_static_cache).

A static cache's layers used to be allocated lazily inside the compiled prefill, whose graph then guarded on
`is_initialized == False`; a cache reused for the next call (4.57's generate() keeps its own, and a caller may pass
the same StaticCache again) arrived allocated and made the prefill compile again. Dynamo's guards do not depend on
the backend, so the frames are counted with a counting backend (no inductor: ~1 s).
"""

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from transformers import StaticCache

import hf_tformer as ht
from conftest import random_ids, tiny_config

MODELS = {"decoder": ht.TformerDecoderForCausalLM, "encoder_decoder": ht.TformerEncoderDecoderForConditionalGeneration}


def _compiled(variant: str):
    """A tiny model whose forward is compiled as README does it, and the counter of the frames it compiled."""
    torch.manual_seed(0)
    model = MODELS[variant](tiny_config(variant, position_embedding_type="rotary", num_key_value_heads=2)).eval()
    counter = CompileCounter()
    model.forward = torch.compile(model.forward, backend=counter, dynamic=False)
    return model, counter


@pytest.mark.parametrize("variant, own_cache", [
    pytest.param("decoder", False, id="decoder"),  # recompiled on 4.57 (native Llama too), not on 5.x
    pytest.param("encoder_decoder", False, id="encoder-decoder"),  # 4.57 too: self- and cross-attention caches
    pytest.param("decoder", True, id="decoder-callers-cache"),  # both versions
])
def test_repeated_generate_compiles_the_prefill_and_the_step_once(variant, own_cache):
    torch._dynamo.reset()
    model, counter = _compiled(variant)
    ids = random_ids(2, 5)
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False, pad_token_id=0)
    cache = StaticCache(config=model.config, max_cache_len=16) if own_cache else None
    outputs, frames = [], []
    for _ in range(3):
        if own_cache:
            cache.reset()
            outputs.append(model.generate(ids, past_key_values=cache, **kwargs))
        else:
            outputs.append(model.generate(ids, cache_implementation="static", **kwargs))
        frames.append(counter.frame_count)
    assert frames == [2, 2, 2]  # the prefill and the one-token step, compiled by the first call only
    assert torch.equal(outputs[1], outputs[0]) and torch.equal(outputs[2], outputs[0])

