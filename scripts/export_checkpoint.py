"""Export a training run's eval weights as a small checkpoint folder to ship or carry forward.

    python scripts/export_checkpoint.py RUN_FOLDER checkpoints/genlv-s            # bf16 weights
    python scripts/export_checkpoint.py RUN_FOLDER OUT --dtype float32

RUN_FOLDER is what ``llvbench train --out`` leaves (config.json + model.safetensors, the EMA when
the run kept one). The export holds config.json (plus ``stored_dtype``), model.safetensors with the
floating-point tensors cast to ``--dtype``, and the run's metrics.csv and summary.json when present;
no optimizer state. The bench and ``llvbench train --init`` load it like the run folder (weights are
cast back to the network's fp32 on load). Written to a temporary folder and renamed into place, so
an existing export is replaced whole or not at all; other files already in OUT (a model card) stay.

``--continues``: the run was started with ``--init OUT`` (checked: the run's init_sha256 must be
OUT's weights), so OUT's metrics.csv is kept and the run's rows are appended after it, their step
and elapsed shifted past its last row: the shipped curve (drawn by the report) then covers every
run that trained these weights. The export keeps OUT's name (not the run folder's) and its
config.json ``step`` counts every step that trained the weights: OUT's steps (its ``step``, or its
curve's last step where that is larger: exports made before this counted the last run only) plus
the run's; ``continued`` records both parts.

``--interpolate BASE --ratio R``: export BASE + R * (run - BASE) instead of the run's weights, a
linear path between two checkpoints of the same architecture (R = 1: the run; 0: BASE). Fine-tuning
from BASE and interpolating back (WiSE-FT, Wortsman et al. 2022) can keep what the run gained on
some tasks without all it lost on others. config.json records BASE's sha256 and R.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from model.checkpoints import read_safetensors, write_safetensors
from model.train import CONFIG_NAME, WEIGHTS_NAME
from taskgen.shards import file_sha256
RUN_LOGS = ("metrics.csv", "summary.json")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def chain_metrics(earlier: str, later: str, where: str = "metrics.csv", steps_before: int = 0) -> str:
    """Two metrics.csv texts -> one curve: ``later``'s rows follow ``earlier``'s, step and elapsed shifted
    (step by ``earlier``'s last step, or by ``steps_before`` where that is larger: steps past the last row)."""
    first, second = list(csv.DictReader(io.StringIO(earlier))), list(csv.DictReader(io.StringIO(later)))
    if not first:
        return later
    if second and list(second[0]) != list(first[0]):
        raise ValueError(f"{where}: the run logs columns {list(second[0])}, the export {list(first[0])}; "
                         "cannot chain the curves")
    step, elapsed = max(int(first[-1]["step"]), steps_before), float(first[-1]["elapsed"])
    for row in second:
        row["step"], row["elapsed"] = str(int(row["step"]) + step), repr(float(row["elapsed"]) + elapsed)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(first[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(first + second)
    return text.getvalue()


def previous_steps(out: Path) -> int:
    """The steps that trained ``out``'s weights: its config.json ``step``, or its metrics.csv's last
    step where that is larger (an export continued before the total was recorded counts its last run only)."""
    config = json.loads((out / CONFIG_NAME).read_text()) if (out / CONFIG_NAME).is_file() else {}
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    logged = int(rows[-1]["step"]) if rows else 0
    return max(int(config.get("step") or 0), logged)


def continued_config(config: dict, run: Path, out: Path) -> dict:
    """The run's config as the continuation of ``out``: ``out``'s name, the total step, both parts recorded."""
    previous = json.loads((out / CONFIG_NAME).read_text()) if (out / CONFIG_NAME).is_file() else {}
    before, added = previous_steps(out), int(config.get("step") or 0)
    return {**config, "name": previous.get("name") or out.name, "step": before + added,
            "continued": {"previous_step": before, "run_step": added,
                          "run_name": config.get("name") or run.name}}


def check_continuation(run: Path, out: Path) -> None:
    """Raise unless ``run`` started from ``out``'s weights (its init_sha256) and both have a metrics.csv."""
    for folder, what in ((out, "to continue"), (run, "to append")):
        if not (folder / "metrics.csv").is_file():
            raise FileNotFoundError(f"--continues: {folder} has no metrics.csv {what}")
    started_from = json.loads((run / CONFIG_NAME).read_text()).get("init_sha256", "") \
        if (run / CONFIG_NAME).is_file() else ""
    shipped = file_sha256(out / WEIGHTS_NAME) if (out / WEIGHTS_NAME).is_file() else ""
    if not started_from or started_from != shipped:
        raise ValueError(f"--continues: {run} did not start from {out / WEIGHTS_NAME} "
                         f"(its init_sha256 is {started_from[:12] or 'absent'}, the file's {shipped[:12] or 'absent'})")


def interpolate_states(base: dict[str, torch.Tensor], run: dict[str, torch.Tensor], ratio: float,
                       where: str = "") -> dict[str, torch.Tensor]:
    """base + ratio * (run - base) per floating-point tensor, in fp32; other tensors from ``run``.
    The two must hold the same keys and shapes (the same architecture)."""
    if set(base) != set(run):
        differing = sorted(set(base) ^ set(run))
        raise ValueError(f"{where}: the checkpoints hold different tensors ({len(differing)} keys differ, "
                         f"e.g. {differing[0]!r}); interpolate only within one architecture")
    mixed = {}
    for key, value in run.items():
        if base[key].shape != value.shape:
            raise ValueError(f"{where}: {key} has shape {tuple(base[key].shape)} in the base and "
                             f"{tuple(value.shape)} in the run")
        mixed[key] = torch.lerp(base[key].float(), value.float(), ratio) if value.is_floating_point() else value
    return mixed


def previous_export(out: Path) -> Path:
    """Where the export being replaced waits while the new one is renamed into place."""
    return out.with_name(f".{out.name}.old")


def recover_interrupted_swap(out: Path) -> None:
    """Finish what a killed export left: the previous export back in place if it died between the two
    renames (its model card and loss curve with it), or the leftover of one that died after them."""
    old = previous_export(out)
    if not old.is_dir():
        return
    if out.exists():
        shutil.rmtree(old)
    else:
        old.rename(out)
        print(f"export_checkpoint: {out} restored from {old}, left by an interrupted export", file=sys.stderr)


def export_checkpoint(run: str | Path, out: str | Path, dtype: str = "bfloat16", continues: bool = False,
                      interpolate: str | Path | None = None, ratio: float = 1.0) -> Path:
    """Write ``out`` (config, weights cast to ``dtype``, run logs) from the run folder ``run``, or the
    weights ``interpolate`` + ratio * (run - interpolate); returns the weights path."""
    run, out = Path(run), Path(out)
    recover_interrupted_swap(out)
    if continues:
        check_continuation(run, out)
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: choose one of {sorted(DTYPES)}")
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (run / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run}: not a training run folder (missing {', '.join(missing)})")
    state, metadata = read_safetensors(run / WEIGHTS_NAME)
    config = json.loads((run / CONFIG_NAME).read_text())
    if continues:
        config = continued_config(config, run, out)
    if interpolate is not None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"--ratio {ratio}: must lie in [0, 1] (0 = {interpolate}, 1 = {run})")
        base_file = Path(interpolate) / WEIGHTS_NAME
        if not base_file.is_file():
            raise FileNotFoundError(f"--interpolate {interpolate}: no {WEIGHTS_NAME} there")
        base, _ = read_safetensors(base_file)
        state = interpolate_states(base, state, ratio, where=f"--interpolate {interpolate} with {run}")
        config["interpolated"] = {"base_sha256": file_sha256(base_file), "ratio": ratio}
    state = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in state.items()}
    config["stored_dtype"] = dtype

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        if out.is_dir():  # keep what else lives there (the model card)
            for item in out.iterdir():
                if item.is_file() and item.name not in (CONFIG_NAME, WEIGHTS_NAME, *RUN_LOGS):
                    shutil.copy2(item, staging / item.name)
        write_safetensors(staging / WEIGHTS_NAME, state, metadata)
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name in RUN_LOGS:
            if (run / name).is_file():
                shutil.copy2(run / name, staging / name)
        if continues:
            (staging / "metrics.csv").write_text(chain_metrics(
                (out / "metrics.csv").read_text(), (run / "metrics.csv").read_text(), str(run / "metrics.csv"),
                config["continued"]["previous_step"]))
        old = previous_export(out)
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / WEIGHTS_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="training run folder (llvbench train --out)")
    parser.add_argument("out", help="export folder, e.g. checkpoints/genlv-s")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--continues", action="store_true",
                        help="the run continued OUT (--init OUT): append its loss curve to OUT's metrics.csv")
    parser.add_argument("--interpolate", metavar="BASE", help="export BASE + RATIO * (run - BASE): a checkpoint "
                        "folder of the same architecture, e.g. the weights the run started from")
    parser.add_argument("--ratio", type=float, default=1.0, help="with --interpolate: 1 = the run, 0 = BASE (default 1)")
    args = parser.parse_args(argv)
    if args.ratio != 1.0 and args.interpolate is None:
        parser.error("--ratio needs --interpolate BASE")
    try:
        weights = export_checkpoint(args.run, args.out, args.dtype, args.continues, args.interpolate, args.ratio)
    except (OSError, ValueError) as err:
        print(f"export_checkpoint: {err}", file=sys.stderr)
        return 2
    print(f"{weights}: {weights.stat().st_size / 2**20:.1f} MiB ({args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
