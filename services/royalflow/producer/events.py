"""Building generation events (the contract is ``schemas/generation-event.v1.json``)."""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from royalflow.contracts import Conditioning, Content, GenerationEvent, ModelFamilyRef, Money
from royalflow.money import currency_for


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as a grayscale PNG."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got shape {image.shape} dtype {image.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def generation_event(
    *,
    event_id: str,
    family_id: str,
    family_version: str,
    revenue_amount: int,
    currency: str,
    content: bytes,
    media_type: str = "image/png",
    class_label: int | None = None,
    prompt: str | None = None,
    producer: str = "royalflow-cli",
    occurred_at: datetime | None = None,
) -> GenerationEvent:
    """A valid generation event with inline content; the asset scale comes from the currency."""
    return GenerationEvent(
        event_id=event_id,
        occurred_at=occurred_at or datetime.now(UTC),
        producer=producer,
        model_family=ModelFamilyRef(id=family_id, version=family_version),
        conditioning=Conditioning(class_label=class_label, prompt=prompt),
        content=Content(
            media_type=media_type,  # type: ignore[arg-type]
            sha256=hashlib.sha256(content).hexdigest(),
            data_base64=base64.b64encode(content).decode(),
        ),
        revenue=Money(amount=revenue_amount, currency=currency, asset_scale=currency_for(currency).asset_scale),
    )
