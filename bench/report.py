"""The report: eval results (and training logs) -> ``index.html`` and ``README.md`` with figures.

Output folder::

    index.html            self-contained page: inline CSS, no script, no network; images beside it
    README.md             the same content as Markdown (GitHub renders it)
    figures/*.png|svg     charts (bench.figures): always PNG, which the page shows, plus the other
                          formats asked for (linked beside each chart)
    samples/{track}/{unit}/{stem}/*.png
                          the example images of the visual comparisons, copied from the eval
                          folder as 8-bit PNGs (16-bit HDR images scaled to 8 bits for display)
    data/per_task/{model}.csv    main-track mean PSNR per task (``dvc plots show`` bars)
    data/training/{run}.csv      step, loss, lr of each training run (``dvc plots show`` curves)
    metrics.json          headline numbers per model (``dvc metrics show``), as the leaderboard's
    tables.tex            the leaderboard's tables as LaTeX floats for a paper (bench.latex)

The page is assembled once as a list of blocks (headings, paragraphs, tables, figures, image
galleries) and rendered twice, to HTML and to Markdown, so both always say the same. Tables follow
the paper (Tables 1–4: models as rows, tasks as columns, best value per column in bold). Files this
module owns inside the output folder (figures/, samples/, data/) that a new report does not write
are removed, so a model or task dropped from the results leaves nothing stale behind.
"""
from __future__ import annotations

import html
import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from taskgen.registry import CATEGORIES

from .leaderboard import (DECIMALS, SHORT_NAMES, UNSEEN, VERDICTS, build_leaderboards, category_columns,
                          column_ranks, counted, failed_unit_task, format_value, headline_numbers, is_headline,
                          overall_rows, paper_tables, per_column, prompt_blind, prompt_blind_note, query_margins,
                          query_spans, ranked_rows, robustness_decimals, robustness_models, task_order,
                          uncertainty_note, verdict_counts)
from .leaderboard import _latest, _mark_held_out
from .figures import check_formats, count_noun
from .metrics import METRICS
from .samples import INPUT_ROLES, output_path, saved_examples, saved_units

log = logging.getLogger(__name__)

OWNED_DIRS = ("figures", "samples", "data")
ROLE_LABELS = {"prompt_input": "prompt input", "prompt_target": "prompt target", "query": "query",
               "target": "ground truth"}
CATEGORY_TITLES = (("restoration", "Restoration"), ("enhancement", "Enhancement"),
                   ("stylization", "Stylization"), ("edge", "Edge detection"))
# Formats an <img> can show in every browser, best first; a figure in none of them is only linked.
PAGE_IMAGE_FORMATS = ("png", "svg", "jpg", "jpeg", "webp", "gif")


# --------------------------------------------------------------------------------------------
# Document blocks, rendered to HTML and Markdown

@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Cell:
    text: str
    bold: bool = False
    numeric: bool = False


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class FigureBlock:
    files: dict          # {format: path relative to the report}
    caption: str


@dataclass
class Tile:
    path: str | None     # relative to the report; None: no image (caption says why)
    caption: str


@dataclass
class Gallery:
    title: str
    columns: list[str]
    rows: list[list[Tile]]
    note: str = ""


def anchor(text: str) -> str:
    """A heading's text -> its HTML id (lowercase words joined by '-')."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1320px;
color:#1f2328;padding:0 16px}
h1{font-size:26px}h2{font-size:20px;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:36px}
h3{font-size:16px;margin-top:24px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 8px}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}td strong{background:#dafbe1}
caption{caption-side:bottom;text-align:left;color:#57606a;font-size:12px;padding-top:4px}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:12px}
table.gallery td{vertical-align:top;text-align:center;border:none;padding:2px 4px}
table.gallery th{background:none;border:none;font-weight:600;font-size:12px}
table.gallery img{width:144px;height:auto;image-rendering:pixelated;border:1px solid #d0d7de;display:block;
margin:0 auto}
table.gallery .cap{font-size:11px;color:#57606a;max-width:150px;margin:2px auto 6px}
.missing{width:144px;height:96px;border:1px dashed #d0d7de;display:flex;align-items:center;
justify-content:center;color:#8c959f;font-size:11px;margin:0 auto}
nav ul{columns:3;font-size:13px}code{background:#f6f8fa;padding:1px 4px;border-radius:3px}
.note{color:#57606a}
"""


def page_image(files: dict) -> str | None:
    """The file of a figure that a page shows inline (PNG first), or None when no browser displays
    any of its formats (a PDF in an <img> shows nothing)."""
    return next((files[fmt] for fmt in PAGE_IMAGE_FORMATS if fmt in files), None)


def _html_block(block) -> str:
    esc = html.escape
    if isinstance(block, Heading):
        return f'<h{block.level} id="{anchor(block.text)}">{esc(block.text)}</h{block.level}>'
    if isinstance(block, Paragraph):
        return f"<p>{esc(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
        body = []
        for row in block.rows:
            cells = []
            for c in row:
                text = f"<strong>{esc(c.text)}</strong>" if c.bold else esc(c.text)
                cells.append(f'<td class="num">{text}</td>' if c.numeric else f"<td>{text}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        caption = f"<caption>{esc(block.caption)}</caption>" if block.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    if isinstance(block, FigureBlock):
        main = page_image(block.files)
        image = f'<img src="{esc(main)}" alt="{esc(block.caption)}">' if main else ""
        others = " ".join(f'<a href="{esc(p)}">{esc(fmt.upper())}</a>' for fmt, p in block.files.items())
        return f"<figure>{image}<figcaption>{esc(block.caption)} ({others})</figcaption></figure>"
    if isinstance(block, Gallery):
        head = "".join(f"<th>{esc(c)}</th>" for c in block.columns)
        rows = []
        for row in block.rows:
            cells = []
            for tile in row:
                image = (f'<img src="{esc(tile.path)}" alt="{esc(tile.caption)}">' if tile.path
                         else '<div class="missing">no image</div>')
                cells.append(f'<td>{image}<div class="cap">{esc(tile.caption)}</div></td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        note = f'<p class="note">{esc(block.note)}</p>' if block.note else ""
        return (f'<h3 id="{anchor(block.title)}">{esc(block.title)}</h3>{note}<table class="gallery">'
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(title: str, blocks: list) -> str:
    """Blocks -> one self-contained HTML page (inline CSS, no scripts, no external resources)."""
    toc = "".join(f'<li><a href="#{anchor(b.text)}">{html.escape(b.text)}</a></li>'
                  for b in blocks if isinstance(b, Heading) and b.level == 2)
    body = "\n".join(_html_block(b) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n<nav><ul>{toc}</ul></nav>\n{body}\n</body>\n</html>\n")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _md_cell(text: str) -> str:
    """One table cell: escaped, and a line break (a multi-line error) made a space."""
    return _md_escape(" ".join(text.split("\n")))


def _md_block(block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Paragraph):
        return _md_escape(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md_escape(item)}" for item in block.items)
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |",
                 "|" + "".join("---:|" if block.rows and block.rows[0][i].numeric else "---|"
                               for i in range(len(block.headers)))]
        for row in block.rows:
            lines.append("| " + " | ".join(f"**{_md_cell(c.text)}**" if c.bold else _md_cell(c.text)
                                           for c in row) + " |")
        return "\n".join(lines) + (f"\n\n_{_md_escape(block.caption)}_" if block.caption else "")
    if isinstance(block, FigureBlock):
        main = page_image(block.files)
        links = ", ".join(f"[{fmt.upper()}]({p})" for fmt, p in block.files.items())
        image = f"![{_md_escape(block.caption)}]({main})\n\n" if main else ""
        return f"{image}_{_md_escape(block.caption)}_ ({links})"
    if isinstance(block, Gallery):
        def tile(t: Tile) -> str:
            image = f'<img src="{t.path}" width="128" alt="">' if t.path else "(no image)"
            return f"{image}<br>{_md_escape(t.caption)}"
        lines = [f"### {block.title}", ""] + ([_md_escape(block.note), ""] if block.note else [])
        lines += ["| " + " | ".join(block.columns) + " |", "|" + "---|" * len(block.columns)]
        lines += ["| " + " | ".join(tile(t) for t in row) + " |" for row in block.rows]
        return "\n".join(lines)
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(title: str, blocks: list) -> str:
    """Blocks -> Markdown (GitHub flavoured: pipe tables, inline <img> in gallery cells)."""
    return f"# {title}\n\n" + "\n\n".join(_md_block(b) for b in blocks) + "\n"


# --------------------------------------------------------------------------------------------
# Tables

def best_table(cells: dict, rows: list[str], columns: list[str], *, higher_is_better: dict | bool,
               decimals: dict | int, labels: dict | None = None, failed: set | None = None,
               row_header: str = "model", caption: str = "", unranked: Iterable[str] = ()) -> Table:
    """{(row, column): value} -> a Table with each column's best value in bold (ties: all of them).

    ``higher_is_better`` and ``decimals`` are per column (dicts) or one value for every column;
    rows in ``unranked`` are shown, never bold.
    """
    labels, failed = labels or {}, failed or set()
    ranks = column_ranks(cells, ranked_rows(rows, unranked), columns, higher_is_better, decimals)
    out = []
    for r in rows:
        line = [Cell(r)]
        for c in columns:
            if (r, c) in failed:
                line.append(Cell("failed", numeric=True))
                continue
            line.append(Cell(format_value(cells.get((r, c), math.nan), per_column(decimals, c)), numeric=True,
                             bold=ranks.get((r, c)) == 1))
        out.append(line)
    return Table([row_header] + [labels.get(c, c) for c in columns], out, caption)


def _looks_numeric(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
        return True
    except ValueError:
        return str(value) in ("–", "failed")


def plain_rows(rows: list[list]) -> list[list[Cell]]:
    """Values -> cells; numbers (and number-like strings) right-aligned."""
    return [[Cell(str(v), numeric=_looks_numeric(v)) for v in row] for row in rows]


# --------------------------------------------------------------------------------------------
# Inputs

def find_training_logs(paths) -> dict[str, Path]:
    """Training log locations -> {run name: metrics.csv}.

    Each path is a CSV file, a run folder holding ``metrics.csv`` (model.train's OUT), or a folder
    of run folders; the run is named after its folder. Paths that do not exist are skipped.
    """
    found: dict[str, Path] = {}
    for p in map(Path, paths or ()):
        if p.is_file():
            candidates = [(p.parent.name if p.name == "metrics.csv" else p.stem, p)]
        elif (p / "metrics.csv").is_file():
            candidates = [(p.resolve().name, p / "metrics.csv")]
        elif p.is_dir():
            candidates = [(d.name, d / "metrics.csv") for d in sorted(p.iterdir()) if (d / "metrics.csv").is_file()]
        else:
            log.warning("training logs %s: not found, skipped", p)
            continue
        for name, csv in candidates:
            unique, n = name, 2
            while unique in found:
                unique, n = f"{name}-{n}", n + 1
            found[unique] = csv
    return found


def read_training_log(path: Path):
    """A metrics.csv -> DataFrame (step, loss[, lr]) sorted by step; None if it has no loss curve."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as err:
        log.warning("training log %s unreadable: %s", path, err)
        return None
    if not {"step", "loss"} <= set(df.columns) or not len(df):
        log.warning("training log %s has no step/loss columns, skipped", path)
        return None
    keep = [c for c in ("step", "loss", "lr") if c in df.columns]
    for c in keep:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    # A resumed run may repeat steps; the later row is the one that continued.
    return df[keep].dropna(subset=["step"]).drop_duplicates("step", keep="last").sort_values("step")


# --------------------------------------------------------------------------------------------
# The report

@dataclass
class ReportConfig:
    title: str = "llvbench report"
    samples_per_task: int = 2          # example rows per task/mismatch unit (at most what eval saved)
    formats: tuple[str, ...] = ("png", "svg")
    # Shards roots whose manifest the results scored: the report names the library versions and CPU
    # kernels that made them (each manifest entry's `software`). Others are named as not scored.
    shards: tuple[str, ...] = ()


@dataclass
class Report:
    out_dir: Path
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    data: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # saved example files that could not be read, with why


def _slug(name: str) -> str:
    from .evaluate import slug

    return slug(name)


class _Builder:
    """Gathers blocks and output files for one report."""

    def __init__(self, results, roots: list[Path], out_dir: Path, config: ReportConfig, train_logs: dict):
        from .leaderboard import _label_models

        self.results, self.roots, self.out, self.config, self.train_logs = results, roots, out_dir, config, train_logs
        self.lb = build_leaderboards(results)
        labelled = _label_models(results)
        self.df = labelled
        # Display label -> results folder name; None when one name covers several checkpoints
        # (their saved examples share one folder, so which checkpoint wrote them is unknown).
        self.model_dirs = {}
        for label, raw in zip(labelled["model"], results["model"]):
            self.model_dirs[label] = None if label != raw else _slug(raw)
        ranked = list(self.lb.overall["model"]) if len(self.lb.overall) else []
        self.models = ranked + sorted(set(labelled["model"]) - set(ranked) - {""})
        from .figures import model_colors

        self.colors = model_colors(self.models)
        self.blocks: list = []
        self.curves: dict = {}         # training run -> DataFrame, filled by training()
        self.report = Report(out_dir, out_dir / "index.html", out_dir / "README.md")
        ok = labelled[(labelled["status"] == "ok") & labelled["track"].isin(["main", "mismatch"])]
        # Per-image scores for the example captions; the latest row wins when a unit was re-run.
        self.values = {(r.model, r.track, r.prompt_task, r.task, r.sample_key, r.metric): r.value
                       for r in ok.sort_values("time", kind="stable").itertuples()}
        self.manifests = sorted(set(results["data_manifest_sha256"]) - {""})
        mt = self.lb.model_task
        self.failed_units = {(r.model, r.task) for r in mt[mt["status"] == "failed"].itertuples()}
        # Models whose latest load failed: their cells without an earlier score read 'failed', not '–'.
        fl = self.lb.failures
        self.load_failed = set(fl.loc[fl["track"] == "load", "model"]) if len(fl) else set()

    def failed_cells(self, cells: dict, columns, failed: set = frozenset()) -> set:
        """``failed`` plus every empty (model, column) cell of a model that failed to load."""
        return set(failed) | {(m, c) for m in self.load_failed for c in columns if (m, c) not in cells}

    # -- helpers

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    def figure(self, draw, name: str, caption: str, *args, formats=None, **kwargs) -> None:
        # PNG always, whatever was asked: the page shows it and links the other formats beside it.
        formats = tuple(dict.fromkeys(("png", *(formats or self.config.formats))))
        files = draw(*args, stem=self.out / "figures" / name, formats=formats, **kwargs)
        self.report.figures.extend(files.values())
        self.add(FigureBlock({fmt: self.rel(p) for fmt, p in files.items()}, caption))

    # -- sections

    def summary(self) -> None:
        df = self.results
        main = df[df["track"] == "main"]
        tracks = [t for t in ("main", "robustness", "mismatch", "efficiency") if t in set(df["track"])]
        self.add(Heading(2, "Summary"))
        items = [f"Models ({len(self.models)}, best mean rank first): {', '.join(self.models) or 'none'}",
                 f"Tasks in the main track: {main['task'].nunique()}; tracks run: {', '.join(tracks) or 'none'}",
                 "llvbench version: " + ", ".join(sorted(set(df["llvbench_version"]) - {""})),
                 "Devices: " + ", ".join(sorted(set(df["device"]) - {""})),
                 f"Results: {len(df)} rows from {df['run_id'].nunique()} run(s), latest {df['time'].max()}"]
        # The leaderboard's comparability checks: mixed test splits, unequal query counts, one
        # unit from several runs, non-finite values.
        items[:0] = [f"WARNING: {w}" for w in self.lb.warnings]
        self.add(Bullets(items))

    def conventions(self) -> None:
        main = self.results[(self.results["track"] == "main") & (self.results["status"] == "ok")]
        items = [f"{c}" for c in sorted(set(main["convention"]) - {""})]
        self.add(Heading(2, "Metric conventions"),
                 Paragraph("Every score compares the model's output, clamped to [0, 1] and rounded like a saved "
                           "image, with the target as stored. The conventions recorded in the result rows:"),
                 Bullets(items or ["(no main-track rows)"]),
                 Paragraph("Data manifest sha256 of the test split these tables score: "
                           + (", ".join(self.manifests) or "not recorded") + "."))
        self.data_software()

    def data_software(self) -> None:
        """Which library versions and CPU kernels made the scored shards (report config ``shards``)."""
        if not self.config.shards:
            return
        lines, other = shards_software(self.config.shards, self.manifests)
        if lines:
            self.add(Paragraph("Made with (the software line of each shard's manifest entry; other versions or "
                               "kernels can give other bytes):"),
                     Bullets([f"{line}: {count_noun(n, 'shard')}" for line, n in lines.items()]))
        if other:
            self.add(Paragraph("Not described, since these results did not score them: " + "; ".join(other) + "."))

    def paper_tables(self) -> None:
        mt = self.lb.model_task
        self.add(Heading(2, "Leaderboard"),
                 Paragraph("Main track: every test query with one fixed prompt (the next test pair of the task "
                           "from another photo). Mean over the task's queries; best value per column in bold; "
                           "'failed' marks a unit that failed (every cell of a model that failed to load), '–' "
                           "one not evaluated. The same tables as LaTeX "
                           "floats for a paper: tables.tex beside this page."))
        if len(self.lb.overall):
            headers, rows = overall_rows(self.lb.overall)
            self.add(Heading(3, "Overall: mean rank across tasks (1 = best)"), Table(headers, plain_rows(rows)))
        for table in paper_tables(mt):
            spans = query_spans(table.rows)
            caption = "queries per task: " + ", ".join(f"{SHORT_NAMES.get(t, t)} {spans.get(t, '0')}"
                                                      for t in table.tasks)
            self.add(Heading(3, table.title),
                     best_table(table.cells, self.models, table.tasks,
                                higher_is_better=METRICS[table.metric].higher_is_better,
                                decimals=DECIMALS[table.metric], labels=SHORT_NAMES,
                                failed=self.failed_cells(table.cells, table.tasks, table.failed), caption=caption))
        note = uncertainty_note(mt)
        if note:
            self.add(Paragraph(note))
        self.versus_identity()
        self.robustness_table()
        self.category_table()

    def versus_identity(self, baseline: str = "identity") -> None:
        """Per model and category: tasks better than, within the noise of, and worse than ``baseline``
        by the paired 95 % interval of the per-query margins."""
        others = [m for m in self.models if m != baseline]
        if baseline not in self.models or not others:
            return
        mt = self.lb.model_task
        scored = set(mt.loc[(mt["model"] == baseline) & (mt["status"] == "ok"), "task"])
        counts, uncounted, any_failed = {}, 0, False
        for model in others:
            try:
                margins = query_margins(self.results, model, baseline)
            except ValueError:  # no main-track score to pair (every unit failed)
                margins = None
            counts[model] = verdict_counts(margins) if margins is not None else {}
            if margins is not None:
                uncounted = max(uncounted, int((~margins["verdict"].isin(VERDICTS)).sum()))
            # A task the model failed where the baseline scored is lost, as in the mean rank: counted
            # worse, so a model that fails the hard tasks does not look better for it.
            failed = mt[(mt["model"] == model) & (mt["status"] == "failed") & mt["task"].isin(scored)]
            for task, category in failed[["task", "category"]].drop_duplicates("task").itertuples(index=False):
                counts[model].setdefault(category, dict.fromkeys(VERDICTS, 0))["worse"] += 1
                any_failed = True
        present = {c for per in counts.values() for c in per}
        categories = [c for c in (*CATEGORIES, UNSEEN) if c in present] + sorted(present - {*CATEGORIES, UNSEEN})
        rows = []
        for model in others:
            cells = [counts[model].get(c) for c in categories]
            total = {v: sum(cell[v] for cell in cells if cell) for v in VERDICTS}
            empty = "failed" if model in self.load_failed else "–"
            rows.append([model] + [" / ".join(str(cell[v]) for v in VERDICTS) if cell else empty for cell in cells]
                        + [" / ".join(str(total[v]) for v in VERDICTS) if any(cells) else empty])
        self.add(Heading(3, f"Against {baseline}, query by query (paired 95 % interval)"),
                 Table(["model"] + categories + ["all"], plain_rows(rows),
                       f"tasks on which the model is better than {baseline} / within noise / worse: a task counts "
                       "as better or worse when the 95 % Student-t interval of the mean per-query margin (same "
                       "queries, same prompts, headline metric) excludes 0"
                       + (f"; tasks scored on a single query ({uncounted} here) have no interval and count in "
                          "none of the three" if uncounted else "")
                       + (f"; a task the model failed ({baseline} scored it) counts as worse" if any_failed else "")))

    def robustness_table(self) -> None:
        rb = self.lb.robustness
        if not len(rb):
            self.add(Heading(3, "Table 4: prompt robustness"),
                     Paragraph("The robustness track was not run (llvbench eval --tracks robustness)."))
            return
        cells = {(r.model, r.task): r.std for r in rb.itertuples()}
        models = robustness_models(rb, self.models)
        blind = prompt_blind(rb)
        prompts = counted(rb["prompts"], "prompt")  # K is capped per task by the prompts its split offers
        self.add(Heading(3, f"Table 4: standard deviation of the task mean across {prompts}↓"),
                 best_table(cells, models, task_order(rb["task"].unique()), higher_is_better=False,
                            decimals=robustness_decimals(rb), labels=SHORT_NAMES, unranked=blind,
                            caption="population std (ddof 0) of the per-prompt task means, on the task's headline "
                                    "metric (dB for PSNR tasks, MAE for edges); every prompt is applied to the "
                                    f"same queries (up to {int(rb['queries'].max())} per task)"))
        if blind:
            self.add(Paragraph(prompt_blind_note(blind)))

    def category_table(self) -> None:
        mc = self.lb.model_category
        if not len(mc):
            return
        titled = [c for c, _ in CATEGORY_TITLES]
        keyed = [(key, metric) for key, category, metric in category_columns(mc, titled) if category in titled]
        if not keyed:
            return
        columns = [key for key, _ in keyed]
        metric_of = dict(keyed)
        key_of = {(category, metric): key for key, category, metric in category_columns(mc, titled)}
        cells = {(r.model, key_of[r.category, r.metric]): r.mean for r in mc.itertuples()}
        labels = {c: c if "(" in c else f"{c} ({metric_of[c].upper()})" for c in columns}
        self.add(Heading(3, "Mean per category (headline metric)"),
                 best_table(cells, self.models, columns,
                            higher_is_better={c: METRICS[metric_of[c]].higher_is_better for c in columns},
                            decimals={c: DECIMALS[metric_of[c]] for c in columns}, labels=labels,
                            failed=self.failed_cells(cells, columns, {(r.model, key_of[r.category, r.metric])
                                                                      for r in mc.itertuples() if r.failed_tasks}),
                            caption="mean over the category's tasks of the task means; 'failed' where one of "
                                    "the model's tasks in the category failed (a mean over the rest would not "
                                    "compare)"))

    def charts(self) -> None:
        from . import figures

        self.add(Heading(2, "Charts"))
        mc = self.lb.model_category
        if len(mc):
            self.figure(figures.category_bars, "category_means", "Mean headline metric per category and model",
                        mc, self.models, colors=self.colors)
        # The leaderboard's view: each unit's newest run, held-out tasks in a panel of their own.
        latest = _mark_held_out(_latest(self.df))
        main = latest[(latest["track"] == "main") & (latest["status"] == "ok") & (latest["metric"] == "psnr")]
        if len(main):
            by_category = {}
            for category in (*(c for c, _ in CATEGORY_TITLES), UNSEEN):
                tasks = task_order(main.loc[main["category"] == category, "task"].unique())
                if tasks:
                    by_category[category] = tasks
            self.figure(figures.task_distributions, "psnr_distributions",
                        "Per-image PSNR per task and model, main track (box: quartiles, whiskers: 1.5 IQR)",
                        main, [m for m in self.models if m in set(main["model"])], by_category, colors=self.colors,
                        labels=SHORT_NAMES)
        rb = self.lb.robustness
        if len(rb):
            self.figure(figures.robustness_bars, "prompt_robustness",
                        "Prompt robustness: std of the task mean across prompts (lower is steadier)",
                        rb, robustness_models(rb, self.models), task_order(rb["task"].unique()),
                        colors=self.colors, labels=SHORT_NAMES)
        self.efficiency()
        self.training()

    def efficiency(self) -> None:
        from . import figures

        eff = self.lb.efficiency
        self.add(Heading(3, "Efficiency"))
        if not len(eff):
            self.add(Paragraph("The efficiency track was not run (llvbench eval --tracks efficiency)."))
            return
        mt = self.lb.model_task
        # The training-mix tasks PSNR scores (not the edge tasks, whose PSNR is a side number, nor the
        # held-out ones): one kind of number per task, as in Tables 1-3.
        psnr = mt[is_headline(mt) & (mt["metric"] == "psnr") & (mt["category"] != UNSEEN) & (mt["status"] == "ok")]
        # Mean over the tasks every model completed, so that no model is averaged over easier tasks.
        common = set.intersection(*[set(g["task"]) for _, g in psnr.groupby("model")]) if len(psnr) else set()
        mean_psnr = psnr[psnr["task"].isin(common)].groupby("model")["mean"].mean()
        flops = next((c for c in eff.columns if c.startswith("flops_")), None)
        points, rows = [], []
        for r in eff.to_dict("records"):
            params, latency = r.get("params", math.nan), r.get("latency_ms", math.nan)
            points.append({"model": r["model"], "params": params, "latency_ms": latency,
                           "psnr": float(mean_psnr.get(r["model"], math.nan))})
            rows.append([r["model"], format_value(params / 1e6, 3),
                         format_value(r.get(flops, math.nan) / 1e9, 2) if flops else "–",
                         format_value(latency, 2), format_value(r.get("peak_memory_mib", math.nan), 0),
                         format_value(mean_psnr.get(r["model"], math.nan), 2), r["device"],
                         format_value(r.get("official_latency_ms", math.nan), 1)])
        headers = ["model", "params (M)", f"{flops or 'flops'} (GFLOP)", "latency (ms/image)", "peak memory (MiB)",
                   "mean PSNR (dB)", "device", "official code (ms/image, H200)"]
        self.add(Table(headers, [[Cell(v, numeric=_looks_numeric(v)) for v in row] for row in rows],
                       caption=f"mean PSNR over the {count_noun(len(common), 'training-mix task')} scored by PSNR "
                               "(tasks scored by MAE and held-out tasks left out) with a mean for every "
                               "model; the last column is the authors' implementation of the same network on one "
                               "NVIDIA H200 (reference data, bench/peers.py): compare it with ours on that GPU only"))
        import pandas as pd

        points = pd.DataFrame(points)
        if points["psnr"].notna().any():
            self.figure(figures.efficiency_scatter, "efficiency",
                        f"Parameters and latency against mean PSNR over {count_noun(len(common), 'common PSNR task')}",
                        points, colors=self.colors)

    def training(self) -> None:
        from . import figures

        self.add(Heading(3, "Training"))
        curves = {}
        for name, path in self.train_logs.items():
            df = read_training_log(path)
            if df is not None:
                curves[name] = df
        if not curves:
            self.add(Paragraph("No training logs given (llvbench report --train-logs RUN_DIR)."))
            return
        self.figure(figures.training_curves, "training_curves",
                    "Training loss (and learning rate) per step: " + ", ".join(curves), curves,
                    colors=self.colors)  # a run named like a model keeps that model's colour
        rows = [[name, int(df["step"].iloc[-1]), format_value(df["loss"].iloc[-1], 4),
                 format_value(df["loss"].tail(max(1, len(df) // 10)).mean(), 4)] for name, df in curves.items()]
        self.add(Table(["run", "last step", "last loss", "mean loss, last 10 % of rows"], plain_rows(rows)))
        self.curves = curves

    # -- example images

    def skip(self, message: str) -> None:
        """A saved example file the report cannot use: logged and counted (Report.skipped)."""
        log.warning("report: skipped %s", message)
        self.report.skipped.append(message)

    def _copy_image(self, src: Path, dst: Path) -> str | None:
        """Copy a saved PNG into the report as 8-bit RGB; None (logged, counted) if it is unreadable."""
        from taskgen.imageio import UnreadableImage, read_image, write_image_atomic

        try:
            image = read_image(src)  # 16-bit (HDR) images come back scaled to 8 bits
        except UnreadableImage as err:
            self.skip(f"{src}: not a readable image ({err.reason})")
            return None
        write_image_atomic(dst, image)
        self.report.images.append(dst)
        return self.rel(dst)

    def _output_tile(self, label: str, track: str, unit: str, record: dict, dst_dir: Path, caption) -> Tile:
        model_dir = self.model_dirs.get(label)
        if model_dir is None:
            return Tile(None, f"{label}: several checkpoints share this name")
        for root in self.roots:
            src = output_path(root, model_dir, track, unit, record["sample_key"])
            if src.is_file():
                path = self._copy_image(src, dst_dir / f"out-{model_dir}.png")
                if path:
                    return Tile(path, caption)
                return Tile(None, f"{label}: saved output unreadable")
        return Tile(None, f"{label}: output not saved")

    def _examples(self, track: str, unit: str) -> list[dict]:
        """The first saved examples of a unit (from the first results folder that has them), keeping
        only those saved from the test split the results score."""
        root = next((r for r in self.roots if unit in saved_units(r, track)), None)
        if root is None:
            return []
        dropped: list[str] = []
        saved = saved_examples(root, track, unit, skipped=dropped)
        for message in dropped:
            self.skip(message)
        records = [r for r in saved if not self.manifests or r.get("data_manifest_sha256") in self.manifests]
        return records[:self.config.samples_per_task]

    def _input_tiles(self, record: dict, dst_dir: Path, roles, captions: dict) -> dict:
        tiles = {}
        for role in roles:
            src = Path(record["dir"]) / f"{role}.png"
            path = self._copy_image(src, dst_dir / f"{role}.png") if src.is_file() else None
            tiles[role] = Tile(path, captions.get(role, ROLE_LABELS[role]))
        return tiles

    def visual_comparisons(self) -> None:
        self.add(Heading(2, "Visual comparisons"),
                 Paragraph("As the paper's Figure 5: for the first queries of each task, the prompt pair, the "
                           "query, each model's output (labelled with its score against the ground truth) and "
                           "the ground truth. Images are shown at their stored size, scaled to 8 bits."))
        main = self.df[(self.df["track"] == "main")]
        shown = 0
        grid_rows: dict[str, list] = {}  # category -> the first example of each task, for the paper figures
        category_of = dict(zip(self.lb.model_task["task"], self.lb.model_task["category"]))
        grid_models = [m for m in self.models if m in set(main["model"])]
        for task in task_order(main["task"].unique()):
            records = self._examples("main", task)
            if not records:
                continue
            models = [m for m in self.models if m in set(main.loc[main["task"] == task, "model"])]
            failed = {m for m in models if (m, task) in self.failed_units}
            rows = []
            for record in records:
                key = record["sample_key"]
                dst = self.out / "samples" / "main" / task / Path(record["dir"]).name
                tiles = self._input_tiles(record, dst, INPUT_ROLES,
                                          {"prompt_input": f"prompt input ({record.get('prompt_key', '')})",
                                           "query": f"query ({key})"})
                outputs = [Tile(None, f"{m}: failed (see Failures)") if m in failed else
                           self._output_tile(m, "main", task, record, dst, self._score_caption(m, "main", task, key))
                           for m in models]
                rows.append([tiles["prompt_input"], tiles["prompt_target"], tiles["query"], *outputs,
                             tiles["target"]])
            name = SHORT_NAMES.get(task, task)
            self.add(Gallery(f"{name} ({task})" if name != task else task,
                             ["prompt input", "prompt target", "query", *models, "ground truth"], rows))
            shown += 1
            first = dict(zip(["prompt input", "prompt target", "query", *models, "ground truth"], rows[0]))
            grid_rows.setdefault(category_of.get(task, "other"), []).append(
                (name, [self._grid_cell(first.get(column), column in grid_models) for column in
                        ["prompt input", "prompt target", "query", *grid_models, "ground truth"]]))
        self.comparison_figures(grid_rows, grid_models)
        if not shown:
            self.add(Paragraph("No saved outputs: run llvbench eval with --save-samples N (default 2) to keep the "
                               "first N outputs of each task for this section."))

    def _grid_cell(self, tile: Tile | None, is_output: bool) -> tuple:
        """(8-bit RGB image or None, caption) of a gallery tile for the paper figures: an output keeps
        its score (the model is the column's title), an input no caption."""
        from taskgen.imageio import UnreadableImage, read_image

        if tile is None:
            return None, "not evaluated"
        if tile.path is None:
            return None, tile.caption
        try:
            image = read_image(self.out / tile.path)
        except UnreadableImage:
            return None, "unreadable"
        return image, tile.caption.split(": ", 1)[-1] if is_output else ""

    def comparison_figures(self, grid_rows: dict, models: list[str]) -> None:
        """One figure per category (as the paper's Figure 5), from the first example of each task."""
        from . import figures

        order = ["restoration", "enhancement", "edge", "stylization", UNSEEN]
        for category in sorted(grid_rows, key=lambda c: (order.index(c) if c in order else len(order), c)):
            self.figure(figures.comparison_grid, f"comparison_{category}",
                        f"{category}: the first query of each task, prompt pair, query, each model's output with "
                        "its score, ground truth (PNG to put in a paper)", grid_rows[category],
                        ["prompt input", "prompt target", "query", *models, "ground truth"], formats=("png",))

    def _score_caption(self, model: str, track: str, task: str, key: str) -> str:
        psnr = self.values.get((model, track, task, task, key, "psnr"))
        mae = self.values.get((model, track, task, task, key, "mae"))
        parts = []
        if mae is not None:
            parts.append(f"MAE {mae:.4f}")
        if psnr is not None:
            parts.append(f"PSNR {psnr:.2f} dB")
        return f"{model}: " + (", ".join(parts) if parts else "no score")

    def mismatch(self) -> None:
        from .tracks import CLEAN, DEFAULT_MISMATCH_PAIRS, mismatch_unit, parse_mismatch_unit

        mm = self.lb.mismatch
        self.add(Heading(2, "Mismatch and cross-domain prompts"))
        if not len(mm):
            self.add(Paragraph("The mismatch track was not run (llvbench eval --tracks mismatch)."))
            return
        self.add(Paragraph("As the paper's Figures 6–7: the prompt of task A on queries of task B (or on clean "
                           "images). 'keeps the query': PSNR of the output to the query itself; 'applies A': PSNR "
                           "to what task A's own recipe makes of the query. For restoration prompts on images "
                           "without that degradation the ideal is to change nothing."))
        # The paper's examples first, in its order, then any other pairs; models by rank within a pair.
        paper = {pair: i for i, pair in enumerate(DEFAULT_MISMATCH_PAIRS)}
        rank = {m: i for i, m in enumerate(self.models)}
        records = sorted(mm.to_dict("records"), key=lambda r: (paper.get((r["prompt_task"], r["task"]), len(paper)),
                                                               r["prompt_task"], r["task"], rank.get(r["model"], 0)))
        rows = [[r["model"], r["prompt_task"], r["task"], format_value(r.get("psnr_to_query", math.nan), 2),
                 format_value(r.get("psnr_to_prompt_task", math.nan), 2)] for r in records]
        self.add(Table(["model", "prompt A", "queries B", "keeps the query (dB)", "applies A (dB)"],
                       plain_rows(rows)))
        units = list(dict.fromkeys(mismatch_unit(r["prompt_task"], r["task"]) for r in records))
        for unit in units:
            records = self._examples("mismatch", unit)
            if not records:
                continue
            prompt_task, query_task = parse_mismatch_unit(unit)
            models = [m for m in self.models if m in set(mm.loc[(mm["prompt_task"] == prompt_task)
                                                                 & (mm["task"] == query_task), "model"])]
            rows = []
            for record in records:
                key = record["sample_key"]
                dst = self.out / "samples" / "mismatch" / unit / Path(record["dir"]).name
                query_label = "clean image" if query_task == CLEAN else f"{query_task} query"
                tiles = self._input_tiles(record, dst, INPUT_ROLES,
                                          {"query": f"{query_label} ({key})",
                                           "target": f"what {prompt_task}'s recipe makes of the query"})
                outputs = []
                for m in models:
                    keeps = self.values.get((m, "mismatch", prompt_task, query_task, key, "psnr_to_query"))
                    applies = self.values.get((m, "mismatch", prompt_task, query_task, key, "psnr_to_prompt_task"))
                    caption = (f"{m}: keeps {keeps:.2f} dB, applies A {applies:.2f} dB"
                               if keeps is not None and applies is not None else f"{m}: no score")
                    outputs.append(self._output_tile(m, "mismatch", unit, record, dst, caption))
                rows.append([tiles["prompt_input"], tiles["prompt_target"], tiles["query"], *outputs,
                             tiles["target"]])
            title = f"{prompt_task} prompt on " + ("clean images" if query_task == CLEAN else f"{query_task} images")
            self.add(Gallery(title, ["prompt input", "prompt target", "query", *models, "reference for 'applies A'"],
                             rows))

    def failures(self) -> None:
        fl = self.lb.failures
        self.add(Heading(2, "Failures"))
        if not len(fl):
            self.add(Paragraph("No unit failed."))
            return
        rows = [[r.model, r.track, failed_unit_task(r), str(r.error)[:300]] for r in fl.itertuples()]
        self.add(Table(["model", "track", "task", "error"], plain_rows(rows)))

    # -- DVC data

    def dvc_data(self) -> None:
        """Per-model task bars and training curves as CSV for `dvc plots show`."""
        from taskgen.atomic import atomic_write_text

        mt = self.lb.model_task
        psnr = mt[(mt["metric"] == "psnr") & (mt["status"] == "ok")]
        for model, group in psnr.groupby("model"):
            by_task = group.set_index("task")
            lines = ["task,category,psnr"] + [f"{t},{by_task.loc[t, 'category']},{by_task.loc[t, 'mean']:.4f}"
                                              for t in task_order(by_task.index)]
            path = self.out / "data" / "per_task" / f"{_slug(model)}.csv"
            atomic_write_text(path, "\n".join(lines) + "\n")
            self.report.data.append(path)
        for name, df in self.curves.items():
            path = self.out / "data" / "training" / f"{_slug(name)}.csv"
            atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))
            self.report.data.append(path)

    def build(self) -> list:
        self.summary()
        self.conventions()
        self.paper_tables()
        self.charts()
        self.visual_comparisons()
        self.mismatch()
        self.failures()
        self.dvc_data()
        return self.blocks


def _prune(out_dir: Path, keep: set[Path]) -> int:
    """Remove files under the report's own sub-folders that this report did not write."""
    keep = {p.resolve() for p in keep}
    removed = 0
    for name in OWNED_DIRS:
        folder = out_dir / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            if path.is_file() and path.resolve() not in keep:
                path.unlink()
                removed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return removed


def shards_software(roots, scored_manifests) -> tuple[dict[str, int], list[str]]:
    """Shards roots -> ({software line: shards} over the roots whose manifest sha256 is among
    ``scored_manifests``, [why each other root is not described])."""
    from collections import Counter

    from taskgen.shards import MANIFEST_NAME, UNRECORDED_SOFTWARE, ManifestError, load_manifest, manifest_sha256

    lines: Counter = Counter()
    other = []
    for root in roots:
        if not (Path(root) / MANIFEST_NAME).is_file():
            other.append(f"{root} (no {MANIFEST_NAME})")
            continue
        sha = manifest_sha256(root)
        if sha not in scored_manifests:
            other.append(f"{root} (manifest sha256 {sha[:12]}…)")
            continue
        try:
            entries = load_manifest(root)["shards"]
        except ManifestError as err:
            other.append(f"{root} ({err})")
            continue
        # counted as `llvbench verify` counts them (taskgen.shards.verify)
        lines.update(entry.get("software", UNRECORDED_SOFTWARE) for entry in entries)
    return dict(lines.most_common()), other


def build_report(results_dirs, out_dir: str | Path, train_logs=(), config: ReportConfig = ReportConfig()) -> Report:
    """Eval output folders (+ training log locations) -> the report files in ``out_dir``."""
    from taskgen.atomic import atomic_write_json, atomic_write_text

    from .latex import to_latex
    from .results import read_results

    # Checked before anything is read or written, so a bad format leaves no half-written figures/.
    config = replace(config, formats=check_formats(config.formats, "formats"))
    roots = [Path(p) for p in ([results_dirs] if isinstance(results_dirs, (str, Path)) else results_dirs)]
    out_dir = Path(out_dir)
    results = read_results(roots)
    builder = _Builder(results, roots, out_dir, config, find_training_logs(train_logs))
    for warning in builder.lb.warnings:
        log.warning("%s", warning)
    blocks = builder.build()
    report = builder.report
    atomic_write_text(report.html, render_html(config.title, blocks))
    atomic_write_text(report.markdown, render_markdown(config.title, blocks))
    metrics = out_dir / "metrics.json"
    atomic_write_json(metrics, headline_numbers(builder.lb))
    tables = out_dir / "tables.tex"
    atomic_write_text(tables, to_latex(builder.lb))
    report.data += [metrics, tables]
    _prune(out_dir, set(report.figures) | set(report.images) | set(report.data))
    return report
