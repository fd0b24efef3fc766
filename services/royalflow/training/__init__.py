"""Offline work on model families (not the attribution agent's runtime): training the digits
family (``digits``: corpora, the fair-control fine-tunes of ``finetune``, same-source evidence of
``clusters``), measuring attribution quality on it (``quality``), reading owners' image folders,
training LoRA families over a local pretrained pipeline, importing LoRA files trained elsewhere,
and the tiny pipeline used by tests and benchmarks."""
