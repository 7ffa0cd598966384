// What the engine is asked for and what it gives back. Plain values: the scheduler builds
// them from API requests; nothing here knows about gRPC.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace grat::engine {

enum class AttentionMode { kAuto, kFull, kB, kX };

// Parses "auto" / "full" / "B" / "X" (case-insensitive); nullopt for anything else.
std::optional<AttentionMode> parse_attention_mode(const std::string& name);
const char* attention_mode_name(AttentionMode mode);

struct AttentionSettings {
  AttentionMode mode = AttentionMode::kAuto;
  std::vector<int64_t> group;  // empty: the bundle's default
  int64_t radius = 0;          // 0: the bundle's default
  int64_t full_steps = 0;      // full attention for the first k steps, GRAT after
};

enum class OutputFormat { kPng, kWebp, kMp4 };

struct Request {
  std::string prompt, negative_prompt;
  int64_t width = 0, height = 0, frames = 1;  // video bundles: frames = 4k+1
  int64_t fps = 0;                            // video: 0 = the bundle's default
  int64_t steps = 0;                          // 0: the bundle's default
  std::optional<double> guidance;             // absent: the bundle's default
  uint64_t seed = 0;                          // the caller picks one when the client gave none
  AttentionSettings attention;
  OutputFormat format = OutputFormat::kPng;
  bool preview = false;  // small previews with progress events
};

struct StageTimings {
  double text_encode_s = 0, noise_s = 0, denoise_s = 0, decode_s = 0, encode_s = 0;
  double first_step_s = 0;     // from the start of denoising to the end of the first step
  double forward_s = 0;        // inside transformer forwards (EngineOptions::profile_forwards)
  double first_forward_s = 0;  // the part of forward_s spent in the first step
};

enum class ErrorCode {
  kOk,
  kInvalidArgument,    // a request the bundle's limits refuse
  kOutOfMemory,        // device memory ran out for this job
  kResourceExhausted,  // refused up front: the request cannot fit in the device's memory
  kDeviceFailed,       // a sticky device error (e.g. illegal memory access): nothing more can
                       // run on this device until the process restarts
  kBadBundle,          // the bundle cannot be loaded or run
  kTokenizer,          // the prompt could not be tokenized
  kCancelled,
  kDeadlineExceeded,
  kInternal,
};
const char* error_code_name(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kOk;
  std::string message;
  bool ok() const { return code == ErrorCode::kOk; }
};

struct Result {
  // Not ok: the fields below are empty, except that a cancelled or expired job keeps the
  // attention and the timings of the stages it ran.
  Error error;
  std::string bytes;  // encoded output
  std::string mime;   // image/png, image/webp, video/mp4
  uint64_t seed = 0;
  int64_t width = 0, height = 0, frames = 0, steps = 0;
  int64_t fps = 0;  // video: the MP4's frame rate as resolved (request or model default)
  double guidance = 0;
  std::string attention;  // what ran, e.g. "B group=16x16 r=1 full_steps=0"
  StageTimings timings;
};

}  // namespace grat::engine
