// projection: VideoPose3D's distorted pinhole camera, per point, shared by the CPU
// (projection_cpu.cpp) and CUDA (projection.cu) kernels, with its analytic gradient.
//
// camera = (fx, fy, cx, cy, k1, k2, k3, pa, pb); point (x, y, z) in the camera frame:
//   X = x / z, Y = y / z;  u = clamp(X, -1, 1), v = clamp(Y, -1, 1)
//   r2 = u^2 + v^2;  radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3;  tan = pa u + pb v;  S = radial + tan
//   Xd = u S + pa r2,  Yd = v S + pb r2;   out = (fx Xd + cx, fy Yd + cy)
// Gradient, with (a, b) = (g_out_x fx, g_out_y fy) the gradient on (Xd, Yd), c = a u + b v,
// q = a pa + b pb, rp = d radial / d r2 = k1 + 2 k2 r2 + 3 k3 r2^2:
//   g_u = a S + c (2 u rp + pa) + 2 u q,   g_v = b S + c (2 v rp + pb) + 2 v q
//   (zero where the clamp is active: X outside [-1, 1]; the bounds themselves pass, as torch.clamp)
//   g_x = g_u / z,  g_y = g_v / z,  g_z = -(g_u X + g_v Y) / z
// Reprojection loss per point: w * ||out - kp||_2, gradient w (out - kp) / ||out - kp|| pushed
// through the above, and 0 (not NaN) at zero error.
#pragma once

#include "../common/fp_common.h"
#include "../row_scale/buffer_roles.h"

namespace fastpose {
namespace projection {

constexpr int kCam = 9;  // fx, fy, cx, cy, k1, k2, k3, pa, pb

template <typename A>
struct Camera {
  A fx, fy, cx, cy, k1, k2, k3, pa, pb;
};

template <typename A, typename S>
FP_HD Camera<A> load_camera(const S* c) {
  return Camera<A>{A(c[0]), A(c[1]), A(c[2]), A(c[3]), A(c[4]), A(c[5]), A(c[6]), A(c[7]), A(c[8])};
}

template <typename A>
FP_HD A clamp_unit(A t) {
  return t < A(-1) ? A(-1) : (t > A(1) ? A(1) : t);  // NaN passes through, as torch.clamp
}

template <typename A>
FP_HD void project_point(A x, A y, A z, const Camera<A>& c, A& out_x, A& out_y) {
  const A u = clamp_unit(x / z), v = clamp_unit(y / z);
  const A r2 = u * u + v * v;
  const A radial = A(1) + r2 * (c.k1 + r2 * (c.k2 + r2 * c.k3));
  const A s = radial + (c.pa * u + c.pb * v);
  out_x = c.fx * (u * s + c.pa * r2) + c.cx;
  out_y = c.fy * (v * s + c.pb * r2) + c.cy;
}

// Gradient (gx, gy, gz) on the point from the gradient (go_x, go_y) on its projection.
template <typename A>
FP_HD void project_point_backward(A x, A y, A z, const Camera<A>& c, A go_x, A go_y, A& gx, A& gy, A& gz) {
  const A bx = x / z, by = y / z;
  const A u = clamp_unit(bx), v = clamp_unit(by);
  const A r2 = u * u + v * v;
  const A radial = A(1) + r2 * (c.k1 + r2 * (c.k2 + r2 * c.k3));
  const A rp = c.k1 + r2 * (A(2) * c.k2 + A(3) * c.k3 * r2);
  const A s = radial + (c.pa * u + c.pb * v);
  const A a = go_x * c.fx, b = go_y * c.fy;
  const A cc = a * u + b * v, q = a * c.pa + b * c.pb;
  A gu = a * s + cc * (A(2) * u * rp + c.pa) + A(2) * u * q;
  A gv = b * s + cc * (A(2) * v * rp + c.pb) + A(2) * v * q;
  gu = (bx >= A(-1) && bx <= A(1)) ? gu : A(0);
  gv = (by >= A(-1) && by <= A(1)) ? gv : A(0);
  const A iz = A(1) / z;
  gx = gu * iz;
  gy = gv * iz;
  gz = -(gu * bx + gv * by) * iz;
}

// w * ||project(p) - kp||; when `grad` is true also its gradient times `scale` on the point.
template <typename A>
FP_HD A reprojection_point(A x, A y, A z, const Camera<A>& c, A kx, A ky, A w, A scale, bool grad, A& gx, A& gy,
                           A& gz) {
  A ox, oy;
  project_point(x, y, z, c, ox, oy);
  const A ex = ox - kx, ey = oy - ky;
  const A n = std::sqrt(ex * ex + ey * ey);
  if (grad) {
    // d||e|| / de = e / ||e||, defined as 0 at e = 0 (the subgradient of the norm there)
    const A k = n > A(0) ? w * scale / n : A(0);
    project_point_backward(x, y, z, c, k * ex, k * ey, gx, gy, gz);
  }
  return w * n;
}

// Camera row of point p (the camera index map): row = (p / cam_div) % ncams. The Python glue
// reduces torch broadcasting of camera (*C, 9) against points (*L, J, 3) to this map (see
// fastpose/reference/projection.py: camera_broadcast_map): ncams compact camera rows cover one
// contiguous span of the points' leading dims, cam_div = J * (product of the leading dims after
// the span), and `% ncams` repeats the span over the leading dims before it. Equal leading dims:
// ncams = prod(L), cam_div = J; one camera: ncams = 1. The row is < ncams for every p, so a
// camera read is always in bounds.
FP_HD int64_t camera_row(int64_t p, int64_t cam_div, int64_t ncams) { return (p / cam_div) % ncams; }

// ---- host entry points ----------------------------------------------------------------------------
// Buffer roles (buffer_roles.h): kStorage = the dtype code's type T, kAcc = acc_t<T>. On the CPU
// (float32/float64 only) the two coincide. Shapes: points (npoints, 3), camera (ncams, 9),
// out (npoints, 2), keypoints (npoints, 2), weights (npoints) or absent, loss (), grad (npoints, 3)
// or absent, workspace (reprojection_workspace_elems_cuda(npoints)).
constexpr BufferRole kProjectForwardBuffers[] = {
    {"points", Role::kStorage}, {"camera", Role::kAcc}, {"out", Role::kStorage}};
constexpr BufferRole kProjectBackwardBuffers[] = {
    {"grad_out", Role::kStorage}, {"points", Role::kStorage}, {"camera", Role::kAcc},
    {"grad_points", Role::kStorage}};
// grad is the gradient of the loss saved by the forward for the backward (row_scale reads it as
// its kAcc `src`): kept in the accumulation type so float16/bfloat16 round once, at the end.
constexpr BufferRole kReprojectionForwardBuffers[] = {
    {"points", Role::kStorage}, {"camera", Role::kAcc}, {"keypoints", Role::kAcc}, {"weights", Role::kAcc},
    {"loss", Role::kStorage},   {"grad", Role::kAcc},   {"workspace", Role::kAcc}};

// out = projection of points; camera row of point p = camera_row(p, cam_div, ncams).
void project_forward_cpu(int dtype, uintptr_t points, int64_t npoints, uintptr_t camera, int64_t ncams,
                         int64_t cam_div, uintptr_t out, int threads);
// grad_out -> grad_points.
void project_backward_cpu(int dtype, uintptr_t grad_out, uintptr_t points, int64_t npoints, uintptr_t camera,
                          int64_t ncams, int64_t cam_div, uintptr_t grad_points, int threads);
// loss = scale * sum_p w_p ||proj_p - kp_p|| (weights 0 = all ones); grad (or 0 = not wanted) =
// scale * d(sum_p w_p n_p)/dpoints.
void reprojection_forward_cpu(int dtype, uintptr_t points, int64_t npoints, uintptr_t camera, int64_t ncams,
                              int64_t cam_div, uintptr_t keypoints, uintptr_t weights, double scale, uintptr_t loss,
                              uintptr_t grad, int threads);

#if defined(FASTPOSE_WITH_CUDA)
void project_forward_cuda(int dtype, uintptr_t points, int64_t npoints, uintptr_t camera, int64_t ncams,
                          int64_t cam_div, uintptr_t out, int device, uintptr_t stream);
void project_backward_cuda(int dtype, uintptr_t grad_out, uintptr_t points, int64_t npoints, uintptr_t camera,
                           int64_t ncams, int64_t cam_div, uintptr_t grad_points, int device, uintptr_t stream);
int64_t reprojection_workspace_elems_cuda(int64_t npoints);
void reprojection_forward_cuda(int dtype, uintptr_t points, int64_t npoints, uintptr_t camera, int64_t ncams,
                               int64_t cam_div, uintptr_t keypoints, uintptr_t weights, double scale, uintptr_t loss,
                               uintptr_t grad, uintptr_t workspace, int device, uintptr_t stream);
#endif

}  // namespace projection
}  // namespace fastpose
