"""fastpose: fused kernels and models for monocular 3D human pose estimation.

``fastpose.ops`` holds the fused ops (soft-argmax, on-the-fly Gaussian heatmap MSE, distorted
camera projection), ``fastpose.losses`` the pose metrics and losses; ``fastpose.use_backend``
picks the backend of the ops inside a ``with`` block.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import losses, ops
from .ops import use_backend

__all__ = ["__version__", "losses", "ops", "use_backend"]
