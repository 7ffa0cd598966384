// Per-job callbacks of the denoising loop. The engine calls them on its own thread after
// every step; they must be cheap and must not block (the server forwards them to streams).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace grat::engine {

class JobObserver {
 public:
  virtual ~JobObserver() = default;
  // After step `step` of `total` (1-based). `preview_png` is a small PNG when the request
  // asked for previews, else empty.
  virtual void on_progress(int64_t step, int64_t total, const std::string& preview_png) = 0;
  // Polled before every step: true stops the job within one step (result kCancelled).
  virtual bool cancelled() const = 0;
  // Past this instant the job stops within one step (result kDeadlineExceeded).
  virtual std::chrono::steady_clock::time_point deadline() const {
    return std::chrono::steady_clock::time_point::max();
  }
};

// For callers that need none of it.
class NullObserver : public JobObserver {
 public:
  void on_progress(int64_t, int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
};

}  // namespace grat::engine
