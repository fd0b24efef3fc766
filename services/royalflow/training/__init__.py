"""Offline work on model families (not the attribution agent's runtime): training the digits
family (``digits``: corpora, the fair-control fine-tunes of ``finetune``, same-source evidence of
``clusters``), measuring attribution quality on it (``quality``), reading owners' image folders,
training LoRA families over a local pretrained pipeline, importing LoRA files trained elsewhere,
and the tiny pipeline used by tests and benchmarks."""

# The README's demo family (4 owners of digit classes, exact mode), here so that a caller can
# find it on disk without importing torch (training.digits trains it).
DEMO_HOLDINGS = {"owner-a": (0, 1, 2), "owner-b": (3, 4, 5), "owner-c": (6, 7), "owner-d": (8, 9)}
DEMO_FAMILY = ("digits-diffusion", "3")  # v2: fair control, null dropout, clusters; v3: content by class posterior
