"""Producers publish generation events (Python API: :class:`Publisher`, :func:`generation_event`)."""

from royalflow.producer.events import generation_event, png_bytes
from royalflow.producer.publisher import Publisher

__all__ = ["Publisher", "generation_event", "png_bytes"]
