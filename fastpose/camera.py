"""Human3.6M cameras, normalised intrinsics, quaternions and world <-> camera transforms.

The calibration numbers are those distributed with Human3.6M (as used by
VideoPose3D), copied here so the package needs no data file at run time:

- intrinsics in pixels: focal length ``f``, principal point ``c``, radial
  distortion ``k = (k1, k2, k3)``, tangential distortion ``p = (p_a, p_b)`` in
  the order where the tangential term is ``p_a * x + p_b * y`` (the reverse of
  the raw metadata's ``p1, p2``);
- extrinsics per subject: ``orientation`` is a unit quaternion ``(w, x, y, z)``
  rotating camera-frame vectors into the world frame, ``translation`` the camera
  centre in world coordinates. The tables hold millimetres; :class:`Camera`
  stores metres (3D data are in metres everywhere in fastpose).

Normalised screen coordinates (VideoPose3D): ``x' = x * 2 / w - [1, h / w]``, so
the image's width maps to [-1, 1] and the aspect ratio is preserved; the
normalised intrinsic 9-vector of the op contract is
``(f * 2 / w, c * 2 / w - [1, h / w], k1, k2, k3, p_a, p_b)``.

Functions accept NumPy arrays and PyTorch tensors (any leading dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "Camera",
    "H36M_CAMERA_IDS",
    "H36M_SUBJECTS",
    "camera_to_world",
    "flip_camera",
    "h36m_cameras",
    "image_coordinates",
    "normalize_screen_coordinates",
    "qinverse",
    "qrot",
    "world_to_camera",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# --------------------------------------------------------------------------------------------
# Calibration tables (pixels / millimetres), one entry per camera, cameras in the dataset order.
# --------------------------------------------------------------------------------------------
_H36M_INTRINSICS: tuple[dict, ...] = (
    {
        "id": "54138969",
        "center": (512.54150390625, 515.4514770507812),
        "focal_length": (1145.0494384765625, 1143.7811279296875),
        "radial_distortion": (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
        "tangential_distortion": (-0.0009756988729350269, -0.00142447161488235),
        "res_w": 1000,
        "res_h": 1002,
        "azimuth": 70,
    },
    {
        "id": "55011271",
        "center": (508.8486328125, 508.0649108886719),
        "focal_length": (1149.6756591796875, 1147.5916748046875),
        "radial_distortion": (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
        "tangential_distortion": (-0.0016190266469493508, -0.0027408944442868233),
        "res_w": 1000,
        "res_h": 1000,
        "azimuth": -70,
    },
    {
        "id": "58860488",
        "center": (519.8158569335938, 501.40264892578125),
        "focal_length": (1149.1407470703125, 1148.7989501953125),
        "radial_distortion": (-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
        "tangential_distortion": (0.0014843869721516967, -0.0007599993259645998),
        "res_w": 1000,
        "res_h": 1000,
        "azimuth": 110,
    },
    {
        "id": "60457274",
        "center": (514.9682006835938, 501.88201904296875),
        "focal_length": (1145.5113525390625, 1144.77392578125),
        "radial_distortion": (-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
        "tangential_distortion": (-0.0005872055771760643, -0.0018133620033040643),
        "res_w": 1000,
        "res_h": 1002,
        "azimuth": -110,
    },
)

# subject -> per camera (orientation quaternion (w, x, y, z), translation in mm)
_H36M_EXTRINSICS: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]] = {
    "S1": (
        ((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088),
         (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
        ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205),
         (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
        ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696),
         (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
        ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435),
         (-1794.7896728515625, -3722.698974609375, 1574.8927001953125)),
    ),
    "S5": (
        ((0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332),
         (2097.3916015625, 4880.94482421875, 1605.732421875)),
        ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915),
         (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
        ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576),
         (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
        ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092),
         (-1637.1737060546875, -3867.3173828125, 1547.033203125)),
    ),
    "S6": (
        ((0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938),
         (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
        ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428),
         (1969.803955078125, -5128.73876953125, 1632.77880859375)),
        ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334),
         (-1769.596435546875, 5185.361328125, 1476.993408203125)),
        ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802),
         (-1721.668701171875, -3884.13134765625, 1540.4879150390625)),
    ),
    "S7": (
        ((0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778),
         (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
        ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508),
         (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
        ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278),
         (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
        ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523),
         (-1734.7105712890625, -3832.42138671875, 1548.5830078125)),
    ),
    "S8": (
        ((0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773),
         (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
        ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615),
         (2219.965576171875, -5148.453125, 1613.0440673828125)),
        ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755),
         (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
        ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708),
         (-1476.913330078125, -3896.7412109375, 1547.97216796875)),
    ),
    "S9": (
        ((0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243),
         (2044.45849609375, 4935.1171875, 1481.2275390625)),
        ((0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801),
         (1990.959716796875, -5123.810546875, 1568.8048095703125)),
        ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915),
         (-1670.9921875, 5211.98583984375, 1528.387939453125)),
        ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822),
         (-1696.04345703125, -3827.099853515625, 1591.4127197265625)),
    ),
    "S11": (
        ((0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467),
         (2098.440185546875, 4926.5546875, 1500.278564453125)),
        ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085),
         (2083.182373046875, -4912.1728515625, 1561.07861328125)),
        ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407),
         (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
        ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809),
         (-1590.738037109375, -3854.1689453125, 1578.017578125)),
    ),
}  # fmt: skip

H36M_CAMERA_IDS: tuple[str, ...] = tuple(c["id"] for c in _H36M_INTRINSICS)
# Subjects with extrinsics (S2, S3, S4 have none in the distributed calibration).
H36M_SUBJECTS: tuple[str, ...] = tuple(_H36M_EXTRINSICS)


@dataclass(frozen=True)
class Camera:
    """One calibrated camera (pixels for intrinsics, metres for the translation)."""

    id: str
    res_w: int
    res_h: int
    focal_length: tuple[float, float]
    center: tuple[float, float]
    radial_distortion: tuple[float, float, float]
    tangential_distortion: tuple[float, float]
    orientation: tuple[float, float, float, float]  # (w, x, y, z), camera -> world rotation
    translation: tuple[float, float, float]  # camera centre in world coordinates, metres
    azimuth: float = 0.0  # degrees, for drawing

    def intrinsics(self, normalized: bool = True) -> np.ndarray:
        """The 9-vector ``(fx, fy, cx, cy, k1, k2, k3, p_a, p_b)`` as float32 (the op contract's camera).

        With ``normalized=True`` (default) f and c are in normalised screen units
        (``f * 2 / w``, ``c * 2 / w - [1, h / w]``), matching keypoints passed
        through :func:`normalize_screen_coordinates`.
        """
        f = np.asarray(self.focal_length, dtype=np.float64)
        c = np.asarray(self.center, dtype=np.float64)
        if normalized:
            f = f * 2.0 / self.res_w
            c = normalize_screen_coordinates(c, self.res_w, self.res_h)
        vec = np.concatenate([f, c, self.radial_distortion, self.tangential_distortion])
        return vec.astype(np.float32)

    def world_to_camera(self, points: Array) -> Array:
        """World-frame points (..., 3) in metres -> camera frame."""
        return world_to_camera(points, self.orientation, self.translation)

    def camera_to_world(self, points: Array) -> Array:
        """Camera-frame points (..., 3) in metres -> world frame."""
        return camera_to_world(points, self.orientation, self.translation)


def h36m_cameras(subject: str) -> tuple[Camera, ...]:
    """The four calibrated Human3.6M cameras of ``subject`` (``"S1"``, ``"S5"``, ... ``"S11"``)."""
    if subject not in _H36M_EXTRINSICS:
        raise ValueError(
            f"h36m_cameras: subject {subject!r} has no calibration; expected one of {H36M_SUBJECTS}"
        )
    cams = []
    # The tables' quaternions are float32 values, off unit norm by ~1e-7; normalising them makes
    # world_to_camera an exact rigid transform (inverse = camera_to_world to float64 rounding).
    for intr, (orientation, translation_mm) in zip(_H36M_INTRINSICS, _H36M_EXTRINSICS[subject], strict=True):
        cams.append(
            Camera(
                id=intr["id"],
                res_w=intr["res_w"],
                res_h=intr["res_h"],
                focal_length=intr["focal_length"],
                center=intr["center"],
                radial_distortion=intr["radial_distortion"],
                tangential_distortion=intr["tangential_distortion"],
                orientation=tuple(float(v) for v in np.asarray(orientation) / np.linalg.norm(orientation)),
                translation=tuple(t / 1000.0 for t in translation_mm),
                azimuth=intr["azimuth"],
            )
        )
    return tuple(cams)


# --------------------------------------------------------------------------------------------
# Screen coordinates
# --------------------------------------------------------------------------------------------
def normalize_screen_coordinates(points: Array, w: int, h: int) -> Array:
    """Pixels (..., 2) -> normalised screen coordinates: ``x * 2 / w - [1, h / w]``."""
    _check_last_dim(points, 2, "points")
    _check_resolution(w, h)
    return points / w * 2 - _like(points, [1.0, h / w])


def image_coordinates(points: Array, w: int, h: int) -> Array:
    """Inverse of :func:`normalize_screen_coordinates`: ``(x + [1, h / w]) * w / 2``."""
    _check_last_dim(points, 2, "points")
    _check_resolution(w, h)
    return (points + _like(points, [1.0, h / w])) * w / 2


def flip_camera(camera: Array) -> Array:
    """Normalised camera 9-vector(s) (..., 9) of the horizontally mirrored image.

    Mirroring negates normalised x. Projecting a mirrored point ``(-X, Y, Z)``
    with ``cx -> -cx`` and ``p_a -> -p_a`` gives exactly the mirrored projection
    (the radial term is even in x, the tangential term ``p_a x + p_b y`` is
    unchanged, the x offset ``p_a r^2`` changes sign), so only indices 2 and 7 flip.
    """
    _check_last_dim(camera, 9, "camera")
    sign = _like(camera, [1, 1, -1, 1, 1, 1, 1, -1, 1])
    return camera * sign


# --------------------------------------------------------------------------------------------
# Quaternions (w, x, y, z) and rigid transforms
# --------------------------------------------------------------------------------------------
def qrot(q: Array, v: Array) -> Array:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4) (broadcast over leading dims).

    ``v' = v + 2 w (u x v) + 2 u x (u x v)`` with ``q = (w, u)``.
    """
    _check_last_dim(q, 4, "q")
    _check_last_dim(v, 3, "v")
    w, u = q[..., :1], q[..., 1:]
    uv = _cross(u, v)
    uuv = _cross(u, uv)
    return v + 2 * (w * uv + uuv)


def qinverse(q: Array) -> Array:
    """Inverse of unit quaternions (..., 4): the conjugate ``(w, -x, -y, -z)``."""
    _check_last_dim(q, 4, "q")
    return q * _like(q, [1.0, -1.0, -1.0, -1.0])


def world_to_camera(points: Array, orientation, translation) -> Array:
    """``R^T (X - t)``: world points (..., 3) -> camera frame; R given by the quaternion ``orientation``."""
    q, t = _like(points, orientation), _like(points, translation)
    q = q.reshape((1,) * (points.ndim - 1) + (4,)) if q.ndim == 1 else q
    qi = qinverse(q)
    return qrot(_expand_as(qi, points, 4), points - t)


def camera_to_world(points: Array, orientation, translation) -> Array:
    """``R X + t``: camera-frame points (..., 3) -> world frame (inverse of :func:`world_to_camera`)."""
    q, t = _like(points, orientation), _like(points, translation)
    q = q.reshape((1,) * (points.ndim - 1) + (4,)) if q.ndim == 1 else q
    return qrot(_expand_as(q, points, 4), points) + t


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _like(ref: Array, values) -> Array:
    """``values`` as an array/tensor of ref's kind, dtype and device."""
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)
    if isinstance(ref, np.ndarray):
        return np.asarray(values, dtype=ref.dtype if ref.dtype.kind == "f" else np.float64)
    raise TypeError(f"expected a numpy array or torch tensor, got {type(ref).__name__}")


def _cross(a: Array, b: Array) -> Array:
    if isinstance(a, torch.Tensor):
        a, b = torch.broadcast_tensors(a, b)
        return torch.linalg.cross(a, b, dim=-1)
    return np.cross(a, b)


def _expand_as(q: Array, points: Array, size: int) -> Array:
    shape = tuple(points.shape[:-1]) + (size,)
    if isinstance(q, torch.Tensor):
        return q.expand(shape)
    return np.broadcast_to(q, shape)


def _check_last_dim(x, size: int, name: str) -> None:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(f"{name}: expected shape (..., {size}), got {tuple(x.shape)}")


def _check_resolution(w, h) -> None:
    if not (w > 0 and h > 0):
        raise ValueError(f"image size: expected w > 0 and h > 0, got w={w}, h={h}")
