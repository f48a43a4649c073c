// Host side of build_info(): compiler, C++ standard, OpenMP, and the SIMD clone the CPU runs.
#include "build_info.h"

#include <omp.h>

#include <string>

#ifndef FASTPOSE_BUILD_TYPE
#define FASTPOSE_BUILD_TYPE "unknown"
#endif

namespace fastpose {

static std::string compiler_name() {
#if defined(__clang__)
  return std::string("Clang ") + __clang_version__;
#elif defined(__GNUC__)
  return "GCC " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
  return "MSVC " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

static std::string simd_level() {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(FASTPOSE_NO_CLONES)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2+FMA)";
  return "x86-64 baseline (SSE2)";
#else
  return "compiler default (no runtime clones on this platform)";
#endif
}

CpuBuildInfo cpu_build_info() {
  CpuBuildInfo info;
  info.compiler = compiler_name();
  info.cxx_standard = static_cast<long>(__cplusplus);
#if defined(_OPENMP)
  info.openmp = static_cast<long>(_OPENMP);
#else
  info.openmp = 0;
#endif
  info.omp_max_threads = omp_get_max_threads();
  info.simd = simd_level();
  info.build_type = FASTPOSE_BUILD_TYPE;
  return info;
}

}  // namespace fastpose
