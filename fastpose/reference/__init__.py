"""Pure-PyTorch reference implementations: the single source of truth for the math of every op.

Every function here is differentiable by autograd, runs on any device and dtype (float16 and
bfloat16 are computed in float32 and returned in the input dtype; float64 stays float64) and does
no heavy input validation: the public ops in :mod:`fastpose.ops` validate, then call these (the
``reference`` backend) or a fast backend that is tested against these. The ``*_forward`` /
``*_backward`` functions give backends the analytic gradients, checked against autograd.
"""

from fastpose.reference.heatmap_mse import (
    gaussian_factors,
    heatmap_mse_2d,
    heatmap_mse_3d,
    heatmap_mse_backward,
)
from fastpose.reference.projection import (
    project_to_2d,
    project_to_2d_backward,
    reprojection_loss,
    reprojection_loss_backward,
)
from fastpose.reference.soft_argmax import (
    soft_argmax_2d,
    soft_argmax_3d,
    soft_argmax_backward,
    soft_argmax_forward,
)
from fastpose.reference.soft_argmax_heatmap_mse import (
    soft_argmax_heatmap_mse_2d,
    soft_argmax_heatmap_mse_3d,
    soft_argmax_heatmap_mse_backward,
    soft_argmax_heatmap_mse_forward,
)

__all__ = [
    "gaussian_factors",
    "heatmap_mse_2d",
    "heatmap_mse_3d",
    "heatmap_mse_backward",
    "project_to_2d",
    "project_to_2d_backward",
    "reprojection_loss",
    "reprojection_loss_backward",
    "soft_argmax_2d",
    "soft_argmax_3d",
    "soft_argmax_backward",
    "soft_argmax_forward",
    "soft_argmax_heatmap_mse_2d",
    "soft_argmax_heatmap_mse_3d",
    "soft_argmax_heatmap_mse_backward",
    "soft_argmax_heatmap_mse_forward",
]
