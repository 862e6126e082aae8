import numpy as np
import pytest

import taskgen
from taskgen.registry import CANONICAL_ORDER, register_task, registered, sample_rng, task_index


def test_sample_rng_depends_on_every_coordinate():
    base = sample_rng(0, "jpeg", "train", 3).random()
    assert sample_rng(0, "jpeg", "train", 3).random() == base
    for other in (sample_rng(1, "jpeg", "train", 3), sample_rng(0, "canny", "train", 3),
                  sample_rng(0, "jpeg", "test", 3), sample_rng(0, "jpeg", "train", 4)):
        assert other.random() != base


def test_task_index_is_canonical_position_and_stable_for_extra_tasks():
    assert task_index("gaussian_noise") == 0
    assert task_index(CANONICAL_ORDER[-1]) == len(CANONICAL_ORDER) - 1
    assert task_index("my_plugin_task") == task_index("my_plugin_task") >= 1000


def test_canonical_order_has_no_duplicates():
    assert len(set(CANONICAL_ORDER)) == len(CANONICAL_ORDER)


def test_register_rejects_bad_metadata():
    with pytest.raises(ValueError, match="category"):
        register_task(name="_bad", category="nope", metric="psnr", target_domain="x", description="x")
    with pytest.raises(ValueError, match="metric"):
        register_task(name="_bad", category="edge", metric="lpips", target_domain="x", description="x")
    for name in ("my.task", "My_Task", "rain-heavy", "a/b", "", "9lives"):  # would break keys and shard names
        with pytest.raises(ValueError, match="snake_case"):
            register_task(name=name, category="edge", metric="mae", target_domain="x", description="x")


def test_register_twice_with_another_function_fails():
    @register_task(name="_twice", category="edge", metric="mae", target_domain="x", description="x")
    def first(image, rng):
        return image, image, {}

    with pytest.raises(ValueError, match=r"task '_twice' is already registered by test_registry\."
                                         r"test_register_twice_with_another_function_fails\.<locals>\.first; "
                                         r".*second needs another name"):
        @register_task(name="_twice", category="edge", metric="mae", target_domain="x", description="x")
        def second(image, rng):
            return image, image, {}
    registered().pop("_twice")


@pytest.mark.parametrize("name", ["edge", "stylization", "all", "unseen", "clean"])
def test_reserved_words_are_refused_as_task_names(name):
    with pytest.raises(ValueError, match=f"task name '{name}' is reserved"):
        register_task(name=name, category="edge", metric="mae", target_domain="x", description="x")


def test_a_task_drawing_from_numpys_global_generator_fails_by_name(monkeypatch):
    from taskgen.sample import TaskFailure, make_sample
    from taskgen.sources import build_source

    @register_task(name="_global_rng", category="edge", metric="mae", target_domain="x", description="x")
    def noisy(image, rng):
        return image, np.clip(image + np.random.randint(0, 3, image.shape), 0, 255).astype(np.uint8), {}

    try:
        with pytest.raises(TaskFailure, match=r"task failed for task=_global_rng split=train index=0 .*"
                                              r"drew from numpy's global random generator"):
            make_sample(registered()["_global_rng"], "train", 0, seed=0, size=32, source=build_source("deadleaves"))
    finally:
        registered().pop("_global_rng")


def test_a_broken_task_plug_in_is_logged_and_left_out(monkeypatch, caplog):
    class Entry:
        name, value, dist = "broken", "mylab.tasks:register", None

        def load(self):
            raise ModuleNotFoundError("No module named 'not_a_module_xyz'")

    monkeypatch.setattr(taskgen, "_loaded", False)
    monkeypatch.setattr(taskgen.metadata, "entry_points", lambda group: [Entry()])
    with caplog.at_level("WARNING"):
        taskgen._load_builtin_tasks()
    assert "task plug-in 'broken' (mylab.tasks:register, package ?) not loaded: ModuleNotFoundError" in caplog.text
    assert taskgen.get_task("jpeg").name == "jpeg"  # the built-ins are all there


def test_get_task_unknown_names_the_known_ones():
    with pytest.raises(KeyError, match="unknown task 'nosuch'"):
        taskgen.get_task("nosuch")


def test_every_builtin_task_is_canonical_and_listed_in_order():
    specs = taskgen.list_tasks()
    names = [s.name for s in specs if not s.name.startswith("_")]
    assert names == [n for n in CANONICAL_ORDER if n in names]
    assert set(names) == set(CANONICAL_ORDER), "every canonical task must be registered"


def test_resolve_tasks_accepts_names_and_categories():
    edge = taskgen.resolve_tasks("edge")
    assert {s.category for s in edge} == {"edge"}
    mixed = taskgen.resolve_tasks("canny,edge")
    assert [s.name for s in mixed] == [s.name for s in edge]  # no duplicates, canonical order kept


def test_generate_passes_depth_only_to_tasks_that_declare_it():
    seen = {}

    @register_task(name="_depth_probe", category="restoration", metric="psnr", target_domain="x",
                   description="x", needs_depth=True)
    def probe(image, rng, depth=None):
        seen["depth"] = depth
        return image, image, {}

    spec = taskgen.get_task("_depth_probe")
    img = np.zeros((16, 16, 3), np.uint8)
    spec.generate(img, np.random.default_rng(0), depth=np.ones((16, 16), np.float32))
    assert seen["depth"] is not None
    registered().pop("_depth_probe")
