"""Dataset synthesis: params.yaml (+ overrides) -> shard plan -> one Dask task per shard -> manifest.

Execution: an existing Dask scheduler when ``scheduler`` is set (any cluster: dask-jobqueue on
SLURM/PBS, dask-kubernetes, ``dask scheduler`` by hand; the workers must see ``out`` on a shared
file system and have llvbench installed), else a ``distributed.LocalCluster`` of worker processes
with one thread each, else, when one worker suffices, the calling process itself (a cluster costs
about 3 s to start, more than a small job takes). Which machine writes a shard never changes its
bytes: every sample has its own generator, the shard writer is deterministic, and the ``llvbench``
command pins numpy, OpenBLAS and OpenCV to portable CPU kernels (``pipelines.cpu_paths``; local
workers inherit them, a remote cluster's workers need its variables in their environment: a
worker whose library versions or kernels differ from this process's refuses to write).

Resume: shards whose recorded entry (manifest or journal) has the planned recipe and still verifies
are kept; only the rest is written. The manifest is written last, atomically.
"""
from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


import taskgen
from taskgen.atomic import atomic_write_json
from taskgen.registry import SPLITS, TaskSpec
from taskgen.shards import (PNG_COMPRESSION, ShardJob, ShardResult, build_manifest, clear_journal,
                            merge_manifests, plan_shards, remove_temporaries, reusable,
                            stale_shards, write_manifest, write_shard)
from taskgen.paired import UNMATCHED_SKIP, build_paired_source
from taskgen.software import software_description
from taskgen.sources import (DEFAULT_SOURCES, FolderSource, InterleavedSource, PhotoSource, Source, SourceError,
                             build_source, load_photo)

from pipelines.cpu_paths import apply_portable_opencv, portable_environment
from pipelines.params import coerce, did_you_mean, names_other_folder, read_section

log = logging.getLogger(__name__)

DEFAULTS: dict = {
    "out": "data/shards",
    "summary": "metrics/synth.json",
    "seed": 0,
    "size": 128,
    "tasks": "all",
    "splits": list(SPLITS),
    "sources": dict(DEFAULT_SOURCES),
    "counts": {"train": 64, "test": 16, "unseen": 16},
    "per_task": {},
    "samples_per_shard": 64,
    "png_compression": PNG_COMPRESSION,
    "workers": None,
    "scheduler": None,
}
# The smallest image side the task functions accept (taskgen.images.check_rgb).
MIN_SIZE = 8
# Below this many samples per extra worker, starting a worker process costs more than it saves.
MIN_SAMPLES_PER_WORKER = 256
TASK_ROOTS = "tasks"  # per-task sub-roots written by the per-task DVC stages
# Local workers: one BLAS/OpenMP thread each. distributed also exports MALLOC_TRIM_THRESHOLD_ to its
# workers by default, which switches off glibc's adaptive mmap threshold: every numpy temporary
# above 128 kB then costs an mmap/munmap and page faults, slowing the task functions by ~1.5x.
# The statistical profiler (a stack sample every 10 ms) is off too: nobody watches a dashboard here.
LOCAL_CLUSTER_CONFIG = {
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1},
    "distributed.worker.profile.enabled": False,
}


class SynthError(RuntimeError):
    """Synthesis failed; the message names the shard, task, split, sample index and seed."""


# run_synth checks the files of every user folder up front (scan_folders), logging each unusable one once.
# Each shard then builds its own FolderSource (often in another process) that would log the same
# files again, once per shard: while shards are written, this filter drops those repeats. A context
# variable rather than a logger level, so that concurrent shards in threads cannot leave it stuck.
_WRITING_SHARDS = contextvars.ContextVar("llvbench_writing_shards", default=False)


class _RepeatedSkipFilter(logging.Filter):
    # A folder's unusable files (scanned up front) and a paired dataset's files without a partner
    # (matched up front, in open_sources): shards would log each again.
    REPEATED = ("skipping %s: %s", UNMATCHED_SKIP)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_WRITING_SHARDS.get() and record.msg in self.REPEATED)


_REPEATED_SKIPS = _RepeatedSkipFilter()
for _logger in ("taskgen.sources", "taskgen.paired"):
    logging.getLogger(_logger).addFilter(_REPEATED_SKIPS)  # idempotent: one filter object


@contextmanager
def _writing_shards():
    token = _WRITING_SHARDS.set(True)
    try:
        yield
    finally:
        _WRITING_SHARDS.reset(token)


@dataclass
class SynthConfig:
    out: Path
    summary: Path | None
    seed: int
    size: int
    tasks: list[TaskSpec]
    splits: list[str]
    sources: dict[str, str]
    counts: dict[str, dict[str, int]]          # task -> split -> samples
    paired: dict[str, dict[str, str]]          # task -> split -> paired dataset spec
    samples_per_shard: int
    png_compression: int
    workers: int | None
    scheduler: str | None
    per_task_names: list[str] = field(default_factory=list)  # tasks listed under per_task
    # split -> the option that set its source (named in errors): --train-dir, --test-dir or synth.sources.SPLIT
    source_options: dict[str, str] = field(default_factory=dict)

    def manifest_params(self) -> dict:
        """The settings every shard shares (recorded in the manifest; no paths of this machine
        beyond the user folders a source spec names)."""
        return {"seed": self.seed, "size": self.size, "splits": list(self.splits),
                "sources": dict(sorted(self.sources.items())), "samples_per_shard": self.samples_per_shard,
                "png_compression": self.png_compression}


# --------------------------------------------------------------------------------------------
# Params


# Types of the settings that have one (the others: comma strings or lists, ``auto``; configure checks them).
KINDS: dict = {"out": str, "summary": str | None, "seed": int, "size": int, "sources": dict, "counts": dict,
               "per_task": dict | None, "samples_per_shard": int, "png_compression": int, "scheduler": str | None}


def read_params(path: str | Path | None, *, required: bool = False) -> dict:
    """The ``synth`` section of a params file and its profile overlay over the defaults (no file: defaults).
    Each ``per_task`` entry is checked here, naming the file: a registered task, a mapping, known keys."""
    return read_section(path, "synth", DEFAULTS, required=required, merge_dicts=True,
                        closed=("counts", "sources"), kinds=KINDS, check=_check_layer)


def _check_layer(source: Path, values: dict) -> dict:
    for name, entry in (values.get("per_task") or {}).items():
        where = f"{source}: synth.per_task.{name}"
        if name not in taskgen.task_names():
            # dvc.yaml makes a stage per entry (synth_task@NAME), which would fail late without naming this file
            raise ValueError(f"{where}: unknown task {name!r}{did_you_mean(name, taskgen.task_names())}")
        check_task_entry(entry, where)
    return values


PER_TASK_KEYS = (*SPLITS, "paired")


def check_task_entry(entry, where: str) -> dict:
    """One ``per_task`` entry (null or a mapping of split counts and ``paired``) as a dict; a
    ValueError naming ``where`` (``FILE: synth.per_task.TASK``) otherwise."""
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a mapping of per-split counts ({', '.join(SPLITS)}) and/or paired, "
                         f"{{}} for none; got {entry!r}")
    typos = sorted(map(str, set(entry) - set(PER_TASK_KEYS)))
    if typos:
        raise ValueError(f"{where}: unknown key(s) {', '.join(typos)}{did_you_mean(typos[0], PER_TASK_KEYS)} "
                         f"(split names with their counts, or paired)")
    for split in SPLITS:
        if split in entry:
            _count(entry[split], f"{where}.{split}")
    paired = entry.get("paired")
    if paired is not None:
        if not isinstance(paired, dict):
            raise ValueError(f"{where}.paired must be a mapping of split: LAYOUT:DIR, got {paired!r}")
        for split, spec in paired.items():
            if split not in SPLITS:
                raise ValueError(f"{where}.paired: unknown split {split!r}{did_you_mean(split, SPLITS)}")
            if not isinstance(spec, str):
                raise ValueError(f"{where}.paired.{split} must be a string LAYOUT:DIR, got {spec!r}")
    return dict(entry)


def _count(value, where: str) -> int:
    """A sample count: a whole number >= 0 (ValueError naming ``where`` otherwise)."""
    n = coerce(value, int, where)
    if n < 0:
        raise ValueError(f"{where} must be >= 0, got {n}")
    return n


def _as_list(value, key: str) -> list[str]:
    """A comma string or a list of names (``key`` names the setting in the error for anything else)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key} must be a comma string or a list of names, got {value!r}")
    return [str(v) for v in value]


def _workers(value) -> int | None:
    """synth.workers / --workers: None for auto (one per core), else a count >= 1 (1 = in this process)."""
    if value in (None, "auto"):
        return None
    workers = coerce(value, int, "synth.workers (or auto)")
    if workers < 1:
        raise ValueError(f"synth.workers (--workers) must be >= 1 or auto, got {workers}; "
                         "1 runs the tasks in this process")
    return workers


def summary_path(params: Mapping, overrides: Mapping) -> Path | None:
    """Where the per-task summary goes: ``--summary`` when given; else ``synth.summary`` unless the
    effective out folder is not the one that summary belongs to. The default summary is the
    pipeline's tracked metrics/synth.json, which describes data/shards: a run into another folder,
    whether --out or the params file's synth.out moved it, only prints its summary (and a summary
    inside the out folder would make the data's bytes vary with timings). Likewise a params file's
    own summary belongs to its own out, not to a --out elsewhere."""
    if "summary" in overrides:  # "" asks for none
        return Path(overrides["summary"]) if overrides["summary"] else None
    summary = params.get("summary")
    if not summary or names_other_folder(overrides.get("out"), params["out"]):
        return None
    out = overrides.get("out", params["out"])
    if Path(summary).resolve() == Path(DEFAULTS["summary"]).resolve() and names_other_folder(out, DEFAULTS["out"]):
        return None
    return Path(summary)


def _at_least(value, least: int, where: str) -> int:
    """A whole number >= ``least`` (ValueError naming ``where`` otherwise): refused before any work
    instead of failing deep inside a task (size 0 used to end in a ZeroDivisionError)."""
    n = coerce(value, int, where)
    if n < least:
        raise ValueError(f"{where} must be >= {least}, got {n}")
    return n


def configure(params: Mapping, overrides: Mapping | None = None) -> SynthConfig:
    """Resolve params plus command-line overrides (non-None values win) into a SynthConfig."""
    p = dict(params)
    o = {k: v for k, v in (overrides or {}).items() if v is not None}
    summary = summary_path(p, o)
    for key in ("out", "seed", "size", "workers", "scheduler", "tasks", "splits"):
        if key in o:
            p[key] = o[key]
    size = _at_least(p["size"], MIN_SIZE, "synth --size" if "size" in o else "synth.size")
    seed = _at_least(p["seed"], 0, "synth --seed" if "seed" in o else "synth.seed")
    sources = dict(p["sources"])
    source_options = {split: f"synth.sources.{split}" for split in sources}
    for split, spec in sources.items():
        if not isinstance(spec, str):
            raise ValueError(f"synth.sources.{split} must be a source spec such as 'deadleaves' or 'folder:DIR', "
                             f"got {spec!r}")
    if "train_dir" in o:
        sources["train"] = f"folder:{o['train_dir']}"
        source_options["train"] = "--train-dir"
    if "test_dir" in o:  # both evaluation splits read the user's test photos
        sources["test"] = sources["unseen"] = f"folder:{o['test_dir']}"
        source_options["test"] = source_options["unseen"] = "--test-dir"

    splits = _as_list(p["splits"], "synth.splits (--splits)")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {', '.join(bad)}; known: {', '.join(SPLITS)}")
    per_task = p.get("per_task") or {}
    tasks = p["tasks"] if isinstance(p["tasks"], str) else _as_list(p["tasks"], "synth.tasks (--tasks)")
    specs = taskgen.resolve_tasks(tasks)
    counts, paired = {}, {}
    for spec in specs:
        entry = check_task_entry(per_task.get(spec.name), f"synth per_task.{spec.name}")
        paired[spec.name] = dict(entry.pop("paired", {}) or {})
        task_counts = {}
        for split in splits:
            if split not in spec.splits:
                continue
            where = f"--n-{split}" if f"n_{split}" in o else \
                f"per_task.{spec.name}.{split}" if split in entry else f"counts.{split}"
            task_counts[split] = _count(o.get(f"n_{split}", entry.get(split, p["counts"].get(split, 0))),
                                        f"synth {where}")
        counts[spec.name] = task_counts
    unknown = sorted(set(per_task) - set(taskgen.task_names()) - {s.name for s in specs})
    if unknown and p["tasks"] == "all":
        log.warning("params per_task lists unregistered task(s), ignored: %s", ", ".join(unknown))
    return SynthConfig(
        out=Path(p["out"]), summary=summary,
        seed=seed, size=size, tasks=specs, splits=splits, sources=sources,
        counts=counts, paired=paired, samples_per_shard=int(p["samples_per_shard"]),
        png_compression=_png_compression(p["png_compression"]),
        workers=_workers(p.get("workers")),
        scheduler=p.get("scheduler") or None, per_task_names=list(per_task), source_options=source_options)


def _png_compression(value) -> int:
    """synth.png_compression: a zlib level 0-9 (OpenCV clamps others with a warning, and the manifest
    would record a level that was not used)."""
    level = _count(value, "synth png_compression")
    if level > 9:
        raise ValueError(f"synth png_compression must be a zlib level from 0 to 9, got {level}")
    return level


# --------------------------------------------------------------------------------------------
# Sources, checked once up front


def source_parts(source: Source) -> list[Source]:
    """The plain sources a source reads: itself, or the parts of an interleaved source (``a+b``)."""
    if isinstance(source, InterleavedSource):
        return [leaf for part in source.parts for leaf in source_parts(part)]
    return [source]


def open_sources(config: SynthConfig, jobs: list[ShardJob]) -> dict[str, Source]:
    """Build each image source the plan uses once, in this process, before any work: a typo
    (``foldr:/x``) or a missing folder is one error naming the option that set it, instead of a
    failure of every shard. Paired dataset specs are opened the same way (their folders listed)."""
    sources: dict[str, Source] = {}
    hdr = {spec.name: spec.hdr for spec in config.tasks}
    paired_seen = set()
    for job in jobs:
        if job.source not in sources:
            option = config.source_options.get(job.split, f"synth.sources.{job.split}")
            try:
                sources[job.source] = build_source(job.source)
                for part in source_parts(sources[job.source]):
                    if isinstance(part, PhotoSource):  # names are only looked up when a sample loads them
                        for name in part.names:
                            load_photo(name)
            except SourceError as err:
                raise SynthError(f"{option} ({job.source}): {err}") from None
        if job.paired and (job.paired, hdr[job.task]) not in paired_seen:
            try:
                build_paired_source(job.paired, hdr=hdr[job.task])
            except ValueError as err:  # PairedLayoutError
                raise SynthError(f"synth.per_task.{job.task}.paired.{job.split} ({job.paired}): {err}") from None
            paired_seen.add((job.paired, hdr[job.task]))
    return sources


def scan_folders(config: SynthConfig, jobs: list[ShardJob], sources: Mapping[str, Source]) -> dict[str, dict]:
    """Check, once and here, the files of every user folder that the plan's samples reach: each
    unusable one is logged once with its reason (shards only count theirs quietly) and the counts
    by reason go into the summary. A folder without one usable image is an error naming it and its
    option. Only the reached files are read: sample ``i`` takes the first usable file at or after
    position ``i mod n``, so samples below ``stop`` reach the first ``stop`` files (and the search
    onward from them), and a 2,048-pair plan over an ImageNet-sized folder decodes ~2,048 files, not
    every one of them.

    Returns ``{"folder:DIR" or "folder-upscale:DIR": {folder, files, reached, skipped, splits}}``.
    """
    import numpy as np

    plans: dict[str, dict] = {}
    for job in jobs:
        if job.paired:  # a real paired dataset replaces the image source for this task and split
            continue
        for folder in source_parts(sources[job.source]):
            if not isinstance(folder, FolderSource):
                continue
            label = f"{'folder-upscale' if folder.upscale else 'folder'}:{folder.root}"
            plan = plans.setdefault(label, {"folder": folder, "stop": 0, "splits": [], "job": job})
            plan["stop"] = max(plan["stop"], job.stop)
            if job.split not in plan["splits"]:
                plan["splits"].append(job.split)
    reports: dict[str, dict] = {}
    for label, plan in plans.items():
        folder, job = plan["folder"], plan["job"]
        reached = min(len(folder.files), plan["stop"])
        rng = np.random.default_rng(0)  # the crops are thrown away: only which files load matters
        try:
            for index in range(reached):
                folder.sample(index, config.size, rng)
        except SourceError as err:  # not one usable file
            option = config.source_options.get(job.split, f"synth.sources.{job.split}")
            raise SynthError(f"{option} ({job.source}): {err}") from None
        reports[label] = {"folder": str(folder.root), "files": len(folder.files), "reached": reached,
                          "skipped": dict(sorted(folder.skipped.items())), "splits": plan["splits"]}
    return reports


# --------------------------------------------------------------------------------------------
# Execution


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_workers(jobs: list[ShardJob], requested: int | None = None) -> int:
    """Workers to start: the request, or one per core while each gets enough samples; never more
    than there are shards."""
    if not jobs:
        return 0
    if requested is None:
        samples = sum(job.count for job in jobs)
        requested = min(available_cores(), math.ceil(samples / MIN_SAMPLES_PER_WORKER))
    return max(1, min(int(requested), len(jobs)))


class WorkerSoftwareMismatch(RuntimeError):
    """A Dask worker runs other library versions or CPU kernels than the process that planned the run."""


def run_job(job: ShardJob, root: str, software: str | None = None) -> ShardResult:
    """Dask task: write one shard single-threaded (cores are the workers' to share); with
    ``software`` (the planning process's ``software_description()``), refuse first on a worker
    whose own description differs."""
    import cv2

    cv2.setNumThreads(1)
    apply_portable_opencv()  # a portable run's workers inherit LLVBENCH_CPU_PATHS; OpenCV's switch is per process
    if software is not None:
        check_worker_software(software)
    with _writing_shards():
        return write_shard(job, root)


def check_worker_software(expected: str, actual: str | None = None) -> None:
    """Raise WorkerSoftwareMismatch when this worker's software line (``actual``, else its own)
    differs from ``expected``. Why refuse: its shards would not be the bytes a local run makes, and
    the next run, which reuses only shards of its own line, would make them all again."""
    actual = software_description() if actual is None else actual
    if actual == expected:
        return
    import socket

    variables = " ".join(f"{k}={v}" for k, v in sorted(portable_environment().items()))
    raise WorkerSoftwareMismatch(
        f"the Dask worker on {socket.gethostname()} (pid {os.getpid()}) runs '{actual}', the process that "
        f"planned the run '{expected}'. Start the cluster's workers with the portable variables ({variables}; "
        f"pipelines.cpu_paths) and the versions of constraints.txt, or run both sides with "
        f"LLVBENCH_CPU_PATHS=native on one kind of CPU")


def _schedule_order(jobs: list[ShardJob]) -> list[ShardJob]:
    # Biggest shards first so that the last ones to finish are short (less idle tail).
    return sorted(jobs, key=lambda job: -job.count)


def _failure(job: ShardJob, err: BaseException) -> SynthError:
    return SynthError(f"shard {job.path} failed: {err}" if isinstance(err, RuntimeError)
                      else f"shard {job.path} failed: {type(err).__name__}: {err}")


def _progress_bar(jobs: list[ShardJob], enabled: bool):
    from tqdm import tqdm

    return tqdm(total=sum(job.count for job in jobs), unit="pair", desc="synth", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)


def _run_inprocess(jobs: list[ShardJob], root: Path, progress: bool) -> list[ShardResult]:
    results = []
    with _progress_bar(jobs, progress) as bar:
        for job in _schedule_order(jobs):
            try:
                with _writing_shards():
                    results.append(write_shard(job, root))
            except Exception as err:
                raise _failure(job, err) from err
            bar.update(job.count)
    return results


def _run_dask(client, jobs: list[ShardJob], root: Path, progress: bool,
              software: str | None = None) -> list[ShardResult]:
    from distributed import as_completed

    by_key = {}
    futures = []
    for job in _schedule_order(jobs):
        key = f"shard-{job.split}-{job.task}-{job.part:05d}-{job.recipe[:12]}"
        future = client.submit(run_job, job, str(root.resolve()), software, key=key, pure=False)
        by_key[future.key] = job
        futures.append(future)
    results = []
    try:
        with _progress_bar(jobs, progress) as bar:
            for future in as_completed(futures):
                job = by_key[future.key]
                if future.status == "error":
                    raise _failure(job, future.exception())
                results.append(future.result())
                bar.update(job.count)
    finally:
        client.cancel([f for f in futures if not f.done()])
    return results


@contextmanager
def _quiet_dask():
    """Keep distributed's start/stop chatter (INFO) out of the command's output unless debugging."""
    logger = logging.getLogger("distributed")
    previous = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _connect(client_class, scheduler: str):
    """A client of the Dask scheduler at ``scheduler``; a SynthError naming it when it cannot be reached."""
    try:
        return client_class(scheduler)
    except (OSError, ValueError, TypeError) as err:  # TimeoutError is an OSError
        raise SynthError(f"cannot reach the Dask scheduler at {scheduler} (--scheduler / synth.scheduler): "
                         f"{err}") from None


def execute(jobs: list[ShardJob], root: Path, *, workers: int | None = None, scheduler: str | None = None,
            progress: bool = True, force_dask: bool = False,
            software: str | None = None) -> tuple[list[ShardResult], dict]:
    """Write the shards of ``jobs``; returns the results and how they were run. With ``software``
    (this process's ``software_description()``), a Dask worker whose own line differs refuses its
    shard, and the run stops naming both lines."""
    if not jobs:
        return [], {"executor": "none", "workers": 0}
    n = auto_workers(jobs, workers)
    if not scheduler and n == 1 and not force_dask:
        return _run_inprocess(jobs, root, progress), {"executor": "in-process", "workers": 1}
    import dask
    from distributed import Client, LocalCluster  # imported before _quiet_dask: import sets log levels

    with _quiet_dask():
        if scheduler:
            with _connect(Client, scheduler) as client:
                n = len(client.scheduler_info().get("workers", {}))
                return (_run_dask(client, jobs, root, progress, software),
                        {"executor": f"dask:{scheduler}", "workers": n})
        with dask.config.set(LOCAL_CLUSTER_CONFIG), \
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                             silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            return _run_dask(client, jobs, root, progress, software), {"executor": "dask-local", "workers": n}


# --------------------------------------------------------------------------------------------
# Runs


def summarize(jobs: list[ShardJob], results: list[ShardResult], reused: Mapping[str, dict], wall_s: float,
              run_info: Mapping, folders: Mapping[str, dict] | None = None,
              third_party: Mapping[str, str] | None = None) -> dict:
    """Per task: pairs, seconds of work, ms per pair (of the pairs written this run); with
    ``folders`` (``scan_folders``) also each user folder's file counts and skips by reason; with
    ``third_party`` (``taskgen.third_party_tasks``) the tasks from outside taskgen and their packages."""
    tasks: dict[str, dict] = {}
    for job in jobs:
        row = tasks.setdefault(job.task, {"pairs": 0, "written_pairs": 0, "reused_pairs": 0, "seconds": 0.0,
                                          "generate_seconds": 0.0})
        row["pairs"] += job.count
        if job.path in reused:
            row["reused_pairs"] += job.count
    for res in results:
        row = tasks[res.entry["task"]]
        row["written_pairs"] += res.entry["samples"]
        row["seconds"] += res.generate_s + res.encode_s + res.write_s
        row["generate_seconds"] += res.generate_s
    for row in tasks.values():
        row["ms_per_pair"] = round(1000 * row["seconds"] / row["written_pairs"], 3) if row["written_pairs"] else None
        row["seconds"] = round(row["seconds"], 4)
        row["generate_seconds"] = round(row["generate_seconds"], 4)
    summary = {"tasks": tasks, "total": _totals(tasks, wall_s, run_info)}
    if folders:  # only runs that read user folders: the default metrics keep their keys
        summary["folders"] = {label: dict(report) for label, report in folders.items()}
    if third_party:  # likewise only runs that include plug-in tasks
        summary["third_party_tasks"] = dict(third_party)
    return summary


def _totals(tasks: Mapping[str, Mapping], wall_s: float, run_info: Mapping) -> dict:
    written = sum(r["written_pairs"] for r in tasks.values())
    seconds = sum(r["seconds"] for r in tasks.values())
    return {"pairs": sum(r["pairs"] for r in tasks.values()), "written_pairs": written,
            "reused_pairs": sum(r["reused_pairs"] for r in tasks.values()), "seconds": round(seconds, 4),
            "ms_per_pair": round(1000 * seconds / written, 3) if written else None,
            "wall_seconds": round(wall_s, 3), **run_info}


def format_summary(summary: Mapping) -> str:
    lines = [f"{'task':<22} {'pairs':>6} {'reused':>6} {'seconds':>8} {'ms/pair':>8}"]
    for name, row in summary["tasks"].items():
        ms = f"{row['ms_per_pair']:.1f}" if row["ms_per_pair"] is not None else "-"
        lines.append(f"{name:<22} {row['pairs']:>6} {row['reused_pairs']:>6} {row['seconds']:>8.2f} {ms:>8}")
    t = summary["total"]
    ms = f"{t['ms_per_pair']:.1f}" if t.get("ms_per_pair") is not None else "-"
    lines.append(f"{'total':<22} {t['pairs']:>6} {t['reused_pairs']:>6} {t['seconds']:>8.2f} {ms:>8}")
    lines.append(f"wall {t['wall_seconds']:.1f} s, {t.get('workers', 0)} worker(s), {t.get('executor', '-')}")
    lines.extend(format_folder(label, report) for label, report in summary.get("folders", {}).items())
    return "\n".join(lines)


def format_folder(label: str, report: Mapping) -> str:
    """One line per user folder: ``folder:/x (test): 12 files, 7 reached; skipped 5: not an image 2, ...``."""
    skipped = sum(report["skipped"].values())
    line = f"{label} ({', '.join(report.get('splits', []))}): {report['files']} files, {report['reached']} reached"
    if skipped:
        line += f"; skipped {skipped}: " + ", ".join(f"{reason} {n}" for reason, n in report["skipped"].items())
    return line


def check_outputs(config: SynthConfig) -> None:
    """Refuse, before any work, an ``out`` that is a file or a ``summary`` that is a folder, or either
    under a file."""
    if config.out.exists() and not config.out.is_dir():
        raise SynthError(f"synth out {config.out} is a file; --out (synth.out) names the shards folder to write")
    if config.summary is not None and config.summary.is_dir():
        raise SynthError(f"synth summary {config.summary} is a folder; --summary (synth.summary) names a JSON file")
    for option, path in (("--out (synth.out)", config.out), ("--summary (synth.summary)", config.summary)):
        blocking = next((parent for parent in (path.parents if path is not None else ())
                         if parent.exists() and not parent.is_dir()), None)
        if blocking is not None:
            raise SynthError(f"{option} {path}: {blocking} is a file, not a folder")


def run_synth(config: SynthConfig, *, progress: bool = True, force_dask: bool = False) -> dict:
    """Synthesise every planned shard that is not already there, then the manifest and summary."""
    t0 = time.perf_counter()
    check_outputs(config)
    root = config.out
    jobs = plan_shards(config.tasks, config.counts, seed=config.seed, size=config.size, sources=config.sources,
                       samples_per_shard=config.samples_per_shard, png_compression=config.png_compression,
                       paired=config.paired)
    if not jobs:
        counts = "; ".join(f"{name} " + (", ".join(f"{split} {n}" for split, n in task_counts.items())
                                         or "none of its splits requested")
                           for name, task_counts in config.counts.items())
        raise SynthError(f"nothing to synthesise: no task has samples in the requested splits "
                         f"({', '.join(config.splits)}); pairs per split: {counts}. Raise synth.counts or the "
                         "task's synth.per_task entry, or drop the task from synth.per_task")
    planned_names = {job.task for job in jobs}
    planned = [spec for spec in config.tasks if spec.name in planned_names]
    third_party = taskgen.third_party_tasks(planned)
    if third_party:  # installed plug-ins join `tasks: all` without being named anywhere else
        log.info("third-party tasks included: %s", taskgen.describe_third_party(planned))
    folders = scan_folders(config, jobs, open_sources(config, jobs))
    root.mkdir(parents=True, exist_ok=True)
    remove_temporaries(root)
    apply_portable_opencv()  # before describing this process's kernels
    software = software_description()
    reused = reusable(root, jobs, software)
    for path in stale_shards(root, jobs):
        log.info("removing %s: no longer part of the plan", path)
        path.unlink()
    pending = [job for job in jobs if job.path not in reused]
    if reused:
        log.info("reusing %d of %d shards that verify", len(reused), len(jobs))
    results, run_info = execute(pending, root, workers=config.workers, scheduler=config.scheduler,
                                progress=progress, force_dask=force_dask, software=software)
    entries = {**reused, **{res.entry["path"]: res.entry for res in results}}
    manifest = build_manifest(jobs, entries, config.tasks, counts=config.counts, params=config.manifest_params())
    write_manifest(root, manifest)
    clear_journal(root)
    _warn_unlisted(root, manifest)
    summary = summarize(jobs, results, reused, time.perf_counter() - t0, run_info, folders, third_party)
    if config.summary is not None:
        atomic_write_json(config.summary, summary)
    return summary


def _warn_unlisted(root: Path, manifest: Mapping) -> None:
    listed = {entry["path"] for entry in manifest["shards"]}
    others = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.tar")
                    if p.relative_to(root).as_posix() not in listed)
    if others:
        log.warning("%d shard(s) in %s are not in this run's manifest (llvbench verify reports them as "
                    "extra): %s", len(others), root, ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))


def merge_folder_reports(a: Mapping[str, dict], b: Mapping[str, dict]) -> dict[str, dict]:
    """Folder reports of two per-task runs as one: the files the plans reached are the first few of
    one sorted list, so the report that reached more holds the other's skips; it is kept, with the
    union of the splits that read the folder."""
    merged = {label: dict(report) for label, report in a.items()}
    for label, report in b.items():
        if label in merged:
            splits = merged[label].get("splits", [])
            splits = splits + [s for s in report.get("splits", []) if s not in splits]
            if report.get("reached", 0) > merged[label].get("reached", 0):
                merged[label] = dict(report)
            merged[label]["splits"] = splits
        else:
            merged[label] = dict(report)
    return merged


def merge_task_roots(config: SynthConfig) -> dict:
    """DVC's final synth stage: one manifest over ``{out}/tasks/{task}`` for the per_task tasks.

    Per-task summaries at ``{summary dir}/{summary stem}/{task}.json`` are combined likewise.
    """
    check_outputs(config)
    # Exactly the per_task tasks, which the synth_task stages synthesise whatever synth.tasks says
    # (their --tasks overrides it): a merge that obeyed synth.tasks would delete the other stages'
    # outputs, and every repro would make them again. In the registry's order, then the rest.
    listed = list(dict.fromkeys(config.per_task_names))
    names = [s.name for s in taskgen.resolve_tasks("all") if s.name in set(listed)] if listed \
        else [s.name for s in config.tasks]
    names += [name for name in listed if name not in names]
    if not names:
        raise SynthError("nothing to merge: no task is listed under synth.per_task")
    manifest = merge_manifests(config.out, {name: f"{TASK_ROOTS}/{name}" for name in names})
    write_manifest(config.out, manifest)
    # Roots of tasks taken out of per_task: their DVC stages are gone and nothing reads them.
    for stale in sorted(p for p in (config.out / TASK_ROOTS).iterdir() if p.is_dir() and p.name not in names):
        log.info("removing %s: task %s is no longer listed under synth.per_task", stale, stale.name)
        shutil.rmtree(stale)
    summary = {"tasks": {}, "total": {}}
    if config.summary is not None:
        part_dir = config.summary.with_suffix("")
        walls, info, folders, third_party = 0.0, {}, {}, {}
        for name in names:
            path = part_dir / f"{name}.json"
            if path.is_file():
                part = json.loads(path.read_text())
                summary["tasks"].update(part["tasks"])
                walls += part["total"].get("wall_seconds", 0.0)
                info = {k: part["total"][k] for k in ("executor", "workers") if k in part["total"]}
                folders = merge_folder_reports(folders, part.get("folders", {}))
                third_party.update(part.get("third_party_tasks", {}))
        summary["total"] = _totals(summary["tasks"], walls, info)
        if folders:
            summary["folders"] = folders
        if third_party:
            summary["third_party_tasks"] = third_party
        atomic_write_json(config.summary, summary)
    return summary
