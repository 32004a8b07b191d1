"""The end-to-end demo (README command 1: `python -m hf_tformer_demo`) and the locally trained toy tokenizers
(`hf_tformer_demo.toy_tokenizer`) that the demo, the examples and the tests share."""
