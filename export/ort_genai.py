"""The decoder's with-past export under onnxruntime-genai's C++ generation loop: greedy and sampled decoding without
transformers' Python generate() (its per-token bookkeeping, logits processors and stopping criteria), over the same
graph and files that TformerORTModelForCausalLM runs (the export writes genai_config.json, genai_config.py).

genai 0.18 attends every token it is given (no attention mask), so left-padded batches run row by row. What its loop
does not do is refused, not approximated: beam search (genai's beam search wants its own builder's graphs) and
transformers' other generate() options and logits processors. TformerORTModelForCausalLM does all of those.
"""

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .genai_config import GENAI_CONFIG
from .ort_model import graph_file, snapshot_folder


def _import_genai():
    try:
        import onnxruntime_genai
    except ImportError:
        raise ValueError("onnxruntime-genai is not installed: `pip install --no-deps onnxruntime-genai==0.18.0` (it "
                         "runs on the onnxruntime or onnxruntime-gpu package already there; scripts/setup.sh "
                         "installs it into .venv5).") from None
    return onnxruntime_genai


class TformerGenaiModel:
    """og.Model over an export folder; generate() takes and returns token ids as transformers' does."""

    def __init__(self, model: Any, folder: Path, config: dict) -> None:
        self.model, self.folder, self.genai_config = model, folder, config

    @classmethod
    def from_pretrained(cls, model_id: str | Path, variant: Optional[str] = None,
                        intra_op_num_threads: Optional[int] = None,
                        session_config_entries: Optional[dict[str, str]] = None,
                        **hub_kwargs: Any) -> "TformerGenaiModel":
        """model_id: a folder written by `hf-tformer export onnx ... --task text-generation-with-past`, or a Hub repo
        id of one (read through the Hub cache, as load_ort_model does; `revision`, `token`, `cache_dir` go to
        huggingface_hub); variant: None (fp32), "quantized" or "fp16" (the graph genai runs);
        intra_op_num_threads: ONNX Runtime's, default its own; session_config_entries: ONNX Runtime session config
        entries, e.g. {"session.intra_op.allow_spinning": "0"} (genai 0.18 passes string-valued keys of its
        session_options on to ORT)."""
        og = _import_genai()
        unknown = set(hub_kwargs) - {"revision", "token", "cache_dir"}
        if unknown:
            raise TypeError(f"from_pretrained() got unexpected arguments {sorted(unknown)}; it takes variant, "
                            "intra_op_num_threads, session_config_entries, revision, token, cache_dir.")
        folder = Path(model_id)
        if not folder.is_dir():
            folder = snapshot_folder(str(model_id), **hub_kwargs)
        if not (folder / GENAI_CONFIG).is_file():
            raise ValueError(f"{folder} has no {GENAI_CONFIG}: export the decoder for text-generation-with-past "
                             "with `hf-tformer export onnx` (it writes one), or run the folder with "
                             "hf_tformer_export.runtime.load_ort_model.")
        config = json.loads((folder / GENAI_CONFIG).read_text())
        decoder: dict = {"filename": graph_file(folder, config["model"]["decoder"]["filename"], variant).name}
        options: dict[str, Any] = {}
        if intra_op_num_threads is not None:
            options.update(intra_op_num_threads=intra_op_num_threads, inter_op_num_threads=1)
        for key, value in (session_config_entries or {}).items():
            if not isinstance(value, str):
                raise TypeError(f"session_config_entries[{key!r}] = {value!r}: ONNX Runtime config values are "
                                f"strings, e.g. \"0\".")
            options[key] = value
        if options:
            decoder["session_options"] = options
        og_config = og.Config(str(folder))
        og_config.overlay(json.dumps({"model": {"decoder": decoder}}))
        return cls(og.Model(og_config), folder, config)

    def generate(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                 max_new_tokens: int = 20, min_new_tokens: int = 0, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0, seed: Optional[int] = None,
                 **unsupported: Any) -> torch.Tensor:
        """(batch, prompt) ids -> (batch, prompt + new) ids, laid out as transformers' generate() returns them:
        a left-padded prompt keeps its padding, rows that stop early are padded with the pad id. Sampling is seeded
        by `seed` (genai's own generator, not torch's).

        genai 0.18 attends every token it is given, so a batch whose mask pads some rows runs one row at a time
        (each row's real tokens alone; sampled rows seeded seed + row): the same greedy tokens as the padded batch
        through transformers, without the batch's speed-up."""
        if unsupported:
            raise ValueError(f"{sorted(unsupported)} are not supported by onnxruntime-genai's loop here; use "
                             "TformerORTModelForCausalLM (load_ort_model) for transformers' full generate().")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}.")
        if max_new_tokens < 1 or not 0 <= min_new_tokens <= max_new_tokens:
            raise ValueError(f"max_new_tokens={max_new_tokens}, min_new_tokens={min_new_tokens}: need "
                             "max_new_tokens >= 1 and 0 <= min_new_tokens <= max_new_tokens.")
        batch, prompt = input_ids.shape
        context = self.genai_config["model"]["context_length"]
        if prompt + max_new_tokens > context:
            raise ValueError(f"{prompt} prompt tokens + max_new_tokens={max_new_tokens} exceed the model's "
                             f"{context} positions (max_position_embeddings): shorten one of them.")
        search = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample,
                      temperature=temperature, top_k=top_k, top_p=top_p)
        if attention_mask is None or bool(attention_mask.bool().all()):
            new_tokens = self._generate(input_ids, seed=seed, **search)
        else:
            lengths = _left_padded_lengths(attention_mask, input_ids.shape)
            new_tokens = [self._generate(input_ids[row:row + 1, prompt - length:],
                                         seed=None if seed is None else seed + row, **search)[0]
                          for row, length in enumerate(lengths)]
        out = torch.full((batch, prompt + max(len(row) for row in new_tokens)),
                         self.genai_config["model"]["pad_token_id"], dtype=torch.long)
        out[:, :prompt] = input_ids
        for index, row in enumerate(new_tokens):
            out[index, prompt:prompt + len(row)] = torch.from_numpy(row)
        return out

    def _generate(self, input_ids: torch.Tensor, max_new_tokens: int, min_new_tokens: int, seed: Optional[int],
                  **search: Any) -> list[np.ndarray]:
        """One genai run over rows of equal length: each row's new tokens (up to its end of sequence)."""
        og = _import_genai()
        batch, prompt = input_ids.shape
        params = og.GeneratorParams(self.model)
        options = dict(max_length=prompt + max_new_tokens, min_length=prompt + min_new_tokens, batch_size=batch,
                       **search)
        if seed is not None:
            options["random_seed"] = seed
        params.set_search_options(**options)
        generator = og.Generator(self.model, params)
        generator.append_tokens(np.ascontiguousarray(input_ids.numpy(), dtype=np.int32))
        while not generator.is_done():
            generator.generate_next_token()
        return [np.asarray(generator.get_sequence(row), dtype=np.int64)[prompt:] for row in range(batch)]


def _left_padded_lengths(attention_mask: torch.Tensor, shape: torch.Size) -> list[int]:
    """Each row's number of real tokens; ValueError unless every row is left-padded (zeros, then ones)."""
    if tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(shape)}: "
                         "they must match.")
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    prompt = shape[1]
    # left padding: the ones are the last `length` positions of the row
    expected = torch.arange(prompt).unsqueeze(0) >= (prompt - lengths).unsqueeze(1)
    if not torch.equal(mask, expected) or bool((lengths == 0).any()):
        raise ValueError("attention_mask must pad on the left (zeros, then ones; the tokenizer's "
                         "padding_side='left', as for transformers' generate()) and leave every row a token.")
    return lengths.tolist()
