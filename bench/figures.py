"""The report's charts: one function per chart, tidy pandas frames in, PNG/SVG files out.

matplotlib is imported inside the functions and used through ``Figure`` with an Agg canvas, never
``pyplot``: no global backend switch, no figure registry to leak, safe in any process. Files are
written atomically and without timestamps (SVG ids salted with a fixed string), so the same data
gives the same bytes and DVC sees no spurious change.
"""
from __future__ import annotations

import math
from pathlib import Path

from .leaderboard import category_columns

FORMATS = ("png", "svg")
# What save_figure can write without an outside program (pgf needs LaTeX; raw/rgba are not files
# anyone opens); checked before a report writes anything, so a typo never leaves half a figures/.
WRITABLE_FORMATS = ("png", "svg", "pdf", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp", "svgz")
DPI = 100
# Drop the fields that change between runs or versions without the picture changing.
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}, "pdf": {"CreationDate": None}}
_CATEGORY_ORDER = ("restoration", "enhancement", "stylization", "edge")


def check_formats(formats, option: str = "--formats") -> tuple[str, ...]:
    """Figure format names -> lowercase, duplicates dropped; a ValueError naming ``option`` for an
    empty list or a format save_figure cannot write."""
    cleaned = tuple(dict.fromkeys(str(f).strip().lower().lstrip(".") for f in formats if str(f).strip()))
    if not cleaned:
        raise ValueError(f"{option} needs at least one figure format (e.g. png,svg)")
    unknown = [f for f in cleaned if f not in WRITABLE_FORMATS]
    if unknown:
        raise ValueError(f"{option}: unknown figure format(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(WRITABLE_FORMATS)}")
    return cleaned


def count_noun(n: int, noun: str) -> str:
    """'1 task', '2 tasks' (regular plurals only)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def new_figure(width: float, height: float):
    """A matplotlib Figure (inches) on its own Agg canvas, with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, stem: str | Path, formats=FORMATS) -> dict[str, Path]:
    """Write ``fig`` as ``stem.{fmt}`` for each format, atomically; returns {format: path}."""
    import matplotlib

    from taskgen.atomic import atomic_path

    paths = {}
    with matplotlib.rc_context({"svg.hashsalt": "llvbench"}):
        for fmt in formats:
            path = Path(stem).with_suffix(f".{fmt}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, metadata=_METADATA.get(fmt))
            paths[fmt] = path
    return paths


def model_colors(models) -> dict[str, tuple]:
    """A fixed colour per model (tab10, in the given order), shared by every chart."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def _metric_label(metric: str) -> str:
    return {"psnr": "PSNR (dB) ↑", "mae": "MAE ↓", "ssim": "SSIM ↑"}.get(metric, metric)


def _offsets(n: int, width: float = 0.8) -> tuple[list[float], float]:
    """x offsets of n grouped bars/boxes around a tick, and the width of each."""
    w = width / max(n, 1)
    return [(j - (n - 1) / 2) * w for j in range(n)], w


def _legend(fig, models, colors) -> None:
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=colors[m], label=m) for m in models], loc="outside lower center",
               ncols=min(len(models), 5), frameon=False)


def category_bars(model_category, models: list[str], stem, formats=FORMATS, colors=None) -> dict[str, Path]:
    """Mean headline metric per category, one panel per category, one bar per model.

    ``model_category``: columns model, category, metric, mean, tasks (bench.leaderboard); a NaN mean
    (a task of the category failed) gets an empty slot labelled "failed".
    """
    colors = colors or model_colors(models)
    columns = category_columns(model_category, _CATEGORY_ORDER)
    fig = new_figure(max(3.0 * len(columns), 5.0), 3.4)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, (key, category, metric) in zip(axes, columns):
        part = model_category[(model_category["category"] == category)
                              & (model_category["metric"] == metric)].set_index("model")
        shown = [m for m in models if m in part.index]
        values = [float(part.loc[m, "mean"]) for m in shown]
        bars = ax.bar(range(len(shown)), [v if math.isfinite(v) else 0.0 for v in values],
                      color=[colors[m] for m in shown])
        fmt = "{:.2f}" if metric == "psnr" else "{:.3f}"
        ax.bar_label(bars, labels=[fmt.format(v) if math.isfinite(v) else "failed" for v in values], fontsize=8)
        ax.set_xticks(range(len(shown)), shown, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{key} ({count_noun(int(part['tasks'].max()), 'task')})", fontsize=10)
        ax.set_ylabel(_metric_label(metric))
        ax.margins(y=0.15)
    return save_figure(fig, stem, formats)


def task_distributions(rows, models: list[str], tasks_by_category: dict, stem, formats=FORMATS, colors=None,
                       labels: dict | None = None, metric: str = "psnr") -> dict[str, Path]:
    """Per-image metric distributions: a box per (task, model), one panel row per category.

    ``rows``: per-image rows with columns model, task, value (one metric).
    """
    colors = colors or model_colors(models)
    labels = labels or {}
    categories = [c for c in tasks_by_category if tasks_by_category[c]]
    widest = max(len(tasks_by_category[c]) for c in categories)
    fig = new_figure(max(6.0, 0.55 * widest * max(len(models), 2) ** 0.5 + 2.0), 2.6 * len(categories) + 0.6)
    axes = fig.subplots(len(categories), 1, squeeze=False)[:, 0]
    groups = {key: g["value"].dropna().to_numpy() for key, g in rows.groupby(["model", "task"])}
    offsets, width = _offsets(len(models))
    for ax, category in zip(axes, categories):
        tasks = tasks_by_category[category]
        for j, model in enumerate(models):
            data = [(i + offsets[j], groups[(model, t)]) for i, t in enumerate(tasks)
                    if (model, t) in groups and len(groups[(model, t)])]
            if not data:
                continue
            box = ax.boxplot([d for _, d in data], positions=[x for x, _ in data], widths=width * 0.85,
                             patch_artist=True, manage_ticks=False, flierprops={"markersize": 3})
            for patch in box["boxes"]:
                patch.set(facecolor=colors[model], alpha=0.75)
            for median in box["medians"]:
                median.set(color="black")
        ax.set_xticks(range(len(tasks)), [labels.get(t, t) for t in tasks], rotation=30 if len(tasks) > 6 else 0,
                      ha="right" if len(tasks) > 6 else "center", fontsize=8)
        ax.set_xlim(-0.6, len(tasks) - 0.4)
        ax.set_ylabel(_metric_label(metric))
        ax.set_title(category, fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, models, colors)
    return save_figure(fig, stem, formats)


def efficiency_scatter(points, stem, formats=FORMATS, colors=None) -> dict[str, Path]:
    """Parameters and latency against mean PSNR, one point per model.

    ``points``: columns model, params, latency_ms, psnr (NaN where unknown).
    """
    models = list(points["model"])
    colors = colors or model_colors(models)
    fig = new_figure(9.0, 3.6)
    axes = fig.subplots(1, 2)
    for ax, column, label in ((axes[0], "params", "parameters"), (axes[1], "latency_ms", "latency (ms / image)")):
        part = points[[column, "psnr", "model"]].dropna()
        for r in part.itertuples():
            x = getattr(r, column)
            ax.scatter([x], [r.psnr], color=colors[r.model], s=40, zorder=3)
            ax.annotate(r.model, (x, r.psnr), textcoords="offset points", xytext=(5, 4), fontsize=8)
        _spread_scale(ax, part[column].to_numpy(dtype=float))
        ax.set_xlabel(label)
        ax.set_ylabel("mean PSNR (dB) ↑")
        ax.grid(alpha=0.3)
        ax.margins(x=0.25, y=0.2)
    return save_figure(fig, stem, formats)


def _spread_scale(ax, xs) -> None:
    """A log x axis when the values span a decade or more; symlog when zeros (identity-like
    baselines have no parameters) sit among them; else linear."""
    positive = xs[xs > 0]
    if len(positive) < 2 or positive.max() < 10 * positive.min():
        return
    if len(positive) == len(xs):
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=float(positive.min()))


def robustness_bars(robustness, models: list[str], tasks: list[str], stem, formats=FORMATS, colors=None,
                    labels: dict | None = None) -> dict[str, Path]:
    """Standard deviation of the task mean across K prompts (paper Table 4), grouped per task.

    ``robustness``: columns model, task, metric, std (bench.leaderboard). One panel per metric.
    """
    colors = colors or model_colors(models)
    labels = labels or {}
    metrics = sorted(set(robustness["metric"]), key=lambda m: (m != "psnr", m))
    fig = new_figure(max(6.0, 0.5 * len(tasks) * max(len(models), 2) ** 0.5 + 2.0), 2.8 * len(metrics) + 0.6)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    offsets, width = _offsets(len(models))
    for ax, metric in zip(axes, metrics):
        part = robustness[robustness["metric"] == metric].set_index(["model", "task"])["std"]
        shown = [t for t in tasks if any((m, t) in part.index for m in models)]
        for j, model in enumerate(models):
            xs = [i + offsets[j] for i, t in enumerate(shown) if (model, t) in part.index]
            ys = [float(part[(model, t)]) for t in shown if (model, t) in part.index]
            ax.bar(xs, ys, width=width * 0.9, color=colors[model])
        ax.set_xlim(-0.6, len(shown) - 0.4)
        ax.set_xticks(range(len(shown)), [labels.get(t, t) for t in shown], rotation=30 if len(shown) > 6 else 0,
                      ha="right" if len(shown) > 6 else "center", fontsize=8)
        ax.set_ylabel(f"std of task mean, {_metric_label(metric).rstrip(' ↑↓')}")
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, models, colors)
    return save_figure(fig, stem, formats)


def training_curves(curves: dict, stem, formats=FORMATS, colors=None) -> dict[str, Path]:
    """Training loss (and learning rate, when logged) against step, one line per run.

    ``curves``: {run name: DataFrame with columns step, loss[, lr]} (model.train's metrics.csv).
    """
    with_lr = any("lr" in df.columns and df["lr"].notna().any() for df in curves.values())
    fig = new_figure(10.0 if with_lr else 6.0, 3.6)
    axes = fig.subplots(1, 2 if with_lr else 1, squeeze=False)[0]
    palette = model_colors(list(curves))  # for runs the report's models do not name
    colors = {name: (colors or {}).get(name, palette[name]) for name in curves}
    positive = True
    for name, df in curves.items():
        axes[0].plot(df["step"], df["loss"], color=colors[name], label=name, linewidth=1.2)
        positive &= bool((df["loss"].dropna() > 0).all())
        if with_lr and "lr" in df.columns:
            axes[1].plot(df["step"], df["lr"], color=colors[name], label=name, linewidth=1.2)
    if positive:
        axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss")
    axes[0].legend(fontsize=8, frameon=False)
    axes[0].grid(alpha=0.3)
    if with_lr:
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("learning rate")
        axes[1].grid(alpha=0.3)
    return save_figure(fig, stem, formats)



def comparison_grid(rows: list, columns: list[str], stem, formats=("png",), tile_inches: float = 1.35,
                    title: str = "") -> dict[str, Path]:
    """A paper-style figure of images (as the paper's Figure 5): one row per task, one column per role.

    ``rows``: [(row label, [(uint8 RGB H×W×3 image or None, caption under it), ...]), ...] with one
    cell per column; ``columns``: the column titles (prompt input, prompt target, query, models...,
    ground truth). A cell without an image shows its caption alone (a failed or missing output).
    Written as PNG by default: a vector format would only wrap the same pixels.
    """
    fig = new_figure(tile_inches * len(columns) + 0.9, (tile_inches + 0.25) * len(rows) + 0.4)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for i, (label, cells) in enumerate(rows):
        if len(cells) != len(columns):
            raise ValueError(f"comparison_grid: row {label!r} has {len(cells)} cells for {len(columns)} columns")
        for j, (image, caption) in enumerate(cells):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if image is not None:
                ax.imshow(image, interpolation="nearest")
            else:
                ax.text(0.5, 0.5, caption, ha="center", va="center", fontsize=7, wrap=True, transform=ax.transAxes)
                caption = ""
            ax.set_xlabel(caption, fontsize=7, labelpad=2)
            if i == 0:
                ax.set_title(columns[j], fontsize=8)
        axes[i, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, stem, formats)
