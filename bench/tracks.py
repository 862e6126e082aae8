"""The evaluation tracks. Each track splits its work into units (a task, a prompt/query task pair,
or the whole model) and turns one unit into result rows; ``bench.evaluate`` runs the units,
stores one file per unit and records failures.

- ``main``: every test query of a task with the split's fixed prompt rule; the task's headline
  metric and its companion (PSNR + SSIM, or MAE + PSNR for edges).
- ``robustness`` (paper Table 4): K prompt pairs drawn from the task's test pairs, each applied to
  the same queries (the task's pairs from other photos); headline metric only. The leaderboard
  reports the standard deviation of the K per-prompt task means.
- ``mismatch`` (paper Figs 6–7): the prompt of task A on queries of task B (or on clean images).
  ``psnr_to_query`` says how much of the query the output keeps; ``psnr_to_prompt_task`` compares
  with what task A's own recipe makes of the query, i.e. how much A was applied. For tasks whose
  target is their clean source (restoration, low-light) that reference is the query itself, so
  the two numbers coincide: applying a restoration prompt to an image without that degradation
  should change nothing, which is the paper's ideal.
- ``efficiency``: parameters, forward FLOPs of one 256² query (``torch.utils.flop_counter``),
  latency (median ms per image at batch 1, test size) and peak memory on CUDA; for a network
  whose official code was measured (``bench.peers``), that code's latency too.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from .metrics import METRICS_BY_HEADLINE, get_metric, score
from .peers import SOURCE, peer_for

# The paper's mismatch (Fig. 7) and cross-domain (Fig. 6b) examples, as (prompt task, query task);
# "clean" queries are the clean targets of the prompt task's own test pairs.
DEFAULT_MISMATCH_PAIRS = (
    ("gaussian_blur", "clean"),        # deblurring prompt on a clean image
    ("jpeg", "low_light"),             # deJPEG prompt on a low-light image
    ("gaussian_noise", "gaussian_blur"),  # denoising prompt on a blurry image
    ("inpainting", "rain_simple"),     # inpainting prompt on a rainy image
    ("canny", "gaussian_noise"),       # edge prompt on a noisy image
    ("low_light", "gaussian_noise"),   # low-light enhancement prompt on a noisy image
)
CLEAN = "clean"
ROBUSTNESS_STREAM = 7  # keeps the robustness draw independent of other seeded draws
MISMATCH_SPLIT = "mismatch"


class TrackError(RuntimeError):
    """A unit that cannot be evaluated (no queries, too few pairs for K prompts, ...)."""


@dataclass(frozen=True)
class Track:
    name: str
    units: Callable  # (ctx) -> list of unit names
    run: Callable    # (ctx, unit) -> list of rows
    settings: Callable  # (ctx) -> dict of the settings its results depend on (for resuming)
    description: str


def shape_batches(items: Iterable, size: int, key: Callable) -> Iterator[list]:
    """Consecutive items with equal ``key`` (image shapes), at most ``size`` per batch."""
    batch: list = []
    for item in items:
        if batch and (len(batch) >= size or key(item) != key(batch[0])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _shapes(query, prompt) -> tuple:
    return (query.shape, query.dtype, prompt.input.shape, prompt.target.shape)


# --------------------------------------------------------------------------------------------
# main

def _task_units(ctx) -> list[str]:
    return list(ctx.tasks)


def _score_rows(ctx, track: str, spec, jobs: list, metrics) -> list[dict]:
    """jobs: [(query pair, prompt pair, prompt rule)] -> rows of ``metrics`` against each query's target."""
    rows = []
    position = 0  # of the query in the unit, for saving the first few outputs (main track only)
    for batch in shape_batches(jobs, ctx.config.batch_size, key=lambda j: _shapes(j[0].input, j[1])):
        targets = np.stack([q.target for q, _, _ in batch])
        pred = ctx.predict([q.input for q, _, _ in batch], [p.input for _, p, _ in batch],
                           [p.target for _, p, _ in batch], quantize_to=targets.dtype)
        values = score(pred, targets, metrics)
        for i, (query, prompt, rule) in enumerate(batch):
            if track == "main":
                ctx.save_example(track, spec.name, position, query.key, pred[i],
                                 {"prompt_input": prompt.input, "prompt_target": prompt.target,
                                  "query": query.input, "target": query.target},
                                 task=spec.name, prompt_key=prompt.key, prompt_rule=rule)
            position += 1
            for name in metrics:
                rows.append(ctx.row(track=track, task=spec.name, category=spec.category, prompt_task=prompt.task,
                                    sample_key=query.key, prompt_key=prompt.key, prompt_rule=rule, metric=name,
                                    value=values[name][i], convention=get_metric(name).describe(targets.dtype)))
    return rows


def task_metrics(spec) -> tuple[str, ...]:
    """The metrics a main-track unit of task ``spec`` computes: its headline metric, then companions."""
    return METRICS_BY_HEADLINE[spec.metric]


def run_main(ctx, task: str) -> list[dict]:
    spec = ctx.lookup(task)
    jobs = [(q.query, q.prompt, q.prompt_rule)
            for q in ctx.split.queries(task, n_prompts=1, limit=ctx.config.limit)]
    if not jobs:
        raise TrackError(f"task {task}: the test split has no queries")
    return _score_rows(ctx, "main", spec, jobs, task_metrics(spec))


# --------------------------------------------------------------------------------------------
# robustness

def robustness_plan(pairs: list, k: int, seed: int, task_index: int, limit: int | None):
    """(prompts, queries, note): K prompts and one query set shared by all of them.

    The task's source photos are split in two by a seeded draw: prompts are drawn from the pairs
    of one half, queries are the pairs of the other half, so no prompt shows a query's photo
    (other crops of one photo share content). K is capped by the prompt half's size (``note``
    then says so); a half with a single pair is refused, since one prompt has no spread to
    measure (a std of 0 would read as perfect robustness). With a single photo the pairs
    themselves are split in two, and ``note`` says so.
    """
    if len(pairs) < 2:
        raise TrackError(f"robustness needs at least 2 test pairs, the split has {len(pairs)}")
    rng = np.random.default_rng([seed, task_index, ROBUSTNESS_STREAM])
    photos = sorted({p.source_image for p in pairs})
    if len(photos) >= 2:
        prompt_photos = {photos[i] for i in rng.permutation(len(photos))[:(len(photos) + 1) // 2]}
        pool = [p for p in pairs if p.source_image in prompt_photos]
        queries = [p for p in pairs if p.source_image not in prompt_photos]
        note = "from photos that no prompt comes from"
    else:
        order = rng.permutation(len(pairs))
        half = (len(pairs) + 1) // 2
        pool = [pairs[i] for i in order[:half]]
        queries = [pairs[i] for i in sorted(order[half:])]
        note = "(one source photo only: other crops of the prompts' photo)"
    if len(pool) < 2:
        raise TrackError(f"robustness needs at least 2 prompts, but the prompt half of the {len(pairs)} test pairs "
                         f"({len(photos)} source photos) holds {len(pool)}: add test pairs or source photos")
    prompts = [pool[i] for i in rng.choice(len(pool), size=min(k, len(pool)), replace=False)]
    if len(prompts) < k:
        note += f"; {len(prompts)} prompts, not {k}: the prompt half holds only {len(pool)} pairs"
    return prompts, (queries[:limit] if limit else queries), note


def run_robustness(ctx, task: str) -> list[dict]:
    spec = ctx.lookup(task)
    prompts, queries, note = robustness_plan(ctx.split.pairs(task), ctx.config.robustness_prompts,
                                             ctx.config.seed, spec.index, ctx.config.limit)
    jobs = []
    for j, prompt in enumerate(prompts):
        rule = (f"robustness: prompt {j + 1} of {len(prompts)} drawn without replacement from the task's "
                f"test pairs (seed {ctx.config.seed}), applied to the same {len(queries)} queries {note}")
        jobs += [(query, prompt, rule) for query in queries]
    return _score_rows(ctx, "robustness", spec, jobs, (spec.metric,))


# --------------------------------------------------------------------------------------------
# mismatch

def mismatch_unit(prompt_task: str, query_task: str) -> str:
    return f"{prompt_task}__on__{query_task}"


def parse_mismatch_unit(unit: str) -> tuple[str, str]:
    prompt_task, _, query_task = unit.partition("__on__")
    return prompt_task, query_task


def _mismatch_units(ctx) -> list[str]:
    units = []
    # A default pair the split cannot serve is routine; a pair asked for by name that yields nothing is not.
    requested = tuple(map(tuple, ctx.config.mismatch_pairs))
    default = requested == DEFAULT_MISMATCH_PAIRS
    level = logging.INFO if default else logging.WARNING
    for prompt_task, query_task in ctx.config.mismatch_pairs:
        wanted = {prompt_task} | ({query_task} - {CLEAN})
        if default and ctx.config.tasks is not None and not wanted <= set(ctx.tasks):
            # A task selection narrows the default pairs too; pairs named with --mismatch run as asked.
            ctx.log.info("mismatch %s on %s skipped: not among the selected tasks", prompt_task, query_task)
            continue
        if not wanted <= set(ctx.available_tasks):
            ctx.log.log(level, "mismatch %s on %s skipped: not in the test split", prompt_task, query_task)
            continue
        if ctx.lookup(prompt_task).hdr or (query_task != CLEAN and ctx.lookup(query_task).hdr):
            ctx.log.log(level, "mismatch %s on %s skipped: HDR tasks are not part of this track",
                        prompt_task, query_task)
            continue
        if query_task == CLEAN and ctx.lookup(prompt_task).category != "restoration":
            # Clean queries are the prompt task's targets, which are clean photos only for restoration.
            ctx.log.log(level, "mismatch %s on clean skipped: not a restoration task", prompt_task)
            continue
        units.append(mismatch_unit(prompt_task, query_task))
    return units


def run_mismatch(ctx, unit: str) -> list[dict]:
    from taskgen.registry import sample_rng

    prompt_task, query_task = parse_mismatch_unit(unit)
    a_spec = ctx.lookup(prompt_task)
    prompt_pairs = ctx.split.pairs(prompt_task)
    if not prompt_pairs:
        raise TrackError(f"task {prompt_task}: the test split has no pairs")
    prompt = prompt_pairs[0]
    if query_task == CLEAN:
        pool = [(p, p.target) for p in prompt_pairs[1:]]
        task, category = CLEAN, a_spec.category
    else:
        pool = [(p, p.input) for p in ctx.split.pairs(query_task)]
        task, category = query_task, ctx.lookup(query_task).category
    # Queries from the prompt's own photo (other crops) would let the prompt leak their content.
    queries = [(p.key, image) for p, image in pool if p.source_image != prompt.source_image]
    queries = queries[:ctx.config.limit] if ctx.config.limit else queries
    if not queries:
        raise TrackError(f"mismatch {unit}: no query images")
    rule = (f"mismatch: the first {prompt_task} test pair as prompt on "
            + ("the clean targets of its other pairs" if query_task == CLEAN else f"{query_task} query inputs")
            + " from other source photos")
    convention = get_metric("psnr").describe(np.uint8)
    rows = []
    for batch in shape_batches(list(enumerate(queries)), ctx.config.batch_size, key=lambda j: j[1][1].shape):
        images = [image for _, (_, image) in batch]
        pred = ctx.predict(images, [prompt.input] * len(batch), [prompt.target] * len(batch), quantize_to=np.uint8)
        queried = np.stack(images)
        applied = np.stack([a_spec.generate(image, sample_rng(ctx.config.seed, prompt_task, MISMATCH_SPLIT, i))[1]
                            for i, (_, image) in batch])
        keeps = score(pred, queried)["psnr"]
        applies = score(pred, applied)["psnr"]
        for n, (position, (key, _)) in enumerate(batch):
            ctx.save_example("mismatch", unit, position, key, pred[n],
                             {"prompt_input": prompt.input, "prompt_target": prompt.target,
                              "query": queried[n], "target": applied[n]},
                             task=task, prompt_task=prompt_task, prompt_key=prompt.key, prompt_rule=rule)
            common = dict(track="mismatch", task=task, category=category, prompt_task=prompt_task,
                          sample_key=key, prompt_key=prompt.key, prompt_rule=rule)
            rows.append(ctx.row(**common, metric="psnr_to_query", value=keeps[n],
                                convention=convention + "; reference: the query image itself"))
            rows.append(ctx.row(**common, metric="psnr_to_prompt_task", value=applies[n],
                                convention=convention + f"; reference: {prompt_task}'s recipe applied to the query "
                                f"(rng seed {ctx.config.seed}, split '{MISMATCH_SPLIT}')"))
    return rows


# --------------------------------------------------------------------------------------------
# efficiency

EFFICIENCY_UNIT = "model"


def count_parameters(generalist, info: dict) -> float:
    """info()['params'] if stated, else the parameters of a torch module the generalist exposes."""
    if info.get("params") is not None:
        return float(info["params"])
    for attr in ("network", "module", "model", "net"):
        module = getattr(generalist, attr, None)
        if module is not None and callable(getattr(module, "parameters", None)):
            return float(sum(p.numel() for p in module.parameters()))
    if callable(getattr(generalist, "parameters", None)):
        return float(sum(p.numel() for p in generalist.parameters()))
    return float("nan")


def _timed_ms(fn, repeats: int, warmup: int, cuda: bool) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def latency_pair(ctx):
    """The pair latency is timed on: the test size, the first 8-bit pair of the selected tasks (HDR
    pairs differ only in dtype); None when there is none (a square of ``flops_size`` then)."""
    return next((p for t in ctx.tasks for p in ctx.split.pairs(t)[:1]
                 if p.input.dtype == p.target.dtype == np.uint8), None)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def efficiency_settings(ctx) -> dict:
    """What the efficiency figures depend on besides the model: the measuring plan, the query size
    timed, and on a CPU its model and thread count (a latency taken on another CPU is not reused)."""
    import torch

    cfg = ctx.config
    pair = latency_pair(ctx)
    h, w = pair.input.shape[:2] if pair is not None else (cfg.flops_size, cfg.flops_size)
    settings = {"flops_size": cfg.flops_size, "latency_repeats": cfg.latency_repeats,
                "latency_warmup": cfg.latency_warmup, "latency_query": f"{h}x{w}"}
    if ctx.provenance["device"] == "cpu":
        settings["cpu"] = f"{cpu_name()}, {torch.get_num_threads()} threads"
    return settings


def run_efficiency(ctx, unit: str = EFFICIENCY_UNIT) -> list[dict]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cfg = ctx.config
    size = cfg.flops_size
    square = np.zeros((size, size, 3), np.uint8)
    # Only speed is measured here: outputs must have the right shape, their values are not scored.
    with FlopCounterMode(display=False) as counter:
        ctx.predict([square], [square], [square], check_values=False)
    flops = float(counter.get_total_flops())

    pair = latency_pair(ctx)
    query, prompt_in, prompt_out = (pair.input, pair.input, pair.target) if pair else (square, square, square)
    cuda = str(ctx.input_device).startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    latency = _timed_ms(lambda: ctx.predict([query], [prompt_in], [prompt_out], check_values=False),
                        cfg.latency_repeats, cfg.latency_warmup, cuda)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    h, w = query.shape[:2]
    measures = (
        ("params", count_parameters(ctx.generalist, ctx.info), "parameter elements (info()['params'] or the module's)"),
        (f"flops_{size}", flops, f"forward FLOPs of one predict() on a 1x3x{size}x{size} query and prompt pair, "
                                 "torch.utils.flop_counter (2 FLOPs per multiply-add; ops it does not count add 0)"),
        ("latency_ms", latency, f"median of {cfg.latency_repeats} predict() calls at batch 1, {h}x{w}, after "
                                f"{cfg.latency_warmup} warm-up calls, including the bench's tensor conversion "
                                f"and shape check, on {ctx.provenance['device']}"),
        ("peak_memory_mib", peak, "torch.cuda.max_memory_allocated during the latency calls (MiB); NaN on CPU"),
    )
    peer = peer_for(ctx.info.get("arch"))
    if peer is not None:  # the bar to beat: the authors' code on the same network
        measures += (("official_latency_ms", peer.inference_ms_b1,
                      f"{peer.code}: inference ms at batch 1, 256², {SOURCE}; compare with latency_ms only "
                      f"when this run's device is an {peer.device}"),)
    return [ctx.row(track="efficiency", task="*", category="*", prompt_task="*", sample_key="", prompt_key="",
                    prompt_rule="", metric=name, value=value, convention=convention, higher_is_better=False)
            for name, value, convention in measures]


TRACKS: dict[str, Track] = {
    "main": Track("main", _task_units, run_main, lambda ctx: {"limit": ctx.config.limit},
                  "one fixed prompt rule per task; headline metric + companion"),
    "robustness": Track("robustness", _task_units, run_robustness,
                        lambda ctx: {"limit": ctx.config.limit, "robustness_prompts": ctx.config.robustness_prompts,
                                     "seed": ctx.config.seed},
                        "K prompts per task on the same queries (paper Table 4)"),
    "mismatch": Track("mismatch", _mismatch_units, run_mismatch,
                      lambda ctx: {"limit": ctx.config.limit, "seed": ctx.config.seed},
                      "prompt of task A on queries of task B (paper Figs 6-7)"),
    "efficiency": Track("efficiency", lambda ctx: [EFFICIENCY_UNIT], run_efficiency, efficiency_settings,
                        "parameters, FLOPs per 256² query, latency, peak memory"),
}
