// What the extension was built with (reported by fastpose._C.build_info() and `fastpose info`).
#pragma once

#include <string>
#include <vector>

namespace fastpose {

struct CpuBuildInfo {
  std::string compiler;     // e.g. "GCC 12.2.0"
  long cxx_standard;        // __cplusplus
  long openmp;              // _OPENMP (yyyymm)
  int omp_max_threads;      // omp_get_max_threads() now
  std::string simd;         // which clone of the hot loops this CPU runs (x86-64-v4 / v3 / baseline)
  std::string build_type;   // CMake build type
};

CpuBuildInfo cpu_build_info();

#if defined(FASTPOSE_WITH_CUDA)
struct CudaBuildInfo {
  std::string nvcc;               // nvcc version that compiled the kernels, e.g. "13.0"
  std::vector<int> archs;         // compiled SM architectures, e.g. {80, 90}
  int runtime_version;            // cudaRuntimeGetVersion (the statically linked runtime)
  int driver_version;             // cudaDriverGetVersion, 0 when there is no driver
  int device_count;               // cudaGetDeviceCount, 0 when none / no driver
  std::string device_error;       // why device_count is 0, if an error said so
};

CudaBuildInfo cuda_build_info();
#endif

}  // namespace fastpose
