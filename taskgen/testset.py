"""The evaluation splits read back for the bench: test pairs in a fixed order, prompts by a fixed rule.

Prompt rule ``next-other-source``: the prompts of the query at position ``i`` of a task's pool
(sorted by sample index) are the samples met walking forward from ``i + 1``, wrapping around,
whose *source image* differs from the query's (``photo:astronaut`` vs ``photo:coffee``; see
``taskgen.shards.source_image_id``). The k-th such sample is recorded as
``next-other-source:k=K``. Only when fewer than ``n_prompts`` samples come from other images are
the remaining prompts the next samples of the query's own image (other crops), recorded as
``next-same-source:k=K``. The query itself is never its own prompt. No randomness: the same
shards give the same (query, prompt) pairs on every machine.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .shards import (MANIFEST_NAME, ManifestError, ShardError, check_shard_file, iter_shard, load_manifest,
                     source_image_id)

OTHER_SOURCE = "next-other-source"
SAME_SOURCE = "next-same-source"


@dataclass(frozen=True, eq=False)
class TestPair:
    __test__ = False  # not a pytest test class

    task: str
    key: str              # "{task}/test/{index:06d}"
    input: np.ndarray     # uint8 or uint16 RGB HWC
    target: np.ndarray
    meta: dict            # the shard's json member (params, source_id, category, images' encoding ...)

    @property
    def index(self) -> int:
        return int(self.meta["index"])

    @property
    def source_image(self) -> str:
        return source_image_id(self.meta["source_id"], self.key)


@dataclass(frozen=True, eq=False)
class TestQuery:
    __test__ = False

    query: TestPair
    prompt: TestPair
    prompt_rule: str      # e.g. "next-other-source:k=1" -- recorded in result rows


def prompt_positions(source_images: Sequence[str], query: int, n_prompts: int) -> list[tuple[int, str]]:
    """Positions of the prompts of ``query`` in a pool and the rule that chose each (see module doc)."""
    n = len(source_images)
    if n_prompts > n - 1:
        raise ValueError(f"{n_prompts} prompt(s) per query need at least {n_prompts + 1} samples in the pool, "
                         f"it has {n}")
    others, same = [], []
    for step in range(1, n):
        pos = (query + step) % n
        (others if source_images[pos] != source_images[query] else same).append(pos)
    chosen = [(pos, f"{OTHER_SOURCE}:k={k}") for k, pos in enumerate(others[:n_prompts], start=1)]
    missing = n_prompts - len(chosen)
    chosen += [(pos, f"{SAME_SOURCE}:k={k}") for k, pos in enumerate(same[:missing], start=1)]
    return chosen


class TestSplit:
    """A shards directory's evaluation split (``test`` by default, or ``unseen``), read via its manifest.

    Every shard is checked against the manifest (byte size, sha256) the first time a task reads it,
    and every sample it holds must belong to the task and split the manifest lists it under: a
    corrupt, altered or swapped shard raises ShardError naming it instead of being scored.
    """

    __test__ = False

    def __init__(self, shards_dir: str | Path, split: str = "test"):
        self.root = Path(shards_dir)
        self.split = split
        try:
            self.manifest = load_manifest(self.root)
        except ManifestError as err:
            if (self.root / MANIFEST_NAME).is_file():
                raise  # there, but malformed: the message names the file and the bad key
            raise FileNotFoundError(str(err)) from None
        self.manifest_sha256 = hashlib.sha256((self.root / MANIFEST_NAME).read_bytes()).hexdigest()
        tasks = self.manifest["tasks"]
        self._shards: dict[str, list[dict]] = {}
        self._checked: set[str] = set()  # shard paths whose size and sha256 matched the manifest
        for entry in self.manifest["shards"]:
            if entry["split"] == split:
                self._shards.setdefault(entry["task"], []).append(entry)
        # Canonical (paper table) order, as recorded by the writer; no registry needed to read.
        self.tasks: list[str] = sorted(self._shards, key=lambda t: (tasks[t]["index"], t))

    def task_info(self, task: str) -> dict:
        """The manifest's record of a task (category, metric, hdr side, counts ...)."""
        return self.manifest["tasks"][task]

    def pairs(self, task: str) -> list[TestPair]:
        """Every sample of ``task`` in this split, decoded, in index order (ShardError names a shard
        that differs from the manifest or holds samples of another task or split)."""
        if task not in self._shards:
            raise KeyError(f"task {task!r} has no {self.split} samples in {self.root}; "
                           f"present: {', '.join(self.tasks) or 'none'}")
        out = []
        for entry in sorted(self._shards[task], key=lambda e: e["start"]):
            path = self.root / entry["path"]
            if entry["path"] not in self._checked:  # size and sha256, once per shard
                check_shard_file(self.root, entry, verify_hash=True)
                self._checked.add(entry["path"])
            for sample in iter_shard(path):
                found = (sample.key.rpartition("/")[0], sample.meta.get("task"), sample.meta.get("split"))
                if found != (f"{task}/{self.split}", task, self.split):
                    raise ShardError(f"{path}: sample {sample.key} (json: task {found[1]!r}, split {found[2]!r}) is "
                                     f"not a {task}/{self.split} sample, as the manifest lists this shard "
                                     f"(run llvbench verify {self.root})")
                out.append(TestPair(task, sample.key, sample.input, sample.target, sample.meta))
        out.sort(key=lambda p: p.index)
        expected = self.manifest["tasks"][task]["counts"].get(self.split)
        if expected is not None and len(out) != expected:
            raise ValueError(f"{self.root}: task {task} has {len(out)} {self.split} samples, the manifest says "
                             f"{expected} (run llvbench verify {self.root})")
        return out

    def queries(self, task: str, n_prompts: int = 1, limit: int | None = None) -> Iterator[TestQuery]:
        """Each query (index order, the first ``limit``) with ``n_prompts`` prompts by the module's rule."""
        pool = self.pairs(task)
        images = [p.source_image for p in pool]
        for q in range(len(pool) if limit is None else min(limit, len(pool))):
            for pos, rule in prompt_positions(images, q, n_prompts):
                yield TestQuery(pool[q], pool[pos], rule)

    def __repr__(self) -> str:
        return f"TestSplit({str(self.root)!r}, split={self.split!r}, tasks={len(self.tasks)})"

