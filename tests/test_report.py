"""llvbench report end to end: synth -> eval (every track) -> leaderboard -> report -> checks.

The small results set: 4 tasks x 4 test pairs at 64 px, the `identity` and `prompt-target`
baselines on every track, and a plug-in that fails on edge tasks (main track only).
"""
from __future__ import annotations

import argparse
import html
import importlib.util
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench
from bench.evaluate import TRACK_NAMES, EvalConfig, evaluate
from bench.leaderboard import build_leaderboards, write_leaderboards
from bench.report import ReportConfig, best_table, build_report, find_training_logs, read_training_log
from bench.results import read_results
from bench.samples import INPUT_ROLES, inputs_dir, key_stem, output_path
from taskgen.imageio import read_image
from taskgen.testset import TestSplit

TASKS = "gaussian_noise,gaussian_blur,low_light,canny"
ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("category_means", "psnr_distributions", "prompt_robustness", "efficiency", "training_curves")


def load_check_script():
    spec = importlib.util.spec_from_file_location("check_report", ROOT / "scripts" / "check_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FailsOnEdges:
    name = "flaky"

    def predict(self, query, prompt_input, prompt_target):
        # Canny prompt targets are binary edge maps: only their values 0 and 1 occur.
        if bool(((prompt_target == 0) | (prompt_target == 1)).all()):
            raise RuntimeError("edge maps are not supported (simulated)")
        return query.clone()


def run_report_cli(argv: list[str]) -> int:
    from pipelines.commands import report as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def write_training_log(path: Path, steps: int = 30) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["step,loss,lr,samples_per_s,elapsed,grad_norm"]
    lines += [f"{s},{0.3 * math.exp(-s / 100) + 0.01:.6f},{1e-4:.1e},10.0,{s / 10:.1f},0.5"
              for s in range(10, 10 * steps + 1, 10)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from pipelines.synth import configure, read_params, run_synth

    root = tmp_path_factory.mktemp("report")
    config = configure(read_params(None), {"out": str(root / "shards"), "tasks": TASKS, "splits": "test",
                                           "n_test": 4, "size": 64, "workers": 1, "summary": ""})
    run_synth(config, progress=False)
    split = TestSplit(root / "shards")
    eval_dir = root / "eval"
    every_track = EvalConfig(tracks=TRACK_NAMES, robustness_prompts=2, latency_repeats=2, latency_warmup=1)
    for spec in ("identity", "prompt-target"):
        evaluate(bench.load_generalist(spec), split, eval_dir, every_track)
    evaluate(FailsOnEdges(), split, eval_dir, EvalConfig(save_samples=1))
    write_leaderboards([eval_dir], root / "leaderboard")
    write_training_log(root / "runs" / "tiny" / "metrics.csv")
    out = root / "report"
    assert run_report_cli(["--results", str(eval_dir), "--out", str(out), "--train-logs", str(root / "runs")]) == 0
    return {"root": root, "split": split, "eval": eval_dir, "out": out, "html": (out / "index.html").read_text(),
            "md": (out / "README.md").read_text(), "results": read_results([eval_dir])}


class Page(HTMLParser):
    """The parts of the report a test looks at: references, tables (cells with bold flags), headings."""

    def __init__(self, text: str):
        super().__init__()
        self.refs, self.tags, self.tables, self.headings = [], [], [], []
        self._table = self._row = self._cell = None
        self._heading = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.refs.append(attrs["src"])
        elif tag in ("a", "link") and not attrs.get("href", "#").startswith("#"):
            self.refs.append(attrs["href"])
        elif tag == "table":
            self._table = {"heading": self.headings[-1] if self.headings else "", "rows": [],
                           "class": attrs.get("class", "")}
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = {"text": "", "bold": False, "imgs": []}
        elif tag == "strong" and self._cell is not None:
            self._cell["bold"] = True
        elif tag in ("h2", "h3"):
            self._heading = ""
        if tag == "img" and self._cell is not None:
            self._cell["imgs"].append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._table["rows"].append(self._row)
        elif tag == "table":
            self.tables.append(self._table)
        elif tag in ("h2", "h3"):
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._heading is not None:
            self._heading += data

    def table(self, heading_start: str) -> dict:
        return next(t for t in self.tables if t["heading"].startswith(heading_start))


def numeric(text: str) -> float:
    return float(text) if re.fullmatch(r"-?\d+(\.\d+)?", text.strip()) else math.nan


# --------------------------------------------------------------------------------------------
# The evaluation's saved examples

def test_eval_saves_the_first_outputs_as_scored_with_their_inputs(built):
    split, eval_dir = built["split"], built["eval"]
    pairs = split.pairs("gaussian_noise")
    folder = output_path(eval_dir, "identity", "main", "gaussian_noise", pairs[0].key).parent
    assert sorted(p.name for p in folder.iterdir()) == [f"{key_stem(p.key)}.png" for p in pairs[:2]]
    for pair in pairs[:2]:
        # identity returns the query, so the saved output is the query exactly (as scored: uint8).
        saved = read_image(output_path(eval_dir, "identity", "main", "gaussian_noise", pair.key))
        np.testing.assert_array_equal(saved, pair.input)
        inputs = inputs_dir(eval_dir, "main", "gaussian_noise", pair.key)
        np.testing.assert_array_equal(read_image(inputs / "target.png"), pair.target)
        meta = json.loads((inputs / "sample.json").read_text())
        assert meta["sample_key"] == pair.key and meta["roles"] == list(INPUT_ROLES)
        assert meta["data_manifest_sha256"] == split.manifest_sha256
        prompt = next(p for p in pairs if p.key == meta["prompt_key"])
        np.testing.assert_array_equal(read_image(inputs / "prompt_target.png"), prompt.target)
    # The count is configurable (the flaky model saved 1 per task); mismatch units save too.
    assert len(list((eval_dir / "samples" / "flaky" / "main" / "gaussian_noise").glob("*.png"))) == 1
    assert len(list((eval_dir / "samples" / "prompt-target" / "mismatch").glob("*/*.png"))) >= 2
    # The failed edge unit saved nothing for that model.
    assert not (eval_dir / "samples" / "flaky" / "main" / "canny").exists()


def test_inputs_are_written_once_per_sample_and_outputs_per_model(built, tmp_path):
    one_task = EvalConfig(tasks=("gaussian_noise",))
    evaluate(bench.load_generalist("identity"), built["split"], tmp_path, one_task)
    key = built["split"].pairs("gaussian_noise")[0].key
    query = inputs_dir(tmp_path, "main", "gaussian_noise", key) / "query.png"
    written = query.stat().st_mtime_ns
    evaluate(bench.load_generalist("prompt-target"), built["split"], tmp_path, one_task)
    assert query.stat().st_mtime_ns == written
    assert output_path(tmp_path, "prompt-target", "main", "gaussian_noise", key).is_file()


def test_save_samples_zero_writes_no_examples(built, tmp_path):
    evaluate(bench.load_generalist("identity"), built["split"], tmp_path,
             EvalConfig(tasks=("gaussian_noise",), save_samples=0))
    assert (tmp_path / "identity" / "main" / "gaussian_noise.parquet").is_file()
    assert not (tmp_path / "samples").exists()


# --------------------------------------------------------------------------------------------
# The HTML page

def test_every_file_the_html_references_exists_and_nothing_comes_from_the_network(built):
    page = Page(built["html"])
    out = built["out"]
    assert len(page.refs) > 50
    for ref in page.refs:
        assert not re.match(r"^(https?:)?//", ref), ref
        assert (out / ref).is_file(), ref
    assert "script" not in page.tags and "link" not in page.tags  # inline CSS, no scripts
    # Every PNG the report wrote is shown (no orphans), the figures' also linked as files.
    assert {r for r in page.refs if r.endswith(".png")} == {p.relative_to(out).as_posix() for p in out.rglob("*.png")}


def test_paper_tables_bold_the_best_value_of_each_column_and_match_the_results(built):
    page = Page(built["html"])
    df = built["results"]
    main = df[(df["track"] == "main") & (df["status"] == "ok")]
    for heading, better in (("Table 1", max), ("Table 2", max), ("Table 3", min), ("Table 4", min)):
        table = page.table(heading)
        header = [c["text"] for c in table["rows"][0]]
        body = table["rows"][1:]
        assert header[0] == "model" and len(body) >= 2
        # Table 4 does not rank a model whose spreads all read 0 (identity: its output ignores the prompt)
        blind = {row[0]["text"] for row in body if heading == "Table 4" and all(numeric(c["text"]) == 0 for c in row[1:])}
        ranked = [row[0]["text"] not in blind for row in body]
        for j in range(1, len(header)):
            values = [numeric(row[j]["text"]) for row in body]
            finite = [v for v, r in zip(values, ranked) if r and not math.isnan(v)]
            assert finite, (heading, header[j])
            best = better(finite)
            assert [row[j]["bold"] for row in body] == [r and v == best for v, r in zip(values, ranked)], \
                (heading, header[j])
    if blind:
        assert "Not ranked: " + ", ".join(sorted(blind)) in built["md"], blind
    table1 = page.table("Table 1")
    gn = [c["text"] for c in table1["rows"][0]].index("GN")
    identity = next(row for row in table1["rows"][1:] if row[0]["text"] == "identity")
    expected = main[(main["model"] == "identity") & (main["task"] == "gaussian_noise") & (main["metric"] == "psnr")]
    assert numeric(identity[gn]["text"]) == pytest.approx(expected["value"].mean(), abs=0.006)
    # The plug-in that failed on edges: a 'failed' cell in Table 3, and the failures section.
    flaky = next(row for row in page.table("Table 3")["rows"][1:] if row[0]["text"] == "flaky")
    assert flaky[1]["text"] == "failed" and not flaky[1]["bold"]
    failures = page.table("Failures")
    assert any("edge maps are not supported" in row[3]["text"] for row in failures["rows"][1:])
    # How far a task mean can be trusted, stated under the paper tables.
    assert "Uncertainty: each task mean averages" in built["md"] and "t-interval" in html.unescape(built["html"])


def test_conventions_and_manifest_hash_are_stated_above_the_tables(built):
    text = html.unescape(built["html"])
    sha = built["split"].manifest_sha256
    conventions = set(built["results"].query("track == 'main' and status == 'ok'")["convention"])
    first_table = text.index("Table 1: restoration")
    assert 0 < text.index(sha) < first_table
    for convention in conventions:
        assert 0 < text.index(convention) < first_table


def test_figures_exist_as_png_and_svg_and_show_something(built):
    out = built["out"]
    page = Page(built["html"])
    for name in FIGURES:
        png, svg = out / "figures" / f"{name}.png", out / "figures" / f"{name}.svg"
        assert f"figures/{name}.png" in page.refs and f"figures/{name}.svg" in page.refs
        image = read_image(png)
        assert image.shape[0] > 200 and image.std() > 10, name
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_visual_comparisons_show_prompt_query_each_output_and_the_ground_truth(built):
    page = Page(built["html"])
    df, out, split = built["results"], built["out"], built["split"]
    gallery = next(t for t in page.tables if t["class"] == "gallery" and t["heading"].startswith("GN"))
    header = [c["text"] for c in gallery["rows"][0]]
    assert header == ["prompt input", "prompt target", "query", "identity", "prompt-target", "flaky",
                      "ground truth"]
    rows = gallery["rows"][1:]
    assert len(rows) == 2  # --samples-per-task default: 2
    pairs = split.pairs("gaussian_noise")
    for row, pair in zip(rows, pairs):
        identity = row[header.index("identity")]
        value = df[(df["model"] == "identity") & (df["track"] == "main") & (df["sample_key"] == pair.key)
                   & (df["metric"] == "psnr")]["value"].iloc[0]
        assert f"PSNR {value:.2f} dB" in identity["text"]
        np.testing.assert_array_equal(read_image(out / identity["imgs"][0]), pair.input)
        np.testing.assert_array_equal(read_image(out / row[-1]["imgs"][0]), pair.target)
    # The flaky model saved one example per task: its second tile says so instead of a broken image.
    assert rows[1][header.index("flaky")]["imgs"] == [] and "not saved" in rows[1][header.index("flaky")]["text"]
    # Canny, where that model failed: its tile says so; the others are labelled with MAE and PSNR.
    canny = next(t for t in page.tables if t["class"] == "gallery" and t["heading"].startswith("Canny"))
    flaky = canny["rows"][1][header.index("flaky")]
    assert flaky["imgs"] == [] and "failed" in flaky["text"]
    assert all("MAE" in c["text"] and "PSNR" in c["text"] and c["imgs"] for c in canny["rows"][1][3:5])


def test_mismatch_examples_follow_the_paper_pairs_that_ran(built):
    page = Page(built["html"])
    mm = page.table("Mismatch")
    pairs = {(row[1]["text"], row[2]["text"]) for row in mm["rows"][1:]}
    assert pairs == {("gaussian_blur", "clean"), ("gaussian_noise", "gaussian_blur"), ("canny", "gaussian_noise"),
                     ("low_light", "gaussian_noise")}
    galleries = [t for t in page.tables if t["class"] == "gallery" and " prompt on " in t["heading"]]
    assert len(galleries) == 4
    canny = next(t for t in galleries if t["heading"].startswith("canny prompt"))
    # identity keeps every query: 100 dB (the cap) to the query, in the caption of its tile.
    assert "keeps 100.00 dB" in canny["rows"][1][3]["text"]


def test_markdown_says_the_same_and_its_images_exist(built):
    md, out = built["md"], built["out"]
    assert "## Leaderboard" in md and "### Table 1: restoration, PSNR↑ (dB)" in md
    page = Page(built["html"])
    bold_html = {c["text"] for t in page.tables for row in t["rows"] for c in row if c["bold"]}
    bold_md = set(re.findall(r"\*\*([^*]+)\*\*", md))
    assert bold_html == bold_md
    refs = re.findall(r'<img src="([^"]+)"', md) + re.findall(r"\]\(([^)]+)\)", md)
    assert len(refs) > 50 and all((out / r).is_file() for r in refs)


def test_dvc_data_and_metrics_come_from_the_same_numbers(built):
    out, root = built["out"], built["root"]
    lb = build_leaderboards(built["results"])
    per_task = pd.read_csv(out / "data" / "per_task" / "identity.csv")
    means = lb.model_task.query("model == 'identity' and metric == 'psnr'").set_index("task")["mean"]
    assert list(per_task["task"]) == list(means.index) or set(per_task["task"]) == set(means.index)
    for r in per_task.itertuples():
        assert r.psnr == pytest.approx(means[r.task], abs=1e-4)
    training = pd.read_csv(out / "data" / "training" / "tiny.csv")
    assert list(training.columns) == ["step", "loss", "lr"] and len(training) == 30
    assert json.loads((out / "metrics.json").read_text()) == json.loads((root / "leaderboard" / "metrics.json")
                                                                        .read_text())
    # the LaTeX tables beside the page are the leaderboard's own
    assert (out / "tables.tex").read_text() == (root / "leaderboard" / "leaderboard.tex").read_text()


# --------------------------------------------------------------------------------------------
# Partial results, re-runs, inputs

def test_a_main_only_run_without_examples_gives_a_valid_report_that_says_what_is_missing(built, tmp_path):
    evaluate(bench.load_generalist("identity"), built["split"], tmp_path / "eval",
             EvalConfig(tasks=("gaussian_noise", "canny"), save_samples=0))
    report = build_report(tmp_path / "eval", tmp_path / "report", config=ReportConfig(formats=("png",)))
    text = report.html.read_text()
    for missing in ("robustness track was not run", "efficiency track was not run", "mismatch track was not run",
                    "No training logs", "No saved outputs"):
        assert missing in text
    page = Page(text)
    assert page.refs and all((tmp_path / "report" / r).is_file() for r in page.refs)
    assert not list((tmp_path / "report" / "figures").glob("*.svg"))


def test_a_new_report_removes_its_own_stale_files_only(built, tmp_path):
    out = tmp_path / "report"
    shutil.copytree(built["out"], out)
    (out / "figures" / "old_chart.png").write_bytes(b"stale")
    (out / "samples" / "main" / "removed_task" / "x").mkdir(parents=True)
    (out / "samples" / "main" / "removed_task" / "x" / "query.png").write_bytes(b"stale")
    (out / "screenshot.png").write_bytes(b"mine")
    build_report(built["eval"], out, [built["root"] / "runs"])
    assert not (out / "figures" / "old_chart.png").exists()
    assert not (out / "samples" / "main" / "removed_task").exists()
    assert (out / "screenshot.png").read_bytes() == b"mine"
    assert (out / "index.html").read_text() == built["html"]  # same inputs, same page


def test_training_logs_are_found_as_files_run_folders_or_parents(tmp_path):
    write_training_log(tmp_path / "runs" / "a" / "metrics.csv")
    write_training_log(tmp_path / "runs" / "b" / "metrics.csv")
    write_training_log(tmp_path / "solo.csv")
    found = find_training_logs([tmp_path / "runs", tmp_path / "runs" / "a", tmp_path / "solo.csv",
                                tmp_path / "missing"])
    assert list(found) == ["a", "b", "a-2", "solo"]
    # A resumed run repeats steps: the later row counts; rows come back sorted by step.
    log = tmp_path / "resumed.csv"
    log.write_text("step,loss,lr\n10,0.5,1e-4\n20,0.4,1e-4\n20,0.35,1e-4\n30,0.3,1e-4\n")
    df = read_training_log(log)
    assert list(df["step"]) == [10, 20, 30] and list(df["loss"]) == [0.5, 0.35, 0.3]
    (tmp_path / "bad.csv").write_text("epoch,accuracy\n1,0.5\n")
    assert read_training_log(tmp_path / "bad.csv") is None


def test_best_table_bolds_ties_ignores_missing_and_respects_direction():
    cells = {("a", "x"): 1.0, ("b", "x"): 1.0, ("c", "x"): 0.5, ("a", "y"): math.nan, ("b", "y"): 0.2}
    table = best_table(cells, ["a", "b", "c"], ["x", "y"], higher_is_better={"x": True, "y": False},
                       decimals=2, failed={("c", "y")})
    bold = [[c.bold for c in row[1:]] for row in table.rows]
    assert bold == [[True, False], [True, True], [False, False]]
    assert [c.text for c in table.rows[2]] == ["c", "0.50", "failed"]


# --------------------------------------------------------------------------------------------
# The person-like check

def test_check_script_static_part_catches_missing_files_and_network_assets(built, tmp_path):
    check = load_check_script()
    out = tmp_path / "report"
    shutil.copytree(built["out"], out)
    assert check.check(out / "index.html", None, None, allow_missing_browser=True, timeout=60) == 0
    assert check.check(out / "index.html", None, None, allow_missing_browser=False, timeout=60) == 2
    victim = next((out / "samples" / "main").rglob("query.png"))
    victim.unlink()
    assert check.check(out / "index.html", None, None, allow_missing_browser=True, timeout=60) == 1
    remote = out / "remote.html"
    remote.write_text('<html><body><img src="https://example.com/x.png"></body></html>')
    assert check.check(remote, None, None, allow_missing_browser=True, timeout=60) == 1


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (Debian package chromium)")
def test_report_renders_in_headless_chromium_and_a_corrupt_image_fails(built, tmp_path):
    check = load_check_script()
    browser = check.find_browser()
    shot = tmp_path / "shot.png"
    assert check.check(built["out"] / "index.html", shot, browser, False, timeout=120) == 0
    assert read_image(shot).std() > 10
    # A file that exists but does not decode passes the static check; only the browser sees it.
    out = tmp_path / "report"
    shutil.copytree(built["out"], out)
    next((out / "samples" / "main").rglob("target.png")).write_bytes(b"not a png")
    n_images, broken = check.broken_images(browser, out / "index.html", timeout=120)
    assert n_images > 50 and len(broken) == 1 and broken[0].endswith("target.png")
    assert check.check(out / "index.html", None, browser, False, timeout=120) == 1
    assert not list(out.glob(".index.check-*.html"))  # the probe copy is cleaned up


def test_unreadable_saved_examples_are_logged_and_counted(built, tmp_path, caplog, capsys):
    eval_dir = tmp_path / "eval"
    shutil.copytree(built["eval"], eval_dir)
    key = sorted(built["results"].query("track == 'main' and task == 'gaussian_noise'")["sample_key"])[0]
    out_png = output_path(eval_dir, "identity", "main", "gaussian_noise", key)
    out_png.write_bytes(b"not a png")
    query_png = inputs_dir(eval_dir, "main", "canny", key.replace("gaussian_noise", "canny")) / "query.png"
    query_png.write_bytes(b"")
    metas = sorted((eval_dir / "samples" / "_inputs" / "main" / "gaussian_blur").glob("*/sample.json"))
    metas[0].write_text("{not json")
    metas[1].unlink()  # an interrupted write: images without their sample.json
    with caplog.at_level("WARNING", logger="bench.report"):
        report = build_report(eval_dir, tmp_path / "report", config=ReportConfig(formats=("png",)))
    assert len(report.skipped) == 4
    for path in (out_png, query_png, metas[0], metas[1].parent):
        assert str(path) in caplog.text
    assert "not a readable image" in caplog.text and "not a JSON object" in caplog.text
    assert "no sample.json" in caplog.text
    assert run_report_cli(["--results", str(eval_dir), "--out", str(tmp_path / "report"), "--formats", "png"]) == 0
    assert "skipped 4 unreadable example file(s)" in capsys.readouterr().err


def test_report_warns_about_what_the_leaderboard_warns_about_and_refuses_a_file_as_out(built, tmp_path):
    from bench.results import write_rows

    eval_dir = tmp_path / "eval"
    shutil.copytree(built["eval"], eval_dir)
    # Another run of identity's gaussian_noise unit, elsewhere, on another test split.
    rows = built["results"].query("model == 'identity' and track == 'main' and task == 'gaussian_noise'")
    rows = rows.assign(run_id="other-run", data_manifest_sha256="f" * 64, time="2099-01-01T00:00:00+00:00")
    write_rows(tmp_path / "other" / "identity" / "main" / "gaussian_noise.parquet", rows.to_dict("records"),
               {"unit": "gaussian_noise"})
    report = build_report([eval_dir, tmp_path / "other"], tmp_path / "report", config=ReportConfig(formats=("png",)))
    text = report.html.read_text()
    assert "WARNING: the results come from 2 different test splits" in text
    assert "identity: 1 unit(s) (main/gaussian_noise) were evaluated in 2 runs" in html.unescape(text)
    (tmp_path / "r.sh").write_text("keep me")
    with pytest.raises(ValueError, match="--out .*r.sh must be a folder"):
        run_report_cli(["--results", str(eval_dir), "--out", str(tmp_path / "r.sh")])
    assert (tmp_path / "r.sh").read_text() == "keep me"


def test_models_are_counted_against_identity_query_by_query(built):
    table = Page(built["html"]).table("Against identity")
    header = [c["text"] for c in table["rows"][0]]
    assert header == ["model", "restoration", "enhancement", "edge", "all"]
    rows = {row[0]["text"]: [c["text"] for c in row[1:]] for row in table["rows"][1:]}
    assert set(rows) == {"prompt-target", "flaky"}  # identity is the baseline
    # flaky returns the query (margins all 0: within noise) and failed on canny, which identity scored:
    # lost, as in the mean rank, not left out (a model that fails the hard tasks must not look better)
    assert rows["flaky"] == ["0 / 2 / 0", "0 / 1 / 0", "0 / 0 / 1", "0 / 3 / 1"]
    assert "a task the model failed (identity scored it) counts as worse" in html.unescape(built["html"])
    assert sum(int(n) for n in rows["prompt-target"][-1].split(" / ")) == 4


class AlwaysFails:
    name = "broken"

    def predict(self, query, prompt_input, prompt_target):
        raise RuntimeError("nothing works (simulated)")


def test_a_model_that_failed_every_task_loses_each_against_identity(built, tmp_path):
    config = EvalConfig(tasks=("gaussian_noise", "canny"), save_samples=0)
    for generalist in (bench.load_generalist("identity"), AlwaysFails()):
        evaluate(generalist, built["split"], tmp_path / "eval", config)
    report = build_report(tmp_path / "eval", tmp_path / "report", config=ReportConfig(formats=("png",)))
    table = Page(report.html.read_text()).table("Against identity")
    assert [[c["text"] for c in row] for row in table["rows"]] == [["model", "restoration", "edge", "all"],
                                                                   ["broken", "0 / 0 / 1", "0 / 0 / 1", "0 / 0 / 2"]]


def test_tasks_of_a_single_query_are_said_to_count_in_none_of_the_verdicts(built, tmp_path):
    config = EvalConfig(tasks=("gaussian_noise", "canny"), limit=1, save_samples=0)
    for name in ("identity", "prompt-target"):
        evaluate(bench.load_generalist(name), built["split"], tmp_path / "eval", config)
    report = build_report(tmp_path / "eval", tmp_path / "report", config=ReportConfig(formats=("png",)))
    text = html.unescape(report.html.read_text())
    table = Page(text).table("Against identity")
    assert [c["text"] for c in table["rows"][1]][-1] == "0 / 0 / 0"  # one query: no interval, no verdict
    assert "tasks scored on a single query (2 here) have no interval and count in none of the three" in text


def test_a_model_that_failed_to_load_reads_failed_in_every_table(built, tmp_path):
    from bench.evaluate import evaluate_spec

    config = EvalConfig(tasks=("gaussian_noise", "canny"), save_samples=0)
    evaluate(bench.load_generalist("identity"), built["split"], tmp_path / "eval", config)
    bad = tmp_path / "bad.safetensors"
    bad.write_text("{}")
    [outcome] = evaluate_spec("checkpoint", {"checkpoint": str(bad)}, built["split"], tmp_path / "eval", config)
    assert outcome.status == "failed"
    report = build_report(tmp_path / "eval", tmp_path / "report", config=ReportConfig(formats=("png",)))
    page = Page(report.html.read_text())
    for title in ("Table 1", "Table 3", "Against identity", "Mean per category"):
        rows = {row[0]["text"]: [c["text"] for c in row[1:]] for row in page.table(title)["rows"][1:]}
        assert set(rows["checkpoint"]) == {"failed"}, (title, rows)
        assert title == "Against identity" or "failed" not in rows["identity"]


def test_paper_figures_show_the_first_query_of_each_task_per_category(built):
    out, page = built["out"], Page(built["html"])
    # TASKS: two restoration tasks, low light (enhancement), canny (edge); PNG only
    for category in ("restoration", "enhancement", "edge"):
        assert f"figures/comparison_{category}.png" in page.refs
        assert not (out / "figures" / f"comparison_{category}.svg").exists()
        assert read_image(out / "figures" / f"comparison_{category}.png").std() > 10
    restoration = read_image(out / "figures" / "comparison_restoration.png")
    edge = read_image(out / "figures" / "comparison_edge.png")
    # 7 columns (prompt pair, query, identity, prompt-target, flaky, ground truth) in one row for canny,
    # the same width with two rows (GN, GB) for restoration
    assert edge.shape[1] > 3 * edge.shape[0]
    assert restoration.shape[1] == edge.shape[1] and restoration.shape[0] > 1.6 * edge.shape[0]


def test_comparison_grid_draws_missing_cells_as_text_and_checks_the_shape(tmp_path):
    import numpy as np

    from bench.figures import comparison_grid

    tile = np.full((16, 16, 3), 200, np.uint8)
    files = comparison_grid([("GN", [(tile, ""), (None, "failed"), (tile, "PSNR 30.00 dB")])],
                            ["query", "model", "ground truth"], stem=tmp_path / "grid")
    assert set(files) == {"png"} and read_image(files["png"]).shape[2] == 3
    with pytest.raises(ValueError, match="row 'GN' has 2 cells for 3 columns"):
        comparison_grid([("GN", [(tile, ""), (tile, "")])], ["a", "b", "c"], stem=tmp_path / "bad")


# --------------------------------------------------------------------------------------------
# Figure formats, titles

def test_formats_without_a_browser_image_still_show_png_on_the_page_and_link_the_rest(built, tmp_path):
    out = tmp_path / "report"
    assert run_report_cli(["--results", str(built["eval"]), "--out", str(out), "--formats", "PDF",
                           "--train-logs", str(built["root"] / "runs")]) == 0
    page = Page((out / "index.html").read_text())
    figure_imgs = [src for src in page.refs if src.startswith("figures/") and src.endswith(".png")]
    for name in FIGURES:
        assert f"figures/{name}.png" in figure_imgs and f"figures/{name}.pdf" in page.refs
        assert (out / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        assert read_image(out / "figures" / f"{name}.png").std() > 10
    html_text = (out / "index.html").read_text()
    assert not re.search(r'<img src="[^"]*\.pdf"', html_text)
    assert not re.search(r"!\[[^\]]*\]\([^)]*\.pdf\)", (out / "README.md").read_text())
    assert not list((out / "figures").glob("*.svg"))
    assert load_check_script().check(out / "index.html", None, None, allow_missing_browser=True, timeout=60) == 0


def test_a_figure_with_no_browser_format_is_linked_not_shown_as_a_broken_image():
    from bench.report import FigureBlock, render_html, render_markdown

    block = FigureBlock({"pdf": "figures/x.pdf"}, "a chart")
    assert "<img" not in render_html("t", [block]) and 'href="figures/x.pdf"' in render_html("t", [block])
    assert "![" not in render_markdown("t", [block]) and "[PDF](figures/x.pdf)" in render_markdown("t", [block])
    both = render_html("t", [FigureBlock({"pdf": "figures/x.pdf", "svg": "figures/x.svg"}, "a chart")])
    assert '<img src="figures/x.svg"' in both


def test_check_script_flags_an_img_that_browsers_cannot_display(tmp_path):
    check = load_check_script()
    (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "x.png").write_bytes(b"png")
    for src in ("x.pdf", "data:application/pdf;base64,JVBERg=="):
        page = tmp_path / "page.html"
        page.write_text(f'<html><body><img src="{src}"><a href="x.pdf">PDF</a></body></html>')
        problems, _ = check.static_problems(page)
        assert len(problems) == 1 and "browsers do not display" in problems[0], src
        assert check.check(page, None, None, allow_missing_browser=True, timeout=60) == 1
    page.write_text('<html><body><img src="x.png"><img src="data:image/png;base64,AA=="><a href="x.pdf">PDF</a>'
                    "</body></html>")
    assert check.static_problems(page) == ([], 2)


@pytest.mark.parametrize("formats", ["xyz", "png,xyz", " , "])
def test_a_bad_format_fails_before_anything_is_written(built, tmp_path, formats):
    out = tmp_path / "report"
    with pytest.raises(ValueError, match="--formats"):
        run_report_cli(["--results", str(built["eval"]), "--out", str(out), "--formats", formats])
    assert not out.exists()
    with pytest.raises(ValueError, match="formats: unknown figure format"):
        build_report(built["eval"], out, config=ReportConfig(formats=("png", "xyz")))
    assert not out.exists()
    from pipelines.report import DEFAULTS, run_stage

    with pytest.raises(ValueError, match=r"report\.formats"):
        run_stage({**DEFAULTS, "results": [str(built["eval"])], "out": str(out), "formats": ["svg", "jpgg"]})
    assert not out.exists()


def test_counts_in_titles_and_captions_are_singular_for_one(tmp_path):
    from bench.figures import category_bars, count_noun

    assert [count_noun(n, "task") for n in (0, 1, 2)] == ["0 tasks", "1 task", "2 tasks"]
    mc = pd.DataFrame({"model": ["a", "b", "a"], "category": ["restoration", "restoration", "edge"],
                       "metric": ["psnr", "psnr", "mae"], "mean": [20.0, 21.0, 0.1], "tasks": [1, 1, 2]})
    svg = category_bars(mc, ["a", "b"], tmp_path / "bars", formats=("svg",))["svg"].read_text()
    texts = re.findall(r"<!-- (.*?) -->", svg)  # matplotlib keeps each text as a comment
    assert "restoration (1 task)" in texts and "edge (2 tasks)" in texts


def test_a_one_task_report_says_task_not_tasks(built, tmp_path):
    eval_dir = tmp_path / "eval"
    evaluate(bench.load_generalist("identity"), built["split"], eval_dir,
             EvalConfig(tasks=("gaussian_noise",), tracks=("main", "efficiency"), save_samples=0, latency_repeats=1,
                        latency_warmup=0))
    text = build_report(eval_dir, tmp_path / "report", config=ReportConfig(formats=("png",))).html.read_text()
    assert "1 tasks" not in text and "over 1 common PSNR task" in text and "over the 1 training-mix task scored" in text


def test_tasks_outside_the_paper_tables_are_in_an_other_tasks_table(tmp_path):
    from test_leaderboard import other_tasks_results

    from bench.results import write_rows

    rows = other_tasks_results().assign(time="2026-01-01T00:00:00+00:00")
    for (model, task), unit in rows.groupby(["model", "task"]):
        write_rows(tmp_path / "eval" / model / "main" / f"{task}.parquet", unit.to_dict("records"), {"unit": task})
    report = build_report(tmp_path / "eval", tmp_path / "report", config=ReportConfig(formats=("png",)))
    page = Page(report.html.read_text())
    for title, column, best in (("Other tasks (headline metric PSNR↑)", "edge_by_psnr", "20.00"),
                                ("Other tasks (headline metric MAE↓)", "style_by_mae", "0.1000")):
        table = page.table(title)["rows"]
        assert [c["text"] for c in table[0]] == ["model", column]
        assert {row[0]["text"]: row[1]["text"] for row in table[1:]}["alpha"] == best


def test_a_category_scored_by_two_headline_metrics_gets_a_column_and_a_panel_for_each(tmp_path):
    from test_leaderboard import other_tasks_results, prov, row

    from bench.results import write_rows

    # canny (edge, MAE) beside edge_by_psnr (edge, PSNR): the edge category has two headline metrics
    canny = pd.DataFrame([row(prov(model), task="canny", metric="mae", value=v) for model, v in (("alpha", 0.2),
                                                                                                ("beta", 0.1))])
    rows = pd.concat([other_tasks_results(), canny]).assign(time="2026-01-01T00:00:00+00:00")
    for (model, task), unit in rows.groupby(["model", "task"]):
        write_rows(tmp_path / "eval" / model / "main" / f"{task}.parquet", unit.to_dict("records"), {"unit": task})
    report = build_report(tmp_path / "eval", tmp_path / "report", config=ReportConfig(formats=("svg",)))
    table = Page(report.html.read_text()).table("Mean per category")["rows"]
    assert [c["text"] for c in table[0]] == ["model", "restoration (PSNR)", "stylization (MAE)", "edge (MAE)",
                                             "edge (PSNR)"]
    assert {row[0]["text"]: [c["text"] for c in row[1:]] for row in table[1:]}["beta"][2:] == ["0.1000", "19.00"]
    svg = (tmp_path / "report" / "figures" / "category_means.svg").read_text()
    texts = re.findall(r"<!-- (.*?) -->", svg)
    assert "edge (MAE) (1 task)" in texts and "edge (PSNR) (1 task)" in texts


def test_the_report_names_what_made_the_scored_shards_and_no_other(built, tmp_path):
    from taskgen.shards import load_manifest
    from taskgen.software import software_description

    shards = built["root"] / "shards"
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"shards": []}')
    out = tmp_path / "report"
    assert run_report_cli(["--results", str(built["eval"]), "--out", str(out), "--shards", str(shards),
                           "--shards", str(other), "--shards", str(tmp_path / "none")]) == 0
    text = html.unescape((out / "index.html").read_text())
    made = text.split("Made with")[1].split("</ul>")[0]
    count = len(load_manifest(shards)["shards"])
    # this process made the fixture's shards: one line, every shard
    assert re.findall(r"<li>(.*?)</li>", made) == [f"{software_description()}: {count} shards"]
    assert f"Not described, since these results did not score them: {other} (manifest sha256 " in text
    assert f"; {tmp_path / 'none'} (no manifest.json)." in text
    assert "Made with" not in built["html"]  # no --shards: nothing said


def test_the_psnr_distributions_put_held_out_tasks_in_a_panel_of_their_own(tmp_path, monkeypatch):
    from test_leaderboard import prov, row

    from bench import figures
    from bench.results import write_rows

    rows = pd.DataFrame([row(prov(model), task=task, value=value) for model in ("alpha", "beta")
                         for task, value in (("gaussian_noise", 30.0), ("vignetting_removal", 25.0))])
    for (model, task), unit in rows.groupby(["model", "task"]):
        write_rows(tmp_path / "eval" / model / "main" / f"{task}.parquet", unit.to_dict("records"), {"unit": task})
    drawn = {}
    draw = figures.task_distributions

    def spy(rows, models, tasks_by_category, *args, **kwargs):
        drawn.update(tasks_by_category)
        return draw(rows, models, tasks_by_category, *args, **kwargs)

    monkeypatch.setattr(figures, "task_distributions", spy)
    build_report(tmp_path / "eval", tmp_path / "report", config=ReportConfig(formats=("png",)))
    assert drawn == {"restoration": ["gaussian_noise"], "unseen": ["vignetting_removal"]}


def test_the_efficiency_mean_psnr_is_over_training_mix_tasks_scored_by_psnr(tmp_path):
    from test_leaderboard import prov, row

    from bench.results import write_rows

    # canny's PSNR is a side number (its headline is MAE) and vignetting_removal is held out: neither
    # may move the mean, which is gaussian_noise's alone.
    rows = []
    for model, noise, canny_psnr, held_out in (("alpha", 30.0, 10.0, 20.0), ("beta", 28.0, 40.0, 50.0)):
        p = prov(model)
        rows += [row(p, value=noise), row(p, task="canny", metric="mae", value=0.2),
                 row(p, task="canny", value=canny_psnr), row(p, task="vignetting_removal", value=held_out),
                 row(p, track="efficiency", task="*", metric="params", value=1e6, sample="", prompt="",
                     higher_is_better=False)]
    for (model, track, task), unit in pd.DataFrame(rows).groupby(["model", "track", "task"]):
        name = "efficiency" if track == "efficiency" else task
        write_rows(tmp_path / "eval" / model / track / f"{name}.parquet", unit.to_dict("records"), {"unit": name})
    report = build_report(tmp_path / "eval", tmp_path / "report", config=ReportConfig(formats=("png",)))
    table = Page(report.html.read_text()).table("Efficiency")["rows"]
    column = [c["text"] for c in table[0]].index("mean PSNR (dB)")
    assert {r[0]["text"]: r[column]["text"] for r in table[1:]} == {"alpha": "30.00", "beta": "28.00"}
    assert "over the 1 training-mix task scored by PSNR" in report.html.read_text()


def test_a_training_run_named_like_a_model_is_drawn_in_that_model_s_colour(tmp_path):
    from bench.figures import training_curves

    curve = pd.DataFrame({"step": [1, 2, 3], "loss": [0.3, 0.2, 0.1]})
    svg = training_curves({"train": curve, "genlv-s": curve * 1.1}, tmp_path / "curves", formats=("svg",),
                          colors={"genlv-s": "#123456", "identity": "#abcdef"})["svg"].read_text()
    assert "#123456" in svg and "#abcdef" not in svg  # the known run in its colour; "train" in a fallback one
