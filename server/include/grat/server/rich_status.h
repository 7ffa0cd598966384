// gRPC statuses that carry google.rpc details in `grpc-status-details-bin`: an ErrorInfo with a
// stable reason clients can switch on (the message is for people), and a RetryInfo hint where
// retrying later can succeed. Standard clients decode them (grpcio-status, grpc-go status).
#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <string>

namespace grat::server {

// ErrorInfo.domain of every reason below.
inline constexpr const char* kErrorDomain = "grat.v1";

// Reasons (ErrorInfo.reason).
inline constexpr const char* kQueueFull = "QUEUE_FULL";                 // retry later
inline constexpr const char* kGpuOutOfMemory = "GPU_OUT_OF_MEMORY";     // ran out mid-run
inline constexpr const char* kMemoryLimit = "MEMORY_LIMIT_EXCEEDED";    // refused up front
inline constexpr const char* kDraining = "SERVER_DRAINING";             // go to another replica
inline constexpr const char* kResultBufferFull = "RESULT_BUFFER_FULL";  // slow clients
inline constexpr const char* kDeviceFailed = "DEVICE_FAILED";           // sticky device error
inline constexpr const char* kTenantQuota = "TENANT_QUOTA_EXCEEDED";    // an API key's limits

// `retry_after` 0: no RetryInfo (retrying the same request cannot help).
grpc::Status rich_status(grpc::StatusCode code, const std::string& message,
                         const std::string& reason,
                         std::chrono::milliseconds retry_after = std::chrono::milliseconds(0));

}  // namespace grat::server
