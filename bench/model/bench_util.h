// Small helpers shared by the GPU benchmark programs (flux_forward, engine_bench).
#pragma once

#include <c10/cuda/CUDACachingAllocator.h>

#include <sstream>
#include <string>
#include <vector>

namespace grat::bench {

// "a,b,c" -> {"a", "b", "c"}
inline std::vector<std::string> split(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
  return out;
}

// Peak bytes allocated on device 0 since the last reset, in GiB.
inline double peak_gib() {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  return static_cast<double>(stats.allocated_bytes[aggregate].peak) / (1u << 30);
}

inline void reset_peak() { c10::cuda::CUDACachingAllocator::resetPeakStats(0); }

}  // namespace grat::bench
