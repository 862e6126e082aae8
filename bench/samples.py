"""A few saved example outputs per evaluated unit, for the report's visual comparisons (paper Figs 5–7).

Scores need every output; a figure needs only a few. The evaluation therefore writes, for the
first ``EvalConfig.save_samples`` queries of each main-track task and each mismatch unit, the
model's output exactly as it was scored (clamped and rounded to the target's dtype), plus the
images the comparison row shows. Layout under an eval output folder::

    samples/{model}/{track}/{unit}/{stem}.png          the model's output
    samples/_inputs/{track}/{unit}/{stem}/query.png     the query
                                         prompt_input.png, prompt_target.png
                                         target.png     ground truth (main) or the prompt task's
                                                        recipe applied to the query (mismatch)
                                         sample.json    keys, prompt rule, data manifest sha256

``{model}`` is the same folder name as the model's results (``bench.evaluate.slug``; it never
starts with "_", so ``_inputs`` cannot collide), ``{unit}`` a task or ``A__on__B``, ``{stem}``
the sample key with "/" replaced by "-". Inputs are the same for every model: they are written
once per sample (again only when sample.json names another data manifest or prompt). Every file
is a PNG of the stored dtype (uint8, or uint16 for HDR), written atomically.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLES_DIR = "samples"
INPUTS_DIR = "_inputs"
SAMPLE_META = "sample.json"
# Stored, unfiltered PNGs: 0.2 ms to write a 256² example instead of ~4 ms at zlib level 1, for
# ~1.6x the bytes of a handful of images per evaluated unit.
PNG_COMPRESSION = 0
# Roles of the input images, in the order a comparison row shows them (target last, after outputs).
INPUT_ROLES = ("prompt_input", "prompt_target", "query", "target")


def key_stem(sample_key: str) -> str:
    """A sample key ("task/test/000003") -> a file-name stem ("task-test-000003")."""
    return sample_key.replace("/", "-")


def output_path(root: str | Path, model_dir: str, track: str, unit: str, sample_key: str) -> Path:
    """Where a model's saved output for one sample lives (``root`` is the eval output folder)."""
    return Path(root) / SAMPLES_DIR / model_dir / track / unit / f"{key_stem(sample_key)}.png"


def inputs_dir(root: str | Path, track: str, unit: str, sample_key: str) -> Path:
    """The folder of one sample's query, prompt pair, target and sample.json."""
    return Path(root) / SAMPLES_DIR / INPUTS_DIR / track / unit / key_stem(sample_key)


@dataclass(frozen=True)
class SampleWriter:
    """Saves the outputs (and inputs) of the first ``count`` queries of each unit for one model."""

    root: Path       # the eval output folder
    model_dir: str   # the model's folder name (bench.evaluate.slug)
    count: int

    def wants(self, position: int) -> bool:
        """Whether the query at ``position`` (0-based, in the unit's query order) is saved."""
        return position < self.count

    def save(self, track: str, unit: str, sample_key: str, output: np.ndarray, images: dict, meta: dict) -> None:
        """Write one output (integer RGB HWC) and its input images ({role: array}) atomically.

        A failed write is logged, not raised: examples are for the report and must not fail a
        unit whose scores are fine. They are renamed into place but not fsynced (half their cost,
        and its most variable half on shared disks): after an operating-system crash, delete the
        model's folder under the results folder and evaluate again to rewrite them.
        """
        from taskgen.atomic import atomic_write_bytes, atomic_write_json
        from taskgen.imageio import encode_png

        try:
            folder = inputs_dir(self.root, track, unit, sample_key)
            record = {"track": track, "unit": unit, "sample_key": sample_key,
                      "roles": [r for r in INPUT_ROLES if r in images], **meta}
            if _read_json(folder / SAMPLE_META) != record:
                # sample.json last: when it is there, the images it describes are complete.
                for role, image in images.items():
                    atomic_write_bytes(folder / f"{role}.png", encode_png(image, PNG_COMPRESSION), durable=False)
                atomic_write_json(folder / SAMPLE_META, record, durable=False)
            atomic_write_bytes(output_path(self.root, self.model_dir, track, unit, sample_key),
                               encode_png(output, PNG_COMPRESSION), durable=False)
        except OSError as err:
            log.warning("could not save the example %s of %s/%s: %s", sample_key, track, unit, err)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def saved_examples(root: str | Path, track: str, unit: str, skipped: list | None = None) -> list[dict]:
    """The sample.json records saved for one unit, in sample-key order; [] when none were saved.

    An example folder without a readable sample.json (written last, so its absence is an interrupted
    write) is left out, with why appended to ``skipped`` when given."""
    folder = Path(root) / SAMPLES_DIR / INPUTS_DIR / track / unit
    records = []
    for example in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        meta = example / SAMPLE_META
        record = _read_json(meta) if meta.exists() else None
        if not isinstance(record, dict):
            if skipped is not None:
                skipped.append(f"{meta}: not a JSON object (damaged), so its example is left out" if meta.exists()
                               else f"{example}: no {SAMPLE_META} (an interrupted write), so its example is left out")
            continue
        record["dir"] = str(example)
        records.append(record)
    return sorted(records, key=lambda r: r.get("sample_key", ""))


def saved_units(root: str | Path, track: str) -> list[str]:
    """Units of a track that have saved examples (sorted)."""
    folder = Path(root) / SAMPLES_DIR / INPUTS_DIR / track
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
