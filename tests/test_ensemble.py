"""bench.ensemble: geometric self-ensemble of any generalist (the prompt transformed with the query)."""
from __future__ import annotations

import pytest
import torch

from bench import load_generalist
from bench.ensemble import TRANSFORMS, SelfEnsemble, dihedral, undo_dihedral
from bench.protocol import GeneralistError, describe


def test_the_eight_symmetries_are_distinct_and_each_is_undone():
    image = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # not square: H, W swap
    seen = []
    for turns, flip in TRANSFORMS[8]:
        moved = dihedral(image, turns, flip)
        assert moved.shape[-2:] == ((4, 5) if turns % 2 == 0 else (5, 4))
        assert torch.equal(undo_dihedral(moved, turns, flip), image)
        seen.append(moved.flatten().tolist() + list(moved.shape))
    assert len({tuple(s) for s in seen}) == 8
    assert TRANSFORMS[1] == ((0, False),) and set(TRANSFORMS[2]) < set(TRANSFORMS[8])
    assert set(TRANSFORMS[4]) < set(TRANSFORMS[8])


class Ramp:
    """Adds a ramp along the width: not equivariant, so the ensemble changes its answer."""
    name = "ramp"

    def __init__(self):
        self.calls = []

    def predict(self, query, prompt_input, prompt_target):
        self.calls.append((tuple(query.shape), tuple(prompt_input.shape), tuple(prompt_target.shape)))
        ramp = torch.linspace(0.0, 0.3, query.shape[-1])
        return query + ramp


def test_an_equivariant_generalist_is_unchanged_and_a_ramp_is_averaged_out():
    generator = torch.Generator().manual_seed(0)
    query, prompt = torch.rand(2, 3, 6, 10, generator=generator), torch.rand(2, 3, 8, 8, generator=generator)
    identity = load_generalist("identity", self_ensemble=8)
    assert identity.name == "identity+x8"
    assert torch.allclose(identity.predict(query, prompt, prompt), query, atol=1e-7)

    ramp = Ramp()
    flipped = SelfEnsemble(ramp, 2).predict(query, prompt, prompt)
    # the flipped pass turns its ramp around: the mean adds the ramp's mean, 0.15, everywhere
    assert torch.allclose(flipped, query + 0.15, atol=1e-6)
    ramp.calls.clear()
    SelfEnsemble(ramp, 8).predict(query, prompt, prompt)
    # every pass transforms the query and both prompt images alike (a quarter turn swaps H and W)
    assert len(ramp.calls) == 8
    assert ramp.calls[1] == ((2, 3, 10, 6), (2, 3, 8, 8), (2, 3, 8, 8))


def test_options_and_info():
    plain = load_generalist("identity", self_ensemble=1)
    assert plain.name == "identity"  # 1: no wrapper
    wrapped = load_generalist("identity", self_ensemble=4)
    info = describe(wrapped)
    assert info["self_ensemble"] == 4 and info["name"] == "identity+x4" and info["params"] == 0
    assert "mean of 4 predictions" in info["size"]
    for bad in (3, 16, True, "8", 8.0, [8]):
        with pytest.raises(GeneralistError, match="self_ensemble must be one of \\[1, 2, 4, 8\\]"):
            load_generalist("identity", self_ensemble=bad)


def test_a_checkpoint_keeps_its_figures_but_not_the_single_pass_latency_bar(tmp_path):
    from model import build
    from model.checkpoints import save_model

    torch.manual_seed(0)  # the network's own initialisation
    save_model(build("genlv-tiny"), tmp_path / "tiny.safetensors", arch="genlv-tiny")
    single = load_generalist(str(tmp_path / "tiny.safetensors"))
    ensemble = load_generalist(str(tmp_path / "tiny.safetensors"), self_ensemble=8)
    info, single_info = describe(ensemble), describe(single)
    assert info["params"] == single_info["params"] and info["checkpoint_sha256"] == single_info["checkpoint_sha256"]
    assert "arch" not in info and info["ensembled_arch"] == single_info["arch"] == "genlv-tiny"
    generator = torch.Generator().manual_seed(1)
    query, prompt = (torch.rand(1, 3, 32, 32, generator=generator) for _ in range(2))
    expected = torch.stack([undo_dihedral(single.predict(*(dihedral(t, k, f) for t in (query, prompt, prompt))), k, f)
                            for k, f in TRANSFORMS[8]]).mean(0)
    assert torch.allclose(ensemble.predict(query, prompt, prompt), expected, atol=1e-6)
