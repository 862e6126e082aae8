"""Contact sheets: for each task, source | input | target, labelled (compute only; no file I/O)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .registry import TaskSpec, sample_rng
from .sample import TaskFailure, run_task
from .sources import SourceImage


def display_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as is; uint16 (HDR, PQ-coded) shown by its code values scaled to 8 bit."""
    if image.dtype == np.uint16:
        return np.clip(np.rint(image.astype(np.float32) / 257.0), 0, 255).astype(np.uint8)
    return image


def preview_triples(specs: list[TaskSpec], source: SourceImage, seed: int) -> list[tuple[TaskSpec, list[np.ndarray]]]:
    """Apply every task to the same source image (task draws from its own test-split generator).

    The task runs under synth's checks (``run_task``), so a sheet shows only pairs synth would store;
    a task that raises or breaks the contract is a ``TaskFailure`` naming it.
    """
    out = []
    for spec in specs:
        try:
            inp, tgt, _ = run_task(spec, source.image, sample_rng(seed, spec.name, "test", 0), depth=source.depth)
        except Exception as err:
            raise TaskFailure(f"task failed for task={spec.name} (preview, image={source.source_id}, seed={seed}): "
                              f"{type(err).__name__}: {err}") from err
        out.append((spec, [source.image, display_uint8(inp), display_uint8(tgt)]))
    return out


def fitted_text(draw, font, candidates: list[str], width: float) -> str:
    """The first of ``candidates`` (longest first) that fits in ``width`` pixels, else the last one
    cut to fit with '…': a label never runs into the next cell."""
    for text in candidates:
        if draw.textlength(text, font=font) <= width:
            return text
    text = candidates[-1]
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(triples, tile: int, per_row: int = 2, title: str = "") -> np.ndarray:
    """Grid of labelled (source | input | target) triples, ``per_row`` triples side by side."""
    if per_row < 1 or tile < 1:
        raise ValueError(f"contact sheet: per_row and tile must be >= 1, got {per_row} and {tile}")
    font = ImageFont.load_default()
    label_h, gap, title_h = 18, 8, (24 if title else 0)
    cell_w = 3 * tile + gap
    rows = (len(triples) + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * cell_w + gap, title_h + rows * (tile + label_h + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap, 6), fitted_text(draw, font, [title], per_row * cell_w - gap), fill="black", font=font)
    for i, (spec, images) in enumerate(triples):
        r, c = divmod(i, per_row)
        x0, y0 = gap + c * cell_w, title_h + gap + r * (tile + label_h + gap)
        label = fitted_text(draw, font, [f"{spec.name} ({spec.category})   source | input | target",
                                         f"{spec.name} ({spec.category})", spec.name], 3 * tile)
        draw.text((x0, y0 + 2), label, fill="black", font=font)
        for j, img in enumerate(images):
            thumb = Image.fromarray(img).resize((tile, tile), Image.BICUBIC) if img.shape[0] != tile else Image.fromarray(img)
            sheet.paste(thumb, (x0 + j * tile, y0 + label_h))
    return np.asarray(sheet)
