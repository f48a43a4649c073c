// The Python module fastpose._C: pybind11 bindings of the framework-free kernels.
//
// Every kernel function takes a dtype code (0 float32, 1 float64, 2 float16, 3 bfloat16), data
// pointers as integers (torch's Tensor.data_ptr(); 0 for "absent"), sizes, and either a thread
// count (CPU, OpenMP) or a device index and a cudaStream_t as an integer (CUDA). The caller
// (fastpose/ops/native) allocates every buffer with torch and validates shapes; the functions here
// re-check what would make them read or write out of bounds and raise ValueError otherwise.
// The GIL is released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "common/build_info.h"
#include "common/volume_index.h"
#include "heatmap_mse/heatmap_mse.h"
#include "projection/projection.h"
#include "row_scale/row_scale.h"
#include "soft_argmax/soft_argmax.h"
#include "soft_argmax_heatmap_mse/soft_argmax_heatmap_mse.h"

namespace py = pybind11;
using py::arg;

#ifndef FASTPOSE_VERSION
#define FASTPOSE_VERSION "0.0.0"
#endif

namespace {

py::dict build_info() {
  const fastpose::CpuBuildInfo cpu = fastpose::cpu_build_info();
  py::dict d;
  d["version"] = FASTPOSE_VERSION;
  d["compiler"] = cpu.compiler;
  d["cxx_standard"] = cpu.cxx_standard;
  d["openmp"] = cpu.openmp;
  d["omp_max_threads"] = cpu.omp_max_threads;
  d["cpu_simd"] = cpu.simd;
  d["build_type"] = cpu.build_type;
#if defined(FASTPOSE_WITH_CUDA)
  const fastpose::CudaBuildInfo cu = fastpose::cuda_build_info();
  d["cuda"] = true;
  d["nvcc"] = cu.nvcc;
  d["cuda_archs"] = cu.archs;
  d["cuda_runtime_version"] = cu.runtime_version;
  d["cuda_driver_version"] = cu.driver_version;
  d["cuda_device_count"] = cu.device_count;
  d["cuda_device_error"] = cu.device_error;
#else
  d["cuda"] = false;
  d["nvcc"] = py::none();
  d["cuda_archs"] = py::list();
#endif
  return d;
}

// Positions of start + k * step (k < count) in a (d, h, w) volume, found the way the CUDA kernels
// walk a volume (volume_index.h: one division, then carries): lets the CPU tests check that code,
// 64-bit offsets included, without a GPU.
std::vector<std::tuple<int, int, int>> volume_walk(int64_t d, int64_t h, int64_t w, int64_t start, int64_t step,
                                                   int64_t count) {
  fastpose::fp_check_dims(1, d, h, w, "volume_walk");
  fastpose::fp_check(start >= 0 && step >= 0 && count >= 0 && count <= (1 << 20),
                     "volume_walk: expected start >= 0, step >= 0 and 0 <= count <= 2^20");
  const fastpose::volume_index::Geometry g{1, d * h * w, static_cast<int>(d), static_cast<int>(h),
                                           static_cast<int>(w)};
  fastpose::volume_index::Pos p = fastpose::volume_index::pos_of(start, g);
  const fastpose::volume_index::Step s = fastpose::volume_index::step_of(step, g);
  std::vector<std::tuple<int, int, int>> out;
  out.reserve(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    out.emplace_back(p.x, p.y, p.z);
    fastpose::volume_index::advance(p, s, g);
  }
  return out;
}

template <size_t N>
py::dict roles_dict(const fastpose::BufferRole (&table)[N]) {
  py::dict d;
  for (size_t i = 0; i < N; ++i) d[table[i].name] = fastpose::role_name(table[i].role);
  return d;
}

// The buffer role tables of the kernel entry points (csrc/row_scale/buffer_roles.h), keyed by the
// entry point without its _cpu/_cuda suffix; the Python glue's KernelSpec declarations are tested
// against them on the CPU.
py::dict buffer_roles() {
  py::dict d;
  d["row_scale"] = roles_dict(fastpose::row_scale::kRowScaleBuffers);
  d["project_forward"] = roles_dict(fastpose::projection::kProjectForwardBuffers);
  d["project_backward"] = roles_dict(fastpose::projection::kProjectBackwardBuffers);
  d["reprojection_forward"] = roles_dict(fastpose::projection::kReprojectionForwardBuffers);
  d["soft_argmax_forward"] = roles_dict(fastpose::soft_argmax::kSoftArgmaxForwardBuffers);
  d["soft_argmax_backward"] = roles_dict(fastpose::soft_argmax::kSoftArgmaxBackwardBuffers);
  d["heatmap_mse_forward"] = roles_dict(fastpose::heatmap_mse::kHeatmapMseForwardBuffers);
  d["heatmap_mse_backward"] = roles_dict(fastpose::heatmap_mse::kHeatmapMseBackwardBuffers);
  d["soft_argmax_heatmap_mse_forward"] = roles_dict(fastpose::soft_argmax_heatmap_mse::kFusedForwardBuffers);
  d["soft_argmax_heatmap_mse_backward"] = roles_dict(fastpose::soft_argmax_heatmap_mse::kFusedBackwardBuffers);
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastpose compiled kernels (C++/OpenMP, and CUDA when built with it); see csrc/";
  m.def("build_info", &build_info,
        "dict: version, compiler, cxx_standard, openmp, omp_max_threads, cpu_simd, build_type, cuda, nvcc, "
        "cuda_archs (+ cuda runtime/driver/device count when built with CUDA)");
#if defined(FASTPOSE_WITH_CUDA)
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("volume_walk", &volume_walk, arg("d"), arg("h"), arg("w"), arg("start"), arg("step"), arg("count"),
        "[(x, y, z)] of start + k * step, k < count, walked as the CUDA kernels do (test hook)");

  // ---- row_scale (the skeleton kernel): out[r, i] = src[r, i] * scale[r]
  m.def("row_scale_cpu", &fastpose::row_scale::forward_cpu, arg("dtype"), arg("src"), arg("scale"), arg("out"),
        arg("rows"), arg("cols"), arg("threads"), nogil);

  // ---- soft_argmax
  m.def("soft_argmax_forward_cpu", &fastpose::soft_argmax::forward_cpu, arg("dtype"), arg("logits"), arg("rows"),
        arg("d"), arg("h"), arg("w"), arg("ndim"), arg("coords"), arg("stats"), arg("threads"), nogil);
  m.def("soft_argmax_backward_cpu", &fastpose::soft_argmax::backward_cpu, arg("dtype"), arg("grad_coords"),
        arg("logits"), arg("stats"), arg("rows"), arg("d"), arg("h"), arg("w"), arg("ndim"), arg("grad_logits"),
        arg("threads"), nogil);
  m.attr("SOFT_ARGMAX_STATS") = fastpose::soft_argmax::kStats;

  // ---- heatmap_mse
  m.def("heatmap_mse_forward_cpu", &fastpose::heatmap_mse::forward_cpu, arg("dtype"), arg("heatmaps"), arg("rows"),
        arg("d"), arg("h"), arg("w"), arg("ndim"), arg("joints"), arg("sigma"), arg("weights"), arg("loss_rows"),
        arg("threads"), nogil);
  m.def("heatmap_mse_backward_cpu", &fastpose::heatmap_mse::backward_cpu, arg("dtype"), arg("grad_loss"),
        arg("grad_stride"), arg("heatmaps"), arg("rows"), arg("d"), arg("h"), arg("w"), arg("ndim"), arg("joints"),
        arg("sigma"), arg("weights"), arg("grad_scale"), arg("grad"), arg("threads"), nogil);

  // ---- soft_argmax_heatmap_mse (fused head)
  m.def("soft_argmax_heatmap_mse_forward_cpu", &fastpose::soft_argmax_heatmap_mse::forward_cpu, arg("dtype"),
        arg("logits"), arg("rows"), arg("d"), arg("h"), arg("w"), arg("joints"), arg("sigma"), arg("weights"),
        arg("coords"), arg("stats"), arg("loss_rows"), arg("threads"), nogil);
  m.def("soft_argmax_heatmap_mse_backward_cpu", &fastpose::soft_argmax_heatmap_mse::backward_cpu, arg("dtype"),
        arg("grad_coords"), arg("grad_mse"), arg("logits"), arg("rows"), arg("d"), arg("h"), arg("w"),
        arg("joints"), arg("sigma"), arg("weights"), arg("stats"), arg("mse_scale"), arg("grad_logits"),
        arg("threads"), nogil);

  // ---- projection
  m.def("project_forward_cpu", &fastpose::projection::project_forward_cpu, arg("dtype"), arg("points"),
        arg("npoints"), arg("camera"), arg("ncams"), arg("cam_div"), arg("out"), arg("threads"), nogil);
  m.def("project_backward_cpu", &fastpose::projection::project_backward_cpu, arg("dtype"), arg("grad_out"),
        arg("points"), arg("npoints"), arg("camera"), arg("ncams"), arg("cam_div"), arg("grad_points"),
        arg("threads"), nogil);
  m.def("reprojection_forward_cpu", &fastpose::projection::reprojection_forward_cpu, arg("dtype"), arg("points"),
        arg("npoints"), arg("camera"), arg("ncams"), arg("cam_div"), arg("keypoints"), arg("weights"), arg("scale"),
        arg("loss"), arg("grad"), arg("threads"), nogil);
  m.def("buffer_roles", &buffer_roles,
        "{kernel: {buffer: 'storage' | 'acc'}}: the role tables of the kernel entry points (buffer_roles.h)");

#if defined(FASTPOSE_WITH_CUDA)
  m.def("row_scale_cuda", &fastpose::row_scale::forward_cuda, arg("dtype"), arg("src"), arg("scale"), arg("out"),
        arg("rows"), arg("cols"), arg("device"), arg("stream"), nogil);

  m.def("soft_argmax_workspace_cuda", &fastpose::soft_argmax::workspace_elems_cuda, arg("dtype"), arg("rows"),
        arg("d"), arg("h"), arg("w"));
  m.def("soft_argmax_forward_cuda", &fastpose::soft_argmax::forward_cuda, arg("dtype"), arg("logits"), arg("rows"),
        arg("d"), arg("h"), arg("w"), arg("ndim"), arg("coords"), arg("stats"), arg("workspace"), arg("device"),
        arg("stream"), nogil);
  m.def("soft_argmax_backward_cuda", &fastpose::soft_argmax::backward_cuda, arg("dtype"), arg("grad_coords"),
        arg("logits"), arg("stats"), arg("rows"), arg("d"), arg("h"), arg("w"), arg("ndim"), arg("grad_logits"),
        arg("device"), arg("stream"), nogil);

  m.def("heatmap_mse_workspace_cuda", &fastpose::heatmap_mse::workspace_elems_cuda, arg("dtype"), arg("rows"),
        arg("d"), arg("h"), arg("w"));
  m.def("heatmap_mse_forward_cuda", &fastpose::heatmap_mse::forward_cuda, arg("dtype"), arg("heatmaps"), arg("rows"),
        arg("d"), arg("h"), arg("w"), arg("ndim"), arg("joints"), arg("sigma"), arg("weights"), arg("loss_rows"),
        arg("workspace"), arg("device"), arg("stream"), nogil);
  m.def("heatmap_mse_backward_cuda", &fastpose::heatmap_mse::backward_cuda, arg("dtype"), arg("grad_loss"),
        arg("grad_stride"), arg("heatmaps"), arg("rows"), arg("d"), arg("h"), arg("w"), arg("ndim"), arg("joints"),
        arg("sigma"), arg("weights"), arg("grad_scale"), arg("grad"), arg("device"), arg("stream"), nogil);

  m.def("soft_argmax_heatmap_mse_workspace_cuda", &fastpose::soft_argmax_heatmap_mse::workspace_elems_cuda,
        arg("dtype"), arg("rows"), arg("d"), arg("h"), arg("w"));
  m.def("soft_argmax_heatmap_mse_forward_cuda", &fastpose::soft_argmax_heatmap_mse::forward_cuda, arg("dtype"),
        arg("logits"), arg("rows"), arg("d"), arg("h"), arg("w"), arg("joints"), arg("sigma"), arg("weights"),
        arg("coords"), arg("stats"), arg("loss_rows"), arg("workspace"), arg("device"), arg("stream"), nogil);
  m.def("soft_argmax_heatmap_mse_backward_cuda", &fastpose::soft_argmax_heatmap_mse::backward_cuda, arg("dtype"),
        arg("grad_coords"), arg("grad_mse"), arg("logits"), arg("rows"), arg("d"), arg("h"), arg("w"),
        arg("joints"), arg("sigma"), arg("weights"), arg("stats"), arg("mse_scale"), arg("grad_logits"),
        arg("device"), arg("stream"), nogil);

  m.def("project_forward_cuda", &fastpose::projection::project_forward_cuda, arg("dtype"), arg("points"),
        arg("npoints"), arg("camera"), arg("ncams"), arg("cam_div"), arg("out"), arg("device"), arg("stream"),
        nogil);
  m.def("project_backward_cuda", &fastpose::projection::project_backward_cuda, arg("dtype"), arg("grad_out"),
        arg("points"), arg("npoints"), arg("camera"), arg("ncams"), arg("cam_div"), arg("grad_points"),
        arg("device"), arg("stream"), nogil);
  m.def("reprojection_workspace_cuda", &fastpose::projection::reprojection_workspace_elems_cuda, arg("npoints"));
  m.def("reprojection_forward_cuda", &fastpose::projection::reprojection_forward_cuda, arg("dtype"), arg("points"),
        arg("npoints"), arg("camera"), arg("ncams"), arg("cam_div"), arg("keypoints"), arg("weights"), arg("scale"),
        arg("loss"), arg("grad"), arg("workspace"), arg("device"), arg("stream"), nogil);
#endif
}
