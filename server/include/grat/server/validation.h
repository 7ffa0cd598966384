// Turns a grat.v1.GenerateRequest into an engine::Request, checking every field against the
// model's limits first: the first problem comes back as INVALID_ARGUMENT naming the field
// and its limit. Pure function of its inputs; thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>
#include <memory>
#include <string>

#include "grat/engine/manifest.h"
#include "grat/engine/request.h"

namespace grat::tokenizer {
class T5Tokenizer;
}
namespace grat::v1 {
class GenerateRequest;
}

namespace grat::server {

struct ModelLimits {
  engine::Manifest manifest;
  std::shared_ptr<const tokenizer::T5Tokenizer> t5;  // counts prompt tokens; may be null
  int64_t max_prompt_bytes = 4096;
};

constexpr int32_t kMinPriority = -100, kMaxPriority = 100;

// `seed_if_absent` is used when the request has no seed.
grpc::Status to_engine_request(const v1::GenerateRequest& in, const ModelLimits& model,
                               uint64_t seed_if_absent, engine::Request* out);

// Prompt length in T5 tokens (with </s>); -1 when the text cannot be tokenized.
int64_t count_prompt_tokens(const tokenizer::T5Tokenizer& t5, const std::string& text);

}  // namespace grat::server
