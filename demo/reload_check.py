"""The user's side of the demo, run as a script in a fresh interpreter where `import hf_tformer` fails.

    python reload_check.py SPEC.json RESULT.json

For each checkpoint in SPEC: load it with transformers' Auto class and trust_remote_code=True (the modeling code
comes from the checkpoint folder), check its logits on the reference inputs are bit-identical to the trained
model's, and run the pipeline on the example inputs. Imports only the standard library, torch and transformers (and
numpy, their dependency). The demo's own process reads its examples through the same two helpers below.
"""

import json
import sys
import time
from pathlib import Path


class _NoHfTformer:
    """Makes `import hf_tformer` fail, as on a machine where it was never installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_tformer":
            raise ImportError("hf_tformer is deliberately not importable in this process")


def pipeline_input(example: str) -> "str | dict":
    """An example as the pipeline takes it: a text or an image path as it is; a .wav file decoded here (16-bit PCM
    mono, stdlib `wave`) to {"raw": float32 array, "sampling_rate": rate}, since transformers reads an audio *path*
    through ffmpeg, which may not be installed."""
    if not example.endswith(".wav"):
        return example
    import wave

    import numpy as np

    with wave.open(example, "rb") as file:
        if file.getsampwidth() != 2 or file.getnchannels() != 1:
            raise ValueError(f"{example}: {file.getsampwidth() * 8}-bit, {file.getnchannels()} channel(s); only "
                             "16-bit PCM mono .wav files are decoded here: convert it to that, or pass the pipeline "
                             "an array.")
        frames = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
        return {"raw": frames.astype(np.float32) / 32767, "sampling_rate": file.getframerate()}


def first_output(output: "dict | list[dict]") -> dict:
    """A pipeline's result for one input: a list (classification, text generation) or one dict (speech)."""
    return output if isinstance(output, dict) else output[0]


class Text2Text:
    """What transformers 4.x's text2text-generation pipeline returns ([{"generated_text": ...}], special tokens
    skipped), from tokenizer -> generate() -> decode: transformers 5 removed that pipeline."""

    def __init__(self, model, tokenizer=None, trust_remote_code: bool = False) -> None:
        import transformers

        if isinstance(model, (str, Path)):
            tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(str(model))
            model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(model),
                                                                       trust_remote_code=trust_remote_code)
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, text: str, **generate_kwargs) -> list[dict]:
        encoded = self.tokenizer(text, return_tensors="pt")
        tokens = self.model.generate(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                                     **generate_kwargs)
        return [{"generated_text": self.tokenizer.decode(tokens[0], skip_special_tokens=True)}]


def make_pipeline(task: str, model, **kwargs):
    """transformers.pipeline(task, model=model, **kwargs), or Text2Text where this transformers has no such task."""
    import transformers
    from transformers.pipelines import SUPPORTED_TASKS

    if task == "text2text-generation" and task not in SUPPORTED_TASKS:
        return Text2Text(model, **kwargs)
    return transformers.pipeline(task, model=model, **kwargs)


def main(spec_path: str, result_path: str) -> None:
    # imported only now, after the blocker is in place: nothing they pull in may reach hf_tformer
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # as the trained model ran: another thread count may sum in another order (1 ulp)
    results = []
    for item in json.loads(Path(spec_path).read_text()):
        start = time.perf_counter()
        model = getattr(transformers, item["auto_class"]).from_pretrained(item["folder"], trust_remote_code=True)
        load_seconds = time.perf_counter() - start
        reference = torch.load(item["reference"])
        with torch.no_grad():
            logits = getattr(model.eval()(**reference["inputs"]), item["logits_field"])
        start = time.perf_counter()
        pipe = make_pipeline(item["pipeline_task"], item["folder"], trust_remote_code=True)
        outputs = [first_output(pipe(pipeline_input(example), **item["pipeline_kwargs"]))
                   for example in item["examples"]]
        results.append({
            "variant": item["variant"], "class": f"{type(model).__module__}.{type(model).__name__}",
            "load_seconds": load_seconds, "pipeline_seconds": time.perf_counter() - start,
            "logits_identical": bool(torch.equal(logits, reference["logits"])), "pipeline_outputs": outputs,
            "hf_tformer_loaded": any(name.split(".")[0] == "hf_tformer" for name in sys.modules),
        })
    Path(result_path).write_text(json.dumps(results))


if __name__ == "__main__":
    sys.meta_path.insert(0, _NoHfTformer())
    main(*sys.argv[1:3])
