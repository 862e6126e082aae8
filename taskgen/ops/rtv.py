"""Relative total variation (RTV) structure extraction: Xu, Yan, Xia & Jia, "Structure extraction
from texture via relative total variation", SIGGRAPH Asia 2012, as the authors' ``tsmooth`` release
computes it (the GenLV reference uses a port of it).

The structure S of an image I minimises

    sum_p (S_p - I_p)^2 + lam * (D_x(p) / (L_x(p) + eps) + D_y(p) / (L_y(p) + eps))

where D is the windowed total variation of the gradient and L the windowed *inherent* variation
|sum of signed gradients|: texture has large D but small L (its gradients cancel inside the
window), a structure edge has D ~ L.  The release freezes the non-linear part into per-edge weights

    a_x = 1 / max(|G_sigma * d_x S|, eps) * 1 / max(|grad S|, eps_s)      (a_y alike)

(channel means of the absolute values, G_sigma a zero-padded separable Gaussian of size
round(5 sigma) | 1, |grad S| the gradient magnitude) and solves

    (Id + lam/2 * (Dx^T diag(a_x) Dx + Dy^T diag(a_y) Dy)) s = i        (all channels share the matrix)

a few times, recomputing the weights from the last S (the release halves lam before solving).
That system is a 5-point weighted Laplacian plus the identity, solved by ``taskgen.ops.gridsolve``:

- ``"multigrid"`` (default): multigrid-preconditioned conjugate gradients, warm-started from the
  previous structure; ~0.1 s at 256^2 on one core, 60-70 dB PSNR from the exact solve.
- ``"jacobi"``: diagonal-preconditioned CG (5-10x more iterations, similar time at 256^2).
- ``"exact"``: SuperLU direct solve (the reference; ~1.2 s at 256^2).
- ``"torch"``: Jacobi-preconditioned CG in PyTorch on a batch ``Bx3xHxW``, on a GPU when one
  exists (``rtv_smooth_torch``).
"""
from __future__ import annotations

import cv2
import numpy as np

from .gridsolve import solve_grid_system

RTV_LAMBDA = 0.01        # paper default smoothness weight (0.01-0.03 in the paper's examples); halved in the solve
RTV_SIGMA = 3.0          # paper default texture window scale, in px
RTV_SHARPNESS = 0.02     # eps_s: floor of |grad S| in the weights (release default)
RTV_EPS = 1e-3           # eps: floor of the inherent variation L (avoids division by zero)
RTV_ITERATIONS = 4       # outer re-weighting iterations (the paper uses 3-4)
SOLVERS = ("multigrid", "jacobi", "exact", "torch")


# --------------------------------------------------------------------------------------------
# Weights

def window_size(sigma: float) -> int:
    """The release's Gaussian window: round(5 sigma) (halves away from zero, as MATLAB) made odd."""
    return int(np.floor(5.0 * sigma + 0.5)) | 1


def _window(image: np.ndarray, sigma: float) -> np.ndarray:
    """float32 HxW(xC) -> separable Gaussian of ``window_size(sigma)`` taps, zero outside the image
    (MATLAB's conv2 'same', as the release's conv2_sep)."""
    size = window_size(sigma)
    return cv2.GaussianBlur(image, (size, size), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)


def _forward_differences(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 HxWxC -> (d_x, d_y): next minus this pixel, 0 in the last column / row."""
    dx = np.zeros_like(image)
    dy = np.zeros_like(image)
    np.subtract(image[:, 1:], image[:, :-1], out=dx[:, :-1])
    np.subtract(image[1:], image[:-1], out=dy[:-1])
    return dx, dy


def texture_weights(structure: np.ndarray, sigma: float, sharpness: float = RTV_SHARPNESS,
                    eps: float = RTV_EPS) -> tuple[np.ndarray, np.ndarray]:
    """float32 HxWx3 structure -> (a_x, a_y) float32 HxW edge weights of the RTV linear system.

    a_x[i, j] couples pixel (i, j) with (i, j+1) (last column 0); a_y[i, j] couples (i, j) with
    (i+1, j) (last row 0).  a = 1 / max(|d(G_sigma * S)|, eps) * 1 / max(|grad S|, eps_s), each a
    channel mean, as the authors' computeTextureWeights.
    """
    dx, dy = _forward_differences(structure)
    magnitude = _channel_mean(np.sqrt(dx * dx + dy * dy))
    inverse_gradient = 1.0 / np.maximum(magnitude, np.float32(sharpness))
    gx, gy = _forward_differences(_window(structure, sigma))
    a_x = (inverse_gradient / np.maximum(_channel_mean(np.abs(gx)), np.float32(eps))).astype(np.float32)
    a_y = (inverse_gradient / np.maximum(_channel_mean(np.abs(gy)), np.float32(eps))).astype(np.float32)
    a_x[:, -1] = 0.0
    a_y[-1, :] = 0.0
    return a_x, a_y


def _channel_mean(image: np.ndarray) -> np.ndarray:
    """float32 HxWx3 -> HxW mean over channels (cv2.transform is far faster than a last-axis mean)."""
    return cv2.transform(image, np.full((1, 3), 1.0 / 3.0, np.float32))


# --------------------------------------------------------------------------------------------
# Solve

def solve_rtv_system(rhs: np.ndarray, a_x: np.ndarray, a_y: np.ndarray, lam: float, *,
                     x0: np.ndarray | None = None, solver: str = "multigrid",
                     tol: float = 1e-2) -> tuple[np.ndarray, int]:
    """float32 HxWxC rhs -> (S, iterations) solving (Id + lam * L(a_x, a_y)) S = rhs."""
    lam32 = np.float32(lam)
    return solve_grid_system(rhs, np.ones(rhs.shape[:2], np.float32), lam32 * a_x, lam32 * a_y,
                             x0=x0, solver=solver, tol=tol)


def rtv_smooth(image: np.ndarray, lam: float = RTV_LAMBDA, sigma: float = RTV_SIGMA,
               sharpness: float = RTV_SHARPNESS, iterations: int = RTV_ITERATIONS,
               solver: str = "multigrid", tol: float = 1e-2) -> tuple[np.ndarray, list[int]]:
    """float32 HxWx3 in [0, 1] -> (structure float32 HxWx3, CG iterations per outer step).

    The window scale starts at ``sigma`` and halves every outer iteration down to 0.5 px, as in the
    authors' release: coarse windows first decide what is texture, finer ones then sharpen the kept
    edges.  The solves use lam / 2, as the release does.  Each is warm-started from the previous
    structure.
    """
    if solver == "torch":
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        out, counts = rtv_smooth_torch(batch, lam, sigma, sharpness, iterations, tol=tol)
        return np.ascontiguousarray(out[0].numpy().transpose(1, 2, 0)), counts
    rhs = np.ascontiguousarray(image, dtype=np.float32)
    structure = rhs
    counts = []
    window = float(sigma)
    for _ in range(iterations):
        a_x, a_y = texture_weights(structure, window, sharpness)
        structure, count = solve_rtv_system(rhs, a_x, a_y, lam / 2.0, x0=structure, solver=solver, tol=tol)
        counts.append(count)
        window = max(window / 2.0, 0.5)
    return structure, counts


def rtv(image: np.ndarray, lam: float = RTV_LAMBDA, sigma: float = RTV_SIGMA, solver: str = "multigrid",
        iterations: int = RTV_ITERATIONS) -> np.ndarray:
    """uint8 RGB -> uint8 RGB structure image (texture removed, main edges kept)."""
    structure, _ = rtv_smooth(image.astype(np.float32) * np.float32(1.0 / 255.0), lam, sigma,
                              iterations=iterations, solver=solver)
    return np.clip(np.rint(structure * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# PyTorch path (GPU when present): the same scheme, Jacobi-preconditioned CG, batched

def _torch_window(x, sigma: float):
    """(B, C, H, W) tensor -> separable Gaussian of ``window_size(sigma)`` taps, zero borders (as ``_window``)."""
    import torch
    import torch.nn.functional as F

    radius = window_size(sigma) // 2
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c, padding=(0, radius))
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c, padding=(radius, 0))


def _torch_differences(s):
    import torch

    dx = torch.zeros_like(s)
    dy = torch.zeros_like(s)
    dx[..., :, :-1] = s[..., :, 1:] - s[..., :, :-1]
    dy[..., :-1, :] = s[..., 1:, :] - s[..., :-1, :]
    return dx, dy


def _torch_weights(s, sigma: float, sharpness: float, eps: float = RTV_EPS):
    """(B, 3, H, W) structure -> (a_x, a_y) (B, 1, H, W) RTV edge weights (see texture_weights)."""
    dx, dy = _torch_differences(s)
    inverse_gradient = 1.0 / (dx * dx + dy * dy).sqrt().mean(1, keepdim=True).clamp_min(sharpness)
    gx, gy = _torch_differences(_torch_window(s, sigma))
    a_x = inverse_gradient / gx.abs().mean(1, keepdim=True).clamp_min(eps)
    a_y = inverse_gradient / gy.abs().mean(1, keepdim=True).clamp_min(eps)
    a_x[..., :, -1] = 0
    a_y[..., -1, :] = 0
    return a_x, a_y


def _torch_apply(x, a_x, a_y, diag):
    """A x for (B, C, H, W) tensors with the identity mass."""
    out = diag * x
    out[..., :, :-1] -= a_x[..., :, :-1] * x[..., :, 1:]
    out[..., :, 1:] -= a_x[..., :, :-1] * x[..., :, :-1]
    out[..., :-1, :] -= a_y[..., :-1, :] * x[..., 1:, :]
    out[..., 1:, :] -= a_y[..., :-1, :] * x[..., :-1, :]
    return out


def rtv_smooth_torch(images, lam: float = RTV_LAMBDA, sigma: float = RTV_SIGMA, sharpness: float = RTV_SHARPNESS,
                     iterations: int = RTV_ITERATIONS, tol: float = 1e-2, max_iter: int = 2000):
    """float tensor (B, 3, H, W) in [0, 1] (any device) -> (structure tensor, CG iterations per step).

    Jacobi-preconditioned CG: each iteration is a handful of elementwise kernels, which suits a GPU;
    converged to the same relative tolerance as the numpy solvers.
    """
    import torch

    rhs = images.to(torch.float32)
    s = rhs.clone()
    counts = []
    window = float(sigma)
    with torch.no_grad():
        for _ in range(iterations):
            a_x, a_y = _torch_weights(s, window, sharpness)
            a_x, a_y = lam / 2.0 * a_x, lam / 2.0 * a_y  # the release halves lam
            diag = 1.0 + a_x + a_y
            diag[..., :, 1:] += a_x[..., :, :-1]
            diag[..., 1:, :] += a_y[..., :-1, :]
            inv_diag = 1.0 / diag
            r = rhs - _torch_apply(s, a_x, a_y, diag)
            z = r * inv_diag
            p = z.clone()
            rz = (r * z).sum((2, 3), keepdim=True)
            stop = tol ** 2 * (rhs * rhs).sum((2, 3), keepdim=True)
            count = max_iter
            for iteration in range(1, max_iter + 1):
                q = _torch_apply(p, a_x, a_y, diag)
                alpha = rz / (p * q).sum((2, 3), keepdim=True).clamp_min(1e-30)
                s = s + alpha * p
                r = r - alpha * q
                # one host sync every 10 iterations keeps the GPU queue full
                if iteration % 10 == 0 and bool(((r * r).sum((2, 3), keepdim=True) <= stop).all()):
                    count = iteration
                    break
                z = r * inv_diag
                rz_next = (r * z).sum((2, 3), keepdim=True)
                p = z + (rz_next / rz.clamp_min(1e-30)) * p
                rz = rz_next
            counts.append(count)
            window = max(window / 2.0, 0.5)
    return s, counts
