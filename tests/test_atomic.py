"""taskgen.atomic: whole-file writes that a killed process cannot leave half done."""
from __future__ import annotations

import os
import stat

import pytest

from taskgen.atomic import atomic_path, atomic_write_json, atomic_write_text


def test_a_regular_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == '{\n  "a": 1\n}\n'  # the old content, not the half-written one
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_a_device_or_pipe_is_written_in_place_not_replaced_by_a_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so opening for writing does not block
    try:
        atomic_write_text(fifo, "through the pipe\n")
        assert os.read(reader, 100) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the pipe must stay a pipe"
    # (not tried on /dev/null itself: a regression would replace the machine's /dev/null)


def test_a_folder_as_the_output_is_a_clear_error(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder, not a file to write"):
        atomic_write_text(tmp_path, "x")
