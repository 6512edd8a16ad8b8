"""Differentiable edge and ridge filters on batched (B, C, H, W) float tensors.

The edge loss compares these responses for target and reconstruction, and the
same maps can be appended as the 4th image channel the paper's autoencoder
reconstructs (docs/paper.md §3). Each filter reproduces scikit-image's definition
(kernels, scaling, eigenvalue ordering, border mode) so a response can be
checked against skimage and a name means what an image-processing reader
expects. Only torch ops are used, so the filters run on the training device and
gradients reach the reconstruction. Every channel is filtered independently;
`select_channel` chooses which ones.

Borders follow scipy/skimage's default mode 'reflect', which repeats the edge
pixel (d c b a | a b c d). torch's "reflect" padding does not (it is scipy's
'mirror'), so padding here gathers indices instead.

Square roots of quantities that are exactly 0 on flat regions (the black
surround of a fundus photograph) go through `_safe_sqrt`: a plain sqrt has an
infinite derivative at 0, which turns into NaN gradients there.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

CHANNELS = ("green", "luminance", "rgb")
BT601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights for R, G, B

# skimage's edge kernels: derivative [1, 0, -1] along one axis, smoothing along the other.
EDGE = (1.0, 0.0, -1.0)
SOBEL_SMOOTH = (1 / 4, 2 / 4, 1 / 4)
SCHARR_SMOOTH = (3 / 16, 10 / 16, 3 / 16)
PREWITT_SMOOTH = (1 / 3, 1 / 3, 1 / 3)
# skimage.filters.laplace's 3x3 operator: the *negative* discrete Laplacian.
LAPLACE = ((0.0, -1.0, 0.0), (-1.0, 4.0, -1.0), (0.0, -1.0, 0.0))

GAUSSIAN_TRUNCATE = 4.0  # skimage.filters.gaussian / scipy default
# skimage's Hessian truncates its Gaussian derivatives at 8 sd (100 sd when
# sigma <= 1, against aliasing). Beyond 8 sd the kernel is below exp(-32) ~ 1e-14
# of its peak, so a longer kernel gives the same numbers at float precision while
# costing a 100-sd-wide convolution.
HESSIAN_TRUNCATE = 8.0
FRANGI_EIGVAL_FLOOR = 1e-10  # skimage clips the larger eigenvalue to this (see `frangi`)
CANNY_DIRECTION_STEPS = ((0, 1), (1, 1), (1, 0), (1, -1))  # (row, col) step across the edge per 45-degree bin


def check_sigma(value: float, name: str = "sigma") -> float:
    """Return `value` as a float; raise ValueError unless it is a positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_sigmas(values: Sequence[float], name: str = "sigmas") -> tuple[float, ...]:
    """Return `values` as a tuple of floats; raise ValueError unless it is a non-empty list of positive numbers."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty list of positive numbers, got {values!r}")
    return tuple(check_sigma(v, f"{name}[{i}]") for i, v in enumerate(values))


def select_channel(x: torch.Tensor, channel: str = "green") -> torch.Tensor:
    """The channel(s) a filter sees: green (B,1,H,W), BT.601 luminance (B,1,H,W) or rgb (B,3,H,W).

    Green is the default because fundus vessels have their best contrast there.
    Channels after the third (an edge map riding along) are ignored.
    """
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {list(CHANNELS)}, got {channel!r}")
    if x.dim() != 4 or x.shape[1] < 3:
        raise ValueError(f"select_channel: expected (B, >=3, H, W) RGB images, got shape {tuple(x.shape)}")
    if channel == "green":
        return x[:, 1:2]
    if channel == "rgb":
        return x[:, :3]
    return (x[:, :3] * x.new_tensor(BT601).view(1, 3, 1, 1)).sum(1, keepdim=True)


# ---- convolution helpers -------------------------------------------------------------


def _safe_sqrt(u: torch.Tensor) -> torch.Tensor:
    # Exactly 0 where u is 0; the clamp keeps the unselected branch (and its gradient) finite.
    return torch.where(u > 0, u.clamp_min(torch.finfo(u.dtype).tiny).sqrt(), torch.zeros_like(u))


def _reflect_indices(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices extending 0..n-1 by `pad` on both sides in scipy's 'reflect' mode, any pad width."""
    i = torch.arange(-pad, n + pad, device=device).remainder(2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def _correlate(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel with an odd-sized 2-D kernel; same-size output, reflect borders."""
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    y = x.reshape(b * c, 1, h, w)
    y = y.index_select(2, _reflect_indices(h, kh // 2, x.device))
    y = y.index_select(3, _reflect_indices(w, kw // 2, x.device))
    return F.conv2d(y, kernel[None, None]).reshape(b, c, h, w)


def _convolve(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """scipy.ndimage.convolve (a correlation with the flipped kernel)."""
    return _correlate(x, kernel.flip((0, 1)))


def _gaussian_kernel1d(sigma: float, order: int, truncate: float, like: torch.Tensor) -> torch.Tensor:
    """scipy.ndimage's sampled, sum-normalised Gaussian (order 0) or its x-derivative (order 1)."""
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    phi = torch.exp(-0.5 * t * t / sigma**2)
    phi = phi / phi.sum()
    return phi if order == 0 else -t / sigma**2 * phi


def _gaussian_filter(x: torch.Tensor, sigma: float, orders: tuple[int, int], truncate: float) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter with per-axis derivative orders (rows, cols), separably."""
    k_rows = _gaussian_kernel1d(sigma, orders[0], truncate, x)
    k_cols = _gaussian_kernel1d(sigma, orders[1], truncate, x)
    return _convolve(_convolve(x, k_rows[:, None]), k_cols[None, :])


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> torch.Tensor:
    """Gaussian smoothing as skimage.filters.gaussian(..., mode='reflect', truncate=truncate)."""
    return _gaussian_filter(x, check_sigma(sigma), (0, 0), truncate)


def _max_per_map(v: torch.Tensor) -> torch.Tensor:
    """Max over (H, W) of each map, keepdim; 0 becomes 1 so dividing an all-zero map leaves it 0."""
    m = v.amax(dim=(-2, -1), keepdim=True)
    return torch.where(m > 0, m, torch.ones_like(m))


# ---- gradient filters ------------------------------------------------------------------


def _gradients(x: torch.Tensor, smooth: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """skimage's per-axis edge responses: (d/d rows, d/d cols), each smoothed along the other axis."""
    k = torch.outer(x.new_tensor(EDGE), x.new_tensor(smooth))  # derivative down the rows
    return _convolve(x, k), _convolve(x, k.T)


def _gradient_magnitude(x: torch.Tensor, smooth: tuple[float, float, float]) -> torch.Tensor:
    d_r, d_c = _gradients(x, smooth)
    return _safe_sqrt((d_r * d_r + d_c * d_c) / 2)  # skimage divides by sqrt(ndim)


def sobel(x: torch.Tensor) -> torch.Tensor:
    """skimage.filters.sobel: sqrt((h^2 + v^2) / 2) with [1,0,-1] x [1,2,1]/4 kernels."""
    return _gradient_magnitude(x, SOBEL_SMOOTH)


def scharr(x: torch.Tensor) -> torch.Tensor:
    """skimage.filters.scharr: sqrt((h^2 + v^2) / 2) with [1,0,-1] x [3,10,3]/16 kernels."""
    return _gradient_magnitude(x, SCHARR_SMOOTH)


def prewitt(x: torch.Tensor) -> torch.Tensor:
    """skimage.filters.prewitt: sqrt((h^2 + v^2) / 2) with [1,0,-1] x [1,1,1]/3 kernels."""
    return _gradient_magnitude(x, PREWITT_SMOOTH)


def log(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Laplacian of Gaussian as skimage.filters.laplace(gaussian(x, sigma, mode='reflect')).

    Signed, with skimage's sign: the operator is the negative Laplacian, so dark
    vessels (intensity minima) respond negatively and bright spots positively.
    """
    return _convolve(gaussian_blur(x, sigma), x.new_tensor(LAPLACE))


def _soft_greater(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    eps = torch.finfo(a.dtype).eps  # keeps flat regions (a = b = 0) at sigmoid(0) instead of 0/0
    return torch.sigmoid((a - b) / (temperature * (a + b) + eps))


def canny(x: torch.Tensor, sigma: float = 1.0, temperature: float = 0.1) -> torch.Tensor:
    """Differentiable "soft" Canny: smoothed Sobel magnitude with soft non-maximum suppression.

    m = sobel(gaussian_blur(x, sigma)); the gradient direction atan2(d_rows, d_cols)
    is quantised to 0/45/90/135 degrees as in Canny, giving the two neighbours
    n1, n2 of each pixel across the edge. The output is

        m * s(m, n1) * s(m, n2),   s(a, b) = sigmoid((a - b) / (temperature * (a + b) + eps))

    so a pixel well above both neighbours keeps ~all of its magnitude, one below
    a neighbour is suppressed, and a plateau (a = b) keeps a quarter. The
    difference is relative (divided by a + b) so suppression does not depend on
    image contrast; eps is the dtype's machine epsilon. There are no thresholds
    and no hysteresis. The direction bin is piecewise constant, so it carries no
    gradient (it is computed without one, which also avoids atan2's NaN
    gradient at a zero gradient vector).
    """
    d_r, d_c = _gradients(gaussian_blur(x, sigma), SOBEL_SMOOTH)
    m = _safe_sqrt((d_r * d_r + d_c * d_c) / 2)
    with torch.no_grad():
        direction = torch.round(torch.atan2(d_r, d_c) / (math.pi / 4)).long().remainder(4)
    h, w = m.shape[-2:]
    padded = m.index_select(2, _reflect_indices(h, 1, m.device)).index_select(3, _reflect_indices(w, 1, m.device))
    keep = torch.zeros_like(m)
    for k, (dr, dc) in enumerate(CANNY_DIRECTION_STEPS):
        ahead = padded[..., 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]
        behind = padded[..., 1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w]
        weight = _soft_greater(m, ahead, temperature) * _soft_greater(m, behind, temperature)
        keep = torch.where(direction == k, weight, keep)
    return m * keep


# ---- Hessian ridge filters ---------------------------------------------------------------


def _hessian_eigvals(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (e0 >= e1) of skimage's hessian_matrix(x, sigma, use_gaussian_derivatives=True).

    skimage applies two first-derivative Gaussians of sd sigma/sqrt(2) (their
    composition has sd sigma) and does not scale by sigma^2; we match both.
    """
    s = sigma / math.sqrt(2)
    g_r = _gaussian_filter(x, s, (1, 0), HESSIAN_TRUNCATE)
    g_c = _gaussian_filter(x, s, (0, 1), HESSIAN_TRUNCATE)
    h_rr = _gaussian_filter(g_r, s, (1, 0), HESSIAN_TRUNCATE)
    h_rc = _gaussian_filter(g_r, s, (0, 1), HESSIAN_TRUNCATE)
    h_cc = _gaussian_filter(g_c, s, (0, 1), HESSIAN_TRUNCATE)
    mean = (h_rr + h_cc) / 2
    half_gap = _safe_sqrt(h_rc * h_rc + ((h_rr - h_cc) / 2) ** 2)
    return mean + half_gap, mean - half_gap


def meijering(
    x: torch.Tensor,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0),
    black_ridges: bool = True,
    alpha: float | None = None,
) -> torch.Tensor:
    """skimage.filters.meijering: neuriteness, max over scales, each scale divided by its max.

    Per scale: l0 = e0 + alpha*e1, l1 = e1 + alpha*e0 (alpha None -> 1/3, what
    skimage's code uses in 2-D, also the paper's value); keep the one larger in
    magnitude, clamp negatives, divide by the map's max (per image and channel,
    a differentiable max; an all-zero map stays 0). black_ridges=True finds dark
    ridges such as vessels in the green channel.
    """
    sigmas = check_sigmas(sigmas)
    a = 1 / 3 if alpha is None else float(alpha)
    if not black_ridges:
        x = -x
    out = torch.zeros_like(x)
    for sigma in sigmas:
        e0, e1 = _hessian_eigvals(x, sigma)
        v0, v1 = e0 + a * e1, e1 + a * e0
        v = torch.where(v0.abs() >= v1.abs(), v0, v1).clamp_min(0)
        out = torch.maximum(out, v / _max_per_map(v))
    return out


def frangi(
    x: torch.Tensor,
    sigmas: Sequence[float] = (1.0, 2.0, 3.0),
    black_ridges: bool = True,
    beta: float = 0.5,
    gamma: float | None = None,
) -> torch.Tensor:
    """skimage.filters.frangi in 2-D: vesselness, max over scales.

    Per scale, with eigenvalues sorted by magnitude |l1| <= |l2| and l2 clipped
    to 1e-10 (which zeroes the response wherever the ridge has the wrong
    polarity, as skimage relies on):
        v = exp(-(l1/l2)^2 / (2 beta^2)) * (1 - exp(-S^2 / (2 gamma^2))),  S^2 = l1^2 + l2^2.
    gamma None -> half the max of S over the image at the *first* scale, reused
    for the others; skimage computes it once, per image here (differentiably).
    There is no alpha: in 2-D skimage's plate factor is identically 1 (R_A = inf).
    """
    sigmas = check_sigmas(sigmas)
    if not black_ridges:
        x = -x
    g = None if gamma is None else x.new_tensor(check_sigma(gamma, "gamma"))
    out = torch.zeros_like(x)
    for sigma in sigmas:
        e0, e1 = _hessian_eigvals(x, sigma)
        e0_smaller = e0.abs() <= e1.abs()
        l1 = torch.where(e0_smaller, e0, e1)
        l2 = torch.where(e0_smaller, e1, e0).clamp_min(FRANGI_EIGVAL_FLOOR)
        s2 = e0 * e0 + e1 * e1
        if g is None:
            g = _safe_sqrt(s2.amax(dim=(-2, -1), keepdim=True)) / 2
            g = torch.where(g > 0, g, torch.ones_like(g))  # flat image: gamma is irrelevant
        v = torch.exp(-(l1 * l1) / (l2 * l2) / (2 * beta**2)) * (1 - torch.exp(-s2 / (2 * g * g)))
        out = torch.maximum(out, v)
    return out


# ---- single entry -------------------------------------------------------------------------

FAMILIES: dict[str, tuple[Callable[..., torch.Tensor], str]] = {
    "sobel": (sobel, "Sobel gradient magnitude (skimage.filters.sobel)"),
    "scharr": (scharr, "Scharr gradient magnitude (skimage.filters.scharr)"),
    "prewitt": (prewitt, "Prewitt gradient magnitude (skimage.filters.prewitt)"),
    "log": (log, "Laplacian of Gaussian, signed (skimage laplace of gaussian; option sigma)"),
    "canny": (canny, "soft Canny: smoothed Sobel magnitude, soft non-max suppression, no hysteresis (option sigma)"),
    "meijering": (meijering, "Meijering neuriteness ridge filter (skimage.filters.meijering; sigmas, black_ridges)"),
    "frangi": (frangi, "Frangi vesselness ridge filter (skimage.filters.frangi; sigmas, black_ridges)"),
}


def family_options(family: str) -> tuple[str, ...]:
    """Names of the keyword options a family's filter accepts."""
    fn = FAMILIES[family][0]
    return tuple(p for p in inspect.signature(fn).parameters if p != "x")


def edge_map(x: torch.Tensor, family: str, channel: str = "green", **options) -> torch.Tensor:
    """Filter response of `family` on the selected channel(s): (B, 1, H, W), or (B, 3, H, W) for rgb."""
    if family not in FAMILIES:
        raise ValueError(f"edge family must be one of {list(FAMILIES)}, got {family!r}")
    return FAMILIES[family][0](select_channel(x, channel), **options)


def normalized_edge_map(
    x: torch.Tensor, family: str, channel: str = "green", eps: float = 1e-8, **options
) -> torch.Tensor:
    """`edge_map` scaled into [0, 1] per image (and channel), for use as a 4th image channel.

    Negatives are clamped to 0, then each map is divided by its max + eps, so a
    flat image gives 0 rather than 0/0. For the signed `log` family this keeps
    only the positive lobe (bright side; skimage's sign puts dark vessels in the
    negative lobe): prefer meijering or frangi for a vessel channel.
    Not detached: wrap in torch.no_grad() when building a data channel.
    """
    e = edge_map(x, family, channel, **options).clamp_min(0)
    return e / (e.amax(dim=(-2, -1), keepdim=True) + eps)


def filter_options(family: str, channel: str, where: str, *, sigma: float = 1.0,
                   sigmas: Sequence[float] = (1.0, 2.0, 3.0), black_ridges: bool = True) -> dict:
    """Validate a filter's family, channel and options; return the options that family reads.

    One check for both users of the filters: the `edge` loss term and the edge channel
    the autoencoder reconstructs. A family ignores the options it does not read, so a
    search space can sweep `family` with one set of options. `where` prefixes errors
    (the config key). Unknown option names raise TypeError (Python's own message)."""
    if family not in FAMILIES:
        raise ValueError(f"{where}: family must be one of {list(FAMILIES)}, got {family!r}")
    if channel not in CHANNELS:
        raise ValueError(f"{where}: channel must be one of {list(CHANNELS)}, got {channel!r}")
    if not isinstance(black_ridges, bool):
        raise ValueError(f"{where}: black_ridges must be true or false, got {black_ridges!r}")
    given = {"sigma": check_sigma(sigma, f"{where}: sigma"), "sigmas": check_sigmas(sigmas, f"{where}: sigmas"),
             "black_ridges": black_ridges}
    accepted = family_options(family)
    return {k: v for k, v in given.items() if k in accepted}
