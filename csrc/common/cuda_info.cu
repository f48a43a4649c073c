// CUDA side of build_info(): the nvcc that compiled the kernels, the compiled architectures, and
// what the runtime sees now (driver, devices). Queries only: creates no context, launches nothing.
#include <cuda_runtime.h>

#include <sstream>

#include "build_info.h"

#ifndef FASTPOSE_CUDA_ARCHS
#define FASTPOSE_CUDA_ARCHS ""
#endif

namespace fastpose {

CudaBuildInfo cuda_build_info() {
  CudaBuildInfo info;
  info.nvcc = std::to_string(__CUDACC_VER_MAJOR__) + "." + std::to_string(__CUDACC_VER_MINOR__);
  std::stringstream ss(FASTPOSE_CUDA_ARCHS);  // "80,90"
  std::string item;
  while (std::getline(ss, item, ',')) {
    const std::string digits = item.substr(0, item.find_first_not_of("0123456789"));
    if (!digits.empty()) info.archs.push_back(std::stoi(digits));
  }
  info.runtime_version = 0;
  cudaRuntimeGetVersion(&info.runtime_version);
  info.driver_version = 0;
  cudaDriverGetVersion(&info.driver_version);
  info.device_count = 0;
  const cudaError_t err = cudaGetDeviceCount(&info.device_count);
  if (err != cudaSuccess) {
    info.device_count = 0;
    info.device_error = info.driver_version == 0
                            ? std::string("no CUDA driver on this machine")
                            : std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
  }
  return info;
}

}  // namespace fastpose
