"""The end-to-end demo (README command 1)."""
