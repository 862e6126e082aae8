"""bench.shrink: the change to the query scaled by a factor fitted on the prompt pair's halves."""
from __future__ import annotations

import pytest
import torch

from bench import load_generalist
from bench.protocol import BadOutput, GeneralistError, describe
from bench.registry import implementation
from bench.shrink import PromptFitShrink, fitted_scale, halves


class Doubler:
    """Answers 2 × query: its change is the query itself, whatever the prompt."""
    name = "doubler"

    def __init__(self):
        self.calls = []

    def predict(self, query, prompt_input, prompt_target):
        self.calls.append((tuple(query.shape), tuple(prompt_input.shape)))
        return 2 * query


def test_the_scale_is_the_least_squares_fit_of_the_prompt_and_applies_to_the_query():
    generator = torch.Generator().manual_seed(0)
    query = torch.rand(2, 3, 6, 10, generator=generator)
    prompt_input = torch.rand(2, 3, 8, 16, generator=generator)
    # element 0's prompt target is 1.5 x its input (the true change is half the doubler's), element 1's
    # is 3 x (more than the doubler's change: clipped to 1), so alphas 0.5 and 1
    prompt_target = prompt_input * torch.tensor([1.5, 3.0]).view(2, 1, 1, 1)
    doubler = Doubler()
    shrunk = PromptFitShrink(doubler)
    out = shrunk.predict(query, prompt_input, prompt_target)
    assert torch.allclose(shrunk.last_alpha, torch.tensor([0.5, 1.0]))
    assert torch.allclose(out[0], 1.5 * query[0]) and torch.allclose(out[1], 2 * query[1])
    # the query once, then each 8x8 half of the prompt pair (split across its longer side, the width)
    assert doubler.calls == [((2, 3, 6, 10), (2, 3, 8, 16)), ((2, 3, 8, 8), (2, 3, 8, 8)), ((2, 3, 8, 8), (2, 3, 8, 8))]


def test_a_change_against_the_prompt_is_dropped_and_a_tall_prompt_is_split_across_its_height():
    generator = torch.Generator().manual_seed(1)
    query, prompt_input = torch.rand(1, 3, 6, 6, generator=generator), torch.rand(1, 3, 21, 16, generator=generator)
    doubler = Doubler()
    shrunk = PromptFitShrink(doubler)
    # the prompt darkens where the doubler brightens: alpha clips at 0 and the query comes back as it is
    assert torch.equal(shrunk.predict(query, prompt_input, 0.5 * prompt_input), query)
    assert shrunk.last_alpha.tolist() == [0.0]
    assert [shape for shape, _ in doubler.calls[1:]] == [(1, 3, 11, 16), (1, 3, 10, 16)]  # odd height: 10 + 11


def test_one_prompt_serving_a_batch_is_fitted_once_and_again_when_its_pixels_change():
    generator = torch.Generator().manual_seed(3)
    tiles = torch.rand(4, 3, 16, 16, generator=generator)
    prompt_input = torch.rand(1, 3, 16, 32, generator=generator)
    doubler = Doubler()
    shrunk = PromptFitShrink(doubler)
    one_per_tile = lambda t: t.expand(4, -1, -1, -1)  # noqa: E731 (how llvbench apply passes one prompt)
    out = shrunk.predict(tiles, one_per_tile(prompt_input), one_per_tile(1.25 * prompt_input))
    assert torch.allclose(out, 1.25 * tiles) and torch.allclose(shrunk.last_alpha, torch.full((4,), 0.25))
    # the tile batch, then the prompt's two halves once (batch 1), not once per tile
    assert [shape for shape, _ in doubler.calls] == [(4, 3, 16, 16), (1, 3, 16, 16), (1, 3, 16, 16)]
    shrunk.predict(tiles[:2], prompt_input.expand(2, -1, -1, -1), (1.25 * prompt_input).expand(2, -1, -1, -1))
    assert len(doubler.calls) == 4  # the same prompt pixels: no new fit
    out = shrunk.predict(tiles, one_per_tile(prompt_input), one_per_tile(1.75 * prompt_input))
    assert len(doubler.calls) == 7 and torch.allclose(out, 1.75 * tiles)  # new target pixels: fitted again
    # a batch of one is fitted every time (the bench times batch-1 calls with one prompt)
    shrunk.predict(tiles[:1], prompt_input, 1.75 * prompt_input)
    shrunk.predict(tiles[:1], prompt_input, 1.75 * prompt_input)
    assert len(doubler.calls) == 13


def test_fitted_scale_per_element_and_no_change_means_one():
    change = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2).repeat(2, 1, 1, 1)
    wanted = torch.stack([0.25 * change[0], torch.zeros_like(change[0])])
    assert fitted_scale([change], [wanted]).tolist() == [0.25, 0.0]
    assert fitted_scale([torch.zeros(1, 3, 2, 2)], [torch.ones(1, 3, 2, 2)]).tolist() == [1.0]
    assert halves(7) == (slice(0, 3), slice(3, 7))


def test_identity_is_unchanged_and_options_and_info():
    generator = torch.Generator().manual_seed(2)
    query, prompt = torch.rand(1, 3, 6, 10, generator=generator), torch.rand(1, 3, 8, 16, generator=generator)
    identity = load_generalist("identity", shrink=True)
    assert identity.name == "identity+shrink"
    assert torch.equal(identity.predict(query, prompt, torch.rand(1, 3, 8, 16, generator=generator)), query)
    assert load_generalist("identity", shrink=False).name == "identity"
    both = load_generalist("identity", self_ensemble=2, shrink=True)
    assert both.name == "identity+x2+shrink"
    assert implementation(both) == "bench.shrink.PromptFitShrink[bench.ensemble.SelfEnsemble[bench.builtins.IdentityGeneralist]]"
    info = describe(both)
    assert info["name"] == "identity+x2+shrink" and info["self_ensemble"] == 2 and "prompt pair's halves" in info["shrink"]
    with pytest.raises(GeneralistError, match="identity: shrink must be true or false"):
        load_generalist("identity", shrink=1)


def test_bad_prompts_and_bad_answers_name_the_generalist():
    shrunk = PromptFitShrink(Doubler())
    query = torch.rand(1, 3, 6, 6)
    with pytest.raises(ValueError, match=r"doubler\+shrink: the prompt pair is 12x14 px.*at least 8 px"):
        shrunk.predict(query, torch.rand(1, 3, 12, 14), torch.rand(1, 3, 12, 14))
    with pytest.raises(ValueError, match=r"doubler\+shrink: the prompt input \(1, 3, 16, 16\) and prompt target"):
        shrunk.predict(query, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 18))

    class Fixed:
        name = "fixed"

        def predict(self, query, prompt_input, prompt_target):
            return torch.zeros(1, 3, 6, 6)

    with pytest.raises(BadOutput, match=r"fixed: answered a \(1, 3, 16, 8\) half of the prompt with shape \(1, 3, 6, 6\)"):
        PromptFitShrink(Fixed()).predict(query, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
