"""genai_config.json for a decoder's with-past export: what onnxruntime-genai needs to run our graph in its C++
generation loop (og.Model(folder)), without its model builder.

Our CausalLMWithPast graph already has the input / output names genai's decoder-only models use (optimum's layout:
input_ids, attention_mask, position_ids, past_key_values.N.key -> logits, present.N.key), so the config only names
them and gives the shapes. The graph takes the past and returns past + new ("present"), so genai must not share one
buffer between them (past_present_share_buffer false; its own builder's graphs write into a shared buffer).
"""

import json
import warnings
from pathlib import Path
from typing import Any, Optional

GENAI_CONFIG = "genai_config.json"
# genai's generic decoder-only model type: our graph, not genai, decides the positions and the attention pattern
GENAI_MODEL_TYPE = "llama"


def _token_ids(value: Any) -> Optional[int | list[int]]:
    """genai takes one id or a list of them; transformers' configs have either, or None."""
    if value is None or isinstance(value, int):
        return value
    values = [int(item) for item in value]
    return values[0] if len(values) == 1 else values


def genai_config(config: Any, generation_config: Any = None, file_name: str = "model.onnx") -> dict:
    """The genai_config.json content for our decoder's with-past graph `file_name` (config: TformerDecoderConfig)."""
    generation = generation_config if generation_config is not None else config
    eos = _token_ids(getattr(generation, "eos_token_id", None))
    eos = eos if eos is not None else _token_ids(config.eos_token_id)
    if eos is None:
        raise ValueError(f"{config.model_type} has no eos_token_id in its config or generation config; set one "
                         "(config.eos_token_id = ...) before exporting: onnxruntime-genai needs it to stop.")
    pad = _token_ids(getattr(generation, "pad_token_id", None))
    if pad is None:
        pad = config.pad_token_id if config.pad_token_id is not None else (eos if isinstance(eos, int) else eos[0])
    decoder = {
        "filename": file_name,
        "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
        "hidden_size": config.hidden_size,
        "head_size": config.head_dim,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "num_hidden_layers": config.num_hidden_layers,
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
                   "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
        "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value"},
    }
    context = config.max_position_embeddings
    model = {"type": GENAI_MODEL_TYPE, "bos_token_id": config.bos_token_id if config.bos_token_id is not None else pad,
             "eos_token_id": eos, "pad_token_id": pad, "vocab_size": config.vocab_size, "context_length": context,
             "decoder": decoder}
    search = {"do_sample": False, "num_beams": 1, "num_return_sequences": 1, "min_length": 0,
              "max_length": min(int(getattr(generation, "max_length", None) or context), context),
              "temperature": 1.0, "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0,
              "past_present_share_buffer": False}
    return {"model": model, "search": search}


def write_genai_config(folder: Path, config: Any, generation_config: Any = None) -> Optional[Path]:
    """folder/genai_config.json; None (and a warning saying why) for a model without an end-of-sequence token."""
    try:
        content = genai_config(config, generation_config)
    except ValueError as error:
        warnings.warn(f"no {GENAI_CONFIG} written (onnxruntime-genai will not load this export): {error}",
                      stacklevel=2)
        return None
    path = Path(folder) / GENAI_CONFIG
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path
