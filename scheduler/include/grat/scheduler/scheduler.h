// Scheduler: bounded per-model priority queues, deadlines, cancellation, shape-bucket
// batching and one worker thread per (model, device). Knows nothing of gRPC: the server
// submits plain engine::Requests with a JobListener and turns the events into stream
// messages.
//
// Ownership: submit() takes the Submission; the scheduler owns the job until it calls
// JobListener::on_finished exactly once (from a scheduler thread), after which it forgets it.
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "grat/engine/engine.h"

namespace grat::scheduler {

using Clock = std::chrono::steady_clock;

// What a worker drives: one model on one device. EngineExecutor adapts engine::Engine;
// tests use fakes.
class Executor {
 public:
  virtual ~Executor() = default;
  virtual const engine::Manifest& manifest() const = 0;
  virtual std::string device() const = 0;  // e.g. "cuda:0", "cpu"
  // The request resolved once: defaults, limits, prompt tokens, batch key (engine::Plan).
  // Thread-safe: called from submitting threads while the worker runs.
  virtual engine::Plan prepare(const engine::Request& request) const = 0;
  // Runs one batch (equal batch keys); one Result per job, in order; never throws.
  virtual std::vector<engine::Result> run(const std::vector<engine::Job>& jobs) = 0;
  // The same, leaving the outputs' CPU encoding to the caller (engine::DecodedBatch): the
  // worker hands it to its finisher thread and starts the next batch meanwhile.
  virtual engine::DecodedBatch run_decoded(const std::vector<engine::Job>& jobs) {
    return {run(jobs), nullptr};
  }
};

// Adapts a loaded engine::Engine.
std::unique_ptr<Executor> make_engine_executor(std::unique_ptr<engine::Engine> engine);

// Events of one job. Called from scheduler threads; implementations must not block.
class JobListener {
 public:
  virtual ~JobListener() = default;
  virtual void on_queued(int64_t position) = 0;  // 0 = next to run
  virtual void on_started(const std::string& device, int64_t batch_size) = 0;
  virtual void on_progress(int64_t step, int64_t total, const std::string& preview_png) = 0;
  // Exactly once, last. result.error says kCancelled / kDeadlineExceeded / ... or ok.
  virtual void on_finished(engine::Result result) = 0;
};

// Metrics hooks (the server's Prometheus exporter implements them). Must not block.
class SchedulerMetrics {
 public:
  virtual ~SchedulerMetrics() = default;
  virtual void queue_depth(const std::string& model, int64_t depth) {}
  virtual void queue_wait(const std::string& model, double seconds) {}
  virtual void batch_started(const std::string& model, const std::string& device, int64_t size) {}
  virtual void first_step(const std::string& model, double seconds_since_submit) {}
  virtual void step_time(const std::string& model, double seconds) {}
  virtual void finished(const std::string& model, engine::ErrorCode code, double seconds) {}
};

struct ModelConfig {
  std::string name;
  int64_t max_queue = 64;  // queued (not running) jobs; beyond: kQueueFull
  int64_t max_batch = 4;
  std::chrono::milliseconds max_batch_delay{20};  // wait this long to fill a batch
};

struct Submission {
  std::string model;
  engine::Request request;
  int32_t priority = 0;  // higher first; FIFO within a priority
  Clock::time_point deadline = Clock::time_point::max();
  std::shared_ptr<JobListener> listener;
};

// kTooLarge: the request cannot fit in the device's memory (the engine's plan refused it).
enum class SubmitStatus { kAccepted, kUnknownModel, kInvalid, kTooLarge, kQueueFull, kDraining };

// One worker (a model on one device), for health checks.
struct WorkerStatus {
  std::string model, device;
  bool busy = false;            // running a batch
  double since_progress_s = 0;  // busy: since the batch started or its last step
  double step_s = 0;            // typical step time (moving average; 0 until measured)
  bool failed = false;          // its device failed (kDeviceFailed): it takes no more batches
};

struct SubmitResult {
  SubmitStatus status = SubmitStatus::kAccepted;
  std::string job_id;   // set when accepted
  std::string message;  // why not, naming the field/limit
};

class Scheduler {
 public:
  explicit Scheduler(std::shared_ptr<SchedulerMetrics> metrics = nullptr);
  ~Scheduler();  // stops: cancels what is left, joins workers
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Before start(): one executor per device serving this model (one worker thread each).
  void add_model(ModelConfig config, std::vector<std::unique_ptr<Executor>> executors);
  void start();

  // Resolves the request against the model (the executor's prepare: kInvalid with the
  // engine's message naming the field), then queues the resolved request. Never blocks on work.
  SubmitResult submit(Submission submission);
  // Cancels a queued or running job (running: stops within one step). False if unknown.
  bool cancel(const std::string& job_id);

  // Stops accepting (kDraining), lets queued and running jobs finish until `timeout`, then
  // cancels the rest; returns when every job has finished.
  void drain(std::chrono::milliseconds timeout);
  bool draining() const;

  std::vector<std::string> models() const;
  const engine::Manifest* manifest(const std::string& model) const;  // null if unknown
  int64_t queue_depth(const std::string& model) const;
  std::vector<WorkerStatus> workers() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grat::scheduler
