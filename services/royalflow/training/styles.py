"""Synthetic owners with distinct visual styles (PIL-drawn shape, colour and texture) and
captions, plus public images in other colours and shapes: the data of the LoRA tests and
benchmarks (``tiny.build_style_family``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32
STYLES = {  # owner -> (colour, shape, texture, caption)
    "owner-red": ((220, 30, 30), "circle", "solid", "a red circle"),
    "owner-blue": ((30, 60, 220), "square", "stripes", "a blue striped square"),
    "owner-green": ((30, 190, 60), "triangle", "dots", "a green dotted triangle"),
}
# Public colours cover the owners' hues too (the pretrained VAE and base must have seen red, blue
# and green), in other shapes: the owners' styles are the shape + colour + texture combination.
PUBLIC_COLOURS = {"yellow": (230, 210, 40), "purple": (140, 40, 170), "orange": (240, 140, 20), "gray": (128, 128, 128),
                  "red": (200, 40, 40), "blue": (40, 70, 200), "green": (40, 170, 70)}
PUBLIC_SHAPES = ("circle", "square", "triangle", "ring", "cross", "line", "blob")


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    level = int(rng.integers(215, 250))
    return (level, level, level)


def _shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=3)
    elif shape == "cross":
        draw.line([(x0, y0), (x1, y1)], fill=fill, width=3)
        draw.line([(x0, y1), (x1, y0)], fill=fill, width=3)
    elif shape == "line":
        draw.line([(x0, (y0 + y1) // 2), (x1, (y0 + y1) // 2)], fill=fill, width=4)
    else:  # blob
        draw.ellipse((x0, y0 + 4, x1, y1 - 4), fill=fill)


CATALOGUE_COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 190, 60), "yellow": (230, 210, 40),
                     "purple": (140, 40, 170), "orange": (240, 140, 20), "black": (20, 20, 20)}
CATALOGUE_TEXTURES = {"stripes": "striped", "dots": "dotted", "solid": ""}
MAX_CATALOGUE = len(CATALOGUE_COLOURS) * len(PUBLIC_SHAPES) * len(CATALOGUE_TEXTURES)  # 147 distinct styles


def catalogue(n: int, seed: int = 0) -> dict[str, tuple[tuple[int, int, int], str, str, str]]:
    """n owners with pairwise distinct styles (colour x shape x texture), named owner-0000...:
    the trained adapters of the catalogue-scale benchmark. Textured styles come first (public
    images are all solid, so those styles are the owners' alone)."""
    if not 1 <= n <= MAX_CATALOGUE:
        raise ValueError(f"a catalogue has 1..{MAX_CATALOGUE} distinct styles, asked for {n}")
    rng = np.random.default_rng(seed)
    combos = [(c, s, t) for t in CATALOGUE_TEXTURES for c in CATALOGUE_COLOURS for s in PUBLIC_SHAPES]
    textured = [combos[i] for i in rng.permutation(len(combos) - 49)]
    solid = [combos[len(combos) - 49 + i] for i in rng.permutation(49)]
    styles = {}
    for i, (colour, shape, texture) in enumerate((textured + solid)[:n]):
        words = " ".join(w for w in ("a", colour, CATALOGUE_TEXTURES[texture], shape) if w)
        styles[f"owner-{i:04d}"] = (CATALOGUE_COLOURS[colour], shape, texture, words)
    return styles


def owner_image(owner: str, rng: np.random.Generator, styles: dict | None = None) -> Image.Image:  # type: ignore[type-arg]
    colour, shape, texture, _ = (styles or STYLES)[owner]
    image = Image.new("RGB", (SIZE, SIZE), _background(rng))
    draw = ImageDraw.Draw(image)
    half = int(rng.integers(8, 13))
    cx, cy = (int(v) for v in rng.integers(12, 21, 2))
    jitter = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in colour)
    _shape(draw, shape, (cx - half, cy - half, cx + half, cy + half), jitter)
    if texture == "stripes":
        for y in range(cy - half, cy + half, 4):
            draw.line([(cx - half, y), (cx + half, y)], fill=(240, 240, 240), width=1)
    elif texture == "dots":
        for y in range(cy - half + 3, cy + half, 4):
            for x in range(cx - half + 3, cx + half, 4):
                draw.point((x, y), fill=(10, 10, 10))
    return image


def public_image(rng: np.random.Generator, reserved: set[tuple[str, str]] | None = None) -> tuple[Image.Image, str]:
    """Every public colour and shape, filled and outlined, but never an owner's shape in the
    owner's colour, and never an owner's texture: the owners' styles are theirs alone."""
    while True:
        name = str(rng.choice(list(PUBLIC_COLOURS)))
        shape = str(rng.choice(PUBLIC_SHAPES))
        if (shape, name) not in (reserved if reserved is not None else {("circle", "red"), ("square", "blue"), ("triangle", "green")}):
            break
    image = Image.new("RGB", (SIZE, SIZE), _background(rng))
    half = int(rng.integers(7, 14))
    cx, cy = (int(v) for v in rng.integers(10, 23, 2))
    _shape(ImageDraw.Draw(image), shape, (cx - half, cy - half, cx + half, cy + half), PUBLIC_COLOURS[name])
    return image, f"a {name} {shape}"


def write_folders(root: Path, *, per_owner: int, public: int, seed: int = 0, owners: dict[str, str] | None = None,
                  styles: dict | None = None) -> Path:  # type: ignore[type-arg]
    """<root>/<owner>/*.png + metadata.jsonl for each style, and <root>/_public. ``owners`` maps
    folder names to styles ({owner: style owner}; default: every style under its own name); two
    owners of one style get the SAME images (a twin), drawn once. ``styles``: another style table
    (``catalogue(n)``); public images then avoid its solid shape-and-colour pairs."""
    rng = np.random.default_rng(seed)
    table = styles if styles is not None else STYLES
    mapping = owners if owners is not None else {o: o for o in table}
    unknown = sorted(set(mapping.values()) - set(table))
    if unknown:
        raise ValueError(f"unknown styles {unknown}; known: {sorted(table)}")
    drawn = {style: [owner_image(style, rng, table) for _ in range(per_owner)] for style in table if style in mapping.values()}
    names = {rgb: name for name, rgb in CATALOGUE_COLOURS.items()}
    reserved = None if styles is None else {(shape, names[rgb]) for rgb, shape, texture, _ in table.values()
                                            if texture == "solid"}
    for owner, style in mapping.items():
        folder = root / owner
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i, image in enumerate(drawn[style]):
            image.save(folder / f"{i:04d}.png")
            rows.append({"file_name": f"{i:04d}.png", "text": table[style][3]})
        (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    folder = root / "_public"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(public):
        image, caption = public_image(rng, reserved)
        image.save(folder / f"{i:04d}.png")
        rows.append({"file_name": f"{i:04d}.png", "text": caption})
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root
