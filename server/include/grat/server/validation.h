// Turns a grat.v1.GenerateRequest into an engine::Request: enum values, the output format
// for the model's kind (unspecified: PNG for images, MP4 for video), prompt byte limits and
// the priority range; the first problem comes back as INVALID_ARGUMENT naming the field.
// Every model limit (sizes, frames, fps, steps, attention, prompt tokens) is the engine's
// (engine::Engine::prepare, called by the scheduler at submit). Pure; thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>
#include <string>

#include "grat/engine/manifest.h"
#include "grat/engine/request.h"

namespace grat::v1 {
class GenerateRequest;
}

namespace grat::server {

struct ModelLimits {
  engine::Manifest manifest;
  int64_t max_prompt_bytes = 4096;
};

constexpr int32_t kMinPriority = -100, kMaxPriority = 100;

// `seed_if_absent` is used when the request has no seed.
grpc::Status to_engine_request(const v1::GenerateRequest& in, const ModelLimits& model,
                               uint64_t seed_if_absent, engine::Request* out);

}  // namespace grat::server
