"""Leaderboards: aggregates of the per-image results, as parquet, Markdown, LaTeX (``bench.latex``) and
``metrics.json``.

Tables (one parquet each, every row labelled by model):

- ``model_task``: main-track mean per (model, task, metric), with n, the standard deviation over
  queries (``query_std``), the half-width of the mean's 95 % t-interval (``ci95``) and failures;
- ``model_category``: mean over a category's tasks of the task means (headline metric), with the
  tasks scored and failed; a model with a failed task in a category, or without a task another
  model was scored on there, gets no mean there (NaN): a mean over the tasks it managed would not
  compare with the others' and could rank first;
- ``overall``: mean rank across tasks (rank 1 = best on the task's headline metric; a failed
  task, or one the model was not scored on while another was, ranks last), tasks evaluated,
  tasks failed;
- ``robustness``: per (model, task) the population standard deviation (ddof 0) of the K
  per-prompt task means, as paper Table 4;
- ``mismatch``: mean PSNR to the query and to the prompt task's recipe per (model, prompt task,
  query task);
- ``efficiency``: parameters, FLOPs, latency, peak memory;
- ``failures``: every failed unit with its message.

A task's headline metric is MAE when its rows have MAE (edges), else PSNR (bench.metrics). The
Markdown, LaTeX and report show the paper's tables, then "Other tasks" tables for headline rows
that fit none of them. Held-out tasks go under the ``unseen`` category by the split their rows'
sample keys record (held_out_tasks), not by the tasks installed where the tables are made.
When one model name was run from several checkpoints, models are labelled ``name@sha[:8]``; when
a unit (a model's track and task) was evaluated in several runs, the newest run's rows count, all
of them and only them (``_latest``); on the efficiency track each device is a unit of its own.

Results that should not be ranked together without a word get a warning (``Leaderboards.warnings``:
logged, and at the top of leaderboard.md and of the report): rows from different test splits (data
manifests), unequal query (or prompt) counts per task between models (different ``--limit``, say),
one (model, track, task) evaluated in several runs (results folders that overlap: both sources are
named, the newest run's rows count), main-track task sets that differ between models (mean ranks over
different tasks), and ``ok`` rows whose value is not a finite number.
"""
from __future__ import annotations

import functools
import logging
import math
import operator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable

from .metrics import METRICS
from .results import NOT_MEASURED, read_results

log = logging.getLogger(__name__)

# The paper's column labels (Tables 1–4); other tasks are shown by name.
SHORT_NAMES = {
    "gaussian_noise": "GN", "poisson_noise": "PN", "salt_pepper": "S&P", "gaussian_blur": "GB",
    "jpeg": "JPEG", "ringing": "Ringing", "rl": "R-L", "inpainting": "Inpainting",
    "rain_simple": "SimpleRain", "rain_complex": "ComplexRain", "haze": "Haze", "mixed": "Mixed",
    "low_light": "LLE", "retouch": "Retouch", "local_laplacian": "LLF", "tone_multiscale": "MTM",
    "underwater_contrast": "ICE", "underwater_color": "ICC", "sdr_to_hdr": "SDR→HDR", "hdr_to_sdr": "HDR→SDR",
    "canny": "Canny", "laplacian": "Laplacian", "perceptual_edges": "PED",
    "pencil": "PencilDraw", "photographic": "Photographic", "rtv": "RTV", "vermeer": "Vermeer", "jojo": "JOJO",
    "raphael": "Raphael", "fauvism": "Fauvism", "divisionism": "Divisionism", "cloisonnism": "Cloisonnism",
}
# (title, categories, metric) of the paper-shaped tables.
PAPER_TABLES = (
    ("Table 1: restoration, PSNR↑ (dB)", ("restoration",), "psnr"),
    ("Table 2: enhancement and stylization, PSNR↑ (dB)", ("enhancement", "stylization"), "psnr"),
    ("Table 3: edge detection, MAE↓", ("edge",), "mae"),
    ("Unseen tasks (held out of training), PSNR↑ (dB)", ("unseen",), "psnr"),
)
UNSEEN = "unseen"  # the category held-out tasks are reported under, whatever their own category
DECIMALS = {"psnr": 2, "ssim": 4, "mae": 4}
KEY = ["model", "track", "task", "prompt_task", "sample_key", "prompt_key", "metric"]


@dataclass
class Leaderboards:
    model_task: object
    model_category: object
    overall: object
    robustness: object
    mismatch: object
    efficiency: object
    failures: object
    # What makes these results unsafe to compare (comparability_warnings); not a table.
    warnings: list = field(default_factory=list, metadata={"table": False})

    def tables(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("table", True)}


def _label_models(df):
    """Model names, made unique per checkpoint when one name was run from several. A load failure
    has no checkpoint hash and does not count as another checkpoint."""
    df = df.copy()
    counts = df[df["track"] != "load"].groupby("model")["checkpoint_sha256"].nunique()
    # A load failure has no hash to tell its checkpoint by: it keeps the plain name ("name@" would
    # be a model of its own).
    several = (df["model"].map(counts) > 1) & (df["checkpoint_sha256"].fillna("") != "")
    df.loc[several, "model"] = df.loc[several, "model"] + "@" + df.loc[several, "checkpoint_sha256"].str[:8]
    return df


def _units(df):
    """Each row's evaluation unit: (model, track, task), plus the prompt task on the mismatch track
    (one unit per prompt/query pair) and the device on the efficiency track (one figure per device)."""
    text = {column: df[column].fillna("").astype(str) for column in ("model", "track", "task", "prompt_task",
                                                                      "device")}
    detail = (text["prompt_task"].where(text["track"] == "mismatch", "")
              + text["device"].where(text["track"] == "efficiency", ""))
    return text["model"] + "\x00" + text["track"] + "\x00" + text["task"] + "\x00" + detail


def _latest(df):
    """Each unit's rows from the newest run that evaluated it (then the last row per KEY and device).
    A re-run replaces a unit whole: an older run's rows that the newer one lacks (a failure since
    fixed, queries beyond a smaller --limit) would otherwise be averaged in with it."""
    if not len(df):
        return df
    units = _units(df)
    run_time = df.groupby([units, df["run_id"]])["time"].transform("max")
    newest = run_time == run_time.groupby(units).transform("max")
    return df[newest].sort_values("time", kind="stable").drop_duplicates(KEY + ["device"], keep="last")


def task_order(tasks) -> list[str]:
    """Paper (canonical) order first, then any other tasks alphabetically."""
    from taskgen.registry import CANONICAL_ORDER

    known = [t for t in CANONICAL_ORDER if t in set(tasks)]
    return known + sorted(set(tasks) - set(known))


def headline_metrics(model_task) -> dict:
    """{task: headline metric}: MAE where the task has MAE rows (edges), else PSNR."""
    with_mae = set(model_task.loc[model_task["metric"] == "mae", "task"])
    return {task: ("mae" if task in with_mae else "psnr") for task in model_task["task"].unique()}


def is_headline(model_task):
    """Boolean mask of the rows that hold their task's headline metric (headline_metrics)."""
    return model_task["metric"] == model_task["task"].map(headline_metrics(model_task))


def headline_rows(model_task):
    """The rows of ``model_task`` (or per-image results) on their task's headline metric."""
    return model_task[is_headline(model_task)]


def _margin_sign(metrics):
    """Per row of a metric-name Series: +1 where higher is better, -1 where lower is (MAE), so that
    sign * (model - baseline) is positive when the model is better."""
    return metrics.map(lambda m: 1.0 if _higher_is_better(m) else -1.0)


def _in_task_order(df):
    """Rows sorted by their ``task`` column in the paper's order (task_order), index reset."""
    order = {t: i for i, t in enumerate(task_order(df["task"]))}
    return df.sort_values("task", key=lambda c: c.map(order)).reset_index(drop=True)


def versus_baseline(model_task, model: str, baseline: str = "identity"):
    """Per task, ``model`` against ``baseline`` on the task's headline metric: a DataFrame of task,
    category, metric, the two means, ``margin`` (positive = ``model`` better: dB for PSNR, MAE
    points for edges) and ``beats``; tasks either lacks or failed get NaN and beats False."""
    import pandas as pd

    head = headline_rows(model_task)
    missing = [m for m in (model, baseline) if m not in set(head["model"])]
    if missing:
        raise ValueError(f"no main-track results for {missing} (models: {sorted(set(head['model']))})")
    wide = (head[head["model"].isin([model, baseline])]
            .groupby(["task", "category", "metric", "model"], sort=False)["mean"].first()
            .unstack("model").reset_index())
    wide = wide.rename(columns={model: "model_mean", baseline: "baseline_mean"})
    sign = _margin_sign(wide["metric"])
    out = pd.DataFrame({"task": wide["task"], "category": wide["category"], "metric": wide["metric"],
                        model: wide["model_mean"], baseline: wide["baseline_mean"],
                        "margin": sign * (wide["model_mean"] - wide["baseline_mean"])})
    out["beats"] = out["margin"] > 0
    return _in_task_order(out)


def ci95_half_width(std: float, n: int) -> float:
    """Half-width of the 95 % Student-t confidence interval of a mean of ``n`` values with sample
    standard deviation ``std`` (ddof 1); NaN below two values."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n >= 2 and math.isfinite(std) else math.nan


def paired_verdict(mean: float, ci95: float) -> str:
    """'better' / 'worse' when the 95 % interval of a mean margin excludes 0, else 'within noise'
    ('too few queries' when there is no interval)."""
    if not math.isfinite(ci95):
        return "too few queries"
    return "better" if mean - ci95 > 0 else "worse" if mean + ci95 < 0 else "within noise"


def query_margins(results, model: str, baseline: str = "identity"):
    """Per task, ``model`` against ``baseline`` query by query on the main track's headline metric
    (per-image rows of bench.results): a DataFrame of task, category, ``queries`` (those both scored), the
    ``mean`` margin with its paired 95 % t-interval half-width ``ci95`` and ``verdict``
    (paired_verdict), ``wins`` (queries the model is better on), the ``median`` margin and the
    ``worst`` one with its ``worst_query`` key. A mean margin can be one catastrophic query; the
    median says whether the model loses typically, the interval whether 8 queries can tell."""
    import pandas as pd

    df = _mark_held_out(_latest(_label_models(results)))
    main = df[(df["track"] == "main") & (df["status"] == "ok") & df["model"].isin([model, baseline])]
    missing = [m for m in (model, baseline) if m not in set(main["model"])]
    if missing:
        raise ValueError(f"no main-track results for {missing} (models: {sorted(set(df['model']))})")
    main = headline_rows(main).assign(data_manifest_sha256=lambda d: d["data_manifest_sha256"].fillna(""))
    # Keyed by data manifest too: a sample key names the same image only within one test split.
    wide = main.pivot_table(index=["task", "category", "metric", "data_manifest_sha256", "sample_key"],
                            columns="model", values="value", aggfunc="first").dropna(subset=[model, baseline])
    wide = wide.reset_index()
    columns = ["task", "category", "queries", "mean", "ci95", "verdict", "wins", "median", "worst", "worst_query"]
    if wide.empty:  # no query scored by both (e.g. one model ran on the unseen split only): nothing to pair
        return pd.DataFrame(columns=columns)
    wide["margin"] = _margin_sign(wide["metric"]) * (wide[model] - wide[baseline])
    rows = []
    for (task, category), group in wide.groupby(["task", "category"], sort=False):
        margin = group["margin"]
        worst = group.loc[margin.idxmin()]
        mean, ci95 = float(margin.mean()), ci95_half_width(float(margin.std(ddof=1)), len(group))
        rows.append({"task": task, "category": category, "queries": len(group), "mean": mean, "ci95": ci95,
                     "verdict": paired_verdict(mean, ci95), "wins": int((margin > 0).sum()),
                     "median": float(margin.median()), "worst": float(worst["margin"]),
                     "worst_query": worst["sample_key"]})
    return _in_task_order(pd.DataFrame(rows, columns=columns))


VERDICTS = ("better", "within noise", "worse")


def verdict_counts(margins) -> dict:
    """query_margins' rows -> {category: {verdict: tasks}} over VERDICTS (categories in task order)."""
    counts: dict = {}
    for r in margins.itertuples():
        per_category = counts.setdefault(r.category, dict.fromkeys(VERDICTS, 0))
        if r.verdict in per_category:
            per_category[r.verdict] += 1
    return counts


def _higher_is_better(metric: str) -> bool:
    return METRICS[metric].higher_is_better if metric in METRICS else True


def _model_task(main_ok, main_failed):
    """Main-track means per (model, task, metric), plus one ``failed`` cell per failed unit."""
    import pandas as pd

    means = (main_ok.groupby(["model", "task", "category", "metric"], as_index=False)
             .agg(mean=("value", "mean"), n=("value", "size"), query_std=("value", "std"),
                  higher_is_better=("higher_is_better", "first"), convention=("convention", "first"))
             .assign(status="ok", error=""))
    means["ci95"] = [ci95_half_width(s, n) for s, n in zip(means["query_std"], means["n"])]
    failures = (main_failed[["model", "task", "category", "metric", "error"]]
                .assign(mean=math.nan, n=0, query_std=math.nan, ci95=math.nan, status="failed",
                        convention=NOT_MEASURED,
                        higher_is_better=main_failed["metric"].map(_higher_is_better)))
    frames = [f for f in (means, failures) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else means


def recorded_split(task: str, sample_key: str) -> str:
    """The split a row of ``task`` was drawn from, as its sample key records it (``TASK/SPLIT/N``,
    which TestSplit checks); '' when the key is not one of the task's (a failure row, a mismatch row
    of another task)."""
    parts = str(sample_key).split("/")
    return parts[1] if len(parts) == 3 and parts[0] == task else ""


def held_out_tasks(df) -> set:
    """Tasks scored on the unseen split, as the rows record it; for a task none of whose rows
    records a split (only failed units, hand-made rows), the task registry's word (in_training_mix
    False), so the same results are tabulated alike whatever plug-in tasks are installed."""
    import taskgen

    splits: dict = {}
    for task, key in zip(df["task"], df["sample_key"]):
        recorded = recorded_split(task, key)
        found = splits.setdefault(task, set())
        if recorded:
            found.add(recorded)
    unrecorded = [task for task, found in splits.items() if not found]
    registry_held_out = {s.name for s in taskgen.list_tasks() if not s.in_training_mix} if unrecorded else set()
    return ({task for task, found in splits.items() if UNSEEN in found}
            | {task for task in unrecorded if task in registry_held_out})


def _mark_held_out(df):
    """Report held-out tasks (held_out_tasks) in their own 'unseen' category, so they neither mix
    into the paper's category means nor into Tables 1-3."""
    if not len(df):
        return df
    held_out = held_out_tasks(df)
    if not held_out:
        return df
    df = df.copy()
    df.loc[df["task"].isin(held_out), "category"] = UNSEEN
    return df


# --------------------------------------------------------------------------------------------
# Reading and comparability

def _listing(items: list[str], limit: int = 4) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def comparability_warnings(results) -> list[str]:
    """Why the models in ``results`` should not be ranked side by side without a word (module doc)."""
    warnings = []
    empty = results.attrs.get("empty_files", [])
    if empty:
        warnings.append(f"{len(empty)} results file(s) hold no rows and were left out: {_listing(empty)}; "
                        "re-run llvbench eval for those units.")
    if not len(results):
        return warnings
    df = _label_models(results)
    df = df[df["track"] != "load"]
    manifests = sorted(set(df["data_manifest_sha256"]) - {""})
    if len(manifests) > 1:
        per = [f"{m[:12]} ({', '.join(sorted(set(df.loc[df['data_manifest_sha256'] == m, 'model'])))})"
               for m in manifests]
        warnings.append(f"the results come from {len(manifests)} different test splits (data manifests): "
                        f"{'; '.join(per)}; scores of different splits are not comparable.")
    # The same unit of a model from several runs (overlapping results folders): name every source.
    units = df.assign(unit=_units(df)).groupby("unit", sort=True)
    repeated: dict = {}
    for _, rows in units:
        runs = rows["run_id"].unique()
        if len(runs) > 1:
            first = rows.iloc[0]
            unit = (f"{first.track}/{first.prompt_task} on {first.task}" if first.track == "mismatch"
                    else f"{first.track}/{first.task}")
            repeated.setdefault((first.model, tuple(sorted(runs))), []).append(unit)
    for (model, runs), units in repeated.items():
        described = []
        for run in runs:
            rows = df[(df["model"] == model) & (df["run_id"] == run)]
            where = ", ".join(sorted(set(rows["source"]))) if "source" in rows else ""
            described.append(f"run {run}" + (f" from {where}" if where else "") + f" ({rows['time'].max()})")
        warnings.append(f"{model}: {len(units)} unit(s) ({_listing(units)}) were evaluated in {len(runs)} runs: "
                        f"{'; '.join(described)}; the newest run's rows count. Pass one results folder per model "
                        "to choose.")
    latest = _latest(df)
    ok = latest[latest["status"] == "ok"]
    # Unequal query (or prompt) counts per task: a different --limit, robustness K or split.
    for track in ("main", "robustness", "mismatch"):
        rows = ok[ok["track"] == track]
        if not len(rows):
            continue
        counts = (rows.groupby(["task", "prompt_task", "model"])
                  .agg(queries=("sample_key", "nunique"), prompts=("prompt_key", "nunique")).reset_index())
        unequal = []
        for (task, prompt_task), group in counts.groupby(["task", "prompt_task"], sort=False):
            column = "prompts" if track == "robustness" and group["prompts"].nunique() > 1 else "queries"
            if group[column].nunique() > 1:
                label = task if track != "mismatch" else f"{prompt_task} on {task}"
                unequal.append(f"{label} (" + ", ".join(f"{r.model} {getattr(r, column)}"
                                                      for r in group.itertuples()) + f" {column})")
        if unequal:
            warnings.append(f"{track} track: the models were scored on different numbers of queries or prompts: "
                            f"{_listing(unequal)}; were they evaluated with different --limit or "
                            "--robustness-prompts? Their means are not comparable.")
    # Mean ranks over different task sets (a model run on some tasks only): each model is ranked
    # over the tasks it was evaluated on, which the `tasks` column shows but a reader may miss.
    main = latest[latest["track"] == "main"]
    task_sets = main.groupby("model")["task"].agg(frozenset)
    if task_sets.nunique() > 1:
        every = frozenset().union(*task_sets)
        lacking = [f"{model} lacks {len(every - tasks)} ({_listing(sorted(every - tasks))})"
                   for model, tasks in task_sets.items() if every - tasks]
        warnings.append(f"main track: the models were evaluated on different tasks: {'; '.join(lacking)}; "
                        "the missing tasks rank last in the mean rank and leave the model no mean "
                        "in their category.")
    # Scores only: an efficiency figure may be NaN by its convention (peak GPU memory on a CPU).
    scores = ok[ok["track"] != "efficiency"]
    bad = scores[~scores["value"].map(lambda v: math.isfinite(v))]
    if len(bad):
        units = sorted({f"{r.model} {r.track}/{r.task}" for r in bad.itertuples()})
        warnings.append(f"{len(bad)} row(s) marked ok hold a non-finite value (NaN or inf): {_listing(units)}; "
                        "their means are not numbers.")
    return warnings


def build_leaderboards(results) -> Leaderboards:
    """The per-image results DataFrame (bench.results) -> every leaderboard table."""
    warnings = comparability_warnings(results)
    df = _mark_held_out(_latest(_label_models(results)))
    ok = df[df["status"] == "ok"]
    failed = df[df["status"] == "failed"]
    model_task = _model_task(ok[ok["track"] == "main"], failed[failed["track"] == "main"])
    head = headline_rows(model_task)
    model_category = _model_category(head)
    mismatch = (ok[ok["track"] == "mismatch"]
                .pivot_table(index=["model", "prompt_task", "task"], columns="metric", values="value",
                             aggfunc="mean").reset_index().rename_axis(columns=None))
    eff = ok[ok["track"] == "efficiency"]
    # dropna=False keeps a metric column that is NaN by convention (peak GPU memory on a CPU), but
    # also makes every model x device pair: keep the pairs that were measured.
    efficiency = (eff.pivot_table(index=["model", "device"], columns="metric", values="value", aggfunc="last",
                                  dropna=False).reset_index().rename_axis(columns=None))
    measured = set(zip(eff["model"], eff["device"]))
    efficiency = efficiency[[pair in measured for pair in zip(efficiency["model"], efficiency["device"])]]
    efficiency = efficiency.reset_index(drop=True)
    failures = failed[["model", "track", "task", "prompt_task", "error", "time"]].reset_index(drop=True)
    return Leaderboards(model_task, model_category, _overall(head), _robustness(ok[ok["track"] == "robustness"]),
                        mismatch, efficiency, failures, warnings)


def _model_category(head):
    """Mean of the task means per (model, category, headline metric); NaN where a task failed or
    where the model lacks a task of the category that another model was scored on (a mean over
    fewer, perhaps easier, tasks would not compare, yet could take the bold)."""
    import numpy as np

    keys = ["model", "category", "metric"]
    categories = (head.groupby(keys, as_index=False)
                  .agg(tasks=("status", lambda s: int((s == "ok").sum())),
                       failed_tasks=("status", lambda s: int((s == "failed").sum())),
                       scored=("task", "nunique")))
    means = head[head["status"] == "ok"].groupby(keys, as_index=False).agg(mean=("mean", "mean"))
    categories = categories.merge(means, on=keys, how="left")
    every = head.groupby(["category", "metric"])["task"].nunique().rename("every").reset_index()
    categories = categories.merge(every, on=["category", "metric"], how="left")
    categories.loc[(categories["failed_tasks"] > 0) | (categories["scored"] < categories["every"]), "mean"] = np.nan
    return categories[["model", "category", "metric", "mean", "tasks", "failed_tasks"]]


def category_columns(model_category, order) -> list[tuple[str, str, str]]:
    """(key, category, metric) per category and headline metric of ``model_category``, categories in
    ``order`` first, then the rest by name. The key is the category, or 'category (METRIC)' where a
    category has two headline metrics (a user's task scored by another metric than its category's)."""
    metrics_of: dict = {}
    for category, metric in model_category[["category", "metric"]].drop_duplicates().itertuples(index=False):
        metrics_of.setdefault(category, []).append(metric)
    categories = [c for c in order if c in metrics_of] + sorted(set(metrics_of) - set(order))
    return [(category if len(metrics_of[category]) == 1 else f"{category} ({metric.upper()})", category, metric)
            for category in categories for metric in sorted(metrics_of[category])]


def robustness_models(robustness, ranked: list[str]) -> list[str]:
    """Table 4's rows: the ranked models that have robustness results, in their order, then any model
    that ran the robustness track without the main track (and so has no rank)."""
    present = set(robustness["model"])
    return [m for m in ranked if m in present] + sorted(present - set(ranked))


def prompt_blind(robustness) -> list[str]:
    """Models whose Table 4 spread reads 0 on every task at its printed places: their outputs do not
    depend on the prompt (``identity`` by design, or a prompt model that has not learned to use its
    prompt). They are shown but not ranked there: a spread of 0 is no robustness."""
    if not len(robustness):
        return []
    places = robustness_decimals(robustness)
    blind = {m for m, group in robustness.groupby("model")
             if all(round(float(r.std), places[r.task]) == 0 for r in group.itertuples())}
    return sorted(blind)


def prompt_blind_note(models: list[str]) -> str:
    """The line under Table 4 that names the models it does not rank ('' for none)."""
    if not models:
        return ""
    names = ", ".join(models)
    verb = "reads" if len(models) == 1 else "read"
    return (f"Not ranked: {names} {verb} 0 on every task, so the output does not depend on the prompt "
            "(by design for identity; for a prompt model it means it has not learned to use its prompt).")


def robustness_decimals(robustness) -> dict:
    """Places per task column of a Table 4: one more than the task's metric (dB to 3, MAE to 5),
    since a spread is a tenth of the values it comes from."""
    return {r.task: DECIMALS[r.metric] + 1 for r in robustness.itertuples()}


def per_column(setting, column):
    """``setting`` for ``column``: a dict per column, or one value for all."""
    return setting[column] if isinstance(setting, dict) else setting


def _overall(head):
    """Mean rank across tasks on each task's headline metric; failed tasks rank last, and so do
    the tasks a model was not scored on that another model was (a model run on a few tasks would
    otherwise rank on those alone). ``tasks`` counts the tasks the model has rows for."""
    import pandas as pd

    if not len(head):
        return pd.DataFrame(columns=["model", "mean_rank", "tasks", "failed_tasks", "rank"])
    models = sorted(head["model"].unique())
    ranked = []
    for task, group in head.groupby("task"):
        scored = set(group["model"])
        missing = [m for m in models if m not in scored]
        group = pd.concat([group, pd.DataFrame({"model": missing, "task": task, "status": "missing"})],
                          ignore_index=True) if missing else group.copy()
        score = group["mean"] if bool(group["higher_is_better"].iloc[0]) else -group["mean"]
        group["task_rank"] = score.rank(ascending=False, method="average", na_option="bottom")
        ranked.append(group)
    ranked = pd.concat(ranked, ignore_index=True)
    overall = (ranked.groupby("model", as_index=False)
               .agg(mean_rank=("task_rank", "mean"), tasks=("status", lambda s: int((s != "missing").sum())),
                    failed_tasks=("status", lambda s: int((s == "failed").sum()))))
    overall = overall.sort_values(["mean_rank", "model"]).reset_index(drop=True)
    overall["rank"] = overall["mean_rank"].rank(method="min").astype(int)
    return overall


def _robustness(rows):
    import pandas as pd

    if not len(rows):
        return pd.DataFrame(columns=["model", "task", "category", "metric", "std", "mean", "prompts", "queries"])
    per_prompt = (rows.groupby(["model", "task", "category", "metric", "prompt_key"], as_index=False)
                  .agg(task_mean=("value", "mean"), queries=("value", "size")))
    return (per_prompt.groupby(["model", "task", "category", "metric"], as_index=False)
            .agg(std=("task_mean", lambda s: float(s.std(ddof=0))), mean=("task_mean", "mean"),
                 prompts=("task_mean", "size"), queries=("queries", "max")))


# --------------------------------------------------------------------------------------------
# Markdown

def format_value(value, decimals: int) -> str:
    """A number with ``decimals`` places; '–' for a missing or non-finite one."""
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.{decimals}f}"


def column_ranks(cells: dict, rows: list[str], columns: list[str], higher_is_better: dict | bool,
                 decimals: dict | int | None = None) -> dict:
    """{(row, column): value} -> {(row, column): rank}: 1 for the column's best value, 2 for the next
    distinct value, and so on (tied values share a rank); missing and non-finite cells get none.
    ``higher_is_better`` and ``decimals`` are one value for every column or a dict per column; with
    ``decimals``, values are compared as printed, so cells that read the same share the mark."""
    ranks = {}
    for c in columns:
        better_high = per_column(higher_is_better, c)
        places = per_column(decimals, c)
        present = {r: float(cells[(r, c)]) for r in rows if (r, c) in cells and math.isfinite(cells[(r, c)])}
        if places is not None:
            present = {r: round(value, places) for r, value in present.items()}
        order = sorted(set(present.values()), reverse=bool(better_high))
        position = {value: i + 1 for i, value in enumerate(order)}
        ranks.update({(r, c): position[value] for r, value in present.items()})
    return ranks


def ranked_rows(rows: list[str], unranked: Iterable[str]) -> list[str]:
    """``rows`` without those in ``unranked``: the rows a table's best-value marks compete among."""
    skip = set(unranked)
    return [r for r in rows if r not in skip]


def markdown_table(cells: dict, rows: list[str], columns: list[str], *, higher_is_better: bool,
                   decimals: dict | int, labels: dict | None = None, failed: set | None = None,
                   unranked: Iterable[str] = ()) -> str:
    """{(row, column): value} -> a Markdown table with the best value of each column in bold
    (``decimals``: one value, or a dict per column); rows in ``unranked`` are shown, never marked."""
    labels = labels or {}
    failed = failed or set()
    head = "| model | " + " | ".join(markdown_cell(labels.get(c, c)) for c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    ranks = column_ranks(cells, ranked_rows(rows, unranked), columns, higher_is_better, decimals)
    for r in rows:
        out = []
        for c in columns:
            if (r, c) in failed:
                out.append("failed")
                continue
            text = format_value(cells.get((r, c), math.nan), per_column(decimals, c))
            out.append(f"**{text}**" if ranks.get((r, c)) == 1 else text)
        lines.append(f"| {markdown_cell(r)} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def markdown_cell(value) -> str:
    """str(value) fit for one Markdown table cell: '|' escaped, line breaks (a traceback's) as spaces."""
    return " ".join(str(value).split("\n")).replace("|", "\\|")


def plain_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table without highlighting; cells are converted with ``markdown_cell``."""
    lines = ["| " + " | ".join(map(markdown_cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class PaperTable:
    """One paper-shaped table's content: (model, task) -> mean, failed cells, task columns."""

    title: str
    metric: str
    rows: object       # the model_task rows it is built from
    cells: dict
    failed: set
    tasks: list


def _paper_table(title: str, metric: str, part) -> PaperTable:
    cells = {(r.model, r.task): r.mean for r in part.itertuples() if r.status == "ok"}
    failed = {(r.model, r.task) for r in part.itertuples() if r.status == "failed"}
    return PaperTable(title, metric, part, cells, failed, task_order(part["task"].unique()))


def other_tasks_title(metric: str) -> str:
    """'Other tasks (headline metric PSNR↑)': the title of the catch-all table of ``metric``."""
    return f"Other tasks (headline metric {metric.upper()}{'↑' if _higher_is_better(metric) else '↓'})"


def paper_tables(model_task) -> list[PaperTable]:
    """The non-empty tables of PAPER_TABLES from the model_task leaderboard (Markdown, LaTeX and
    report), then one "Other tasks" table per headline metric for the tasks none of them shows (a
    category or headline metric outside the paper's pairs), so every task ranked in Overall is
    shown somewhere."""
    in_tables = [model_task["category"].isin(categories) & (model_task["metric"] == metric)
                 & is_headline(model_task)
                 for _, categories, metric in PAPER_TABLES]
    out = [_paper_table(title, metric, model_task[mask])
           for (title, _, metric), mask in zip(PAPER_TABLES, in_tables) if mask.any()]
    if not len(model_task):
        return out
    shown = functools.reduce(operator.or_, in_tables)
    others = model_task[is_headline(model_task) & ~shown]
    for metric in sorted(others["metric"].unique()):
        out.append(_paper_table(other_tasks_title(metric), metric, others[others["metric"] == metric]))
    return out


def _paper_tables(lb: Leaderboards) -> list[str]:
    mt = lb.model_task
    models = list(lb.overall["model"]) if len(lb.overall) else sorted(mt["model"].unique())
    sections = []
    for t in paper_tables(mt):
        table = markdown_table(t.cells, models, t.tasks, higher_is_better=METRICS[t.metric].higher_is_better,
                               decimals=DECIMALS[t.metric], labels=SHORT_NAMES, failed=t.failed)
        sections += [f"## {t.title}", "", table, ""]
    rb = lb.robustness
    if len(rb):
        cells = {(r.model, r.task): r.std for r in rb.itertuples()}
        blind = prompt_blind(rb)
        table = markdown_table(cells, robustness_models(rb, models), task_order(rb["task"].unique()),
                               higher_is_better=False, decimals=robustness_decimals(rb), labels=SHORT_NAMES,
                               unranked=blind)
        # K is capped per task by the prompts its test split offers: say the range when it varies.
        sections += [f"## Table 4: standard deviation of the task mean across {counted(rb['prompts'], 'prompt')} "
                     "(headline metric)↓", "",
                     table, ""] + ([prompt_blind_note(blind), ""] if blind else [])
    return sections


def scored_counts(rows):
    """model_task rows -> the queries each ok row scored (a Series of counts)."""
    return rows.loc[rows["status"] == "ok", "n"]


def query_spans(rows) -> dict:
    """model_task rows -> {task: '8', or 'low–high' when the models scored different numbers of queries}."""
    ok = rows[rows["status"] == "ok"]
    return {task: count_span(n) for task, n in ok.groupby("task")["n"]}


def count_span(counts) -> str:
    """'8' when every count is 8, else 'low–high'."""
    low, high = int(min(counts)), int(max(counts))
    return f"{low}" if low == high else f"{low}–{high}"


def counted(counts, singular: str, plural: str | None = None) -> str:
    """'1 prompt', '8 prompts', '8–10 prompts': ``count_span`` with its noun."""
    span = count_span(counts)
    return f"{span} {singular if span == '1' else plural or singular + 's'}"


def uncertainty_note(model_task) -> str:
    """One sentence on how far a task mean can be trusted: the median 95 % half-width per metric ('' without one)."""
    # Headline rows only: an edge task's side PSNR is not a number any table shows.
    ok = (model_task[(model_task["status"] == "ok") & model_task["ci95"].notna() & is_headline(model_task)]
          if "ci95" in model_task else [])
    if not len(ok):
        return ""
    units = {"psnr": " dB (PSNR)", "mae": " (MAE)"}
    widths = ", ".join(f"±{ok.loc[ok['metric'] == m, 'ci95'].median():.{DECIMALS[m]}f}{unit}"
                       for m, unit in units.items() if (ok["metric"] == m).any())
    if not widths:
        return ""
    queries = count_span(ok.loc[ok["metric"].isin(list(units)), "n"])
    return (f"Uncertainty: each task mean averages {queries} queries; the median half-width of its 95 % "
            f"t-interval (model_task.parquet: ci95) is {widths}. A gap between two models smaller than that "
            "needs a paired comparison on the same queries (scripts/model_card.py LEADERBOARD MODEL --baseline OTHER "
            "--results EVAL_DIRS) before it counts.")


def overall_rows(overall) -> tuple[list[str], list[list]]:
    """(headers, rows) of the overall mean-rank table."""
    rows = [[int(r.rank), r.model, f"{r.mean_rank:.2f}", int(r.tasks), int(r.failed_tasks)]
            for r in overall.itertuples()]
    return ["rank", "model", "mean rank", "tasks", "failed"], rows


def efficiency_rows(efficiency) -> tuple[list[str], list[list]]:
    """(headers, rows) of the efficiency table: parameters, FLOPs, latency, peak memory, device and the
    official code's latency (reference data, one H200)."""
    flops = next((c for c in efficiency.columns if c.startswith("flops_")), "flops")
    rows = [[r["model"], format_value(r.get("params", math.nan) / 1e6, 3),
             format_value(r.get(flops, math.nan) / 1e9, 2), format_value(r.get("latency_ms", math.nan), 2),
             format_value(r.get("peak_memory_mib", math.nan), 0), r["device"],
             format_value(r.get("official_latency_ms", math.nan), 1)]
            for r in efficiency.to_dict("records")]
    return ["model", "params (M)", f"{flops} (GFLOP)", "latency (ms/image)", "peak memory (MiB)", "device",
            "official code (ms/image, H200)"], rows


def to_markdown(lb: Leaderboards) -> str:
    """The paper-shaped tables (1–4) plus overall rank, mismatch, efficiency and failures."""
    sections = ["# llvbench leaderboard", ""]
    if lb.warnings:
        sections += ["## Warnings", ""] + [f"- {w}" for w in lb.warnings] + [""]
    sections += _paper_tables(lb)
    note = uncertainty_note(lb.model_task)
    if note:
        sections += [note, ""]
    if len(lb.overall):
        sections += ["## Overall: mean rank across tasks (1 = best)", "", plain_table(*overall_rows(lb.overall)), ""]
    if len(lb.mismatch):
        rows = [[r["model"], r["prompt_task"], r["task"], format_value(r.get("psnr_to_query", math.nan), 2),
                 format_value(r.get("psnr_to_prompt_task", math.nan), 2)] for r in lb.mismatch.to_dict("records")]
        sections += ["## Mismatch: prompt of task A on queries of task B (mean PSNR, dB)", "",
                     plain_table(["model", "prompt A", "queries B", "keeps the query", "applies A"], rows), ""]
    if len(lb.efficiency):
        headers, rows = efficiency_rows(lb.efficiency)
        sections += ["## Efficiency", "", plain_table(headers, rows), "",
                     "The last column is the authors' implementation of the same network measured on one "
                     "NVIDIA H200 (reference data, bench/peers.py); compare it with ours only on that GPU.", ""]
    if len(lb.failures):
        rows = [[r.model, r.track, failed_unit_task(r), str(r.error)[:300]] for r in lb.failures.itertuples()]
        sections += ["## Failures", "", plain_table(["model", "track", "task", "error"], rows), ""]
    sections.append("Scores: outputs clamped to [0, 1] and rounded like a saved image; PSNR/SSIM/MAE on RGB, "
                    "all channels, no border crop (conventions in every result row).")
    return "\n".join(sections) + "\n"


def failed_unit_task(failure) -> str:
    """The task cell of a failures row: 'A on B' for a mismatch unit (prompt of A on queries of B)."""
    prompt_task = getattr(failure, "prompt_task", "*")
    if failure.track == "mismatch" and prompt_task not in ("*", "", None):
        return f"{prompt_task} on {failure.task}"
    return failure.task


def _json_number(value) -> float | None:
    """A rounded float for metrics.json; None (JSON null) for NaN and inf, which strict JSON lacks."""
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def headline_numbers(lb: Leaderboards) -> dict:
    """A few numbers per model for ``dvc metrics show`` (strict JSON: null where a mean is not finite)."""
    out: dict = {}
    for r in lb.overall.itertuples():
        out.setdefault(r.model, {}).update(mean_rank=_json_number(r.mean_rank), tasks=int(r.tasks),
                                           failed_tasks=int(r.failed_tasks))
    for r in lb.model_category.itertuples():
        out.setdefault(r.model, {})[f"{r.metric}_{r.category}"] = _json_number(r.mean)
    # Table 4's spreads averaged per metric: dB and MAE do not average together.
    for (model, metric), group in lb.robustness.groupby(["model", "metric"]) if len(lb.robustness) else []:
        out.setdefault(model, {})[f"robustness_std_{metric}"] = _json_number(group["std"].mean())
    for r in lb.efficiency.to_dict("records"):
        for key in ("params", "latency_ms"):
            value = r.get(key, math.nan)
            if value == value:  # not NaN
                out.setdefault(r["model"], {})[key] = _json_number(value)
    return {"models": out}


def write_leaderboards(results_paths, out_dir: str | Path) -> Leaderboards:
    """Read result files/folders, write every table (parquet), leaderboard.md, leaderboard.tex and metrics.json."""
    from taskgen.atomic import atomic_path, atomic_write_json, atomic_write_text

    from .latex import to_latex

    lb = build_leaderboards(read_results(results_paths))
    for warning in lb.warnings:
        log.warning("%s", warning)
    out_dir = Path(out_dir)
    for name, table in lb.tables().items():
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            table.to_parquet(tmp, index=False)
    atomic_write_text(out_dir / "leaderboard.md", to_markdown(lb))
    atomic_write_text(out_dir / "leaderboard.tex", to_latex(lb))
    atomic_write_json(out_dir / "metrics.json", headline_numbers(lb))
    return lb
