"""The per-image results table (DESIGN.md): one row per (model, task, sample, prompt, metric).

Columns are fixed by ``COLUMNS``; every file is written atomically. A failed (model, unit) is one
row with ``status="failed"``, ``value=NaN`` and the error message, so failures travel with the
results into the leaderboard instead of vanishing. Each file carries in its parquet metadata a
``fingerprint`` (what was evaluated: model, checkpoint, data, track settings) and its ``status``,
so a resumed run knows whether an existing file still answers the same question.
"""
from __future__ import annotations

import json
from pathlib import Path

NOT_MEASURED = "not measured: the unit failed"  # the convention of a failure row (it has no value)
COLUMNS = (
    ("run_id", "string"),
    ("model", "string"),
    ("checkpoint_sha256", "string"),
    ("track", "string"),
    ("task", "string"),
    ("category", "string"),
    ("prompt_task", "string"),
    ("sample_key", "string"),
    ("prompt_key", "string"),
    ("prompt_rule", "string"),
    ("metric", "string"),
    ("value", "float64"),
    ("higher_is_better", "bool"),
    ("convention", "string"),
    ("status", "string"),
    ("error", "string"),
    ("data_manifest_sha256", "string"),
    ("llvbench_version", "string"),
    ("device", "string"),
    ("time", "string"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
FINGERPRINT_KEY = b"llvbench.fingerprint"
STATUS_KEY = b"llvbench.status"


def schema():
    import pyarrow as pa

    types = {"string": pa.string(), "float64": pa.float64(), "bool": pa.bool_()}
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS])


def write_rows(path: str | Path, rows: list[dict], fingerprint: dict, status: str = "done") -> Path:
    """Rows (dicts with every column) -> one parquet file, atomically, with fingerprint and status."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from taskgen.atomic import atomic_path

    missing = [c for c in COLUMN_NAMES if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"result rows lack columns {missing}")
    table = pa.Table.from_pylist(rows, schema=schema())
    table = table.replace_schema_metadata({FINGERPRINT_KEY: json.dumps(fingerprint, sort_keys=True).encode(),
                                           STATUS_KEY: status.encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_fingerprint(path: str | Path) -> tuple[dict | None, str]:
    """(fingerprint, status) stored in a results file; (None, "") if it is absent or unreadable."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):  # absent, or not a parquet file
        return None, ""
    raw = meta.get(FINGERPRINT_KEY)
    return (json.loads(raw) if raw else None), meta.get(STATUS_KEY, b"").decode()


def result_files(paths) -> list[Path]:
    """Files and folders (searched recursively for *.parquet) -> the result files, sorted."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("*.parquet")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no results at {p}")
    return files


# pyarrow types accepted per column kind of COLUMNS (a file rewritten by pandas may hold
# large_string or an integer value column; anything else is not a results file we can rank).
_ACCEPTED_TYPES = {"string": ("string", "large_string"), "bool": ("bool",),
                   "float64": ("double", "float", "halffloat", "int8", "int16", "int32", "int64",
                               "uint8", "uint16", "uint32", "uint64")}


def _check_columns(path: Path, schema) -> None:
    """Every results column present with a usable type; else a ValueError naming the file."""
    for name, kind in COLUMNS:
        index = schema.get_field_index(name)
        if index < 0:
            raise ValueError(f"{path}: not a valid llvbench results file: column {name!r} is missing")
        found = str(schema.field(index).type)
        if found not in _ACCEPTED_TYPES[kind]:
            raise ValueError(f"{path}: column {name!r} holds {found}, expected {kind} "
                             "(was the file edited by hand?); re-run llvbench eval for this unit")


def read_results(paths):
    """Result files/folders -> one pandas DataFrame of every row, plus a ``source`` column: the
    folder or file of ``paths`` each row was read from (so warnings can name it).

    Inside folders, parquet files that are not llvbench results (leaderboards, say) are skipped;
    a file named explicitly must be a results file. A results file that cannot be read or whose
    columns lack a results type (hand-edited, say) is a ValueError naming it. Results files that
    hold no rows are listed in ``attrs["empty_files"]`` (the leaderboard warns of them); when no
    file holds a row, that is a ValueError.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    frames, empty = [], []
    for given in paths:
        for f in result_files([given]):
            try:
                table = pq.read_table(f)
            except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
                raise ValueError(f"{f}: unreadable results file ({err})") from None
            if FINGERPRINT_KEY not in (table.schema.metadata or {}):
                if f == given:
                    raise ValueError(f"{f} is not an llvbench results file (no fingerprint); "
                                     "pass the eval output folders or their per-unit files")
                continue  # leaderboards or other parquet files inside a folder
            _check_columns(f, table.schema)
            if table.num_rows == 0:
                empty.append(str(f))
                continue
            df = table.to_pandas()
            df["value"] = df["value"].astype("float64")
            frames.append(df.assign(source=str(given)))
    if not frames and empty:
        raise ValueError(f"no result rows: the results file(s) {', '.join(empty)} hold none")
    if not frames:
        raise FileNotFoundError(f"no result files under {', '.join(map(str, paths))}")
    results = pd.concat(frames, ignore_index=True)
    results.attrs["empty_files"] = empty
    return results

