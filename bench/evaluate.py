"""Running a generalist over a test split: tracks × units, one atomic result file per unit.

Layout of ``out_dir``::

    {model}/run.json                      what ran: model info, settings, outcome of every unit
                                          (the latest run's; those of other splits under other_splits)
    {model}/{track}/{unit}.parquet        per-image rows (bench.results.COLUMNS); unit = task name,
                                          "A__on__B" (mismatch) or "model" (efficiency)
    samples/...                           the outputs of the first ``save_samples`` queries of each
                                          main and mismatch unit, with their inputs (bench.samples)

A unit whose file exists with the same fingerprint (model, checkpoint, data manifest, device,
track settings, the options the model was built with, the hash of the model code a checkpoint's
network runs (``bench.builtins.network_code_sha256``) and of the built-in adapter around it
(``adapter_code_sha256``: its module and bench/adapters.py), the implementation of a plug-in, and the
main track's metrics when they differ from those of METRICS_BEFORE_FINGERPRINTS) and completed is
skipped, so a killed evaluation resumes where it stopped; a unit run again because one of these
changed says which. Failed units are tried again (out-of-memory and similar failures are often
transient), and ``force`` runs every unit again (after a plug-in's code changed). Any failure
inside a unit (a predict() exception, a bad output, a task the split lacks) becomes one ``failed``
row with the message, and the run goes on with the next unit; a generalist that cannot even be
loaded gets a ``load`` failure file and the next model is tried.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from taskgen.registry import CATEGORIES
from taskgen.shards import package_version

from .metrics import METRICS
from .protocol import BadOutput, GeneralistError, check_output, describe, images_to_tensor, jsonable
from .registry import implementation, is_builtin
from .results import NOT_MEASURED, read_fingerprint, write_rows
from .samples import SampleWriter
from .tracks import DEFAULT_MISMATCH_PAIRS, TRACKS, parse_mismatch_unit, task_metrics

log = logging.getLogger(__name__)

RESULTS_FORMAT = 1  # bump when rows computed for the same inputs would change
LOAD_FAILURE_NAME = "load.parquet"
TRACK_NAMES = tuple(TRACKS)
# The metrics main-track units computed, by headline metric, before fingerprints named them. A unit
# computing exactly these leaves them out of its fingerprint, so results made then are still
# reused; any other set (METRICS_BY_HEADLINE changed) is recorded, so those units are scored again.
METRICS_BEFORE_FINGERPRINTS = {"psnr": ("psnr", "ssim"), "mae": ("mae", "psnr")}


@dataclass(frozen=True)
class EvalConfig:
    tracks: tuple[str, ...] = ("main",)
    tasks: tuple[str, ...] | None = None      # None: every task of the split
    limit: int | None = None                  # query images per task (all tracks)
    batch_size: int = 8
    robustness_prompts: int = 20              # K of paper Table 4
    mismatch_pairs: tuple[tuple[str, str], ...] = DEFAULT_MISMATCH_PAIRS
    latency_repeats: int = 10
    latency_warmup: int = 2
    flops_size: int = 256
    seed: int = 0
    # Outputs saved per main/mismatch unit for the report's figures. Not part of a unit's
    # fingerprint (rows do not depend on it): a unit skipped on resume keeps the examples it has.
    save_samples: int = 2

    def __post_init__(self):
        if not self.tracks:
            raise ValueError(f"no track to run; tracks: {', '.join(TRACKS)}")
        unknown = [t for t in self.tracks if t not in TRACKS]
        if unknown:
            raise ValueError(f"unknown track(s) {unknown}; tracks: {', '.join(TRACKS)}")
        if self.tasks is not None and not self.tasks:
            raise ValueError("tasks names no task (None means every task of the split)")
        if self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("batch_size and limit must be positive")
        if self.robustness_prompts < 2:
            raise ValueError("robustness_prompts (--robustness-prompts) must be at least 2, as the robustness "
                             f"track is a standard deviation across prompts; got {self.robustness_prompts}")
        if self.latency_repeats < 1:
            raise ValueError(f"latency_repeats (--latency-repeats) must be positive, got {self.latency_repeats}")
        if self.seed < 0:  # numpy's generators (robustness draws, mismatch recipes) take non-negative seeds
            raise ValueError(f"seed (--seed) must be 0 or more, got {self.seed}")
        if self.latency_warmup < 0 or self.flops_size < 1:
            raise ValueError(f"latency_warmup must be 0 or more and flops_size positive "
                             f"(got {self.latency_warmup}, {self.flops_size})")
        if self.save_samples < 0:
            raise ValueError("save_samples must be 0 or more")


@dataclass(frozen=True)
class UnitOutcome:
    model: str
    track: str
    unit: str
    status: str            # "done", "skipped" (already there), "failed"
    error: str = ""
    seconds: float = 0.0
    path: str = ""


class PredictError(RuntimeError):
    """predict() raised; the message names the generalist, the original error and where it was raised."""


def raised_at(err: BaseException) -> str:
    """'at FILE:LINE in FUNCTION' of the innermost frame of ``err``'s traceback: where to start looking."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "no traceback"
    last = frames[-1]
    return f"at {last.filename}:{last.lineno} in {last.name}"


def slug(name: str) -> str:
    """A model name -> a safe folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _device_label(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def make_row(provenance: dict, *, track: str, task: str, category: str, metric: str, value,
             convention: str = "", prompt_task: str = "*", sample_key: str = "", prompt_key: str = "",
             prompt_rule: str = "", higher_is_better: bool | None = None, status: str = "ok",
             error: str = "") -> dict:
    """One result row (bench.results.COLUMNS): the run's provenance plus what was measured."""
    if status != "ok" and not convention:
        convention = NOT_MEASURED
    if higher_is_better is None:
        higher_is_better = METRICS[metric].higher_is_better if metric in METRICS else True
    return {**provenance, "track": track, "task": task, "category": category, "prompt_task": prompt_task,
            "sample_key": sample_key, "prompt_key": prompt_key, "prompt_rule": prompt_rule, "metric": metric,
            "value": float(value), "higher_is_better": bool(higher_is_better), "convention": convention,
            "status": status, "error": error, "time": _now()}


@dataclass
class EvalContext:
    """Everything a track needs: the generalist, the split, settings, and the row factory."""

    generalist: object
    info: dict
    split: object
    config: EvalConfig
    lookup: Callable
    tasks: list[str]
    available_tasks: list[str]
    provenance: dict
    log: logging.Logger = field(default=log)
    examples: SampleWriter | None = None      # saves a few outputs for the report; None: none
    options: dict = field(default_factory=dict)  # what the generalist was built with (results_options)
    force: bool = False                       # run units whose results are already there too
    # The plug-in's class for unit fingerprints; '' for a built-in, whose units never recorded it.
    implementation: str = ""

    def save_example(self, track: str, unit: str, position: int, sample_key: str, output: np.ndarray,
                     images: dict, **meta) -> None:
        """Save the output of the query at ``position`` of a unit if it is among the first few."""
        if self.examples is not None and self.examples.wants(position):
            meta.setdefault("data_manifest_sha256", self.provenance["data_manifest_sha256"])
            self.examples.save(track, unit, sample_key, output, images, meta)

    @property
    def input_device(self) -> str:
        return str(self.info.get("device") or "cpu")

    def predict(self, queries, prompt_inputs, prompt_targets, check_values: bool = True,
                quantize_to=None) -> np.ndarray:
        """uint8/uint16 HWC images -> checked B×H×W×3 output: float32, or quantized to ``quantize_to``."""
        import torch

        device = self.input_device
        q = images_to_tensor(queries, device)
        p_in = images_to_tensor(prompt_inputs, device)
        p_out = images_to_tensor(prompt_targets, device)
        try:
            with torch.inference_mode():
                output = self.generalist.predict(q, p_in, p_out)
        except Exception as err:
            raise PredictError(f"{self.generalist.name}: predict() raised {type(err).__name__}: {err} "
                               f"({raised_at(err)})") from err
        return check_output(output, tuple(q.shape), who=self.generalist.name, check_values=check_values,
                            quantize_to=quantize_to)

    def row(self, **fields) -> dict:
        return make_row(self.provenance, **fields)

    def failure_row(self, track: str, unit: str, error: str) -> dict:
        # prompt_task as the unit's ok rows have it, so a later run's rows replace this one
        # (bench.leaderboard._latest) and two failed mismatch units on one query task stay apart.
        task, category, metric, prompt_task = "*", "*", "*", "*"
        if track in ("main", "robustness"):
            try:
                spec = self.lookup(unit)
                task, category, metric = spec.name, spec.category, spec.metric
            except KeyError:
                task = unit
            prompt_task = task
        elif track == "mismatch":
            prompt_task, task = parse_mismatch_unit(unit)
        return self.row(track=track, task=task, category=category, metric=metric, value=math.nan,
                        prompt_task=prompt_task, status="failed", error=error)


def _default_lookup(name: str):
    import taskgen

    return taskgen.get_task(name)


def select_tasks(split, requested, lookup: Callable | None = None) -> list[str]:
    """The split's tasks named by ``requested`` (task names or categories; None: all of them).
    An empty result is an error: evaluating nothing must not look like a finished run."""
    lookup = lookup or _default_lookup
    available = list(split.tasks)
    split_name = getattr(split, "split", "test")
    where = f"the {split_name} split" + (f" of {split.root}" if getattr(split, "root", None) else "")
    if not available:
        raise ValueError(f"{where} is empty: it has no tasks")
    if requested is None:
        return available
    chosen = []
    for name in requested:
        if name in CATEGORIES:
            matches = [t for t in available if lookup(t).category == name]
            if not matches:
                raise ValueError(f"category {name!r} has no task in {where}; it has: {', '.join(available)}")
            chosen += [t for t in matches if t not in chosen]
        elif name in available:
            if name not in chosen:
                chosen.append(name)
        else:
            raise ValueError(f"task {name!r} is not in {where}; it has: {', '.join(available)}"
                             + _other_split_hint(name, split_name, lookup))
    return chosen


def _other_split_hint(name: str, split_name: str, lookup: Callable) -> str:
    """'; it is a task of the unseen split: --split unseen' when the task lives in another split."""
    try:
        splits = lookup(name).splits
    except (KeyError, ValueError, AttributeError):  # not a registered task: nothing to suggest
        return ""
    other = [s for s in splits if s in ("test", "unseen") and s != split_name]
    return f"; it is a task of the {other[0]} split: --split {other[0]}" if other else ""


def path_sha256(path: str | Path) -> str:
    """A file's sha256, or a folder's: the sha256 of its files' relative paths and sha256s, in order."""
    from taskgen.shards import file_sha256

    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def results_options(options: dict | None, info: dict) -> tuple[dict, str]:
    """The options a generalist was built with -> (those that decide its results, checkpoint sha256).

    The device is left out (the resolved one is in the provenance). A ``checkpoint`` path is
    replaced by its content hash: the model's own ``checkpoint_sha256`` when it reports one, else
    the hash of the file or folder, so a plug-in that does not hash its weights is still re-scored
    when they change, and the same weights under another path are not. ``info()["results_settings"]``
    adds what decides the results without being an option (official GenLV weights' resize rule), so
    units scored another way are run again.
    """
    sha = str(info.get("checkpoint_sha256") or "")
    kept = {}
    for key, value in sorted((options or {}).items()):
        if key == "device":
            continue
        if key == "checkpoint" and isinstance(value, (str, Path)):
            if not sha and Path(value).exists():
                sha = path_sha256(value)
            if sha:
                continue
        kept[key] = jsonable(value)
    for key, value in sorted((info.get("results_settings") or {}).items()):
        kept.setdefault(key, jsonable(value))
    return kept, sha


def provenance(generalist_name: str, info: dict, split, run_id: str) -> dict:
    return {
        "run_id": run_id,
        "model": generalist_name,
        "checkpoint_sha256": str(info.get("checkpoint_sha256") or ""),
        "data_manifest_sha256": str(getattr(split, "manifest_sha256", "") or ""),
        "llvbench_version": package_version(),
        "device": _device_label(str(info.get("device") or "cpu")),
    }


def evaluate(generalist, split, out_dir: str | Path, config: EvalConfig = EvalConfig(), *,
             lookup: Callable | None = None, run_id: str | None = None, options: dict | None = None,
             force: bool = False) -> list[UnitOutcome]:
    """Run every unit of every configured track for one generalist; returns what happened to each.

    ``options``: what the generalist was built with (part of each unit's fingerprint, see
    results_options); ``force``: run units whose results are already there too."""
    from taskgen.atomic import atomic_write_json

    lookup = lookup or _default_lookup
    run_id = run_id or uuid.uuid4().hex[:12]
    info = describe(generalist)
    model_dir = Path(out_dir) / slug(generalist.name)
    built_with, sha = results_options(options, info)
    made_by = implementation(generalist)
    check_previous_results(model_dir, generalist.name, sha, made_by, force=force)
    prov = provenance(generalist.name, {**info, "checkpoint_sha256": sha}, split, run_id)
    examples = SampleWriter(Path(out_dir), slug(generalist.name), config.save_samples) if config.save_samples else None
    ctx = EvalContext(generalist=generalist, info=info, split=split, config=config, lookup=lookup,
                      tasks=select_tasks(split, config.tasks, lookup), available_tasks=list(split.tasks),
                      provenance=prov, examples=examples, options=built_with, force=force,
                      implementation="" if is_builtin(generalist) else made_by)
    started = _now()
    outcomes = []
    for track_name in config.tracks:
        track = TRACKS[track_name]
        for unit in track.units(ctx):
            outcomes.append(_run_unit(ctx, track, unit, model_dir / track_name / f"{unit}.parquet"))
    split_name = str(getattr(split, "split", "") or "")
    record = {"run_id": run_id, "model": generalist.name, "implementation": made_by, "info": info,
              "config": asdict(config), "split": split_name, "provenance": prov, "started": started,
              "finished": _now(), "units": [asdict(o) for o in outcomes]}
    atomic_write_json(model_dir / "run.json", {**record, "other_splits": _other_splits(model_dir, split_name)})
    return outcomes


def _other_splits(model_dir: Path, split_name: str) -> dict:
    """{split: the latest run's record} of the splits other than ``split_name`` that the run.json
    there records (the eval stage scores test, then unseen, into one folder: run.json keeps both)."""
    import json

    try:
        previous = json.loads((model_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(previous, dict):
        return {}
    kept = {name: run for name, run in (previous.get("other_splits") or {}).items() if name != split_name}
    if previous.get("split", "") != split_name:
        kept[str(previous.get("split", ""))] = {k: v for k, v in previous.items() if k != "other_splits"}
    return kept


def _fingerprint(ctx: EvalContext, track, unit: str) -> dict:
    fingerprint = {"format": RESULTS_FORMAT, "model": ctx.provenance["model"],
                   "checkpoint_sha256": ctx.provenance["checkpoint_sha256"],
                   "data_manifest_sha256": ctx.provenance["data_manifest_sha256"], "device": ctx.provenance["device"],
                   "track": track.name, "unit": unit, "settings": track.settings(ctx)}
    if ctx.options:  # only when there are some, so results of models built without options stay valid
        fingerprint["options"] = ctx.options
    if ctx.implementation:  # plug-ins only: the built-ins' fingerprints stay those of their existing results
        fingerprint["implementation"] = ctx.implementation
    metrics = _unit_metrics(ctx, track, unit)
    if metrics is not None:
        fingerprint["metrics"] = metrics
    return fingerprint


def _unit_metrics(ctx: EvalContext, track, unit: str) -> list[str] | None:
    """The metrics a main-track unit computes when they are not METRICS_BEFORE_FINGERPRINTS' (None
    otherwise). The other tracks' metrics are fixed by their code, which RESULTS_FORMAT covers."""
    if track.name != "main":
        return None
    try:
        spec = ctx.lookup(unit)
        metrics = tuple(task_metrics(spec))
    except KeyError:  # an unknown task or headline metric: the unit fails and says why
        return None
    return None if METRICS_BEFORE_FINGERPRINTS.get(spec.metric) == metrics else list(metrics)


def _recorded_implementation(model_dir: Path, run: dict) -> str:
    """The implementation run.json records, else the first a unit's fingerprint records ('' if none)."""
    if run.get("implementation"):
        return str(run["implementation"])
    for path in sorted(model_dir.glob("*/*.parquet")):
        recorded = (read_fingerprint(path)[0] or {}).get("implementation")
        if recorded:
            return str(recorded)
    return ""


def previous_results(model_dir: Path) -> dict:
    """``{"model", "checkpoint_sha256", "implementation"}`` of the results already in ``model_dir``
    ({} if none): from its run.json, or, for a run killed before writing it, from a result file's
    fingerprint. The implementation is left out where none is recorded (results of a built-in, or
    from before it was recorded)."""
    import json

    try:
        run = json.loads((model_dir / "run.json").read_text())
        found = {"model": run["model"], "checkpoint_sha256": run["provenance"]["checkpoint_sha256"]}
    except (OSError, ValueError, KeyError, TypeError):
        run = {}
        first = next(iter(sorted(model_dir.glob("*/*.parquet"))), None)
        found = (read_fingerprint(first)[0] or {}) if first else {}
    found = {key: found[key] for key in ("model", "checkpoint_sha256") if key in found}
    recorded = _recorded_implementation(model_dir, run if isinstance(run, dict) else {}) if found else ""
    return {**found, "implementation": recorded} if recorded else found


def check_previous_results(model_dir: Path, name: str, checkpoint_sha256: str, made_by: str = "",
                           force: bool = False) -> None:
    """Refuse a folder that holds another model's results (two names, one folder name) or results
    of this name made by another implementation (a plug-in named like another model; with
    ``force`` they are replaced, with a warning); warn when this model's results there came from
    other weights, since they are replaced unit by unit."""
    previous = previous_results(model_dir)
    if previous.get("model", name) != name:
        raise ValueError(f"{model_dir} holds the results of model {previous['model']!r}, and {name!r} maps to "
                         "the same folder name: rename one of them or use another results folder")
    other = previous.get("implementation", made_by)
    if made_by and other != made_by:
        clash = (f"{model_dir} holds the results of {other} under the model name {name!r}, which {made_by} "
                 "also has")
        if not force:
            raise ValueError(f"{clash}: give one of them another name or use another results folder "
                             "(--force replaces those results)")
        log.warning("%s; --force: they are replaced", clash)
    old = previous.get("checkpoint_sha256") or ""
    if old and checkpoint_sha256 and old != checkpoint_sha256:
        log.warning("%s: the results in %s came from checkpoint %s…; they are replaced by those of checkpoint "
                    "%s… (use another results folder, or another model name, to keep both)",
                    name, model_dir, old[:12], checkpoint_sha256[:12])


def changed_keys(old: dict, new: dict) -> list[str]:
    """The fingerprint entries that differ, an option by its own name (``options.network_code``)."""
    keys = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key == "options" and isinstance(old.get(key, {}), dict) and isinstance(new.get(key, {}), dict):
            keys += [f"options.{name}" for name in changed_keys(old.get(key, {}), new.get(key, {}))]
        else:
            keys.append(key)
    return keys


def _run_unit(ctx: EvalContext, track, unit: str, path: Path) -> UnitOutcome:
    fingerprint = _fingerprint(ctx, track, unit)
    model = ctx.provenance["model"]
    recorded, recorded_status = read_fingerprint(path)
    if not ctx.force and (recorded, recorded_status) == (fingerprint, "done"):
        ctx.log.info("%s %s/%s: already evaluated, skipped", model, track.name, unit)
        return UnitOutcome(model, track.name, unit, "skipped", path=str(path))
    if not ctx.force and recorded_status == "done" and recorded:
        ctx.log.info("%s %s/%s: scored before with another %s; run again", model, track.name, unit,
                     ", ".join(changed_keys(recorded, fingerprint)))
    start = time.perf_counter()
    failure = None
    try:
        rows = track.run(ctx, unit)
        status, error = "done", ""
    except (PredictError, BadOutput) as err:
        status, error, failure = "failed", str(err), err
    except Exception as err:  # a bad plug-in or bad data must not stop the other units
        status, error, failure = "failed", f"{type(err).__name__}: {err}", err
    if status == "failed":
        rows = [ctx.failure_row(track.name, unit, error)]
        # the whole traceback with -v (debug), one line otherwise
        ctx.log.warning("%s %s/%s failed: %s", model, track.name, unit, error,
                        exc_info=failure if ctx.log.isEnabledFor(logging.DEBUG) else None)
    seconds = time.perf_counter() - start
    write_rows(path, rows, fingerprint, status)
    if status == "done":
        ctx.log.info("%s %s/%s: %d rows in %.1f s", model, track.name, unit, len(rows), seconds)
    return UnitOutcome(model, track.name, unit, status, error, round(seconds, 3), str(path))


def evaluate_spec(spec: str, options: dict, split, out_dir: str | Path, config: EvalConfig = EvalConfig(),
                  **kwargs) -> list[UnitOutcome]:
    """Load a generalist by spec and evaluate it; a load failure is recorded, not raised."""
    from .registry import load_generalist

    failure_file = Path(out_dir) / slug(spec) / LOAD_FAILURE_NAME
    try:
        generalist = load_generalist(spec, **options)
        info = describe(generalist)  # a broken info() is a load failure too
        check_device(generalist.name, str(info.get("device") or "cpu"))
    except Exception as err:
        message = f"cannot load generalist {spec!r}: {type(err).__name__}: {err}"
        log.error(message)
        row = make_row(provenance(spec, {}, split, uuid.uuid4().hex[:12]), track="load", task="*",
                       category="*", metric="*", value=math.nan, status="failed", error=message)
        write_rows(failure_file, [row], {"format": RESULTS_FORMAT, "load": spec}, "failed")
        return [UnitOutcome(spec, "load", "*", "failed", message, path=str(failure_file))]
    # An earlier load failure no longer holds, whether it was filed under the spec or the model's name.
    failure_file.unlink(missing_ok=True)
    (Path(out_dir) / slug(generalist.name) / LOAD_FAILURE_NAME).unlink(missing_ok=True)
    return evaluate(generalist, split, out_dir, config, options=options, **kwargs)


def check_device(name: str, device: str) -> None:
    """GeneralistError when the device a generalist's info() names cannot be used here (cuda on a
    machine without CUDA, a GPU index it lacks): one line at load instead of a failure per unit."""
    if device == "cpu":
        return
    import torch

    from .adapters import resolve_device

    try:  # resolve_device words the missing-CUDA case; a tensor there catches any other (a GPU index)
        torch.empty(0, device=resolve_device(device))
    except (RuntimeError, AssertionError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise GeneralistError(f"{name}: info() says device {device!r}, which this machine cannot use ({reason}); "
                              "build it for another one (--device cpu, or -o device=cpu)") from None


def check_distinct_models(models, describe=lambda spec, options: f"--model {spec}") -> None:
    """ValueError when two of ``models`` ((spec, options) pairs of one command or stage) build
    generalists whose results would share a folder of the results (one name, or names with one
    slug). Each is built to learn its name (built-ins are built lazily, so cheaply) and let go; one
    that fails to build is left to its evaluation, which records the failure. ``describe(spec,
    options)`` names a model in the message."""
    from .registry import load_generalist

    models = [(spec, dict(options)) for spec, options in models]
    if len(models) < 2:
        return
    first_of: dict = {}
    for spec, options in models:
        try:
            name = load_generalist(spec, **options).name
        except Exception:  # recorded as a load failure when the model is evaluated
            continue
        if slug(name) not in first_of:
            first_of[slug(name)] = (spec, options, name)
            continue
        earlier = first_of[slug(name)]
        if earlier[:2] == (spec, options) and earlier[2] == name:  # a repeat would only be skipped: a slip
            raise ValueError(f"{describe(spec, options)} is given twice (model {name!r}); give each model once")
        raise ValueError(f"{describe(*earlier[:2])} and {describe(spec, options)} both build the model "
                         f"{name!r} (results folder {slug(name)}/): evaluate them into separate results "
                         "folders, or give one another name")
