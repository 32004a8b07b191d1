"""The one `hf-tformer` command: convert, export onnx, bench, demo."""
