"""What the command line offers before torch or transformers is imported (its --help must answer at once).

Kept equal to the real tables by tests/conversion/test_choices.py: SOURCE_MODEL_TYPES == sorted(sources.SOURCES),
DTYPE_CHOICES == dtypes.DTYPE_CHOICES.
"""

SOURCE_MODEL_TYPES = ("bart", "bert", "clip", "clip_text_model", "clip_vision_model", "deit", "gpt2", "gpt_neox",
                      "llama", "marian", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "roberta", "t5", "vit",
                      "whisper", "xlm-roberta")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
