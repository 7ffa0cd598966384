#include "grat/server/validation.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "grat/tokenizer/llama_tokenizer.h"
#include "grat/tokenizer/t5_tokenizer.h"
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
  if (m.count_tokens && !text.empty()) {
    const int64_t n = m.count_tokens(text);
    if (n < 0) return invalid(std::string(field) + " cannot be tokenized (invalid UTF-8?)");
    const int64_t limit = m.manifest.limits.max_prompt_tokens;
    if (limit > 0 && n > limit) {
      return invalid(std::string(field) + " is too long: " + std::to_string(n) +
                     " tokens; max_prompt_tokens is " + std::to_string(limit));
    }
  }
  return grpc::Status::OK;
}

}  // namespace

int64_t count_prompt_tokens(const tokenizer::T5Tokenizer& t5, const std::string& text) {
  try {
    return static_cast<int64_t>(t5.EncodePieces(text).size()) + 1;  // + </s>
  } catch (const std::exception&) {
    return -1;
  }
}

int64_t count_prompt_tokens(const tokenizer::LlamaTokenizer& llama, const std::string& text) {
  try {
    return static_cast<int64_t>(llama.EncodePieces(text).size());
  } catch (const std::exception&) {
    return -1;
  }
}

TokenCounter load_token_counter(const engine::Manifest& manifest) {
  if (manifest.is_video()) {
    auto llama = std::make_shared<const tokenizer::LlamaTokenizer>(
        tokenizer::LlamaTokenizer::Load(manifest.path("llm_tokenizer")));
    return [llama](const std::string& text) { return count_prompt_tokens(*llama, text); };
  }
  tokenizer::T5Tokenizer::Options options;
  options.max_length = static_cast<int>(std::max<int64_t>(1, manifest.text.t5_max_length));
  auto t5 = std::make_shared<const tokenizer::T5Tokenizer>(
      tokenizer::T5Tokenizer::Load(manifest.path("t5_tokenizer"), options));
  return [t5](const std::string& text) { return count_prompt_tokens(*t5, text); };
}

grpc::Status to_engine_request(const v1::GenerateRequest& in, const ModelLimits& m,
                               uint64_t seed_if_absent, engine::Request* out) {
  const engine::Manifest::Limits& L = m.manifest.limits;
  const bool video = m.manifest.kind == "video";
  engine::Request r;

  for (const auto& [field, v] : {std::pair<const char*, int64_t>{"width", in.width()},
                                 std::pair<const char*, int64_t>{"height", in.height()}}) {
    if (grpc::Status s = check_range(field, v, L.min_side, L.max_side); !s.ok()) return s;
    if (L.side_multiple > 0 && v % L.side_multiple != 0) {
      return invalid(std::string(field) + " must be a multiple of " +
                     std::to_string(L.side_multiple) + "; got " + std::to_string(v));
    }
  }
  const int64_t pixels = int64_t{in.width()} * in.height();
  if (L.max_pixels > 0 && pixels > L.max_pixels) {
    return invalid("width x height must be at most " + std::to_string(L.max_pixels) +
                   " pixels (max_pixels); got " + std::to_string(pixels));
  }
  r.width = in.width();
  r.height = in.height();

  if (video) {
    if (in.frames() == 0) {
      r.frames = std::max<int64_t>(1, m.manifest.defaults.frames);  // the model's default
    } else {
      const int64_t f = in.frames();
      if (f < 1 || (f - 1) % 4 != 0 || (L.max_frames > 0 && f > L.max_frames)) {
        return invalid("frames must be 4k+1 in [1, " + std::to_string(L.max_frames) +
                       "] (or 0 for the model's default " +
                       std::to_string(m.manifest.defaults.frames) + "); got " + std::to_string(f));
      }
      r.frames = f;
    }
    const int64_t video_pixels = r.frames * pixels;
    if (L.max_video_pixels > 0 && video_pixels > L.max_video_pixels) {
      return invalid("frames x width x height must be at most " +
                     std::to_string(L.max_video_pixels) + " (max_video_pixels); got " +
                     std::to_string(r.frames) + " x " + std::to_string(in.width()) + " x " +
                     std::to_string(in.height()) + " = " + std::to_string(video_pixels));
    }
    if (in.fps() != 0 && (in.fps() < kMinFps || in.fps() > kMaxFps)) {
      return invalid("fps must be in " + range_text(kMinFps, kMaxFps) +
                     " (or 0 for the model's default " + std::to_string(m.manifest.defaults.fps) +
                     "); got " + std::to_string(in.fps()));
    }
    r.fps = in.fps();  // 0: the bundle's default
  } else {
    if (in.frames() != 0 && in.frames() != 1) {
      return invalid("frames must be 1 (or 0) for image model " + m.manifest.name + "; got " +
                     std::to_string(in.frames()));
    }
    if (in.fps() != 0) {
      return invalid("fps must be 0 for image model " + m.manifest.name +
                     " (fps is for video models); got " + std::to_string(in.fps()));
    }
    r.frames = 1;
    r.fps = 0;
  }

  if (in.steps() != 0) {
    if (grpc::Status s = check_range("steps", in.steps(), L.min_steps, L.max_steps); !s.ok()) {
      return s;
    }
  }
  r.steps = in.steps();

  if (in.has_guidance()) {
    const float g = in.guidance();
    if (!std::isfinite(g) || g < 0.f || g > 100.f) {
      return invalid("guidance must be a finite number in [0, 100]; got " + std::to_string(g));
    }
    r.guidance = g;
  }

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
  const int axes = video ? 3 : 2;
  if (a.group_size() != 0) {
    if (a.group_size() != axes) {
      return invalid("attention.group must have " + std::to_string(axes) +
                     " entries (one per token-grid axis) or none; got " +
                     std::to_string(a.group_size()));
    }
    const int64_t cell = m.manifest.vae_scale * m.manifest.patch;
    const int64_t grid_h = cell > 0 ? r.height / cell : L.max_side;
    const int64_t grid_w = cell > 0 ? r.width / cell : L.max_side;
    // Video: latent frames (the first frame, then one per vae_temporal_scale frames).
    const int64_t grid_t = (r.frames - 1) / std::max<int64_t>(1, m.manifest.vae_temporal_scale) + 1;
    for (int i = 0; i < a.group_size(); ++i) {
      const int64_t g = a.group(i);
      const int64_t side = i == axes - 1 ? grid_w : (i == axes - 2 ? grid_h : grid_t);
      if (g < 1 || g > side) {
        return invalid("attention.group[" + std::to_string(i) + "] must be in " +
                       range_text(1, side) + " (the token grid); got " + std::to_string(g));
      }
      r.attention.group.push_back(g);
    }
  }
  if (grpc::Status s = check_range("attention.radius", a.radius(), 0, 64); !s.ok()) return s;
  r.attention.radius = a.radius();
  const int64_t steps = r.steps != 0 ? r.steps : m.manifest.defaults.steps;
  if (grpc::Status s = check_range("attention.full_steps", a.full_steps(), 0, steps); !s.ok()) {
    return s;
  }
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
