"""WebDataset shards: plan, write byte-deterministically, hash, manifest, verify, read.

Layout (DESIGN.md): ``{root}/{split}/{task}-{part:05d}.tar`` plus ``{root}/manifest.json``.
Every sample is three tar members, in this order::

    {task}/{split}/{index:06d}.input.png
    {task}/{split}/{index:06d}.json
    {task}/{split}/{index:06d}.target.png

WebDataset cuts a member name at the first dot of its *basename* into ``__key__`` and field, so
``webdataset.WebDataset(url)`` yields one dict per sample with ``__key__ == "{task}/{split}/{index:06d}"``
and the fields ``input.png``, ``json`` and ``target.png`` (keys hold no dots; task names are
snake_case). Members of one sample are adjacent, which WebDataset's grouping requires.

Determinism: samples come from ``make_sample`` (one generator per sample), PNGs from
``taskgen.imageio.encode_png`` at a fixed compression, tar headers are POSIX ustar with mtime 0,
uid/gid 0, empty user/group names and mode 0o644, members in index order. Same plan => same
bytes, whatever process writes the shard, given the same image libraries and CPU code paths:
each shard entry records them (``software``, from ``taskgen.software``), and ``llvbench synth`` pins
the code paths to ones every x86-64 CPU runs (``pipelines.cpu_paths``), so that the bytes do not
depend on the host. The manifest holds no timestamps and no paths of this machine beyond the user
folders a source spec names.

Safety: a shard is written under a temporary name and renamed; the worker then records the
shard's entry in a journal (``.synth-journal/``), so a run killed at any point can reuse every
finished shard whose entry still verifies; the manifest is written last.
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import shutil
import tarfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from .atomic import atomic_path, atomic_write_json
from .imageio import decode_png, encode_png
from .registry import SPLITS, TaskSpec
from .sample import GENERATOR_VERSION, TaskFailure, make_sample
from .software import software_description

FORMAT = "llvbench-shards"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
JOURNAL_DIR = ".synth-journal"
# zlib level of the stored PNGs. 0 (stored, no deflate) encodes 3x and decodes 2-3x faster than
# level 1 for twice the bytes: the CPU profile is bound by encoding (synthesis) and decoding (the
# training loader), not by disk. Large profiles set 1 in params.yaml (about half the size).
PNG_COMPRESSION = 0
FIELDS = ("input.png", "json", "target.png")  # member order inside a sample (sorted names)
SHARED_FILE_MODE = 0o644
_SHARD_NAME = re.compile(r"^(?P<task>[A-Za-z0-9_]+)-(?P<part>\d{5})\.tar$")


class ShardError(RuntimeError):
    """A shard that cannot be written or read; the message names the shard and the sample."""


class ManifestError(ValueError):
    """A missing, unreadable or inconsistent manifest; the message names the directory."""


# --------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class ShardJob:
    """Everything one worker needs to write one shard; ``recipe`` hashes what determines its bytes."""

    task: str
    split: str
    part: int
    start: int           # first sample index (inclusive)
    stop: int            # last sample index (exclusive)
    seed: int
    size: int
    source: str          # source spec (``deadleaves``, ``photos``, ``folder:DIR`` ...)
    paired: str          # paired dataset spec replacing the recipe for this split, or ""
    png_compression: int
    task_module: str     # module registering the task; imported by workers that lack it
    code_sha256: str     # fingerprint of the code that generates the samples

    @property
    def path(self) -> str:
        """Shard path relative to the shards root (POSIX)."""
        return shard_path(self.task, self.split, self.part)

    @property
    def count(self) -> int:
        return self.stop - self.start

    @property
    def recipe(self) -> str:
        """sha256 of the job: two jobs with the same recipe write byte-identical shards."""
        blob = json.dumps({**asdict(self), "generator_version": GENERATOR_VERSION,
                           "format_version": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def shard_path(task: str, split: str, part: int) -> str:
    return f"{split}/{task}-{part:05d}.tar"


def split_ranges(count: int, samples_per_shard: int) -> list[tuple[int, int]]:
    """Index ranges [start, stop) of consecutive shards holding at most ``samples_per_shard``."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    return [(start, min(start + samples_per_shard, count)) for start in range(0, count, samples_per_shard)]


def plan_shards(specs: Iterable[TaskSpec], counts: Mapping[str, Mapping[str, int]], *, seed: int, size: int,
                sources: Mapping[str, str], samples_per_shard: int, png_compression: int = PNG_COMPRESSION,
                paired: Mapping[str, Mapping[str, str]] | None = None) -> list[ShardJob]:
    """Shard jobs in canonical order (task, split, part) for ``counts[task][split]`` samples each."""
    paired = paired or {}
    jobs = []
    for spec in specs:
        code = code_fingerprint(spec.fn.__module__)
        for split in _ordered_splits(counts.get(spec.name, {})):
            n = int(counts[spec.name][split])
            if n <= 0:
                continue
            if split not in sources:
                raise ValueError(f"no image source configured for split {split!r} (task {spec.name})")
            for part, (start, stop) in enumerate(split_ranges(n, samples_per_shard)):
                jobs.append(ShardJob(spec.name, split, part, start, stop, int(seed), int(size),
                                     sources[split], paired.get(spec.name, {}).get(split, ""),
                                     int(png_compression), spec.fn.__module__, code))
    return jobs


def _ordered_splits(splits: Iterable[str]) -> list[str]:
    known = [s for s in SPLITS if s in splits]
    return known + sorted(s for s in splits if s not in SPLITS)


def _package_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def plugin_source_files(task_module: str) -> list[tuple[str, Path]]:
    """(name, path) of every source file of the top-level package holding ``task_module``, sorted.

    A plug-in task keeps constants and helpers beside its module (``mylab/helpers.py``), so the
    whole package is hashed, named relative to the package's parent (``mylab/helpers.py``); a
    top-level single-file module is just that file.
    """
    top = importlib.import_module(task_module.split(".")[0])
    roots = [Path(d).resolve() for d in getattr(top, "__path__", [])]  # several for a namespace package
    if not roots:
        top_file = Path(getattr(top, "__file__", "") or "").resolve()
        return [(top_file.name, top_file)] if top_file.is_file() else []
    files = {(path.relative_to(root.parent).as_posix(), path) for root in roots for path in _package_files(root)}
    return sorted(files)


@lru_cache(maxsize=None)
def code_fingerprint(task_module: str) -> str:
    """sha256 of every taskgen source file plus, for a task outside taskgen, every source file of
    its top-level package.

    Conservative on purpose: any edit to taskgen or to a plug-in's package invalidates reuse of old
    shards, so a resumed or repeated run never keeps shards made by different code.
    """
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    named = [(path.relative_to(package).as_posix(), path) for path in _package_files(package)]
    module = importlib.import_module(task_module)
    module_file = Path(getattr(module, "__file__", "") or "").resolve()
    if module_file.is_file() and package not in module_file.parents:
        named.extend(plugin_source_files(task_module))
    for name, path in named:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Writing one shard


@dataclass(frozen=True)
class ShardResult:
    entry: dict          # the shard's manifest entry
    generate_s: float    # time in make_sample (source image + task function)
    encode_s: float      # PNG encoding and JSON serialisation
    write_s: float       # tar writing, fsync, hashing and rename


def _tar_header(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _image_meta(image: np.ndarray, params: dict) -> dict:
    """How a side is stored: 8-bit code values, or 16-bit HDR code values, with the encoding the
    task declared in its params (``hdr_encoding`` / ``sdr_encoding``; sRGB when it names none)."""
    if image.dtype == np.uint16:
        return {"dtype": "uint16", "scale": 65535, "hdr": True,
                "encoding": str(params.get("hdr_encoding", "unspecified"))}
    return {"dtype": "uint8", "scale": 255, "hdr": False, "encoding": str(params.get("sdr_encoding", "sRGB"))}


def sample_meta(spec: TaskSpec, job: ShardJob, sample) -> dict:
    """The JSON member of one sample (everything needed to regenerate it alone)."""
    return {
        "key": sample.key,
        "task": spec.name,
        "category": spec.category,
        "split": sample.split,
        "index": sample.index,
        "seed": job.seed,
        "size": job.size,
        "source": job.source,
        "paired": job.paired,
        "source_id": sample.source_id,
        "params": sample.params,
        "generator_version": GENERATOR_VERSION,
        "images": {"input": _image_meta(sample.input, sample.params),
                   "target": _image_meta(sample.target, sample.params)},
    }


def encode_json(obj) -> bytes:
    """Canonical JSON bytes (sorted keys, no NaN): the same object always gives the same bytes."""
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_shard_file(root: str | Path, entry: Mapping, *, verify_hash: bool) -> Path:
    """The path of a manifest shard ``entry`` under ``root``; ShardError unless the file exists with
    the entry's byte size (and sha256 when ``verify_hash``)."""
    path = Path(root) / entry["path"]
    hint = f"run llvbench verify {root}"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ShardError(f"{path}: missing, though the manifest lists it ({hint})") from None
    if size != entry["bytes"]:
        raise ShardError(f"{path}: {size} bytes, the manifest says {entry['bytes']} ({hint})")
    if verify_hash and file_sha256(path) != entry["sha256"]:
        raise ShardError(f"{path}: sha256 differs from the manifest: altered or replaced ({hint})")
    return path


def _task_spec(job: ShardJob) -> TaskSpec:
    """Look the task up, importing its module first in workers where it is not registered yet."""
    import taskgen

    try:
        return taskgen.get_task(job.task)
    except KeyError:
        importlib.import_module(job.task_module)
        return taskgen.get_task(job.task)


def _build_sources(spec: TaskSpec, job: ShardJob):
    from .paired import build_paired_source
    from .sources import build_source

    source = build_source(job.source)
    paired = build_paired_source(job.paired, hdr=spec.hdr) if job.paired else None
    return source, paired


def write_shard(job: ShardJob, root: str | Path, *, journal: bool = True) -> ShardResult:
    """Generate the job's samples and write its shard atomically; record the entry in the journal."""
    root = Path(root)
    spec = _task_spec(job)
    source, paired = _build_sources(spec, job)
    generate_s = encode_s = 0.0
    t_start = time.perf_counter()
    with atomic_path(root / job.path) as tmp:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for index in range(job.start, job.stop):
                t0 = time.perf_counter()
                sample = make_sample(spec, job.split, index, seed=job.seed, size=job.size,
                                     source=source, paired=paired)
                t1 = time.perf_counter()
                members = _encode_sample(spec, job, sample)
                generate_s += t1 - t0
                encode_s += time.perf_counter() - t1
                for name, data in members:
                    tar.addfile(_tar_header(name, len(data)), io.BytesIO(data))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, SHARED_FILE_MODE)  # mkstemp makes 0600 files; datasets are shared read-only
        entry = {"path": job.path, "task": job.task, "split": job.split, "part": job.part,
                 "start": job.start, "stop": job.stop, "samples": job.count,
                 "bytes": tmp.stat().st_size, "sha256": file_sha256(tmp), "recipe": job.recipe,
                 "software": software_description()}
    write_s = time.perf_counter() - t_start - generate_s - encode_s
    if journal:
        atomic_write_json(journal_path(root, job.path), entry)
    return ShardResult(entry, generate_s, encode_s, write_s)


def _encode_sample(spec: TaskSpec, job: ShardJob, sample) -> list[tuple[str, bytes]]:
    where = f"task={job.task} split={job.split} index={sample.index} seed={job.seed} size={job.size}"
    try:
        meta = encode_json(sample_meta(spec, job, sample))
    except (TypeError, ValueError) as err:
        raise TaskFailure(f"task returned params that are not plain JSON (convert numpy scalars, no NaN) "
                          f"for {where}: {err}; params={sample.params!r}") from err
    try:
        inp = encode_png(sample.input, job.png_compression)
        tgt = encode_png(sample.target, job.png_compression)
    except Exception as err:
        raise ShardError(f"PNG encoding failed for {where}: {type(err).__name__}: {err}") from err
    return [(f"{sample.key}.input.png", inp), (f"{sample.key}.json", meta), (f"{sample.key}.target.png", tgt)]


# --------------------------------------------------------------------------------------------
# Journal and reuse (resume after a kill)


def journal_path(root: str | Path, rel_path: str) -> Path:
    return Path(root) / JOURNAL_DIR / (rel_path.replace("/", "--") + ".json")


def entry_verifies(root: str | Path, entry: Mapping) -> bool:
    """True when the shard file exists with the entry's size and sha256."""
    path = Path(root) / entry["path"]
    try:
        if path.stat().st_size != entry["bytes"]:
            return False
    except (FileNotFoundError, KeyError):
        return False
    return file_sha256(path) == entry.get("sha256")


def known_entries(root: str | Path) -> dict[str, dict]:
    """Shard entries recorded by an earlier run: the manifest's, then the journal's (newer)."""
    root = Path(root)
    entries: dict[str, dict] = {}
    try:
        for entry in load_manifest(root).get("shards", []):
            entries[entry["path"]] = entry
    except ManifestError:
        pass
    journal = root / JOURNAL_DIR
    if journal.is_dir():
        for path in sorted(journal.glob("*.json")):
            try:
                entry = json.loads(path.read_text())
                entries[entry["path"]] = entry
            except (OSError, ValueError, KeyError):
                continue  # a journal entry is only a hint; the shard is rewritten
    return entries


def reusable(root: str | Path, jobs: Iterable[ShardJob], software: str | None = None) -> dict[str, dict]:
    """Entries of the planned shards that an earlier run finished and that still verify; with
    ``software`` (``taskgen.software.software_description()``), only those made with the same."""
    known = known_entries(root)
    out = {}
    for job in jobs:
        entry = known.get(job.path)
        if entry and entry.get("recipe") == job.recipe and entry_verifies(root, entry) \
                and (software is None or entry.get("software") == software):
            out[job.path] = entry
    return out


def remove_temporaries(root: str | Path) -> list[Path]:
    """Delete temporary files a killed run left beside the shards (``.{name}.*.tmp``)."""
    removed = []
    root = Path(root)
    if root.is_dir():
        for path in sorted(root.rglob(".*.tmp")):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def stale_shards(root: str | Path, jobs: list[ShardJob]) -> list[Path]:
    """Shard files of the planned tasks and splits that the plan no longer has (fewer parts)."""
    root = Path(root)
    planned = {job.path for job in jobs}
    owners = {(job.task, job.split) for job in jobs}
    stale = []
    for task, split in sorted(owners):
        for path in sorted((root / split).glob(f"{task}-*.tar")):
            match = _SHARD_NAME.match(path.name)
            if match and match["task"] == task and f"{split}/{path.name}" not in planned:
                stale.append(path)
    return stale


def clear_journal(root: str | Path) -> None:
    shutil.rmtree(Path(root) / JOURNAL_DIR, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Manifest


def package_version() -> str:
    try:
        return metadata.version("llvbench")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_manifest(jobs: list[ShardJob], entries: Mapping[str, Mapping], specs: Iterable[TaskSpec], *,
                   counts: Mapping[str, Mapping[str, int]], params: Mapping) -> dict:
    """The manifest: global params, per task metadata and counts, per shard count and sha256."""
    tasks = {}
    for spec in specs:
        task_counts = {split: int(n) for split, n in counts.get(spec.name, {}).items() if int(n) > 0}
        task_jobs = [j for j in jobs if j.task == spec.name]
        tasks[spec.name] = {
            "index": spec.index, "category": spec.category, "metric": spec.metric,
            "target_domain": spec.target_domain, "hdr": spec.hdr, "in_training_mix": spec.in_training_mix,
            "counts": task_counts,
            "paired": {j.split: j.paired for j in task_jobs if j.paired},
            "code_sha256": task_jobs[0].code_sha256 if task_jobs else "",
        }
    shards = []
    for job in jobs:
        entry = dict(entries[job.path])
        entry["source"] = job.source
        shards.append(entry)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "llvbench_version": package_version(),
        "params": dict(params),
        "tasks": tasks,
        "shards": shards,
    }


def write_manifest(root: str | Path, manifest: Mapping) -> Path:
    """Write ``manifest.json`` atomically (indented, sorted keys: the same manifest, the same bytes)."""
    data = (json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    path = Path(root) / MANIFEST_NAME
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, SHARED_FILE_MODE)
    return path


def load_manifest(root: str | Path) -> dict:
    """The manifest of ``root``, checked by ``check_manifest``; ManifestError names the file and the bad key."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"no {MANIFEST_NAME} in {root}: not a shards directory, or synthesis has not "
                            f"finished (run `llvbench synth --out {root}`)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise ManifestError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path} is not an llvbench shards manifest (a JSON {type(manifest).__name__}, "
                            f"not an object)")
    if manifest.get("format") != FORMAT:
        raise ManifestError(f"{path} is not an llvbench shards manifest (format {manifest.get('format')!r})")
    version = manifest.get("format_version", 0)
    if not _is_int(version):
        raise ManifestError(f"{path}: format_version is {version!r}, not an integer")
    if version > FORMAT_VERSION:
        raise ManifestError(f"{path} has format version {version}; this llvbench reads up to {FORMAT_VERSION}")
    check_manifest(manifest, path)
    return manifest


# What the readers take from a manifest (verify, TestSplit, TrainStream, merge): key -> JSON type.
_MANIFEST_KEYS = {"params": dict, "tasks": dict, "shards": list}
_PARAMS_KEYS = {"size": int}
_TASK_KEYS = {"index": int, "counts": dict}
_SHARD_KEYS = {"path": str, "task": str, "split": str, "start": int, "samples": int, "bytes": int, "sha256": str}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_problem(obj: Mapping, key: str, kind: type) -> str | None:
    """Why ``obj[key]`` is not a ``kind`` (absent, or another type), or None when it is."""
    if key not in obj:
        return f"has no {key!r}"
    value = obj[key]
    if not ((_is_int(value) and value >= 0) if kind is int else isinstance(value, kind)):
        expected = "an integer >= 0" if kind is int else f"a JSON {'object' if kind is dict else kind.__name__}"
        return f"has {key}={json.dumps(value)[:80]}, not {expected}"
    return None


def check_manifest(manifest: Mapping, where: str | Path) -> None:
    """Raise ManifestError naming ``where`` and the first key or entry the readers rely on that is
    absent or malformed (every shard's task must be one of ``tasks``; paths stay inside the root)."""
    for key, kind in _MANIFEST_KEYS.items():
        problem = _type_problem(manifest, key, kind)
        if problem:
            raise ManifestError(f"{where} {problem}")
    for key, kind in _PARAMS_KEYS.items():
        problem = _type_problem(manifest["params"], key, kind)
        if problem:
            raise ManifestError(f"{where}: params {problem}")
    tasks = manifest["tasks"]
    for name, info in tasks.items():
        if not isinstance(info, dict):
            raise ManifestError(f"{where}: task {name!r} is {json.dumps(info)[:80]}, not a JSON object")
        for key, kind in _TASK_KEYS.items():
            problem = _type_problem(info, key, kind)
            if problem:
                raise ManifestError(f"{where}: task {name!r} {problem}")
        for split, n in info["counts"].items():
            if not _is_int(n) or n < 0:
                raise ManifestError(f"{where}: task {name!r} has counts.{split}={json.dumps(n)[:80]}, "
                                    f"not an integer >= 0")
    for i, entry in enumerate(manifest["shards"]):
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: shards[{i}] is {json.dumps(entry)[:80]}, not a JSON object")
        label = f"shards[{i}] ({entry['path']})" if isinstance(entry.get("path"), str) else f"shards[{i}]"
        for key, kind in _SHARD_KEYS.items():
            problem = _type_problem(entry, key, kind)
            if problem:
                raise ManifestError(f"{where}: {label} {problem}")
        rel = entry["path"]
        if not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise ManifestError(f"{where}: {label} has a path outside the shards directory")
        if entry["task"] not in tasks:
            raise ManifestError(f"{where}: {label} belongs to task {entry['task']!r}, which the manifest's "
                                f"tasks do not list")


def manifest_sha256(root: str | Path) -> str:
    return hashlib.sha256((Path(root) / MANIFEST_NAME).read_bytes()).hexdigest()


_MERGE_SAME = ("format", "format_version", "generator_version", "llvbench_version", "params")


def merge_manifests(root: str | Path, parts: Mapping[str, str]) -> dict:
    """One manifest for ``root`` from the manifests of sub-roots ``{task: relative dir}``.

    Used by the per-task DVC stages: each task is synthesised into its own directory and the
    merged manifest lists every shard by its path relative to ``root``. Global settings must
    agree, otherwise the parts were made with different params and cannot be combined.
    """
    root = Path(root)
    merged: dict | None = None
    for task, rel in parts.items():
        part = load_manifest(root / rel)
        if task not in part["tasks"]:
            raise ManifestError(f"{root / rel / MANIFEST_NAME} does not hold task {task!r}")
        if merged is None:
            merged = {key: part[key] for key in _MERGE_SAME}
            merged["tasks"], merged["shards"] = {}, []
        for key in _MERGE_SAME:
            if part[key] != merged[key]:
                raise ManifestError(f"cannot merge {root / rel}: its {key!r} differs from the other tasks' "
                                    f"(rerun its synthesis with the same params)")
        merged["tasks"][task] = part["tasks"][task]
        for entry in part["shards"]:
            if entry["task"] == task:
                merged["shards"].append({**entry, "path": f"{Path(rel).as_posix()}/{entry['path']}"})
    if merged is None:
        raise ManifestError(f"nothing to merge into {root}: no task given")
    return merged


# --------------------------------------------------------------------------------------------
# Verification


UNRECORDED_SOFTWARE = "not recorded (made before llvbench recorded it)"


@dataclass
class VerifyReport:
    root: str
    ok: list[str] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    software: dict[str, int] = field(default_factory=dict)  # manifest entries' `software` line -> shards

    @property
    def passed(self) -> bool:
        return not (self.corrupt or self.missing or self.extra)


def verify(root: str | Path) -> VerifyReport:
    """Check every shard of the manifest (size, sha256, sample count) and look for files it does not
    list; a manifest that ``load_manifest`` refuses raises ManifestError."""
    root = Path(root)
    manifest = load_manifest(root)
    report = VerifyReport(str(root))
    listed = set()
    for entry in manifest["shards"]:
        rel = entry["path"]
        listed.add(rel)
        made_with = entry.get("software", UNRECORDED_SOFTWARE)
        report.software[made_with] = report.software.get(made_with, 0) + 1
        path = root / rel
        if not path.is_file():
            report.missing.append(rel)
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            report.corrupt.append((rel, f"size {size} bytes, manifest says {entry['bytes']}"))
        elif file_sha256(path) != entry["sha256"]:
            report.corrupt.append((rel, "sha256 differs from the manifest"))
        else:
            try:
                samples = len(index_shard(path))  # headers only: cheap beside the hash
            except ShardError as err:
                report.corrupt.append((rel, str(err)))
                continue
            if samples != entry["samples"]:
                report.corrupt.append((rel, f"{samples} samples, manifest says {entry['samples']}"))
            else:
                report.ok.append(rel)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel in listed:
            continue
        # Tars the manifest does not list, and leftovers of an interrupted run, are extras.
        if path.suffix == ".tar" or path.name.endswith(".tmp") or JOURNAL_DIR in Path(rel).parts:
            report.extra.append(rel)
    return report


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True, eq=False)
class ShardSample:
    key: str
    input: np.ndarray    # RGB HWC uint8, or uint16 for an HDR side
    target: np.ndarray
    meta: dict


def _unreadable(path, err: Exception) -> ShardError:
    return ShardError(f"{path}: not a readable shard ({type(err).__name__}: {err}); run `llvbench verify` "
                      f"on its shards directory")


def iter_members(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular file in a tar, in archive order; ShardError names a
    shard that is not a readable tar (shards are plain ustar: no decompression is tried)."""
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.isfile():
                    yield member.name, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError) as err:
        raise _unreadable(path, err) from err


def split_member(name: str) -> tuple[str, str]:
    """``"jpeg/test/000003.input.png"`` -> (``"jpeg/test/000003"``, ``"input.png"``), as WebDataset does."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot:
        raise ShardError(f"member {name!r} has no field extension")
    return (f"{head}/{stem}" if head else stem), ext


def iter_shard(path: str | Path, decode: bool = True) -> Iterator[ShardSample]:
    """Samples of one shard in archive order; images decoded to RGB arrays (or raw PNG bytes)."""
    current: dict[str, bytes] = {}
    current_key = None
    for name, data in iter_members(path):
        key, ext = _split_member_of(path, name)
        if key != current_key and current:
            yield _to_sample(path, current_key, current, decode)
            current = {}
        current_key = key
        current[ext] = data
    if current:
        yield _to_sample(path, current_key, current, decode)


def _split_member_of(path, name: str) -> tuple[str, str]:
    try:
        return split_member(name)
    except ShardError as err:
        raise ShardError(f"{path}: {err}") from None


def decode_meta(path, key: str, data: bytes) -> dict:
    """A sample's JSON member as a dict; ShardError names the shard and the sample otherwise."""
    try:
        meta = json.loads(data)
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError alike
        raise ShardError(f"{path}: sample {key}: the json member is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ShardError(f"{path}: sample {key}: the json member is a JSON {type(meta).__name__}, not an object")
    return meta


def decode_member_png(path, key: str, field_name: str, data: bytes) -> np.ndarray:
    """``decode_png`` of one member; ShardError names the shard, the sample and the field."""
    try:
        return decode_png(data)
    except ValueError as err:
        raise ShardError(f"{path}: sample {key}: {field_name} is {err}") from None


def check_members(path, key: str, fields: Mapping) -> None:
    """ShardError naming the shard and sample unless ``fields`` holds all of FIELDS."""
    missing = [f for f in FIELDS if f not in fields]
    if missing:
        raise ShardError(f"{path}: sample {key} lacks {', '.join(missing)}")


def _to_sample(path, key: str, fields: dict[str, bytes], decode: bool) -> ShardSample:
    check_members(path, key, fields)
    meta = decode_meta(path, key, fields["json"])
    if not decode:
        return ShardSample(key, fields["input.png"], fields["target.png"], meta)
    return ShardSample(key, decode_member_png(path, key, "input.png", fields["input.png"]),
                       decode_member_png(path, key, "target.png", fields["target.png"]), meta)


@dataclass(frozen=True)
class MemberSpan:
    offset: int   # byte offset of the member's data in the tar
    size: int


def index_shard(path: str | Path) -> dict[str, dict[str, MemberSpan]]:
    """``{key: {field: MemberSpan}}`` from the tar headers alone, for random access with pread;
    ShardError names a shard that is not a readable tar."""
    out: dict[str, dict[str, MemberSpan]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.isfile():
                    key, ext = _split_member_of(path, member.name)
                    out.setdefault(key, {})[ext] = MemberSpan(member.offset_data, member.size)
    except (tarfile.TarError, EOFError) as err:
        raise _unreadable(path, err) from err
    return out


def source_image_id(source_id: str, key: str) -> str:
    """The image a sample was cut from: ``photo:astronaut@y=3,x=9`` -> ``photo:astronaut``.

    Sources that crop a finite image set write ``<image>@<crop>``; a source id without ``@``
    (dead leaves) is procedural, one fresh image per sample, so the sample key identifies it.
    """
    image, at, _ = source_id.partition("@")
    return image if at else f"{source_id}#{key}"
