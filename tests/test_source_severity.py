"""scripts/source_severity.py: identity PSNR of each task per image source."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def severity_script():
    return load_script("source_severity")


def test_split_sources_keeps_each_specs_own_commas(severity_script):
    split = severity_script.split_sources
    assert split("photos,deadleaves:tint=0.25,blur=0.8 deadleaves") == \
        ["photos", "deadleaves:tint=0.25,blur=0.8", "deadleaves"]
    assert split("photos:astronaut,coffee,deadleaves,folder:/a,b") == \
        ["photos:astronaut,coffee", "deadleaves", "folder:/a,b"]
    # every kind taskgen registers starts a spec, the longest first (folder-upscale is not folder + "-upscale")
    assert split("folder-upscale:/x,deadleaves:rmin=0.05,texture=0.6,texamp=0.2,photos") == \
        ["folder-upscale:/x", "deadleaves:rmin=0.05,texture=0.6,texamp=0.2", "photos"]


def test_mean_gradient_counts_one_step_per_edge(severity_script):
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, 4:] = 80  # one vertical edge of 80 levels: 1 of 7 horizontal steps per row
    assert severity_script.mean_gradient(image) == pytest.approx(80 / 7)


def test_dead_leaves_suffer_more_from_jpeg_than_photos_and_the_lens_blur_closes_the_gap(severity_script):
    # the measurement the deadleaves blur/rmin options rest on, at a size the CI runs in seconds
    tasks = ["jpeg", "gaussian_blur"]
    photos = severity_script.severity("photos", tasks, images=12, size=64, seed=7)
    sharp = severity_script.severity("deadleaves:tint=0.25", tasks, images=12, size=64, seed=7)
    soft = severity_script.severity("deadleaves:tint=0.25,blur=1,rmin=0.05", tasks, images=12, size=64, seed=7)
    for task in tasks:
        assert sharp["identity_psnr"][task] < soft["identity_psnr"][task]
        assert sharp["identity_psnr"][task] < photos["identity_psnr"][task] - 2.0
    assert soft["gradient"] < sharp["gradient"]


def test_main_writes_the_table_and_json_and_refuses_what_it_cannot_score(severity_script, tmp_path, capsys):
    out = tmp_path / "severity.json"
    figures = severity_script.main(["--sources", "photos deadleaves", "--tasks", "jpeg,ringing", "--images", "2",
                                    "--size", "32", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| `deadleaves` |" in printed and "jpeg | ringing" in printed
    assert json.loads(out.read_text()) == figures and set(figures["sources"]) == {"photos", "deadleaves"}
    with pytest.raises(SystemExit, match="task 'canny' is not an 8-bit PSNR task"):
        severity_script.main(["--tasks", "canny", "--images", "1"])
    with pytest.raises(SystemExit, match="task 'sdr_to_hdr' is not an 8-bit PSNR task"):
        severity_script.main(["--tasks", "sdr_to_hdr", "--images", "1"])
    with pytest.raises(SystemExit, match="deadleaves:blur=9: options are"):
        severity_script.main(["--sources", "photos deadleaves:blur=9", "--tasks", "jpeg", "--images", "1"])


def test_an_unknown_task_is_one_line_listing_the_known_ones(severity_script):
    with pytest.raises(SystemExit, match=r"^source_severity: unknown task 'bogus'; known tasks: gaussian_noise"):
        severity_script.check_tasks(["bogus"])
