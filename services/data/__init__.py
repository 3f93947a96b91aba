"""Bundled sample data for the reference stack (``merged.jsonl``) and its generator."""
