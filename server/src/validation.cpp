#include "grat/server/validation.h"

#include <string>

#include "grat/v1/generation.pb.h"

namespace grat::server {
namespace {

grpc::Status invalid(const std::string& msg) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
}

std::string range_text(int64_t lo, int64_t hi) {
  return "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
}

grpc::Status check_range(const char* field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return invalid(std::string(field) + " must be in " + range_text(lo, hi) + "; got " +
                   std::to_string(v));
  }
  return grpc::Status::OK;
}

grpc::Status check_text(const char* field, const std::string& text, const ModelLimits& m) {
  if (static_cast<int64_t>(text.size()) > m.max_prompt_bytes) {
    return invalid(std::string(field) + " is too long: " + std::to_string(text.size()) +
                   " bytes; the limit is " + std::to_string(m.max_prompt_bytes) + " bytes");
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status to_engine_request(const v1::GenerateRequest& in, const ModelLimits& m,
                               uint64_t seed_if_absent, engine::Request* out) {
  const bool video = m.manifest.is_video();
  engine::Request r;
  // Limits (sizes, frames, steps, attention, prompt tokens) are the engine's: the scheduler's
  // Executor::prepare refuses a request naming the field. Here: conversion and byte limits.
  r.width = in.width();
  r.height = in.height();
  r.frames = in.frames() == 0 && !video ? 1 : in.frames();  // video 0: the model's default
  r.fps = in.fps();                                         // 0: the model's default (video)
  r.steps = in.steps();                                     // 0: the model's default
  if (in.has_guidance()) r.guidance = in.guidance();
  if (grpc::Status s = check_text("prompt", in.prompt(), m); !s.ok()) return s;
  if (grpc::Status s = check_text("negative_prompt", in.negative_prompt(), m); !s.ok()) return s;
  r.prompt = in.prompt();
  r.negative_prompt = in.negative_prompt();

  const v1::AttentionSettings& a = in.attention();
  switch (a.mode()) {
    case v1::ATTENTION_MODE_UNSPECIFIED:
    case v1::ATTENTION_MODE_AUTO:
      r.attention.mode = engine::AttentionMode::kAuto;
      break;
    case v1::ATTENTION_MODE_FULL:
      r.attention.mode = engine::AttentionMode::kFull;
      break;
    case v1::ATTENTION_MODE_B:
      r.attention.mode = engine::AttentionMode::kB;
      break;
    case v1::ATTENTION_MODE_X:
      r.attention.mode = engine::AttentionMode::kX;
      break;
    default:
      return invalid("attention.mode must be one of AUTO, FULL, B, X; got " +
                     std::to_string(static_cast<int>(a.mode())));
  }
  for (int i = 0; i < a.group_size(); ++i) r.attention.group.push_back(a.group(i));
  r.attention.radius = a.radius();
  r.attention.full_steps = a.full_steps();

  switch (in.format()) {
    case v1::OUTPUT_FORMAT_UNSPECIFIED:
      r.format = video ? engine::OutputFormat::kMp4 : engine::OutputFormat::kPng;
      break;
    case v1::OUTPUT_FORMAT_PNG:
    case v1::OUTPUT_FORMAT_WEBP:
      if (video) {
        return invalid("format must be MP4 (or unspecified) for video model " + m.manifest.name +
                       "; got " + (in.format() == v1::OUTPUT_FORMAT_PNG ? "PNG" : "WEBP"));
      }
      r.format = in.format() == v1::OUTPUT_FORMAT_PNG ? engine::OutputFormat::kPng
                                                      : engine::OutputFormat::kWebp;
      break;
    case v1::OUTPUT_FORMAT_MP4:
      if (!video)
        return invalid("format MP4 is for video models; " + m.manifest.name +
                       " makes images (PNG or WEBP)");
      r.format = engine::OutputFormat::kMp4;
      break;
    default:
      return invalid("format must be one of PNG, WEBP, MP4; got " +
                     std::to_string(static_cast<int>(in.format())));
  }

  if (grpc::Status s = check_range("priority", in.priority(), kMinPriority, kMaxPriority);
      !s.ok()) {
    return s;
  }
  r.seed = in.has_seed() ? in.seed() : seed_if_absent;
  r.preview = in.preview();
  *out = std::move(r);
  return grpc::Status::OK;
}

}  // namespace grat::server
