"""Equal-budget comparison: train every model of a plan the same way, evaluate all, summarise.

    python scripts/equal_budget.py --plan cpu                       # results/equal-budget-cpu/
    python scripts/equal_budget.py --plan gpu --shards data/shards --device cuda
    python scripts/equal_budget.py --plan cpu --only genlv-tiny,vit-tiny --work /tmp/eb
    python scripts/equal_budget.py --plan gpu --summarise   # results gathered one model per lease
    python scripts/equal_budget.py --plan gpu-lease --only genlv-s --train-only   # train, evaluate later
    python scripts/equal_budget.py --plan cpu-3x --summarise --against out/equal-budget-cpu   # vs another budget

Plans live in scripts/equal_budget.yaml. For each model: ``llvbench train`` with the plan's
budget (a run that already finished is kept; an interrupted one resumes), then one
``llvbench eval`` of all checkpoints and the reference generalists on the same test queries,
``llvbench leaderboard`` into ``--out``, and ``--out``/README.md: what ran (device, commit,
commands, budget), each model's training figures, the leaderboard tables and the paper's
claims checked against these numbers. Re-running after a crash redoes only what is missing.
``--summarise`` only rebuilds the leaderboard and README from the work folder: for a plan too
long for one machine session, run it with ``--only`` one model at a time, keep (or bring back)
each model's summary.json and its eval results in the same work folder, then summarise. The
summarised README reports the data, device and commit the models' own files record (config.json,
summary.json, which equal_budget stamps with the training commit, and the eval run.json), listing
them per model where they differ; this checkout's commit appears only as "summarised at".
``--train-only`` stops after training, so a caller with a deadline can train models one at a time
under its own timeout; ``--finished-only`` then evaluates, in one go, those whose training finished.
``--against WORK`` adds to the README each model against its namesake in another work folder.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PLANS = REPO / "scripts" / "equal_budget.yaml"
RESTORATION_CLAIMS = (  # paper Table 1: (better, worse, what the paper says)
    ("genlv", "xrestormer", "VPIP beats the same backbone without prompt (GenLV vs X-Restormer)"),
    ("vit-vpip", "vit", "VPIP beats the same backbone without prompt (ViT-VPIP vs ViT)"),
    ("genlv", "vit-vpip", "the X-Restormer backbone beats ViT inside VPIP (GenLV vs ViT-VPIP)"),
    ("genlv", "promptir", "GenLV beats PromptIR retrained on the same setting"),
)
ALL_TASK_CLAIMS = (  # paper Tables 1-3: GenLV over the MAE-style generalists on every task
    ("genlv", "promptgip", "GenLV beats PromptGIP on (almost) every task"),
    ("genlv", "painter", "GenLV beats Painter on (almost) every task"),
    ("vit-vpip", "promptgip", "ViT-VPIP beats PromptGIP when all tasks are trained together"),
)


def shown(cmd: list[str]) -> str:
    """A command as a reader reruns it from the repository root (relative paths, ``python``)."""
    words = ["python" if c == sys.executable else c.replace(f"{REPO}/", "") for c in cmd]
    return " ".join(shlex.quote(w) for w in words)


def run(cmd: list[str], log: list[str]) -> None:
    """Run a command from the repository root, echoing it; a failure stops the script with its status."""
    line = shown(cmd)
    print(f"$ {line}", flush=True)
    log.append(line)
    result = subprocess.run(cmd, cwd=REPO)
    if result.returncode:
        sys.exit(f"equal_budget: command failed with status {result.returncode}: {line}")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def trained(model: dict, plan: dict, work: Path) -> bool:
    """Has ``model`` finished the plan's training in ``work``?"""
    summary = read_json(work / model["name"] / "summary.json")
    return summary.get("status") == "completed" and summary.get("step") == plan["train"]["steps"]


def settings_changed(model: dict, plan: dict, work: Path) -> list[str]:
    """The plan's training settings (and the model's arch and overrides) that the run already in
    ``work`` recorded otherwise in its config.json, as 'KEY RECORDED (plan: WANTED)'; [] when they
    agree or nothing ran yet. Keeping such a run, or resuming it, would mix two budgets."""
    recorded = read_json(work / model["name"] / "config.json").get("train") or {}
    wanted = {**plan["train"], "arch": model["arch"], "overrides": model.get("overrides") or {}}
    return [f"{key} {recorded[key]!r} (plan: {value!r})" for key, value in wanted.items()
            if key in recorded and recorded[key] != value]


def stamp_commit(summary_path: Path) -> None:
    """Record the commit that trained a model in its summary.json (which travels with the results),
    so that a later --summarise, maybe on another machine, reports it rather than its own HEAD."""
    from taskgen.atomic import atomic_write_json

    summary = read_json(summary_path)
    commit = git_commit()
    if summary and not commit.startswith("unknown"):
        summary["equal_budget"] = {"commit": commit}
        atomic_write_json(summary_path, summary)


def train_command(model: dict, plan: dict, work: Path, shards: str, device: str | None) -> list[str]:
    out = work / model["name"]
    cmd = [sys.executable, "-m", "pipelines.cli", "train", "--params", str(work / "params.yaml"),
           "--arch", model["arch"], "--shards", shards, "--out", str(out), "--name", model["name"],
           "--metrics", str(out / "metrics.csv"), "--summary", str(out / "summary.json"), "--no-progress"]
    for key, value in (model.get("overrides") or {}).items():
        cmd += ["--override", f"{key}={json.dumps(value)}"]
    if device:
        cmd += ["--device", device]
    if (out / "state").exists():
        cmd.append("--resume")
    return cmd


def family(name: str) -> str:
    """A model name of the plan -> its family for the claims ("genlv-tiny" -> "genlv")."""
    for prefix in ("vit-vpip", "vit", "genlv", "xrestormer", "promptgip", "painter", "promptir"):
        if name.startswith(prefix):
            return prefix
    return name


def claims_table(leaderboard: Path, results=None) -> list[str]:
    """The paper's comparative claims, checked on the per-task means of this run; with ``results``
    (the per-image rows behind the leaderboard) also the tasks each side wins beyond noise (paired
    95 % interval of the per-query margins, bench.leaderboard.query_margins). A task one model
    failed (its unit failed, e.g. outputs out of range) counts as lost by that model, as in the
    leaderboard's mean rank; it has no margin, so it is left out of the mean Δ and the paired counts."""
    import pandas as pd

    from bench.leaderboard import VERDICTS, query_margins

    table = pd.read_parquet(leaderboard / "model_task.parquet")
    headline = table[table["metric"].isin(["psnr", "mae"]) & table["status"].isin(["ok", "failed"])]
    headline = headline[~((headline["category"] == "edge") & (headline["metric"] == "psnr"))]
    families = {family(m): m for m in headline["model"].unique()}
    paired = results is not None
    lines = ["| claim (paper) | tasks | better here | mean Δ | holds here |"
             + (" better / within noise / worse (paired 95 %) |" if paired else ""),
             "|---|---|---|---|---|" + ("---|" if paired else "")]
    for claims, categories in ((RESTORATION_CLAIMS, {"restoration"}), (ALL_TASK_CLAIMS, None)):
        for better, worse, text in claims:
            if better not in families or worse not in families:
                continue
            a = headline[headline["model"] == families[better]].set_index("task")
            b = headline[headline["model"] == families[worse]].set_index("task")
            tasks = a.index.intersection(b.index)
            if categories:
                tasks = [t for t in tasks if a.loc[t, "category"] in categories]
            if not len(tasks):
                continue
            a_failed, b_failed = a.loc[tasks, "status"] == "failed", b.loc[tasks, "status"] == "failed"
            tasks = [t for t in tasks if not (a_failed[t] and b_failed[t])]  # nothing to compare
            if not len(tasks):
                continue
            scored = [t for t in tasks if not (a_failed[t] or b_failed[t])]
            sign = a.loc[scored, "higher_is_better"].map({True: 1.0, False: -1.0})
            diff = (a.loc[scored, "mean"] - b.loc[scored, "mean"]) * sign
            psnr_tasks = [t for t in scored if a.loc[t, "metric"] == "psnr"]
            wins = int((diff > 0).sum()) + int(b_failed[tasks].sum())
            delta = diff.loc[psnr_tasks].mean() if psnr_tasks else float("nan")
            verdict = "yes" if wins > len(tasks) / 2 and (delta > 0 or delta != delta) else "no"
            failed = int(a_failed[tasks].sum() + b_failed[tasks].sum())
            line = (f"| {text} | {len(tasks)}" + (f" ({failed} failed)" if failed else "")
                    + f" | {wins}/{len(tasks)} | {delta:+.2f} dB (PSNR tasks) | {verdict} |")
            if paired:
                margins = query_margins(results, families[better], families[worse])
                found = margins.loc[margins["task"].isin(list(tasks)), "verdict"]
                line += " " + " / ".join(str(int((found == v).sum())) for v in VERDICTS) + " |"
            lines.append(line)
    return lines


def budget_text(train: dict) -> str:
    """'600 steps × batch 8 = 4,800 samples at 64 px' from a plan's ``train`` settings."""
    return (f"{train['steps']} steps × batch {train['batch']} = {train['steps'] * train['batch']:,} samples "
            f"at {train['size']} px")


def budget_label(work: Path) -> str:
    """``budget_text`` of the budget a work folder trained with (its params.yaml)."""
    try:
        return budget_text((yaml.safe_load((work / "params.yaml").read_text()) or {}).get("train") or {})
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return "budget not recorded"


def against_table(models: list[dict], results, other: Path, other_results) -> list[str]:
    """Each model of this run against the model of the same name in another work folder (the same
    plan at another budget, say), query by query on the main track's headline metric: the tasks
    this run wins on the per-task means, the mean PSNR change, and the tasks better / within noise /
    worse by the paired 95 % interval (bench.leaderboard.query_margins). Runs whose results name
    other data manifests get a caution line: the pairs assume the same query images."""
    import pandas as pd

    from bench.leaderboard import VERDICTS, headline_metrics, query_margins

    def manifests(frame):
        return set(frame.loc[frame["track"] == "main", "data_manifest_sha256"].dropna().unique())

    here_data, there_data = manifests(results), manifests(other_results)
    caution = []
    if here_data != there_data:
        # A manifest also records the recipes' code fingerprint, so a code edit alone changes it:
        # say so rather than refuse, and leave the shard check to the reader.
        caution = [f"**Caution:** the two runs scored data of other manifests "
                   f"({', '.join(sorted(m[:8] for m in there_data)) or 'none'} there, "
                   f"{', '.join(sorted(m[:8] for m in here_data)) or 'none'} here). A manifest also records "
                   "the code that made the shards, so a code change alone changes it; the pairs below mean "
                   "something only if both manifests list the same shard sha256s.", ""]
    headline = headline_metrics(results)
    lines = [f"Against `{shown([str(other)])}` ({budget_label(other)}): each model of this run minus the same",
             "model there, on the queries and prompts both scored. 'better here' counts the tasks whose mean",
             "this run wins; the last column the tasks better / within noise / worse by the paired 95 % interval.",
             "",
             *caution,
             "| model | tasks | better here | mean Δ (PSNR tasks) | better / within noise / worse (paired 95 %) |",
             "|---|---|---|---|---|"]
    def checkpoints(frame) -> int:
        return frame.loc[frame["track"] != "load", "checkpoint_sha256"].nunique()

    compared, skipped = 0, []
    for model in models:
        name = model["name"]
        here, there = results[results["model"] == name], other_results[other_results["model"] == name]
        if there.empty or here.empty:  # a model of one run only: nothing to compare
            continue
        several = [side for side, frame in (("here", here), ("there", there)) if checkpoints(frame) > 1]
        if several:
            # The leaderboard would tell them apart as name@sha; which one is "the" model is not ours to pick.
            skipped.append(f"{name} ({' and '.join(several)}: results of several checkpoints under this name; "
                           "evaluate the one to compare into a fresh eval folder)")
            continue
        tag = f"{name} ({other.name})"
        # Paired by sample key across manifests on purpose: the caution line above says when they differ.
        both = pd.concat([here, there.assign(model=tag)], ignore_index=True).assign(data_manifest_sha256="")
        try:
            margins = query_margins(both, name, tag)
        except ValueError:  # no main-track result on one side (every unit failed)
            skipped.append(f"{name} (no main-track result on one side: its units failed)")
            continue
        if margins.empty:
            skipped.append(f"{name} (no query scored by both runs)")
            continue
        psnr = margins[margins["task"].map(headline) == "psnr"]
        delta = f"{psnr['mean'].mean():+.2f} dB" if len(psnr) else "–"
        counts = " / ".join(str(int((margins["verdict"] == v).sum())) for v in VERDICTS)
        lines.append(f"| {name} | {len(margins)} | {int((margins['mean'] > 0).sum())}/{len(margins)} | {delta} | {counts} |")
        compared += 1
    for reason in skipped:
        print(f"--against {other}: not compared: {reason}", file=sys.stderr)
    not_compared = [f"Not compared: {'; '.join(skipped)}."] if skipped else []
    if not compared:
        return not_compared or [f"Not compared: `{shown([str(other)])}` has no main-track results for this run's models."]
    return lines + ([""] + not_compared if not_compared else [])


def steady_rate(metrics_csv: Path) -> float:
    """Median samples/s of the logged windows after the first (start-up and autotuning left out)."""
    try:
        with open(metrics_csv, newline="") as fh:
            rates = [float(row["samples_per_s"]) for row in csv.DictReader(fh)][1:]
    except (OSError, KeyError, ValueError):
        return float("nan")
    return statistics.median(rates) if rates else float("nan")


def draw_figures(plan: dict, models: list[dict], work: Path, out: Path) -> list[str]:
    """Category means and training curves as PNGs in ``out``; the README lines that show them."""
    import pandas as pd

    from bench import figures

    lines = []
    everyone = [*plan.get("references", []), *(m["name"] for m in models)]
    colors = figures.model_colors(everyone)  # one colour per model in both charts
    board = out / "model_category.parquet"
    if board.exists():
        frame = pd.read_parquet(board)
        order = [m for m in everyone if m in set(frame["model"])]
        figures.category_bars(frame, order, out / "category_means", formats=("png",), colors=colors)
        lines += ["![Mean headline metric per category and model](category_means.png)", ""]
    curves = {m["name"]: pd.read_csv(work / m["name"] / "metrics.csv") for m in models
              if (work / m["name"] / "metrics.csv").is_file()}
    if curves:
        figures.training_curves(curves, out / "training_curves", formats=("png",), colors=colors)
        lines += ["![Training loss and learning rate per model](training_curves.png)", "",
                  "Each model's loss is its authors' objective, so the curves' levels are not comparable "
                  "across families; their shapes are.", ""]
    return lines


def device_label(device: str | None) -> str:
    import torch

    if (device or "").startswith("cuda") or (device in (None, "auto") and torch.cuda.is_available()):
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}"


def recorded(models: list[dict], work: Path) -> dict[str, dict]:
    """Per model, what its own files say about how it was made: the shards and requested device of its
    config.json, the device its summary.json names, the commit equal_budget stamped into summary.json
    when it trained it, and the device and llvbench version of its eval run.json."""
    records = {}
    for model in models:
        name = model["name"]
        train = read_json(work / name / "config.json").get("train") or {}
        summary = read_json(work / name / "summary.json")
        evaluated = read_json(work / "eval" / name / "run.json").get("provenance") or {}
        version = evaluated.get("llvbench_version")
        records[name] = {"shards": train.get("shards"), "requested": train.get("device"),
                         "device": summary.get("device"),
                         "commit": (summary.get("equal_budget") or {}).get("commit"),
                         "eval_device": evaluated.get("device"),
                         "version": version if version and "unknown" not in version else None}
    return records


def agreed(records: dict[str, dict], key: str, fmt=str) -> str | None:
    """One value of ``key`` when every model that records it agrees; else each value with its models
    ("a (m1, m2); b (m3)"); None when none records it."""
    groups: dict[str, list[str]] = {}
    for name, record in records.items():
        if record.get(key) not in (None, ""):
            groups.setdefault(fmt(record[key]), []).append(name)
    missing = [name for name, record in records.items() if record.get(key) in (None, "")]
    if not groups:
        return None
    if len(groups) == 1 and not missing:
        return next(iter(groups))
    if missing:
        groups["not recorded"] = missing
    return "; ".join(f"{value} ({', '.join(names)})" for value, names in groups.items())


def rerun_lines(args, models: list[dict], plan_models: list[dict], records: dict[str, dict] | None) -> list[str]:
    """The command(s) that rerun this comparison: one per set of models that shared shards and device
    (from the records when summarising; else this run's options)."""
    def command(shards, device, names):
        subset = len(names) < len(plan_models)
        return (f"python scripts/equal_budget.py --plan {args.plan}"
                + (f" --plans {shown([args.plans])}" if Path(args.plans).resolve() != PLANS else "")
                + (f" --only {','.join(names)}" if subset else "")
                + (f" --shards {shown([shards])}" if shards != "data/shards" else "")
                + (f" --device {device}" if device else "")
                + (f" --steps {args.steps}" if args.steps is not None else "")
                + (f" --size {args.size}" if args.size is not None else ""))

    if records is None:
        return [command(args.shards, args.device, [m["name"] for m in models])]
    groups: dict[tuple, list[str]] = {}
    for model in models:
        record = records[model["name"]]
        device = record["requested"] if record["requested"] not in (None, "", "auto") else None
        groups.setdefault((record["shards"] or args.shards, device), []).append(model["name"])
    return [command(shards, device, names) for (shards, device), names in groups.items()]


def provenance_lines(args, plan: dict, models: list[dict], work: Path, out: Path) -> list[str]:
    """The README's Data, Device, Commit and Rerun lines. A live run reports its own options, this
    machine and HEAD; ``--summarise`` reports what the models' own files record (they may have been
    trained elsewhere, at another commit), HEAD only as the commit the summary was made at."""
    queries = (f"train split for training, test split for evaluation: {plan['eval'].get('limit') or 'all'} "
               f"queries per task, tracks {', '.join(plan['eval']['tracks'])}")
    if not getattr(args, "summarise", False):
        reruns = rerun_lines(args, models, plan["models"], None)
        return [f"- **Data:** `{args.shards}` ({queries}).",
                f"- **Device:** {device_label(args.device)}.",
                f"- **Commit:** {git_commit(out)}.",
                f"- **Rerun:** `{reruns[0]}`"]
    records = recorded(models, work)
    shards = agreed(records, "shards", lambda v: f"`{v}`")
    trained = agreed(records, "device")
    requested = agreed(records, "requested", lambda v: f"`--device {v}`")
    evaluated = agreed(records, "eval_device")
    commit = agreed(records, "commit")
    version = agreed(records, "version")
    device = ("training on " + (trained or "a device not recorded")
              + (f" ({requested})" if requested else "")
              + (f", evaluation on {evaluated}" if evaluated else "")
              + " (from the models' summary.json, config.json and eval run.json)")
    made = (f"trained at {commit} (summary.json)" if commit else
            "not recorded by the models (their summary.json, config.json and eval run.json name no commit"
            + (f"; llvbench {version}" if version else "") + ")")
    reruns = rerun_lines(args, models, plan["models"], records)
    if shards is None:
        shards = f"`{args.shards}` (--shards: the models' config.json record no shards)"
    return [f"- **Data:** {shards} ({queries}).",
            f"- **Device:** {device}.",
            f"- **Commit:** {made}; summarised at {git_commit(out)}.",
            "- **Rerun:** " + ("; ".join(f"`{line}`" for line in reruns)
                               + (" (the models were trained with different data or devices)" if len(reruns) > 1
                                  else ""))]


def git_commit(out: Path | None = None) -> str:
    """HEAD's short hash, marked when tracked files differ from it (the output folder itself aside:
    this run has just rewritten its tables there). A copy of the tree without git (the device
    machine's) has no HEAD: there the caller can name it in LLVBENCH_COMMIT, else "unknown"."""
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    except OSError:  # no git program
        result = None
    if result is None or result.returncode != 0 or not result.stdout.strip():
        return os.environ.get("LLVBENCH_COMMIT", "").strip() or "unknown"
    spec = ["--", "."]
    if out is not None and Path(out).resolve().is_relative_to(REPO):
        spec.append(f":(exclude){Path(out).resolve().relative_to(REPO)}")
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", *spec], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return (result.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty else "")


def write_summary(args, plan: dict, models: list[dict], work: Path, out: Path, commands: list[str]) -> Path:
    from bench.results import read_results
    from taskgen.atomic import atomic_write_text

    rows = ["| model | arch | overrides | parameters | train s | first step done at s | samples/s (whole run) "
            "| samples/s (steady) | first → last-10 loss |",
            "|---|---|---|---|---|---|---|---|---|"]
    for model in models:
        summary = read_json(work / model["name"] / "summary.json")
        rows.append(f"| {model['name']} | `{model['arch']}` | `{json.dumps(model.get('overrides') or {})}` | "
                    f"{summary.get('params', 0):,} | {summary.get('elapsed', float('nan')):.0f} | "
                    f"{summary.get('startup_s', {}).get('first_step_s', float('nan')):.1f} | "
                    f"{summary.get('samples_per_s', float('nan')):.1f} | "
                    f"{steady_rate(work / model['name'] / 'metrics.csv'):.1f} | "
                    f"{summary.get('first_loss', float('nan')):.3f} → {summary.get('mean_loss_last_10', float('nan')):.3f} |")
    notes = Path(args.notes).read_text().strip() if getattr(args, "notes", None) else ""
    results = read_results([work / "eval"])
    budget = plan["train"]
    text = "\n".join([
        f"# Equal-budget comparison: plan `{args.plan}`",
        "",
        " ".join(plan.get("description", "").split()),
        "",
        f"- **Budget (the same for every model):** {budget_text(budget)}, lr {budget['lr']} with "
        f"{budget.get('warmup', 0)} warm-up steps then cosine, seed {budget.get('seed', 0)}; each model "
        "with its authors' loss (model/objectives.py).",
        *provenance_lines(args, plan, models, work, out),
        "",
        *(["## Notes", "", notes, ""] if notes else []),
        "## Training",
        "",
        "Samples/s over the whole run include the process's start-up and the first steps' autotuning;",
        "the steady rate is the median of the logged windows after the first. 'First step done at' counts",
        "from the start of training (summary.json's startup_s; runs before it was recorded show nan).",
        "",
        *rows,
        "",
        *draw_figures(plan, models, work, out),
        "## The paper's claims on these numbers",
        "",
        "Per-task means of the headline metric (PSNR, MAE for edges); 'better here' counts the tasks",
        "where the first model wins; a claim holds when it wins on most tasks with a positive mean PSNR gap.",
        "The last column counts the tasks where the first model is better, within noise, or worse by the",
        "95 % Student-t interval of its mean per-query margin over the second (same queries and prompts).",
        "",
        *claims_table(out, results),
        "",
        *(["## Against another run", "", *against_table(models, results, Path(args.against),
                                                       read_results([Path(args.against) / "eval"])), ""]
          if getattr(args, "against", None) else []),
        "## Leaderboard",
        "",
        (out / "leaderboard.md").read_text().split("\n", 1)[1].strip(),
        "",
        "## Commands",
        "",
        "```",
        *commands,
        "```",
        "",
    ])
    path = out / "README.md"
    atomic_write_text(path, text)
    return path


def write_budget(plan: dict, work: Path) -> None:
    """The budget as a params file of its own (neither params.yaml nor its profile leaks into it): what
    training reads and what the README states."""
    from taskgen.atomic import atomic_write_text

    atomic_write_text(work / "params.yaml", yaml.safe_dump({"train": plan["train"]}, sort_keys=True))


def summarise(args, plan: dict, models: list[dict], work: Path, out: Path) -> int:
    """Leaderboard and README from the work folder alone (results gathered over several runs)."""
    missing = [m["name"] for m in models
               if read_json(work / m["name"] / "summary.json").get("status") != "completed"]
    if missing or not (work / "eval").is_dir():
        sys.exit(f"equal_budget --summarise: {work} lacks "
                 + (f"a completed training summary for {', '.join(missing)}" if missing else "the eval results")
                 + "; train and evaluate those first (or name the others with --only)")
    # The README states one budget for every model: each must have trained with exactly it.
    steps = plan["train"]["steps"]
    other = {m["name"]: settings_changed(m, plan, work) for m in models}
    for m in models:
        step = read_json(work / m["name"] / "summary.json").get("step")
        if step != steps:
            other[m["name"]] = [f"step {step!r} (plan: {steps!r})"] + other[m["name"]]
    other = {name: changes for name, changes in other.items() if changes}
    if other:
        sys.exit("equal_budget --summarise: not the plan's budget: "
                 + "; ".join(f"{work / name} trained with {', '.join(changes)}" for name, changes in other.items())
                 + ". Summarise them with the plan (or --steps/--size) they trained with, or leave them out "
                 "with --only.")
    write_budget(plan, work)
    commands: list[str] = []
    run([sys.executable, "-m", "pipelines.cli", "leaderboard", str(work / "eval"), "--out", str(out), "--quiet"],
        commands)
    print(f"wrote {write_summary(args, plan, models, work, out, commands)}")
    return 0


def read_plans(parser: argparse.ArgumentParser, path: str) -> dict:
    """The ``plans`` mapping of a plans file; a missing, unreadable or malformed file is a parser error."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        parser.error(f"--plans {path}: cannot read it ({err.strerror or err})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        parser.error(f"--plans {path}: not valid YAML ({' '.join(str(err).split())})")
    plans = data.get("plans") if isinstance(data, dict) else None
    if not isinstance(plans, dict) or not all(isinstance(p, dict) and {"train", "eval", "models"} <= set(p)
                                              for p in plans.values()):
        parser.error(f"--plans {path}: expected a 'plans' mapping of plans, each with train, eval and models "
                     "(see scripts/equal_budget.yaml)")
    return plans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, help="a plan of scripts/equal_budget.yaml (cpu, gpu)")
    parser.add_argument("--plans", default=str(PLANS), help="the plans file")
    parser.add_argument("--shards", default="data/shards")
    parser.add_argument("--work", help="checkpoints and raw results (default: out/equal-budget-PLAN, git-ignored)")
    parser.add_argument("--out", help="leaderboard and README (default: results/equal-budget-PLAN)")
    parser.add_argument("--only", help="comma list of model names of the plan")
    parser.add_argument("--device", help="training and evaluation device (default: auto)")
    parser.add_argument("--steps", type=int, help="override the plan's steps (quick checks)")
    parser.add_argument("--size", type=int, help="override the plan's crop size (quick checks on small shards)")
    parser.add_argument("--summarise", action="store_true",
                        help="no training and no evaluation: build the leaderboard and README from what --work "
                             "already holds (each model's summary.json and the eval results), e.g. gathered "
                             "one model per device lease")
    parser.add_argument("--notes", help="a Markdown file included in the README as its Notes section "
                                            "(how a run spread over device leases was made)")
    parser.add_argument("--against", metavar="WORK",
                        help="another work folder of models of the same names (the same plan at another budget, "
                             "say): the README compares each model with its namesake there, query by query")
    parser.add_argument("--train-only", action="store_true",
                        help="train (or keep) the models, then stop: no evaluation, leaderboard or README")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: evaluate and summarise only the selected models whose training "
                             "finished (after --train-only runs that a deadline may have cut)")
    args = parser.parse_args(argv)
    if sum((args.train_only, args.summarise, args.finished_only)) > 1:
        parser.error("--train-only, --finished-only and --summarise exclude each other")
    if args.notes and not Path(args.notes).is_file():
        parser.error(f"--notes {args.notes}: no such file")
    if args.against and not (Path(args.against) / "eval").is_dir():
        parser.error(f"--against {args.against}: no eval/ folder there (a work folder of scripts/equal_budget.py)")

    for option, value in (("--steps", args.steps), ("--size", args.size)):
        if value is not None and value < 1:
            parser.error(f"{option} must be >= 1, got {value} (leave it out for the plan's)")
    plans = read_plans(parser, args.plans)
    if args.plan not in plans:
        parser.error(f"unknown plan {args.plan!r}; plans: {', '.join(plans)}")
    plan = plans[args.plan]
    if args.steps is not None:
        plan["train"] = {**plan["train"], "steps": args.steps, "ckpt_every": args.steps}
    if args.size is not None:
        plan["train"] = {**plan["train"], "size": args.size}
    models = plan["models"]
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {m["name"] for m in models})
        if unknown:
            parser.error(f"--only names models the plan lacks: {', '.join(unknown)}")
        models = [m for m in models if m["name"] in wanted]
    work = Path(args.work or REPO / "out" / f"equal-budget-{args.plan}")
    out = Path(args.out or REPO / "results" / f"equal-budget-{args.plan}")
    work.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        return summarise(args, plan, models, work, out)
    write_budget(plan, work)
    if args.finished_only:
        unfinished = [m["name"] for m in models if not trained(m, plan, work)]
        models = [m for m in models if trained(m, plan, work)]
        if unfinished:
            print(f"not evaluated, training unfinished: {', '.join(unfinished)}", flush=True)
        if not models:
            sys.exit(f"equal_budget --finished-only: no selected model finished training in {work}")

    stale = {m["name"]: settings_changed(m, plan, work) for m in models}
    stale = {name: changes for name, changes in stale.items() if changes}
    if stale:
        sys.exit("equal_budget: " + "; ".join(f"{work / name} was trained with {', '.join(changes)}"
                                              for name, changes in stale.items())
                 + ". Use another --work, or remove those folders to train them again.")
    commands: list[str] = []
    for model in models:
        if trained(model, plan, work):
            print(f"{model['name']}: already trained ({plan['train']['steps']} steps), kept", flush=True)
            commands.append(shown([c for c in train_command(model, plan, work, args.shards, args.device)
                                   if c != "--resume"]))
            continue
        run(train_command(model, plan, work, args.shards, args.device), commands)
        stamp_commit(work / model["name"] / "summary.json")
    if args.train_only:
        return 0

    eval_cfg = plan["eval"]
    cmd = [sys.executable, "-m", "pipelines.cli", "eval", "--shards", args.shards, "--out", str(work / "eval"),
           "--tracks", ",".join(eval_cfg["tracks"]), "--batch-size", str(eval_cfg.get("batch_size", 8)),
           "--save-samples", "0"]
    if eval_cfg.get("limit"):
        cmd += ["--limit", str(eval_cfg["limit"])]
    if args.device:
        cmd += ["--device", args.device]
    for reference in plan.get("references", []):
        cmd += ["--model", reference]
    for model in models:
        cmd += ["--model", str(work / model["name"])]
    run(cmd, commands)
    run([sys.executable, "-m", "pipelines.cli", "leaderboard", str(work / "eval"), "--out", str(out), "--quiet"],
        commands)
    print(f"wrote {write_summary(args, plan, models, work, out, commands)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
