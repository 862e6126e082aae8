"""Operators behind the stylization tasks: grid solver, RTV, pencil drawing, NPR primitives."""
import cv2
import numpy as np
import pytest

from taskgen.ops import gridsolve, npr, pencil, rtv
from taskgen.sources import load_photo


def _photo(name="astronaut", size=96):
    return cv2.resize(load_photo(name), (size, size), interpolation=cv2.INTER_AREA)


def _psnr(a, b):
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-20))


# --------------------------------------------------------------------------------------------
# Grid solver

def _random_system(h, w, seed, contrast):
    """A weighted screened Poisson system with edge weights spanning ``contrast`` decades."""
    rng = np.random.default_rng(seed)
    a_x = 10.0 ** rng.uniform(-contrast / 2, contrast / 2, (h, w)).astype(np.float32)
    a_y = 10.0 ** rng.uniform(-contrast / 2, contrast / 2, (h, w)).astype(np.float32)
    a_x[:, -1] = 0
    a_y[-1, :] = 0
    mass = rng.uniform(0.0, 1.0, (h, w)).astype(np.float32)
    mass[0, 0] = 1.0  # keep the system non-singular even if every other mass were tiny
    return rng.random((h, w, 2)).astype(np.float32), mass, a_x, a_y


@pytest.mark.parametrize("shape", [(37, 23), (64, 64), (9, 130)])
@pytest.mark.parametrize("solver", ["multigrid", "jacobi"])
def test_iterative_grid_solvers_match_the_direct_solve(shape, solver):
    # odd sizes exercise the ghost padding of the aggregation; 4 decades of weights the conditioning
    rhs, mass, a_x, a_y = _random_system(*shape, seed=sum(shape), contrast=4)
    exact, _ = gridsolve.solve_grid_system(rhs, mass, a_x, a_y, solver="exact")
    approx, iterations = gridsolve.solve_grid_system(rhs, mass, a_x, a_y, solver=solver, tol=1e-6,
                                                     max_iter=5000)
    assert iterations < 5000
    rel = np.linalg.norm(approx - exact) / np.linalg.norm(exact)
    assert rel < 1e-3, f"{solver} {shape}: relative error {rel:.2e}"


def test_multigrid_needs_far_fewer_iterations_than_jacobi_on_an_rtv_system():
    # the RTV system of a photo: strong coupling over large flat areas, weak across edges
    image = _photo("coffee", 128).astype(np.float32) / 255
    a_x, a_y = rtv.texture_weights(image, rtv.RTV_SIGMA)
    lam = np.float32(rtv.RTV_LAMBDA)
    mass = np.ones(image.shape[:2], np.float32)
    counts = {}
    for solver in ("multigrid", "jacobi"):
        _, counts[solver] = gridsolve.solve_grid_system(image, mass, lam * a_x, lam * a_y, solver=solver,
                                                        tol=1e-3, max_iter=5000)
    assert counts["multigrid"] * 4 < counts["jacobi"], counts


@pytest.mark.parametrize("solver", ["multigrid", "jacobi"])
def test_a_zero_right_hand_side_is_solved_at_once(solver):
    # the pencil tone of a flat image: ln J = 0 everywhere; the other channel still needs solving
    rhs, mass, a_x, a_y = _random_system(16, 16, seed=3, contrast=1)
    rhs[:, :, 0] = 0.0
    x, iterations = gridsolve.solve_grid_system(rhs, mass, a_x, a_y, x0=np.ones_like(rhs), solver=solver,
                                                tol=1e-4, max_iter=500)
    assert iterations < 500 and not x[:, :, 0].any()
    exact, _ = gridsolve.solve_grid_system(rhs, mass, a_x, a_y, solver="exact")
    assert np.linalg.norm(x[:, :, 1:] - exact[:, :, 1:]) < 1e-3 * np.linalg.norm(exact[:, :, 1:])
    _, iterations = gridsolve.solve_grid_system(rhs[:, :, :1], mass, a_x, a_y, x0=np.ones_like(rhs[:, :, :1]),
                                                solver=solver, tol=1e-4, max_iter=500)
    assert iterations == 1


def test_grid_solver_rejects_wrap_around_edges_and_unknown_solvers():
    rhs, mass, a_x, a_y = _random_system(8, 8, seed=0, contrast=1)
    a_x[:, -1] = 1.0
    with pytest.raises(ValueError, match="last column"):
        gridsolve.solve_grid_system(rhs, mass, a_x, a_y)
    a_x[:, -1] = 0.0
    with pytest.raises(ValueError, match="unknown grid solver"):
        gridsolve.solve_grid_system(rhs, mass, a_x, a_y, solver="magic")


# --------------------------------------------------------------------------------------------
# RTV

def _textured_step(h=96, w=96, period=4, amplitude=0.12):
    """Left half 0.25, right half 0.75, plus a fine checker texture of the given period."""
    yy, xx = np.mgrid[:h, :w]
    base = np.where(xx < w // 2, 0.25, 0.75)
    texture = amplitude * np.sign(np.sin(2 * np.pi * (xx + 0.5) / period) * np.sin(2 * np.pi * (yy + 0.5) / period))
    return np.repeat((base + texture)[:, :, None], 3, axis=2).astype(np.float32)


def test_rtv_removes_fine_texture_and_keeps_a_step_edge():
    image = _textured_step()
    structure, _ = rtv.rtv_smooth(image)
    luma = structure.mean(axis=2)
    texture_in = image[8:-8, 8:40].std()
    for flat in (luma[8:-8, 8:40], luma[8:-8, 56:88]):        # both halves, away from the borders
        assert flat.std() < texture_in / 20, "texture must be flattened"
    left, right = luma[8:-8, 40:46].mean(), luma[8:-8, 50:56].mean()
    assert right - left > 0.45, f"step of 0.5 must survive (got {right - left:.3f})"
    profile = luma[8:-8].mean(axis=0)
    transition = np.count_nonzero((profile > 0.3) & (profile < 0.7))
    assert transition <= 2, f"edge must stay sharp: {transition} px in transition"


def test_rtv_fast_solver_matches_the_exact_sparse_solve_on_a_photo():
    image = _photo("coffee", 96).astype(np.float32) / 255.0
    exact, _ = rtv.rtv_smooth(image, solver="exact")
    fast, counts = rtv.rtv_smooth(image, solver="multigrid")
    jacobi, _ = rtv.rtv_smooth(image, solver="jacobi")
    assert _psnr(fast, exact) > 50 and _psnr(jacobi, exact) > 50
    assert len(counts) == rtv.RTV_ITERATIONS and max(counts) < 60
    # and the fast result is a real smoothing, far from the input
    assert _psnr(fast, image) < 35


def test_rtv_torch_path_matches_numpy():
    torch = pytest.importorskip("torch")
    image = _photo("chelsea", 64).astype(np.float32) / 255.0
    reference, _ = rtv.rtv_smooth(image, solver="exact")
    batch = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].repeat(2, 1, 1, 1)
    out, counts = rtv.rtv_smooth_torch(batch)
    assert out.shape == batch.shape and len(counts) == rtv.RTV_ITERATIONS
    for result in out:
        assert _psnr(result.numpy().transpose(1, 2, 0), reference) > 45


def test_rtv_uint8_wrapper_is_deterministic():
    image = _photo("rocket", 64)
    first = rtv.rtv(image)
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert np.array_equal(first, rtv.rtv(image))


# --------------------------------------------------------------------------------------------
# Pencil

def test_pencil_tone_histogram_is_the_three_layer_model():
    p = pencil.pencil_tone_histogram()
    assert p.shape == (256,) and abs(p.sum() - 1) < 1e-9
    assert p[255] == p.max(), "the bright layer peaks at white"
    assert p[60] < p[150] < p[250], "mid tones are uniform-ish, darks rare"
    assert p[90] > p[60], "the dark Gaussian layer is centred at 90"


def test_histogram_matching_follows_the_target_distribution():
    rng = np.random.default_rng(0)
    luma = rng.integers(0, 256, (128, 128)).astype(np.uint8)
    # the paper's middle group: its mass is spread enough for a 256-level source to match closely
    # (76:22:2 puts 8 % of the mass on the single level 255)
    target = pencil.pencil_tone_histogram((52.0, 37.0, 11.0))
    matched = np.rint(pencil.match_histogram(luma, target) * 255).astype(int)
    target_cdf = np.cumsum(target)
    got_cdf = np.cumsum(np.bincount(matched.ravel(), minlength=256)) / matched.size
    assert np.abs(got_cdf - target_cdf).max() < 0.03


def test_pencil_texture_is_a_fixed_asset():
    a = pencil.pencil_texture(80, 90)
    b = pencil.pencil_texture(80, 90)
    assert a.shape == (80, 90) and np.array_equal(a, b)
    assert 0 < a.min() and a.max() <= 1 and 0.4 < a.mean() < 0.9
    big = pencil.pencil_texture(600, 700)           # mirror-tiled beyond the tile size
    assert big.shape == (600, 700) and np.array_equal(big[:80, :90], a)
    # hatching: the texture is far more correlated along its stroke direction (about -50 deg)
    t = pencil.pencil_texture(256, 256) - pencil.pencil_texture(256, 256).mean()
    along = np.mean(t[4:, :-4] * t[:-4, 4:])        # offset (+4 y, -4 x): along the strokes (y points down)
    across = np.mean(t[4:, 4:] * t[:-4, :-4])       # shift (+4 y, +4 x): across the strokes
    assert along > 3 * abs(across)


def test_texture_exponent_iterative_matches_exact():
    tone = cv2.GaussianBlur(_photo("grace_hopper", 64).mean(axis=2).astype(np.float32) / 255, (0, 0), 1.0)
    tone = np.clip(tone, 0.05, 1.0)
    texture = pencil.pencil_texture(64, 64)
    exact = pencil.texture_exponent(tone, texture, solver="exact")
    fast = pencil.texture_exponent(tone, texture)
    assert np.abs(texture ** exact - texture ** fast).max() < 1e-3


def _square_image(size=96):
    image = np.full((size, size, 3), 225, np.uint8)
    image[size // 4:3 * size // 4, size // 4:3 * size // 4] = 70
    return image


def test_pencil_strokes_follow_the_edges():
    size = 96
    luma = _square_image(size)[:, :, 0].astype(np.float32) / 255
    strokes = pencil.stroke_layer(luma)
    edge = np.zeros((size, size), bool)
    q, e = size // 4, 3 * size // 4
    edge[q - 1:q + 1, q:e] = edge[e - 1:e + 1, q:e] = True
    edge[q:e, q - 1:q + 1] = edge[q:e, e - 1:e + 1] = True
    far = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3) > 8
    assert strokes[edge].mean() < 0.5 < strokes[far].min(), "dark strokes on the edges, paper elsewhere"
    # strokes run along the edge: along the top edge, darkness is uniform (x) but falls off fast in y
    top = strokes[q - 1, q + 6:e - 6]
    assert top.std() < 0.05 and top.mean() < 0.5
    assert strokes[q - 6, q + 6:e - 6].mean() > 0.9
    # and overshoot the corner a little along the edge direction, as hand-drawn lines do
    assert strokes[q - 1, q - 2] < 0.9


def test_pencil_drawing_has_tone_and_texture():
    image = _photo("astronaut", 128)
    drawing = pencil.pencil_drawing(image)
    assert drawing.dtype == np.uint8 and drawing.shape == (128, 128)
    assert drawing.mean() > 140, "a pencil drawing is mostly light paper"
    # darker input regions are drawn darker (tone) ...
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    dark, light = luma < np.percentile(luma, 25), luma > np.percentile(luma, 75)
    assert drawing[dark].mean() < drawing[light].mean() - 30
    # ... with pencil texture: on a horizontal ramp each column has one tone, yet the drawing
    # varies along the column (hatching), most in the darker columns
    ramp = np.repeat(np.linspace(40, 230, 96).astype(np.uint8)[None, :, None], 96, axis=0).repeat(3, axis=2)
    hatched = pencil.pencil_drawing(ramp).astype(np.float32)
    column_std = hatched[8:-8].std(axis=0)
    assert column_std[8:40].mean() > 10 > column_std[-30:-8].mean(), "dark tones are hatched, light ones near paper"
    assert hatched[:, 8:40].mean() < hatched[:, -40:-8].mean() - 40, "the tone follows the ramp"


# --------------------------------------------------------------------------------------------
# NPR primitives

def test_kmeans_is_deterministic_and_exact_on_separable_colours():
    rng = np.random.default_rng(1)
    colours = np.array([[20, 0, 0], [50, 40, 30], [80, -30, 20], [60, 10, -50]], np.float32)
    labels_true = rng.integers(0, 4, (40, 40))
    lab = colours[labels_true] + rng.normal(0, 1.0, (40, 40, 3)).astype(np.float32)
    labels, centres = npr.kmeans_colours(lab, 4)
    assert centres.shape == (4, 3)
    again, _ = npr.kmeans_colours(lab, 4)
    assert np.array_equal(labels, again)
    # a perfect clustering up to renaming
    mapping = {int(t): int(labels[labels_true == t][0]) for t in range(4)}
    assert len(set(mapping.values())) == 4
    assert all((labels[labels_true == t] == mapping[t]).all() for t in range(4))


def test_render_dots_paints_discs_of_the_requested_radius():
    rng = np.random.default_rng(0)
    ground = np.zeros((64, 64, 3), np.float32)
    centres = npr.jittered_grid(64, 64, 8.0, 0.0, rng)       # no jitter: a regular lattice
    colours = np.ones(centres.shape[:2] + (3,), np.float32)
    out = npr.render_dots(ground, centres, colours, radius=2.0, spacing=8.0)
    coverage = out[..., 0].mean()
    assert abs(coverage - np.pi * 2.0 ** 2 / 64) < 0.02
    assert out[4, 4, 0] == 1.0 and out[0, 0, 0] == 0.0       # a dot centre and a gap between dots


def test_screentone_coverage_follows_darkness():
    for darkness in (0.1, 0.3, 0.5):
        tone = npr.screentone_dots(128, 128, 6.0, 45.0, (0.3, 0.7), np.full((128, 128), darkness, np.float32))
        assert abs(tone.mean() - darkness) < 0.03


def test_canvas_weave_is_fixed_and_fine():
    a = npr.canvas_weave(64, 64)
    assert np.array_equal(a, npr.canvas_weave(64, 64)) and not a.flags.writeable
    assert abs(a.mean()) < 1e-3 and abs(a.std() - 1) < 1e-3
    # fine: most energy above 1/8 cycles per pixel
    spectrum = np.abs(np.fft.fft2(a)) ** 2
    f = np.fft.fftfreq(64)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    assert spectrum[radius > 0.125].sum() > 0.6 * spectrum.sum()


def test_palettes_load_from_package_data():
    for style in ("vermeer", "raphael", "fauvism", "divisionism", "jojo"):
        palette = npr.load_palette(style)
        assert len(palette.names) >= 8 and palette.rgb.shape == (len(palette.names), 3)
        assert palette.lab.shape == palette.rgb.shape
    assert "ground" in npr.load_palette("divisionism").extras
    assert "contour" in npr.load_palette("cloisonnism").extras


def test_rtv_weights_are_the_releases_zero_padded_window_and_gradient_magnitude_floors():
    from scipy.signal import convolve2d

    image = _photo("chelsea", 40).astype(np.float32) / 255
    sigma = 1.5
    size = rtv.window_size(sigma)
    assert (rtv.window_size(3.0), size, rtv.window_size(0.75), rtv.window_size(0.5)) == (15, 9, 5, 3)
    g = cv2.getGaussianKernel(size, sigma).ravel()
    blurred = np.stack([convolve2d(convolve2d(image[:, :, c], g[None, :], mode="same"), g[:, None], mode="same")
                        for c in range(3)], axis=2)  # conv2 'same': zeros outside

    def forward(x, axis):
        d = np.zeros_like(x)
        d[(slice(None),) * axis + (slice(0, -1),)] = np.diff(x, axis=axis)
        return d

    magnitude = np.sqrt(forward(image, 1) ** 2 + forward(image, 0) ** 2).mean(axis=2)
    expected_x = 1 / np.maximum(magnitude, 0.02) / np.maximum(np.abs(forward(blurred, 1)).mean(axis=2), 1e-3)
    expected_y = 1 / np.maximum(magnitude, 0.02) / np.maximum(np.abs(forward(blurred, 0)).mean(axis=2), 1e-3)
    expected_x[:, -1] = 0
    expected_y[-1, :] = 0
    a_x, a_y = rtv.texture_weights(image, sigma)
    np.testing.assert_allclose(a_x, expected_x, rtol=2e-3)
    np.testing.assert_allclose(a_y, expected_y, rtol=2e-3)
