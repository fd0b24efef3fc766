"""Sample generation events for demos, tests and benchmarks (deterministic from a seed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np

from royalflow.contracts import GenerationEvent
from royalflow.producer.events import generation_event, png_bytes

ImageSource = Callable[[int, np.random.Generator], bytes]


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # shipped inside scikit-learn, no download

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return images, digits.target


def digit_image(class_label: int, rng: np.random.Generator) -> bytes:
    """A real 8x8 handwritten digit of the class, as PNG bytes."""
    images, targets = _digits()
    candidates = np.flatnonzero(targets == class_label)
    return png_bytes(images[rng.choice(candidates)])


def _draw(rng: np.random.Generator) -> tuple[int, int]:
    """One event's class label and revenue in asset units (1e-9 USD): 1,000,000 .. 50,000,000 =
    $0.001 .. $0.05."""
    return int(rng.integers(0, 10)), int(rng.integers(1_000_000, 50_000_001))


def class_labels(count: int, *, seed: int = 0) -> list[int]:
    """The class labels of ``sample_events(count, seed=seed)`` when its image source draws
    nothing from the generator (an ImagePool), without making the events: what the pool will be
    asked for, so that it can sample it ahead, all at once (ImagePool.prefetch)."""
    rng = np.random.default_rng(seed)
    return [_draw(rng)[0] for _ in range(count)]


def sample_events(
    count: int,
    *,
    family_id: str,
    family_version: str,
    seed: int = 0,
    run_id: str = "demo",
    currency: str = "USD",
    image_source: ImageSource = digit_image,
    start: datetime | None = None,
) -> list[GenerationEvent]:
    """``count`` events with class labels 0-9 and revenue between 0.001 and 0.05 USD."""
    rng = np.random.default_rng(seed)
    start = start or datetime.now(UTC) - timedelta(minutes=count)
    events = []
    for i in range(count):
        label, revenue = _draw(rng)
        events.append(
            generation_event(
                event_id=f"{run_id}-{i:06d}",
                family_id=family_id,
                family_version=family_version,
                revenue_amount=revenue,
                currency=currency,
                content=image_source(label, rng),
                class_label=label,
                prompt=f"a handwritten digit {label}",
                producer="royalflow-samples",
                occurred_at=start + timedelta(seconds=i),
            )
        )
    return events
