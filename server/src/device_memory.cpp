// Device memory in use, for the grat_gpu_memory_bytes gauge. CUDA runtime only (no LibTorch
// headers here); built without CUDA, every device reads 0.
#include <cstdint>
#include <string>

#ifdef GRAT_SERVER_CUDA
#include <cuda_runtime_api.h>
#endif

namespace grat::server {

// Bytes in use on `device` ("cuda", "cuda:N"; anything else: 0), as total - free from
// cudaMemGetInfo (every process on the device counts). -1 when the query fails.
double device_memory_in_use(const std::string& device) {
#ifdef GRAT_SERVER_CUDA
  if (device.rfind("cuda", 0) != 0) return 0;
  int index = 0;
  if (device.size() > 5) index = std::stoi(device.substr(5));
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return -1;
  if (cudaSetDevice(index) != cudaSuccess) return -1;
  size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t e = cudaMemGetInfo(&free_bytes, &total_bytes);
  cudaSetDevice(previous);
  if (e != cudaSuccess) return -1;
  return static_cast<double>(total_bytes - free_bytes);
#else
  (void)device;
  return 0;
#endif
}

}  // namespace grat::server
