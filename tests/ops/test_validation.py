"""Bad input to every public op is refused before any kernel runs, with a message that names the
argument, the expectation and what was received."""

import pytest
import torch

from fastpose import ops

V3 = torch.randn(2, 3, 4, 5, 6)
J3 = torch.rand(2, 3, 3) * 3
V2 = torch.randn(2, 3, 5, 6)
J2 = torch.rand(2, 3, 2) * 3
P = torch.randn(2, 4, 3, 3).abs() + 1
CAM = torch.tensor([1.1, 1.1, 0.0, 0.0, -0.2, 0.2, 0.0, 0.001, 0.001])
KP = torch.randn(2, 4, 3, 2)

CASES = [
    # (call, exception, regex that the message must match)
    (lambda: ops.soft_argmax_3d(V2), ValueError, r"logits must have 5 dimensions, got shape \(2, 3, 5, 6\)"),
    (lambda: ops.soft_argmax_2d(V3), ValueError, r"logits must have 4 dimensions"),
    (lambda: ops.soft_argmax_3d(V3.long()), ValueError, r"logits must be float16.*got dtype torch.int64"),
    (lambda: ops.soft_argmax_2d(V2.numpy()), TypeError, r"logits must be a torch.Tensor, got ndarray"),
    (lambda: ops.heatmap_mse_3d(V3, J3[:, :2], 2.0), ValueError,
     r"joints must have shape \(2, 3, 3\) to match heatmaps \(2, 3, 4, 5, 6\), got \(2, 2, 3\)"),
    (lambda: ops.heatmap_mse_3d(V3, J3, 0.0), ValueError, r"sigma must be a finite float > 0.*got 0.0"),
    (lambda: ops.heatmap_mse_3d(V3, J3, -1), ValueError, r"sigma must be a finite float > 0"),
    (lambda: ops.heatmap_mse_2d(V2, J2, "2"), TypeError, r"sigma must be a positive float.*got str"),
    (lambda: ops.heatmap_mse_2d(V2, J2, 2.0, reduction="avg"), ValueError, r"reduction must be .*got 'avg'"),
    (lambda: ops.heatmap_mse_2d(V2, J2, 2.0, weights=torch.ones(2)), ValueError,
     r"weights must have shape \(2, 3\)"),
    (lambda: ops.heatmap_mse_2d(V2, J2.long(), 2.0), ValueError, r"joints must be a floating tensor"),
    (lambda: ops.heatmap_mse_2d(V2, J2.to("meta"), 2.0), ValueError,
     r"joints must be on the same device as heatmaps \(cpu\), got meta"),
    (lambda: ops.heatmap_mse_3d(V3, J3.clone().requires_grad_(), 2.0), ValueError,
     r"joints requires grad, but gradients flow only to the op's first argument"),
    (lambda: ops.soft_argmax_heatmap_mse_3d(V3, J3[..., :2], 2.0), ValueError, r"joints must have shape \(2, 3, 3\)"),
    (lambda: ops.soft_argmax_heatmap_mse_3d(V3, J3, float("nan")), ValueError, r"sigma must be a finite float"),
    (lambda: ops.project_to_2d(P[..., :2], CAM), ValueError, r"points must have last dimension 3"),
    (lambda: ops.project_to_2d(P, CAM[:8]), ValueError, r"camera must have shape \(\.\.\., 9\)"),
    (lambda: ops.project_to_2d(P, CAM.expand(3, 9)), ValueError, r"camera's leading dims must broadcast to points' leading dims \(2, 4\)"),
    (lambda: ops.project_to_2d(P, CAM.clone().requires_grad_()), ValueError, r"camera requires grad"),
    (lambda: ops.project_to_2d(P.int(), CAM), ValueError, r"points must be float16"),
    (lambda: ops.reprojection_loss(P, CAM, KP[..., :1, :]), ValueError,
     r"keypoints_2d must have shape \(2, 4, 3, 2\)"),
    (lambda: ops.reprojection_loss(P, CAM, KP, torch.ones(2, 4)), ValueError, r"weights must have shape \(2, 4, 3\)"),
    (lambda: ops.reprojection_loss(P, CAM.to("meta"), KP), ValueError, r"camera must be on the same device"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_bad_input_is_refused_clearly(case):
    call, exc, pattern = CASES[case]
    with pytest.raises(exc, match=pattern):
        call()


def test_targets_may_require_grad_under_no_grad():
    """Under torch.no_grad there is no gradient to drop, so targets that require grad are fine."""
    with torch.no_grad():
        ops.heatmap_mse_3d(V3, J3.clone().requires_grad_(), 2.0)
