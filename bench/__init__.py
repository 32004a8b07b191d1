"""Side-by-side benchmarks against the native transformers models (results in BENCHMARKS.md)."""
