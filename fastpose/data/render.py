"""Render 3D poses into RGB crops: shaded capsule limbs, depth-ordered occlusion, textured background.

Images without the internet: any 3D pose in a camera frame (synthetic motion, motion capture,
Human3.6M ground truth) becomes a square RGB crop with exactly matching 2D/3D labels, so the
volumetric image model can be trained and tested without a photographic data set.

Pipeline for one sample (all NumPy, vectorised over pixels; about 5-10 ms per 256 x 256 crop on
one core, measured by :func:`render_speed`):

1. :func:`crop_camera` -- a square box around the projected joints (margin, scale and shift
   jitter) turned into the *crop camera*: pinhole intrinsics ``(fx, fy, cx, cy)`` in crop pixels,
   ``u = fx X / Z + cx``. Pixel ``k`` has its centre at ``k`` (edges at ``k +- 0.5``).
2. :func:`background` -- a smooth random colour field (a g x g grid of random colours, bilinearly
   upsampled), a few oriented sine gratings, random ellipses and per-pixel noise.
3. :func:`render_person` -- every bone (and a torso, hips, shoulders, neck and head) is a capsule
   of radius ``r`` metres around its 3D segment. Projected, pixel ``p`` is inside when its
   distance ``d`` to the 2D segment (closest point at parameter ``t``) is below the projected
   radius ``rho(t) = r f / Z(t)``. Surface depth ``Z(t) - r sqrt(1 - (d / rho)^2)``; a z-buffer keeps
   the nearest surface, which gives occlusion by depth order, including self-occlusion.
   Shading: normal ``n = ((p - c) / rho, -sqrt(1 - (d / rho)^2))`` (camera axes: x right, y down,
   z forward), Lambert + Blinn-Phong from a random light, on a per-part colour (left, right and
   centre parts in different hue families so sides can be told apart).
4. :func:`color_jitter` -- brightness, contrast, saturation, per-channel gain, Gaussian noise.

Everything random comes from a ``numpy.random.Generator``; :func:`render_sample` seeds it with
``(seed, index)``, so a sample is a pure function of its seed and index (worker-independent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CAPSULES_H36M17",
    "RenderConfig",
    "background",
    "color_jitter",
    "crop_box",
    "crop_camera",
    "crop_intrinsics",
    "project_pinhole",
    "render_crop",
    "render_person",
    "render_sample",
    "render_speed",
    "to_crop",
]

# (joint a, joint b, radius in metres, part) for the Human3.6M 17-joint skeleton:
#  0 pelvis 1 r_hip 2 r_knee 3 r_ankle 4 l_hip 5 l_knee 6 l_ankle 7 spine 8 thorax
#  9 neck_nose 10 head 11 l_shoulder 12 l_elbow 13 l_wrist 14 r_shoulder 15 r_elbow 16 r_wrist
# a == b draws a sphere. Parts: 0 centre (torso/head), 1 left, 2 right, 3 skin (head).
CAPSULES_H36M17: tuple[tuple[int, int, float, int], ...] = (
    (0, 7, 0.13, 0), (7, 8, 0.14, 0),  # lower / upper torso
    (0, 1, 0.09, 2), (0, 4, 0.09, 1),  # hips
    (8, 11, 0.065, 1), (8, 14, 0.065, 2),  # shoulders
    (8, 9, 0.05, 3), (9, 10, 0.1, 3),  # neck, head
    (1, 2, 0.075, 2), (2, 3, 0.055, 2), (4, 5, 0.075, 1), (5, 6, 0.055, 1),  # legs
    (11, 12, 0.05, 1), (12, 13, 0.04, 1), (14, 15, 0.05, 2), (15, 16, 0.04, 2),  # arms
)  # fmt: skip


@dataclass(frozen=True)
class RenderConfig:
    """Settings of :func:`render_sample` (defaults: training augmentation at 256 x 256)."""

    size: int = 256
    margin: float = 0.2  # box side = (1 + 2 margin) x the larger side of the joints' 2D box
    scale_jitter: float = 0.15  # box side times exp(U(-s, s))
    shift_jitter: float = 0.08  # box centre + U(-s, s) x side, per axis
    color_jitter: float = 0.3  # strength of brightness / contrast / saturation jitter
    noise: float = 0.02  # std of per-pixel Gaussian noise (image in [0, 1])
    radius_jitter: float = 0.15  # capsule radii times U(1 - s, 1 + s) per sample (body shape)
    ellipses: int = 3  # at most this many random ellipses in the background

    def __post_init__(self) -> None:
        if int(self.size) < 8:
            raise ValueError(f"RenderConfig: size must be >= 8, got {self.size}")
        for name in ("margin", "scale_jitter", "shift_jitter", "color_jitter", "noise", "radius_jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"RenderConfig: {name} must be >= 0, got {getattr(self, name)}")
        if self.radius_jitter >= 1:
            raise ValueError(f"RenderConfig: radius_jitter must be < 1, got {self.radius_jitter}")


def _check_points(name: str, x: np.ndarray, last: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[-1] != last:
        raise ValueError(f"{name} must be (J, {last}), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x


def project_pinhole(joints_3d: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(J, 3) camera frame (Z > 0) -> (J, 2) pixels: u = fx X / Z + cx, v = fy Y / Z + cy."""
    p = _check_points("joints_3d", joints_3d, 3)
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (4,):
        raise ValueError(f"intrinsics must be (4,) = fx, fy, cx, cy, got shape {k.shape}")
    if np.any(p[:, 2] <= 1e-6):
        raise ValueError(f"joints_3d must lie in front of the camera (Z > 0), min Z = {p[:, 2].min():.4g}")
    return p[:, :2] / p[:, 2:3] * k[:2] + k[2:]


def crop_box(
    uv: np.ndarray,
    margin: float = 0.2,
    scale_jitter: float = 0.0,
    shift_jitter: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Square box ``(x0, y0, side)`` (top-left *edge* and side, pixels) around 2D points (J, 2).

    side = (1 + 2 margin) x the larger side of the points' bounding box, times
    ``exp(U(-scale_jitter, scale_jitter))``; the centre moves by ``U(-shift_jitter, shift_jitter)``
    x side per axis (jitter only when ``rng`` is given).
    """
    uv = _check_points("uv", uv, 2)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    centre = 0.5 * (lo + hi)
    side = max(float((hi - lo).max()), 1.0) * (1.0 + 2.0 * margin)
    if rng is not None and scale_jitter > 0:
        side *= float(np.exp(rng.uniform(-scale_jitter, scale_jitter)))
    if rng is not None and shift_jitter > 0:
        centre = centre + rng.uniform(-shift_jitter, shift_jitter, size=2) * side
    return np.array([centre[0] - 0.5 * side, centre[1] - 0.5 * side, side])


def to_crop(uv: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Full-image pixels (..., 2) -> crop pixels: ``u' = (u - x0) S / side - 0.5``.

    ``x0`` is the box's left edge in the same pixel-centred coordinates (pixel k spans
    [k - 0.5, k + 0.5]), so the box edges map to the crop's edges -0.5 and S - 0.5.
    """
    box = np.asarray(box, dtype=np.float64)
    return (np.asarray(uv, dtype=np.float64) - box[:2]) * (size / box[2]) - 0.5


def crop_intrinsics(intrinsics: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Pinhole intrinsics (4,) of the full image -> of the crop ``box``: ``fx' = fx S / side``,
    ``cx' = (cx - x0) S / side - 0.5`` (the same map as :func:`to_crop`)."""
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (4,):
        raise ValueError(f"intrinsics must be (4,) = fx, fy, cx, cy, got shape {k.shape}")
    s = size / float(box[2])
    return np.concatenate([k[:2] * s, to_crop(k[2:], box, size)])


def crop_camera(
    joints_3d: np.ndarray,
    intrinsics: np.ndarray,
    size: int,
    margin: float = 0.2,
    scale_jitter: float = 0.0,
    shift_jitter: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around the projected joints: ``(crop intrinsics (4,), box (3,))``.

    joints_3d (J, 3) camera frame; intrinsics (4,) = fx, fy, cx, cy of the full image (pixels);
    see :func:`crop_box` and :func:`crop_intrinsics`.
    """
    uv = project_pinhole(joints_3d, intrinsics)
    box = crop_box(uv, margin, scale_jitter, shift_jitter, rng)
    return crop_intrinsics(intrinsics, box, size), box


def _upsample_linear(grid: np.ndarray, size: int) -> np.ndarray:
    """(g, g, C) -> (size, size, C) bilinear interpolation, grid points spread to the edges.

    Separable gathers (two taps per axis) instead of interpolation matrices: no BLAS call, whose
    threads would oversubscribe the cores of DataLoader workers.
    """
    g = grid.shape[0]
    pos = np.linspace(0.0, g - 1.0, size)
    i0 = np.clip(np.floor(pos).astype(np.intp), 0, max(g - 2, 0))
    i1 = np.minimum(i0 + 1, g - 1)
    f = (pos - i0).astype(np.float32)
    rows = grid[i0] * (1.0 - f)[:, None, None] + grid[i1] * f[:, None, None]  # (S, g, C)
    return rows[:, i0] * (1.0 - f)[None, :, None] + rows[:, i1] * f[None, :, None]  # (S, S, C)


def background(size: int, rng: np.random.Generator, ellipses: int = 3) -> np.ndarray:
    """A random textured background (size, size, 3) float32 in [0, 1].

    smooth colour field (g x g random colours, bilinear) + 1-3 oriented sine gratings of random
    frequency/colour + up to ``ellipses`` flat-shaded ellipses (furniture-like blobs).
    """
    g = int(rng.integers(2, 7))
    grid = rng.random((g, g, 3)).astype(np.float32)
    img = _upsample_linear(grid, size)  # (S, S, 3)
    img = 0.25 + 0.5 * img
    coords = np.arange(size, dtype=np.float32) * np.float32(2 * np.pi / size)
    for _ in range(int(rng.integers(1, 4))):
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(2.0, 24.0)  # periods across the crop
        # sin(a_y + a_x) = sin a_y cos a_x + cos a_y sin a_x: two outer products, 1D trig only.
        ay = (np.float32(freq * np.sin(theta)) * coords + np.float32(rng.uniform(0, 2 * np.pi)))[:, None]
        ax = (np.float32(freq * np.cos(theta)) * coords)[None, :]
        wave = np.sin(ay) * np.cos(ax) + np.cos(ay) * np.sin(ax)  # (S, S)
        if rng.random() < 0.4:
            wave = np.sign(wave)  # stripes / tiles rather than smooth waves
        tint = (np.float32(rng.uniform(0.03, 0.15)) * (rng.random(3).astype(np.float32) - 0.5) * 2)
        img += wave[:, :, None] * tint
    for _ in range(int(rng.integers(0, ellipses + 1))):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(0.05, 0.35, 2) * size
        y0, y1 = int(max(cy - ry, 0)), int(min(cy + ry + 1, size))
        x0, x1 = int(max(cx - rx, 0)), int(min(cx + rx + 1, size))
        if y1 <= y0 or x1 <= x0:
            continue
        yy = (np.arange(y0, y1, dtype=np.float32)[:, None] - cy) / ry
        xx = (np.arange(x0, x1, dtype=np.float32)[None, :] - cx) / rx
        inside = yy**2 + xx**2 < 1.0
        colour = rng.random(3).astype(np.float32) * 0.8 + 0.1
        shade = 1.0 - 0.3 * (yy + 1.0) / 2.0  # darker at the bottom, a hint of light from above
        patch = img[y0:y1, x0:x1]
        patch[inside] = (colour[None, None, :] * shade[:, :, None] * np.ones_like(xx)[:, :, None])[inside]
    return img


def _part_colours(rng: np.random.Generator) -> np.ndarray:
    """(4, 3) base colours for centre / left / right / skin; left and right in distinct hues."""
    def hsv(h: float, s: float, v: float) -> np.ndarray:
        k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
        return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)

    centre = hsv(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.35, 0.9))
    left = hsv(rng.uniform(0.50, 0.70), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.95))  # blue-ish
    right = hsv(rng.uniform(-0.05, 0.12) % 1.0, rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.95))  # red/orange
    skin = hsv(rng.uniform(0.03, 0.1), rng.uniform(0.2, 0.6), rng.uniform(0.4, 0.95))
    return np.stack([centre, left, right, skin]).astype(np.float32)


def render_person(
    image: np.ndarray,
    joints_3d: np.ndarray,
    intrinsics: np.ndarray,
    rng: np.random.Generator,
    capsules: tuple[tuple[int, int, float, int], ...] = CAPSULES_H36M17,
    radius_jitter: float = 0.15,
) -> np.ndarray:
    """Draw the capsule body over ``image`` (S, S, 3) float32 in place; returns the depth buffer.

    joints_3d (J, 3) camera frame metres; intrinsics (4,) crop pixels. Returns (S, S) float32
    surface depth (inf where no body).
    """
    p = _check_points("joints_3d", joints_3d, 3)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"image must be (S, S, 3), got {image.shape}")
    n_joints = p.shape[0]
    need = max(max(a, b) for a, b, _, _ in capsules) + 1
    if n_joints < need:
        raise ValueError(f"joints_3d must have at least {need} joints for these capsules, got {n_joints}")
    size = image.shape[0]
    k = np.asarray(intrinsics, dtype=np.float64)
    uv = project_pinhole(p, k)  # (J, 2)
    z = p[:, 2]
    f = 0.5 * (k[0] + k[1])
    colours = _part_colours(rng)
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-1.0, 0.2), -1.0])
    light /= np.linalg.norm(light)  # direction towards the light (camera side, from above)
    half = light + np.array([0.0, 0.0, -1.0])  # Blinn half vector with the view direction
    half /= np.linalg.norm(half)
    ambient = rng.uniform(0.25, 0.45)
    shininess = rng.uniform(8.0, 40.0)
    spec_amount = rng.uniform(0.0, 0.35)
    scale = rng.uniform(1.0 - radius_jitter, 1.0 + radius_jitter, size=len(capsules))
    zbuf = np.full((size, size), np.inf, dtype=np.float32)
    for (a, b, radius, part), s in zip(capsules, scale, strict=True):
        r = radius * s
        ua, ub = uv[a], uv[b]
        ra, rb = r * f / z[a], r * f / z[b]  # projected radii (pixels) at the two ends
        x0 = int(np.floor(max(min(ua[0] - ra, ub[0] - rb), 0)))
        x1 = int(np.ceil(min(max(ua[0] + ra, ub[0] + rb), size - 1))) + 1
        y0 = int(np.floor(max(min(ua[1] - ra, ub[1] - rb), 0)))
        y1 = int(np.ceil(min(max(ua[1] + ra, ub[1] + rb), size - 1))) + 1
        if x1 <= x0 or y1 <= y0:
            continue  # entirely outside the crop
        px = np.arange(x0, x1, dtype=np.float32)[None, :]  # pixel centres
        py = np.arange(y0, y1, dtype=np.float32)[:, None]
        ab = (ub - ua).astype(np.float32)
        len2 = float(ab @ ab)
        if len2 > 1e-9:
            t = np.clip(((px - ua[0]) * ab[0] + (py - ua[1]) * ab[1]) / len2, 0.0, 1.0)
        else:
            t = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        dx = px - (ua[0] + t * ab[0])
        dy = py - (ua[1] + t * ab[1])
        rho = ra + t * (rb - ra)
        s2 = (dx * dx + dy * dy) / (rho * rho)
        inside = s2 < 1.0
        if not inside.any():
            continue
        nz = np.sqrt(np.maximum(1.0 - s2, 0.0))
        depth = (z[a] + t * (z[b] - z[a]) - r * nz).astype(np.float32)
        win = zbuf[y0:y1, x0:x1]
        visible = inside & (depth < win)
        if not visible.any():
            continue
        nx, ny = dx / rho, dy / rho  # (nx, ny, -nz) is a unit normal
        lambert = np.maximum(nx * light[0] + ny * light[1] - nz * light[2], 0.0)
        spec = np.maximum(nx * half[0] + ny * half[1] - nz * half[2], 0.0) ** shininess
        shade = (ambient + (1.0 - ambient) * lambert)[..., None] * colours[part] + (spec_amount * spec)[..., None]
        win[visible] = depth[visible]
        image[y0:y1, x0:x1][visible] = shade[visible]
    return zbuf


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.3, noise: float = 0.02) -> np.ndarray:
    """Photometric augmentation of (S, S, 3) float in [0, 1], in place; returns it clipped.

    x <- gain_c * (mean + contrast (x - mean)) * brightness, saturation blends with the grey
    image, then Gaussian noise of std ``noise``.
    """
    if strength > 0:
        brightness = rng.uniform(1 - strength, 1 + strength)
        contrast = rng.uniform(1 - strength, 1 + strength)
        saturation = rng.uniform(1 - strength, 1 + strength)
        gain = rng.uniform(1 - strength / 3, 1 + strength / 3, size=3).astype(np.float32)
        grey = image.mean(axis=2, keepdims=True)
        image += (saturation - 1.0) * (image - grey)  # x = grey + sat (x - grey)
        mean = float(image.mean())
        image -= mean
        image *= contrast
        image += mean
        image *= brightness * gain
    if noise > 0:
        image += rng.normal(0.0, noise, size=image.shape[:2] + (1,)).astype(np.float32)
    np.clip(image, 0.0, 1.0, out=image)
    return image


def render_crop(
    joints_3d: np.ndarray,
    intrinsics: np.ndarray,
    rng: np.random.Generator,
    config: RenderConfig = RenderConfig(),
) -> dict[str, np.ndarray]:
    """Render one crop of a pose with the random numbers of ``rng`` (see :func:`render_sample`)."""
    p = _check_points("joints_3d", joints_3d, 3)
    cam, box = crop_camera(p, intrinsics, config.size, config.margin, config.scale_jitter,
                           config.shift_jitter, rng)
    img = background(config.size, rng, config.ellipses)
    render_person(img, p, cam, rng, radius_jitter=config.radius_jitter)
    color_jitter(img, rng, config.color_jitter, config.noise)
    uv = project_pinhole(p, cam)
    visible = np.all((uv >= -0.5) & (uv <= config.size - 0.5), axis=1)
    return {
        "image": np.ascontiguousarray((img * 255.0 + 0.5).astype(np.uint8).transpose(2, 0, 1)),
        "joints_2d": uv.astype(np.float32),
        "joints_3d": p.astype(np.float32),
        "camera": cam.astype(np.float32),
        "box": box.astype(np.float32),
        "visible": visible.astype(np.float32),
    }


def render_sample(
    joints_3d: np.ndarray,
    intrinsics: np.ndarray,
    seed: int,
    index: int = 0,
    config: RenderConfig = RenderConfig(),
) -> dict[str, np.ndarray]:
    """Render one training crop of a pose; deterministic in ``(seed, index)``.

    joints_3d (J, 3) camera frame metres (J >= 17, Human3.6M order first); intrinsics (4,) of the
    full image in pixels. Returns ``image`` (3, S, S) uint8 RGB, ``joints_2d`` (J, 2) crop pixels,
    ``joints_3d`` (J, 3) metres (unchanged), ``camera`` (4,) crop intrinsics, ``box`` (3,) crop
    box (x0, y0, side) in full-image pixels, ``visible`` (J,) 1.0 where the joint projects inside
    the crop; float arrays are float32.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF])
    return render_crop(joints_3d, intrinsics, rng, config)


def render_speed(joints_3d: np.ndarray, intrinsics: np.ndarray, n: int = 50,
                 config: RenderConfig = RenderConfig()) -> float:
    """Images per second of :func:`render_sample` on one core over ``n`` renders of the poses.

    joints_3d (N, J, 3) poses (cycled) in the camera frame; intrinsics (4,).
    """
    poses = np.asarray(joints_3d)
    if poses.ndim != 3:
        raise ValueError(f"joints_3d must be (N, J, 3), got shape {poses.shape}")
    render_sample(poses[0], intrinsics, 0, 0, config)  # warm-up (allocator, first-call costs)
    t0 = time.perf_counter()
    for i in range(n):
        render_sample(poses[i % len(poses)], intrinsics, 0, i, config)
    return n / (time.perf_counter() - t0)
