"""Speech recognition: hf_tformer's Whisper-shaped model vs transformers' WhisperForConditionalGeneration, same weights.

    python bench/whisper.py [--threads 2] [--repeats 5] [--dtypes float32,bfloat16] [--tiny] [--profile]
                                                                          (or: hf-tformer bench whisper)

whisper-tiny's shape (d_model 384, 4 encoder + 4 decoder layers, 6 heads, ffn 1536, 80 mel bins, 1500 source
positions, vocabulary 51865), random weights, saved natively and converted with hf_tformer_conversion (parity gate
on), so both sides run the same weights. Input: 30 s of generated audio (two tones + noise at 16 kHz) through
WhisperFeatureExtractor, i.e. (1, 80, 3000) log-mel frames. Measured with the contenders alternating run by run
(order rotating), medians: the encoder forward, and greedy generate() of 64 new tokens (transformers' Whisper
generation on both sides; EOS switched off so each decodes exactly 64; tokens compared). bf16 runs only where the
CPU has native bf16 dot products (torch.cpu._is_avx512_bf16_supported() or AMX tiles), and says so otherwise.
ONNX Runtime (where optimum-onnx is installed: the transformers 4.57 environment): ours exported with
hf_tformer_export (fused attention, validated) and run by ORTModelForSpeechSeq2Seq (optimum's ORTModelForWhisper:
the same Whisper generation) on the CPU provider with the same thread count, against ours in PyTorch fp32: the encoder
forward (the encoder graph alone) and greedy 64 tokens (encoder once, decoder with past per step), tokens compared.
--tiny: d_model 64, 2 + 2 layers, 4 heads, 2 s of audio (200 frames): the same bench in seconds.
"""

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

import hf_tformer as ht
from hf_tformer_conversion import convert

from hf_tformer_bench.generation import NEW_TOKENS, interleaved_ms
from hf_tformer_bench.vision_forward import spread

SAMPLING_RATE = 16000
WHISPER_TINY = dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                    decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_source_positions=1500)
TINY = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=256, decoder_ffn_dim=256, max_source_positions=100)


def native_bf16() -> tuple[bool, str]:
    """Whether torch's CPU kernels have native bf16 dot products here (AVX512-BF16 or AMX), and which."""
    found = [name for name, probe in (("avx512_bf16", torch.cpu._is_avx512_bf16_supported),
                                      ("amx", torch.cpu._is_amx_tile_supported)) if probe()]
    return bool(found), ", ".join(found) if found else "neither avx512_bf16 nor AMX"


def waveform(seconds: float) -> np.ndarray:
    """Two tones and noise at 16 kHz, float32."""
    time = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    audio = 0.4 * np.sin(2 * np.pi * 440 * time) + 0.2 * np.sin(2 * np.pi * 300 * time)
    return (audio + 0.1 * np.random.default_rng(0).standard_normal(time.shape)).astype(np.float32)


def build(folder: Path, shape: dict) -> tuple[WhisperForConditionalGeneration,
                                              ht.TformerWhisperForConditionalGeneration]:
    """A random native model saved to folder/native, converted to folder/ours (parity gate on), both loaded."""
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51865, num_mel_bins=80, attn_implementation="sdpa", **shape)
    WhisperForConditionalGeneration(config).save_pretrained(folder / "native")
    convert(str(folder / "native"), str(folder / "ours"), progress=False)
    native = WhisperForConditionalGeneration.from_pretrained(folder / "native", attn_implementation="sdpa")
    ours = ht.TformerWhisperForConditionalGeneration.from_pretrained(folder / "ours", attn_implementation="sdpa")
    return native.eval(), ours.eval()


def encoder_runner(model, features: torch.Tensor) -> Callable[[], torch.Tensor]:
    encoder = model.get_encoder()

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return encoder(features).last_hidden_state

    return run


def whisper_generation_runner(model, features: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Greedy decoding of exactly NEW_TOKENS through the model's Whisper generate() (EOS switched off)."""
    model.generation_config.eos_token_id = None
    start = model.generation_config.decoder_start_token_id

    def run() -> torch.Tensor:
        with torch.inference_mode():
            out = model.generate(features, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1)
        produced = out.shape[1] - int(out[0, 0] == start)  # 4.57 returns the new tokens only
        assert produced == NEW_TOKENS, produced
        return out

    return run


def profile_generation(models: dict, features: torch.Tensor) -> None:
    for name, model in models.items():
        run = whisper_generation_runner(model, features)
        with torch.profiler.profile() as trace:
            run()
        print(f"--- profile: {name} generate()\n" + trace.key_averages().table(sort_by="self_cpu_time_total",
                                                                              row_limit=12))


def bench_dtype(native, ours, features: torch.Tensor, dtype: torch.dtype, repeats: int, profile: bool) -> None:
    models = {"native": native.to(dtype), "ours": ours.to(dtype)}
    features = features.to(dtype)
    times, outputs = interleaved_ms({name: encoder_runner(model, features) for name, model in models.items()},
                                    repeats)
    difference = float((outputs["ours"].float() - outputs["native"].float()).abs().max())
    median = {name: statistics.median(values) for name, values in times.items()}
    label = str(dtype).removeprefix("torch.")
    print(f"{label}: encoder forward, native {spread(times['native'])} ms, ours {spread(times['ours'])} ms, "
          f"time ratio ours / native {median['ours'] / median['native']:.3f}, max |Δ| {difference:.1e}")
    times, tokens = interleaved_ms({name: whisper_generation_runner(model, features)
                                    for name, model in models.items()}, repeats)
    rate = {name: NEW_TOKENS / statistics.median(values) * 1e3 for name, values in times.items()}
    same = torch.equal(tokens["native"], tokens["ours"])
    print(f"{label}: greedy {NEW_TOKENS} tokens, native {rate['native']:.1f} tok/s ({spread(times['native'])} ms), "
          f"ours {rate['ours']:.1f} tok/s ({spread(times['ours'])} ms), tok/s ratio ours / native "
          f"{rate['ours'] / rate['native']:.3f}, tokens {'identical' if same else 'DIFFERENT'}")
    if profile:
        profile_generation(models, features)


def bench_onnx(checkpoint: Path, work: Path, features: torch.Tensor, threads: int, repeats: int) -> None:
    """ORT (fp32 export of `checkpoint`) vs ours in PyTorch fp32 (loaded again: the bf16 rows cast the models in
    place): encoder forward and greedy generate()."""
    try:
        from hf_tformer_export.export import export_onnx
        from hf_tformer_export.runtime import load_ort_model
    except ImportError as error:
        print(f"ONNX Runtime rows skipped: {error} (optimum-onnx lives in the transformers 4.57 environment)")
        return
    from hf_tformer_bench.onnx_runtime import session_options

    report = export_onnx(str(checkpoint), str(work / "onnx"), "automatic-speech-recognition-with-past")
    ort = load_ort_model(work / "onnx", "automatic-speech-recognition-with-past",
                         session_options=session_options(threads))
    ours = ht.TformerWhisperForConditionalGeneration.from_pretrained(checkpoint, attn_implementation="sdpa").eval()
    features = features.float()

    def ort_encoder() -> torch.Tensor:
        return torch.as_tensor(ort.encoder(input_features=features, attention_mask=None).last_hidden_state)

    times, outputs = interleaved_ms({"pytorch": encoder_runner(ours, features), "ort": ort_encoder}, repeats)
    difference = float((outputs["ort"] - outputs["pytorch"]).abs().max())
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"onnxruntime fp32 (export validated: max |Δ| {report.validation[0].max_abs_diff:.1e}): encoder forward, "
          f"ours PyTorch {spread(times['pytorch'])} ms, ORT {spread(times['ort'])} ms, time ratio ORT / PyTorch "
          f"{median['ort'] / median['pytorch']:.3f}, max |Δ| {difference:.1e}")
    times, tokens = interleaved_ms({"pytorch": whisper_generation_runner(ours, features),
                                    "ort": whisper_generation_runner(ort, features)}, repeats)
    rate = {name: NEW_TOKENS / statistics.median(values) * 1e3 for name, values in times.items()}
    same = torch.equal(tokens["pytorch"], tokens["ort"])
    print(f"onnxruntime fp32: greedy {NEW_TOKENS} tokens, ours PyTorch {rate['pytorch']:.1f} tok/s, ORT "
          f"{rate['ort']:.1f} tok/s ({spread(times['ort'])} ms), tok/s ratio ORT / PyTorch "
          f"{rate['ort'] / rate['pytorch']:.3f}, tokens {'identical' if same else 'DIFFERENT'}")


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma-separated; bfloat16 is skipped where the CPU has no native bf16 (default: both)")
    parser.add_argument("--tiny", action="store_true", help="a 2+2-layer d_model-64 model on 2 s of audio (seconds)")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one generate() per model")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = TINY if args.tiny else WHISPER_TINY
    seconds = 2 * shape["max_source_positions"] // 100  # 100 frames per second, 2 frames per encoder position
    extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=seconds)
    features = extractor(waveform(seconds), sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    has_bf16, which = native_bf16()
    if torch.bfloat16 in dtypes and not has_bf16:
        print(f"bfloat16 skipped: this CPU has no native bf16 dot products ({which}); it would time emulation")
        dtypes.remove(torch.bfloat16)
    print(f"torch {torch.__version__}, {args.threads} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()} (bf16: {which}), medians of {args.repeats} interleaved runs")
    print(f"shape {shape}, vocab 51865, {seconds} s of audio -> features {tuple(features.shape)}")
    with tempfile.TemporaryDirectory() as folder:
        native, ours = build(Path(folder), shape)
        for dtype in dtypes:
            bench_dtype(native, ours, features, dtype, args.repeats, args.profile)
        if not args.no_onnx:
            bench_onnx(Path(folder) / "ours", Path(folder), features, args.threads, args.repeats)


if __name__ == "__main__":
    main()
