"""bench.leaderboard: aggregates, ranks, robustness std, paper-shaped Markdown, files."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.evaluate import make_row
from bench.leaderboard import build_leaderboards, markdown_table, to_markdown, write_leaderboards
from bench.results import read_results, write_rows

CATEGORY = {"gaussian_noise": "restoration", "rain_simple": "restoration", "rain_complex": "restoration",
            "low_light": "enhancement", "pencil": "stylization", "canny": "edge"}


def prov(model, sha="", time="2026-01-01T00:00:00+00:00"):
    return {"run_id": "r", "model": model, "checkpoint_sha256": sha, "data_manifest_sha256": "m",
            "llvbench_version": "0.1.0", "device": "cpu", "_time": time}


def row(p, track="main", task="gaussian_noise", metric="psnr", value=30.0, sample="s0", prompt="p0", **kw):
    time = p["_time"]
    r = make_row({k: v for k, v in p.items() if k != "_time"}, track=track, task=task,
                 category=CATEGORY.get(task, "*"), metric=metric, value=value, sample_key=sample, prompt_key=prompt,
                 prompt_task=kw.pop("prompt_task", task), **kw)
    r["time"] = time
    return r


def frame(rows):
    return pd.DataFrame(rows)


@pytest.fixture
def results():
    a, b, c = prov("alpha"), prov("beta"), prov("gamma")
    rows = []
    # alpha: best at denoising, worse at edges; beta the opposite; gamma failed denoising.
    for i, (va, vb) in enumerate([(30.0, 20.0), (32.0, 22.0)]):
        rows += [row(a, value=va, sample=f"s{i}"), row(b, value=vb, sample=f"s{i}")]
        rows += [row(a, task="canny", metric="mae", value=0.30, sample=f"s{i}"),
                 row(b, task="canny", metric="mae", value=0.10, sample=f"s{i}"),
                 row(c, task="canny", metric="mae", value=0.20, sample=f"s{i}")]
        rows += [row(a, task="canny", metric="psnr", value=10.0, sample=f"s{i}")]
    rows.append(row(c, metric="psnr", value=math.nan, sample="", prompt="", status="failed",
                    error="gamma: predict() raised RuntimeError: boom"))
    rows += [row(a, task="pencil", value=18.0), row(a, task="low_light", value=21.0),
             row(a, task="rain_simple", value=25.0), row(a, task="rain_complex", value=23.0)]
    # robustness: alpha's per-prompt task means 29 and 31 (std 1), beta flat.
    for prompt, values in (("p1", (28.0, 30.0)), ("p2", (30.0, 32.0))):
        for i, v in enumerate(values):
            rows += [row(a, track="robustness", value=v, sample=f"s{i}", prompt=prompt),
                     row(b, track="robustness", value=20.0, sample=f"s{i}", prompt=prompt)]
    rows += [row(a, track="mismatch", task="clean", metric="psnr_to_query", value=40.0, prompt_task="gaussian_blur"),
             row(a, track="mismatch", task="clean", metric="psnr_to_prompt_task", value=40.0,
                 prompt_task="gaussian_blur")]
    rows += [row(a, track="efficiency", task="*", metric="params", value=2e6, sample="", prompt="",
                 higher_is_better=False),
             row(a, track="efficiency", task="*", metric="latency_ms", value=12.5, sample="", prompt="",
                 higher_is_better=False)]
    return frame(rows)


def test_means_ranks_and_failures(results):
    lb = build_leaderboards(results)
    mt = lb.model_task.set_index(["model", "task", "metric"])
    assert mt.loc[("alpha", "gaussian_noise", "psnr"), "mean"] == 31.0
    assert mt.loc[("alpha", "gaussian_noise", "psnr"), "n"] == 2
    # values 30 and 32: std sqrt(2), so the 95 % t-interval's half-width is t(0.975, 1) = 12.706
    assert mt.loc[("alpha", "gaussian_noise", "psnr"), "query_std"] == pytest.approx(math.sqrt(2))
    assert mt.loc[("alpha", "gaussian_noise", "psnr"), "ci95"] == pytest.approx(12.7062, abs=1e-4)
    assert math.isnan(mt.loc[("alpha", "pencil", "psnr"), "ci95"])  # one query: no interval
    assert math.isnan(mt.loc[("gamma", "gaussian_noise", "psnr"), "ci95"])  # failed
    assert mt.loc[("gamma", "gaussian_noise", "psnr"), "status"] == "failed"
    overall = lb.overall.set_index("model")
    # GN: alpha 1, beta 2, gamma (failed) 3; canny MAE (lower is better): beta 1, gamma 2, alpha 3;
    # alpha alone on its other four tasks ranks 1 there, and beta and gamma, not scored on them,
    # share the last two places (2.5): a model run on fewer tasks does not rank on those alone.
    assert overall.loc["beta", "mean_rank"] == pytest.approx((2 + 1 + 4 * 2.5) / 6)
    assert overall.loc["gamma", "mean_rank"] == pytest.approx((3 + 2 + 4 * 2.5) / 6)
    assert overall.loc["gamma", "failed_tasks"] == 1 and overall.loc["gamma", "tasks"] == 2
    assert overall.loc["alpha", "mean_rank"] == pytest.approx((1 + 3 + 1 + 1 + 1 + 1) / 6)
    cat = lb.model_category.set_index(["model", "category"])
    assert cat.loc[("alpha", "restoration"), "mean"] == pytest.approx((31 + 25 + 23) / 3)
    assert cat.loc[("alpha", "edge"), "metric"] == "mae"  # the edge headline, not the companion PSNR
    # gamma failed its one restoration task: no mean there (not a mean over nothing, or over the rest).
    assert math.isnan(cat.loc[("gamma", "restoration"), "mean"])
    assert cat.loc[("gamma", "restoration"), ["tasks", "failed_tasks"]].tolist() == [0, 1]
    assert cat.loc[("alpha", "restoration"), ["tasks", "failed_tasks"]].tolist() == [3, 0]
    # beta was scored on one of the three restoration tasks: no mean over that one (it would take the bold)
    assert math.isnan(cat.loc[("beta", "restoration"), "mean"]) and cat.loc[("beta", "edge"), "mean"] == 0.10
    assert lb.failures["error"].str.contains("boom").all() and list(lb.failures["model"]) == ["gamma"]


def test_robustness_std_is_population_std_of_per_prompt_means(results):
    rb = build_leaderboards(results).robustness.set_index("model")
    assert rb.loc["alpha", "std"] == pytest.approx(np.std([29.0, 31.0]))
    assert rb.loc["alpha", "prompts"] == 2 and rb.loc["alpha", "queries"] == 2
    assert rb.loc["beta", "std"] == 0.0


def test_mismatch_and_efficiency_tables(results):
    lb = build_leaderboards(results)
    mm = lb.mismatch.iloc[0]
    assert (mm["model"], mm["prompt_task"], mm["task"]) == ("alpha", "gaussian_blur", "clean")
    assert mm["psnr_to_query"] == mm["psnr_to_prompt_task"] == 40.0
    eff = lb.efficiency.set_index("model")
    assert eff.loc["alpha", "params"] == 2e6 and eff.loc["alpha", "latency_ms"] == 12.5


def test_reruns_keep_the_latest_row_and_checkpoints_get_labels():
    old, new = prov("m", "aaaa1111", "2026-01-01T00:00:00+00:00"), prov("m", "aaaa1111", "2026-02-01T00:00:00+00:00")
    other = prov("m", "bbbb2222")
    lb = build_leaderboards(frame([row(old, value=10.0), row(new, value=12.0), row(other, value=11.0)]))
    means = lb.model_task.set_index("model")["mean"]
    assert means["m@aaaa1111"] == 12.0 and means["m@bbbb2222"] == 11.0


def test_markdown_has_paper_tables_with_best_in_bold(results):
    md = to_markdown(build_leaderboards(results))
    table1 = md.split("## Table 1")[1].split("##")[0]
    assert "| model | GN | SimpleRain | ComplexRain |" in table1
    assert "| alpha | **31.00** |" in table1 and "| beta | 21.00 |" in table1 and "| gamma | failed |" in table1
    table3 = md.split("## Table 3")[1].split("##")[0]
    assert "MAE↓" in md and "| beta | **0.1000** |" in table3 and "| alpha | 0.3000 |" in table3
    table4 = md.split("## Table 4")[1].split("##")[0]
    # beta's output does not depend on its prompt: shown, not ranked, and named under the table
    assert "| beta | 0.000 |" in table4 and "| alpha | **1.000** |" in table4
    assert "Not ranked: beta reads 0 on every task" in table4
    assert "## Table 2" in md and "PencilDraw" in md and "LLE" in md
    assert "## Failures" in md and "boom" in md
    # the cells with an interval hold 2 queries: GN 30/32 and 20/22 (±12.71 each), canny PSNR 10/10 (±0)
    assert "each task mean averages 2 queries" in md and "is ±12.71 dB (PSNR), ±0.0000 (MAE)." in md


def test_cells_that_print_the_same_share_the_best_mark():
    from bench.latex import ranked_table

    cells = {("a", "x"): 30.004, ("b", "x"): 30.001, ("c", "x"): 29.2}
    text = markdown_table(cells, ["a", "b", "c"], ["x"], higher_is_better=True, decimals=2)
    assert "| a | **30.00** |" in text and "| b | **30.00** |" in text and "| c | 29.20 |" in text
    tex = ranked_table(cells, ["a", "b", "c"], ["x"], higher_is_better=True, decimals=2, caption="", label="t")
    assert tex.count("\\textbf{30.00}") == 2 and "\\underline{29.20}" in tex


def test_markdown_table_bolds_ties_and_leaves_missing_cells_blank():
    cells = {("a", "x"): 1.0, ("b", "x"): 1.0, ("a", "y"): 2.0}
    text = markdown_table(cells, ["a", "b"], ["x", "y"], higher_is_better=True, decimals=1)
    assert "| a | **1.0** | **2.0** |" in text and "| b | **1.0** | – |" in text


def test_a_pipe_or_line_break_stays_inside_its_markdown_cell():
    from bench.leaderboard import plain_table

    text = markdown_table({("Net|v2", "x"): 20.0}, ["Net|v2"], ["x"], higher_is_better=True, decimals=2)
    assert text.splitlines()[2] == "| Net\\|v2 | **20.00** |"
    rows = [["Net|v2", "RuntimeError: Error(s) in loading state_dict:\n\tMissing key(s): head.weight"]]
    lines = plain_table(["model", "error"], rows).splitlines()
    assert len(lines) == 3 and lines[2] == "| Net\\|v2 | RuntimeError: Error(s) in loading state_dict: \tMissing key(s): head.weight |"


def test_a_multi_line_error_is_one_row_of_the_report_failures_table():
    from bench.report import Table, _md_block, plain_rows

    block = Table(["model", "error"], plain_rows([["m", "boom\nsecond line"]]))
    assert _md_block(block).splitlines()[2] == "| m | boom second line |"


def test_written_files_and_command(results, tmp_path, capsys):
    res_dir = tmp_path / "results"
    for (model, task), group in results.groupby(["model", "task"]):
        rows = [{k: v for k, v in r.items()} for r in group.to_dict("records")]
        write_rows(res_dir / model / f"{task}.parquet", rows, {"unit": task})
    lb_dir = tmp_path / "lb"
    write_leaderboards([res_dir], lb_dir)
    for name in ("model_task", "model_category", "overall", "robustness", "mismatch", "efficiency", "failures"):
        assert len(pd.read_parquet(lb_dir / f"{name}.parquet").columns) > 0
    assert "\\label{tab:llvbench-table-1-restoration}" in (lb_dir / "leaderboard.tex").read_text()
    metrics = json.loads((lb_dir / "metrics.json").read_text())["models"]
    assert metrics["alpha"]["psnr_restoration"] == pytest.approx(26.3333, abs=1e-3)
    assert metrics["alpha"]["robustness_std_psnr"] == 1.0 and metrics["gamma"]["failed_tasks"] == 1
    assert metrics["gamma"]["psnr_restoration"] is None and metrics["gamma"]["mae_edge"] == pytest.approx(0.2)
    # Leaderboard parquet files next to results are not mistaken for results ...
    assert len(read_results([tmp_path])) == len(results)
    # ... but naming one explicitly is an error.
    with pytest.raises(ValueError, match="not an llvbench results file"):
        read_results([lb_dir / "overall.parquet"])

    from pipelines.commands import leaderboard as lb_cmd

    parser = argparse.ArgumentParser()
    lb_cmd.add_arguments(parser)
    assert lb_cmd.run(parser.parse_args([str(res_dir), "--out", str(tmp_path / "lb2")])) == 0
    assert "## Table 1" in capsys.readouterr().out


def test_versus_baseline_compares_headline_metrics_with_the_right_sign_and_counts_failures(tmp_path):
    from bench.leaderboard import versus_baseline
    from conftest import load_script

    rows = [("m", "jpeg", "restoration", "psnr", 31.0), ("identity", "jpeg", "restoration", "psnr", 30.0),
            ("m", "jpeg", "restoration", "ssim", 0.5), ("identity", "jpeg", "restoration", "ssim", 0.9),
            ("m", "canny", "edge", "mae", 0.30), ("identity", "canny", "edge", "mae", 0.20),
            ("m", "canny", "edge", "psnr", 40.0), ("identity", "canny", "edge", "psnr", 10.0),
            ("m", "haze", "restoration", "psnr", float("nan")), ("identity", "haze", "restoration", "psnr", 14.0),
            ("other", "haze", "restoration", "psnr", 99.0)]
    model_task = pd.DataFrame(rows, columns=["model", "task", "category", "metric", "mean"])
    table = versus_baseline(model_task, "m")
    assert list(table["task"]) == ["jpeg", "haze", "canny"]  # the paper's order, headline metric only
    by_task = table.set_index("task")
    assert by_task.loc["jpeg", "margin"] == pytest.approx(1.0) and by_task.loc["jpeg", "beats"]
    # MAE: lower is better, so a higher MAE is a negative margin even though its PSNR is higher.
    assert by_task.loc["canny", "metric"] == "mae" and by_task.loc["canny", "margin"] == pytest.approx(-0.1)
    assert not by_task.loc["canny", "beats"] and not by_task.loc["haze", "beats"]  # failed: not a win
    with pytest.raises(ValueError, match="no main-track results for \\['nobody'\\]"):
        versus_baseline(model_task, "nobody")

    card_tables = load_script("model_card").card_tables
    model_task.to_parquet(tmp_path / "model_task.parquet")
    card = card_tables(tmp_path, "m")
    assert "| restoration | 1 / 2 | +1.00 | +1.00 |" in card  # the failed task counts as lost, has no margin
    assert "| canny | edge | mae | 0.3 | 0.2 | -0.1 | no |" in card


def test_query_margins_find_the_query_a_mean_is_lost_to(tmp_path):
    from bench.leaderboard import query_margins
    from conftest import load_script

    model = [row(prov("m"), task="jpeg", value=v, sample=f"jpeg/test/{i:06d}") for i, v in enumerate((12, 31, 30))]
    model += [row(prov("m"), task="canny", metric="mae", value=v, sample=f"canny/test/{i:06d}")
              for i, v in enumerate((0.1, 0.3))]
    base = [row(prov("identity"), task="jpeg", value=v, sample=f"jpeg/test/{i:06d}") for i, v in enumerate((34, 30, 29))]
    base += [row(prov("identity"), task="canny", metric="mae", value=0.2, sample=f"canny/test/{i:06d}")
             for i in range(3)]  # one query the model lacks: not paired, not counted
    margins = query_margins(frame(model + base), "m").set_index("task")
    assert margins.loc["jpeg", "queries"] == 3 and margins.loc["jpeg", "median"] == pytest.approx(1.0)
    # margins -22, 1, 1: mean -6.67, std 13.28, t(0.975, 2) = 4.303, so the interval spans 0
    assert margins.loc["jpeg", "mean"] == pytest.approx(-20 / 3) and margins.loc["jpeg", "wins"] == 2
    assert margins.loc["jpeg", "ci95"] == pytest.approx(4.3027 * math.sqrt(529 / 3) / math.sqrt(3), rel=1e-4)
    assert margins.loc["jpeg", "verdict"] == "within noise"
    assert margins.loc["jpeg", "worst"] == pytest.approx(-22.0) and margins.loc["jpeg", "worst_query"] == "jpeg/test/000000"
    # MAE: lower is better, so the query with the higher MAE is the worst
    assert margins.loc["canny", "queries"] == 2 and margins.loc["canny", "worst"] == pytest.approx(-0.1)
    assert margins.loc["canny", "worst_query"] == "canny/test/000001"
    with pytest.raises(ValueError, match="no main-track results for \\['nobody'\\]"):
        query_margins(frame(model + base), "nobody")

    write_unit(tmp_path / "res", model, "jpeg")
    write_unit(tmp_path / "res", base, "jpeg")
    write_leaderboards([tmp_path / "res"], tmp_path / "lb")
    card = load_script("model_card").card_tables(tmp_path / "lb", "m", results=[tmp_path / "res"])
    assert "| jpeg | * | psnr | 24.33 | 31 | -6.67 | no | [-39.7, +26.3] | within noise | +1 | -22 (000000) |" in card
    assert "| * | 0 / 1 | -6.67 | -6.67 | 0 / 1 / 0 |" in card


def test_ci95_and_paired_verdicts():
    from bench.leaderboard import ci95_half_width, paired_verdict

    # 1, 2, 3, 4: std 1.29099, standard error 0.645497, t(0.975, 3) = 3.182446
    assert ci95_half_width(1.2909944, 4) == pytest.approx(2.054260, rel=1e-6)
    assert math.isnan(ci95_half_width(1.0, 1)) and math.isnan(ci95_half_width(math.nan, 5))
    assert paired_verdict(2.5, 2.05) == "better" and paired_verdict(-2.5, 2.05) == "worse"
    assert paired_verdict(1.0, 2.05) == "within noise" and paired_verdict(1.0, math.nan) == "too few queries"


def write_unit(folder, rows, name="gaussian_noise"):
    return write_rows(folder / rows[0]["model"] / "main" / f"{name}.parquet", rows, {"unit": name})


def test_mixed_manifests_unequal_query_counts_and_repeated_runs_are_warned(tmp_path, caplog):
    def run(model, run_id, manifest="m", n=2, time="2026-01-01T00:00:00+00:00"):
        p = {**prov(model, time=time), "run_id": run_id, "data_manifest_sha256": manifest}
        return [row(p, value=30.0 + i, sample=f"s{i}") for i in range(n)]

    assert build_leaderboards(frame(run("a", "r1") + run("b", "r2"))).warnings == []
    lb = build_leaderboards(frame(run("a", "r1", manifest="m" * 64) + run("b", "r2", manifest="n" * 64)))
    assert len(lb.warnings) == 1 and "2 different test splits" in lb.warnings[0]
    assert "mmmmmmmmmmmm (a)" in lb.warnings[0] and "nnnnnnnnnnnn (b)" in lb.warnings[0]
    assert to_markdown(lb).index("## Warnings") < to_markdown(lb).index("## Table 1")
    lb = build_leaderboards(frame(run("a", "r1", n=2) + run("b", "r2", n=8)))
    assert len(lb.warnings) == 1 and "gaussian_noise (a 2, b 8 queries)" in lb.warnings[0]
    assert "--limit" in lb.warnings[0]

    # The same model in two results folders: warned with both sources named; the latest rows count.
    write_unit(tmp_path / "old", run("a", "r-old", time="2026-01-01T00:00:00+00:00"))
    write_unit(tmp_path / "new", run("a", "r-new", n=2, time="2026-02-01T00:00:00+00:00"))
    new_rows = read_results([tmp_path / "new"])
    new_rows["value"] = 40.0
    write_unit(tmp_path / "new", new_rows.to_dict("records"))
    with caplog.at_level("WARNING", logger="bench.leaderboard"):
        lb = write_leaderboards([tmp_path / "old", tmp_path / "new"], tmp_path / "lb")
    [warning] = lb.warnings
    assert "a: 1 unit(s) (main/gaussian_noise) were evaluated in 2 runs" in warning
    assert f"run r-new from {tmp_path / 'new'}" in warning and f"run r-old from {tmp_path / 'old'}" in warning
    assert warning in caplog.text and "## Warnings" in (tmp_path / "lb" / "leaderboard.md").read_text()
    assert lb.model_task.set_index("model").loc["a", "mean"] == 40.0
    # One folder re-run in place (one file per unit) is not a repeat.
    assert write_leaderboards([tmp_path / "new"], tmp_path / "lb2").warnings == []


def test_hand_edited_results_are_errors_naming_the_file_and_non_finite_means_are_json_null(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.cli import main

    path = write_unit(tmp_path / "res", [row(prov("a"), value=v, sample=f"s{i}") for i, v in enumerate((30, 32))])
    table = pq.read_table(path)
    edited = table.set_column(table.schema.get_field_index("value"), "value", pa.array(["30", "x"]))
    bad = tmp_path / "bad" / "a" / "main" / "gaussian_noise.parquet"
    bad.parent.mkdir(parents=True)
    pq.write_table(edited.replace_schema_metadata(table.schema.metadata), bad)
    with pytest.raises(ValueError, match=f"{bad}: column 'value' holds string, expected float64"):
        write_leaderboards([tmp_path / "bad"], tmp_path / "lb")
    assert main(["leaderboard", str(tmp_path / "bad"), "--out", str(tmp_path / "lb"), "--quiet"]) == 1
    assert f"{bad}: column 'value'" in capsys.readouterr().err
    pq.write_table(table.drop_columns(["metric"]).replace_schema_metadata(table.schema.metadata), bad)
    with pytest.raises(ValueError, match="column 'metric' is missing"):
        write_leaderboards([bad], tmp_path / "lb")

    for value in (math.nan, math.inf):
        write_unit(tmp_path / "odd", [row(prov("a"), value=value, sample="s0")])
        lb = write_leaderboards([tmp_path / "odd"], tmp_path / "lb")
        text = (tmp_path / "lb" / "metrics.json").read_text()
        assert "NaN" not in text and "Infinity" not in text
        assert json.loads(text)["models"]["a"]["psnr_restoration"] is None
        assert any("non-finite value" in w for w in lb.warnings)
    # An efficiency figure that is NaN by its convention (peak GPU memory on a CPU) is no alarm.
    write_unit(tmp_path / "cpu", [row(prov("a"), track="efficiency", task="*", metric="peak_memory_mib",
                                      value=math.nan, sample="")])
    assert write_leaderboards([tmp_path / "cpu"], tmp_path / "lb").warnings == []


def test_results_files_without_rows_are_named_in_a_warning_or_an_error(tmp_path, capsys):
    from pipelines.cli import main

    write_unit(tmp_path / "res", [row(prov("a"))])
    empty = write_rows(tmp_path / "res" / "b" / "main" / "jpeg.parquet", [], {"model": "b"})
    lb = write_leaderboards([tmp_path / "res"], tmp_path / "lb")
    [warning] = lb.warnings
    assert f"1 results file(s) hold no rows and were left out: {empty}" in warning
    assert set(lb.model_task["model"]) == {"a"}
    with pytest.raises(ValueError, match=f"no result rows: the results file\\(s\\) {empty} hold none"):
        read_results([empty])
    assert main(["leaderboard", str(empty), "--out", str(tmp_path / "lb2"), "--quiet"]) == 1
    assert "no result rows" in capsys.readouterr().err


def test_leaderboard_out_that_is_a_file_is_an_error(results, tmp_path, capsys):
    from pipelines.cli import main

    write_unit(tmp_path / "res", [row(prov("a"))])
    (tmp_path / "r.sh").write_text("keep me")
    assert main(["leaderboard", str(tmp_path / "res"), "--out", str(tmp_path / "r.sh")]) == 1
    assert "--out" in capsys.readouterr().err and (tmp_path / "r.sh").read_text() == "keep me"


def run(model, run_id, time, device="cpu"):
    return dict(prov(model, time=time), run_id=run_id, device=device)


def test_a_rerun_replaces_the_whole_unit_not_row_by_row():
    old, new = run("m", "old", "2026-01-01T00:00:00+00:00"), run("m", "new", "2026-02-01T00:00:00+00:00")
    base = prov("identity")
    rows = [row(base, value=30.0, sample=f"s{i}") for i in range(4)]
    rows += [row(base, task="pencil", value=15.0), row(base, task="canny", metric="mae", value=0.3)]
    # gaussian_noise: 4 queries at 30 dB, then a rerun with --limit 2 at 40 dB
    rows += [row(old, value=30.0, sample=f"s{i}") for i in range(4)]
    rows += [row(new, value=40.0, sample=f"s{i}") for i in range(2)]
    # pencil: failed, then fixed; canny: scored, then failed
    rows += [row(old, task="pencil", value=math.nan, sample="", prompt="", status="failed", error="OOM"),
             row(new, task="pencil", value=20.0)]
    rows += [row(old, task="canny", metric="mae", value=0.1),
             row(new, task="canny", metric="mae", value=math.nan, sample="", prompt="", status="failed", error="bad")]
    lb = build_leaderboards(frame(rows))
    mt = lb.model_task[lb.model_task["model"] == "m"].set_index("task")
    assert (mt.loc["gaussian_noise", "mean"], mt.loc["gaussian_noise", "n"]) == (40.0, 2)
    assert mt.loc["pencil", "status"] == "ok" and mt.loc["pencil", "mean"] == 20.0
    assert mt.loc["canny", "status"] == "failed"
    assert list(lb.failures["task"]) == ["canny"]
    overall = lb.overall.set_index("model")
    assert overall.loc["m", "failed_tasks"] == 1
    assert any("were evaluated in 2 runs" in w and "the newest run's rows count" in w for w in lb.warnings)


def test_efficiency_keeps_each_device_measured_and_invents_none():
    cpu, gpu = run("alpha", "a", "2026-01-01T00:00:00+00:00"), run("alpha", "b", "2026-02-01T00:00:00+00:00", "cuda")
    other = run("beta", "c", "2026-01-01T00:00:00+00:00", "cuda")
    rows = [row(p, track="efficiency", task="*", metric="latency_ms", value=v, sample="", prompt="", prompt_task="*")
            for p, v in ((cpu, 50.0), (gpu, 5.0), (other, 4.0))]
    rows.append(row(other, track="efficiency", task="*", metric="params", value=1e6, sample="", prompt="",
                    prompt_task="*"))
    eff = build_leaderboards(frame(rows)).efficiency
    got = {(r.model, r.device): r.latency_ms for r in eff.itertuples()}
    assert got == {("alpha", "cpu"): 50.0, ("alpha", "cuda"): 5.0, ("beta", "cuda"): 4.0}
    assert "params" in eff.columns  # a metric one model lacks stays a column


def test_failed_mismatch_units_on_one_query_task_stay_apart_and_name_their_prompt(tmp_path):
    from bench.evaluate import EvalContext
    from bench.leaderboard import failed_unit_task

    ctx = EvalContext.__new__(EvalContext)
    ctx.provenance = {k: v for k, v in prov("m").items() if k != "_time"}
    rows = [EvalContext.failure_row(ctx, "mismatch", unit, "boom")
            for unit in ("canny__on__gaussian_noise", "low_light__on__gaussian_noise")]
    lb = build_leaderboards(frame(rows))
    assert sorted(failed_unit_task(r) for r in lb.failures.itertuples()) == ["canny on gaussian_noise",
                                                                              "low_light on gaussian_noise"]
    assert "| m | mismatch | canny on gaussian_noise | boom |" in to_markdown(lb)


def test_query_margins_never_pair_queries_of_different_test_splits():
    from bench.leaderboard import query_margins

    ident, model = prov("identity"), dict(prov("tiny"), data_manifest_sha256="another split")
    rows = [row(ident, value=30.0, sample=f"s{i}") for i in range(3)] + [row(model, value=35.0, sample=f"s{i}")
                                                                          for i in range(3)]
    assert query_margins(frame(rows), "tiny").empty


def test_table_4_lists_models_that_ran_only_the_robustness_track():
    from bench.latex import to_latex

    a, b = prov("alpha"), prov("beta")
    rows = [row(a, value=30.0)]  # alpha ranked; beta ran robustness only
    for prompt, v in (("p1", 20.0), ("p2", 22.0)):
        rows += [row(a, track="robustness", value=v + 8, prompt=prompt), row(b, track="robustness", value=v,
                                                                             prompt=prompt)]
    lb = build_leaderboards(frame(rows))
    latex = to_latex(lb).split("llvbench-table-4")[1].split("\\end{table")[0]
    assert "alpha" in latex and "beta" in latex
    table_4 = to_markdown(lb).split("## Table 4")[1].split("##")[0]
    assert table_4.index("| alpha") < table_4.index("| beta")


def test_category_columns_split_a_category_scored_by_two_metrics():
    from bench.leaderboard import category_columns

    mc = pd.DataFrame({"model": ["a", "a", "a"], "category": ["edge", "edge", "restoration"],
                       "metric": ["psnr", "mae", "psnr"]})
    assert category_columns(mc, ("restoration", "edge")) == [("restoration", "restoration", "psnr"),
                                                             ("edge (MAE)", "edge", "mae"),
                                                             ("edge (PSNR)", "edge", "psnr")]


def test_query_margins_of_models_without_a_shared_query_are_empty():
    from bench.leaderboard import query_margins

    ident, only_unseen = prov("identity"), prov("tiny")
    rows = [row(ident, value=30.0, sample="s0"), row(only_unseen, task="canny", metric="mae", value=0.1)]
    margins = query_margins(frame(rows), "tiny")
    assert margins.empty and "verdict" in margins.columns  # the report shows a row of '–'


def test_held_out_tasks_follow_the_split_the_rows_record_not_the_installed_tasks():
    from bench.leaderboard import held_out_tasks

    a = prov("alpha")
    rows = [row(a, task="gaussian_noise", sample="gaussian_noise/test/000000"),
            # a held-out task of a plug-in that is not installed here: its sample keys say 'unseen'
            row(a, task="plugin_held_out", sample="plugin_held_out/unseen/000000"),
            row(a, task="plugin_held_out", sample="plugin_held_out/unseen/000001", value=32.0),
            # a registered held-out task with only a failure row: no key records a split, the registry decides
            row(a, task="sepia", sample="", prompt="", value=math.nan, status="failed", error="boom")]
    for r in rows[1:]:
        r["category"] = "restoration" if r["task"] == "plugin_held_out" else "stylization"
    df = frame(rows)
    assert held_out_tasks(df) == {"plugin_held_out", "sepia"}
    lb = build_leaderboards(df)
    category = dict(zip(lb.model_task["task"], lb.model_task["category"]))
    assert category == {"gaussian_noise": "restoration", "plugin_held_out": "unseen", "sepia": "unseen"}
    md = to_markdown(lb)
    assert "plugin_held_out" not in md.split("## Table 1")[1].split("##")[0]
    assert "plugin_held_out" in md.split("## Unseen tasks")[1].split("##")[0]


def other_tasks_results():
    """gaussian_noise (Table 1) plus an edge task scored by PSNR and a stylization task by MAE:
    (category, headline metric) pairs of no paper table."""
    rows = []
    for model, shift in (("alpha", 0.0), ("beta", 1.0)):
        p = prov(model)
        rows.append(row(p, value=30.0 + shift))
        edge = row(p, task="edge_by_psnr", value=20.0 - shift)
        stylized = row(p, task="style_by_mae", metric="mae", value=0.1 + shift / 10)
        edge["category"], stylized["category"] = "edge", "stylization"
        rows += [edge, stylized]
    return frame(rows)


def test_tasks_outside_the_paper_tables_get_an_other_tasks_table():
    lb = build_leaderboards(other_tasks_results())
    assert set(lb.overall["tasks"]) == {3}  # every task counts in Overall ...
    md = to_markdown(lb)                    # ... and is shown in a table
    for title, cells in (("Other tasks (headline metric PSNR↑)", "| model | edge_by_psnr |\n|---|---|\n"
                                                                 "| alpha | **20.00** |\n| beta | 19.00 |"),
                         ("Other tasks (headline metric MAE↓)", "| model | style_by_mae |\n|---|---|\n"
                                                                "| alpha | **0.1000** |\n| beta | 0.2000 |")):
        assert cells in md.split(f"## {title}")[1].split("##")[0]
    assert "## Table 2" not in md and "## Table 3" not in md


def test_a_restoration_task_scored_by_mae_is_in_no_psnr_table():
    # its PSNR rows are secondary: Table 1 must not rank them (it would bold the worse model)
    rows = []
    for model, (mae, psnr) in (("alpha", (0.11, 21.0)), ("beta", (0.21, 26.0))):
        p = prov(model)
        rows.append(row(p, value=30.0))
        for metric, value in (("mae", mae), ("psnr", psnr)):
            r = row(p, task="mae_restoration", metric=metric, value=value)
            r["category"] = "restoration"
            rows.append(r)
    md = to_markdown(build_leaderboards(frame(rows)))
    assert "mae_restoration" not in md.split("## Table 1")[1].split("##")[0]
    others = md.split("## Other tasks (headline metric MAE↓)")[1].split("##")[0]
    assert "| alpha | **0.1100** |" in others


def test_a_category_with_a_failed_task_gets_no_mean_and_no_best_mark(results, tmp_path):
    """A model that fails the hard task of a category must not win it on the easy ones."""
    from bench.report import ReportConfig, build_report

    easy = prov("easy")
    rows = [row(easy, value=40.0, sample=f"s{i}") for i in range(2)]  # better than alpha on gaussian_noise
    rows.append(row(easy, task="rain_simple", value=math.nan, sample="", prompt="", status="failed",
                    error="easy: predict() raised RuntimeError: boom"))
    res_dir = tmp_path / "results"
    for (model, task), group in pd.concat([results, frame(rows)]).groupby(["model", "task"]):
        write_rows(res_dir / model / f"{task}.parquet", group.to_dict("records"), {"unit": task})
    page = build_report(res_dir, tmp_path / "report", config=ReportConfig(formats=("png",))).markdown.read_text()
    table = page[page.index("Mean per category"):]
    line = next(l for l in table.splitlines() if l.startswith("| easy "))
    assert "failed" in line and "**" not in line.split("|")[2], line


def test_table_4_prints_mae_spreads_with_their_own_places(tmp_path):
    m = prov("m")
    rows = []
    for prompt, value in (("p1", 0.1000), ("p2", 0.1004)):  # an MAE spread of 0.0002
        rows.append(row(m, track="robustness", task="canny", metric="mae", value=value, prompt=prompt))
    for prompt, value in (("p1", 30.0), ("p2", 31.0)):
        rows.append(row(m, track="robustness", value=value, prompt=prompt))
    lb = build_leaderboards(frame(rows))
    text = to_markdown(lb)
    table = text[text.index("Table 4"):]
    assert "0.00020" in table and "0.500" in table, table
    from bench.leaderboard import headline_numbers
    numbers = headline_numbers(lb)["models"]["m"]
    assert numbers["robustness_std_psnr"] == 0.5 and numbers["robustness_std_mae"] == pytest.approx(0.0002)
    assert "robustness_std_mean" not in numbers  # dB and MAE are not averaged together


def test_models_evaluated_on_different_tasks_are_warned_about(results):
    warnings = build_leaderboards(results).warnings
    lacking = next(w for w in warnings if "evaluated on different tasks" in w)
    assert "beta lacks 4 (low_light, pencil, rain_complex, rain_simple)" in lacking
    assert "alpha lacks" not in lacking
    same = results[results["task"].isin(["gaussian_noise", "canny"])]
    assert not any("different tasks" in w for w in build_leaderboards(same).warnings)


def test_prompt_blind_models_are_those_whose_spread_prints_as_zero_on_every_task(tmp_path):
    from bench.latex import to_latex
    from bench.leaderboard import prompt_blind
    rows = []
    spreads = {"flat": (0.0, 0.0, 0.0, 0.0), "tiny": (0.0, 0.0004, 0.0, 0.00001),  # 0.0002 dB prints 0.000
               "uses": (0.0, 0.0, 0.0, 0.002)}  # canny's MAE spread 0.001 prints 0.00100
    for name, (a1, a2, c1, c2) in spreads.items():
        m = prov(name)
        rows += [row(m, value=30.0), row(m, task="canny", metric="mae", value=0.1),
                 row(m, track="robustness", value=30.0 + a1, prompt="p1"),
                 row(m, track="robustness", value=30.0 + a2, prompt="p2"),
                 row(m, track="robustness", task="canny", metric="mae", value=0.1 + c1, prompt="p1"),
                 row(m, track="robustness", task="canny", metric="mae", value=0.1 + c2, prompt="p2")]
    lb = build_leaderboards(frame(rows))
    assert prompt_blind(lb.robustness) == ["flat", "tiny"]
    table4 = to_markdown(lb).split("## Table 4")[1]
    assert "| uses | **0.000** | **0.00100** |" in table4  # the only ranked row takes both marks
    assert "| flat | 0.000 | 0.00000 |" in table4 and "Not ranked: flat, tiny read 0 on every task" in table4
    table4_tex = next(block for block in to_latex(lb).split("\\end{table}") if "llvbench-table-4" in block)
    lines = {line.split(" & ")[0]: line for line in table4_tex.splitlines() if " & " in line}
    assert "\\textbf" in lines["uses"] and "\\textbf" not in lines["flat"] + lines["tiny"], lines
    assert "Not ranked: flat, tiny" in table4_tex


def test_table_4_names_the_range_of_prompts_when_tasks_had_different_counts():
    # K is capped per task by the prompts its test split offers: one number would overstate some tasks.
    from bench.latex import to_latex
    from bench.leaderboard import counted
    m = prov("alpha")
    rows = [row(m, value=30.0), row(m, task="canny", metric="mae", value=0.1)]
    rows += [row(m, track="robustness", value=30.0 + i, prompt=f"p{i}") for i in range(2)]
    rows += [row(m, track="robustness", task="canny", metric="mae", value=0.1 + i / 10, prompt=f"p{i}")
             for i in range(3)]
    lb = build_leaderboards(frame(rows))
    assert "## Table 4: standard deviation of the task mean across 2–3 prompts (headline metric)↓" in to_markdown(lb)
    assert r"Table 4: standard deviation$\downarrow$ of the task mean across 2--3 prompts" in to_latex(lb)
    assert (counted([1, 1], "query", "queries"), counted([8], "prompt"), counted([3, 1], "prompt")) == \
        ("1 query", "8 prompts", "1–3 prompts")


def test_a_load_failure_of_a_name_run_from_several_checkpoints_is_no_model_of_its_own():
    rows = [row(prov("net", sha="a" * 64)), row(prov("net", sha="b" * 64), value=20.0),
            row(prov("net"), track="load", task="*", value=math.nan, sample="", prompt="", status="failed",
                error="net: could not load")]
    lb = build_leaderboards(frame(rows))
    assert set(lb.model_task["model"]) == {"net@aaaaaaaa", "net@bbbbbbbb"}
    assert list(lb.failures["model"]) == ["net"]  # not "net@", a model with nothing but a failure


def test_the_uncertainty_note_takes_headline_rows_only():
    from bench.leaderboard import uncertainty_note

    # canny's side PSNR spreads widely; the note speaks of the numbers the tables show
    rows = []
    for i, (noise, canny_psnr) in enumerate([(30.0, 5.0), (31.0, 45.0), (32.0, 25.0)]):
        rows += [row(prov("a"), value=noise, sample=f"s{i}"), row(prov("a"), task="canny", value=canny_psnr,
                                                                  sample=f"s{i}"),
                 row(prov("a"), task="canny", metric="mae", value=0.1 + i / 100, sample=f"s{i}")]
    note = uncertainty_note(build_leaderboards(frame(rows)).model_task)
    assert "±2.48 dB (PSNR)" in note  # t(0.975, 2) · 1 / sqrt(3): 30, 31 and 32 (std 1) alone
