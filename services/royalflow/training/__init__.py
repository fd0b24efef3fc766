"""Offline work on model families (not the attribution agent's runtime): reading owners' image
folders, training LoRA families over a local pretrained pipeline, importing LoRA files trained
elsewhere, and the tiny pipeline used by tests and benchmarks."""
