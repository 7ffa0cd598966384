// Scheduler implementation.
//
// One mutex (Core::mu_) guards the queues, every job's state and the event queue. Threads:
//  - one worker per executor: takes the highest-priority job whose key no other worker is
//    batching, gathers queued jobs with the same batch key (waiting up to max_batch_delay from
//    the head's submission, less once the batch is full), runs the batch up to its decoded
//    outputs, and hands it to its finisher;
//  - one finisher per worker: encodes a decoded batch's outputs (CPU) and finishes its jobs
//    while the worker runs the next batch on the device; a worker with a batch to hand over
//    waits while its finisher is still busy, so at most one batch per worker is encoding;
//  - a reaper: finishes queued jobs whose deadline has passed, at that instant;
//  - a dispatcher: calls JobListeners in the order events were posted, never holding the mutex.
//    Events are posted under the mutex at the state change they report, so each job sees
//    on_queued* -> on_started -> on_progress* -> on_finished, and on_finished exactly once.
// Metrics hooks are called under the mutex (they must not block or call back into the
// scheduler), so a gauge receives queue depths in the order they happened. Listeners may call
// submit() and cancel(), but not drain() or the destructor: those wait for the dispatcher.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>

#include "grat/scheduler/scheduler.h"

namespace grat::scheduler {
namespace {

using engine::ErrorCode;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

engine::Result error_result(ErrorCode code, std::string message) {
  engine::Result r;
  r.error.code = code;
  r.error.message = std::move(message);
  return r;
}

class NullListener : public JobListener {
 public:
  void on_queued(int64_t) override {}
  void on_started(const std::string&, int64_t) override {}
  void on_progress(int64_t, int64_t, const std::string&) override {}
  void on_finished(engine::Result) override {}
};

// Job ids: 16 hex digits. A keyed bijection of a counter, so unique within one scheduler for
// 2^64 ids, and not predictable from the ids seen without the two random keys.
class JobIds {
 public:
  JobIds() {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd()};
    std::mt19937_64 gen(seq);
    k1_ = gen();
    k2_ = gen();
  }
  std::string next() {
    const uint64_t n = counter_++;
    const uint64_t z = mix(mix(n * 0x9e3779b97f4a7c15ULL + k1_) ^ k2_);
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(z));
    return buf;
  }

 private:
  static uint64_t mix(uint64_t z) {  // splitmix64's finalizer: a bijection
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t k1_ = 0, k2_ = 0, counter_ = 0;  // counter_ guarded by the scheduler's mutex
};

struct Model;

enum class State { kQueued, kForming, kRunning, kFinished };

struct Job {
  std::string id;
  Model* model = nullptr;
  engine::Request request;
  int32_t priority = 0;
  uint64_t seq = 0;  // FIFO order within a priority
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point submitted;
  std::shared_ptr<JobListener> listener;
  std::string key;        // executor's batch key
  int64_t max_batch = 0;  // jobs of this shape that fit in memory together (0: no limit)
  State state = State::kQueued;
  int64_t position = -1;  // last position reported with on_queued
  bool first_step_seen = false;
  bool in_deadlines = false;
  std::multimap<Clock::time_point, Job*>::iterator deadline_it;
  std::atomic<bool> cancel{false};  // read by the engine through the observer
};
using JobPtr = std::shared_ptr<Job>;

struct QueueOrder {
  bool operator()(const Job* a, const Job* b) const {
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->seq < b->seq;
  }
};

// A worker's one-slot hand-over to its finisher thread.
struct Finisher {
  bool full = false;  // holds a batch
  std::vector<JobPtr> batch;
  engine::DecodedBatch decoded;
  std::condition_variable cv;  // slot filled, slot emptied, stop
};

struct Model {
  ModelConfig config;
  std::vector<std::unique_ptr<Executor>> executors;
  std::set<Job*, QueueOrder> queue;  // queued jobs only; owned by Core::jobs_
  std::condition_variable cv;        // workers: queue changed, a forming job cancelled, stop
  // Keys of batches that workers are still filling: other workers leave those jobs to them.
  std::map<std::string, int> forming;
  int64_t reported_depth = -1;
  std::vector<WorkerStatus> workers;  // one per executor; times below as of `progress`
  std::vector<Clock::time_point> progress;
  std::vector<std::unique_ptr<Finisher>> finishers;  // one per executor
};

struct Event {
  enum Kind { kQueued, kStarted, kProgress, kFinished } kind = kQueued;
  std::shared_ptr<JobListener> listener;
  int64_t a = 0, b = 0;
  std::string text;  // device or preview
  engine::Result result;
};

// Step times are measured once per batch (between consecutive steps of the whole batch).
struct BatchState {
  int64_t last_step = 0;
  Clock::time_point last_time;
  WorkerStatus* worker = nullptr;
  Clock::time_point* progress = nullptr;  // the worker's last sign of life
};

class Core;

class RunObserver : public engine::JobObserver {
 public:
  RunObserver(Core* core, Job* job, BatchState* batch) : core_(core), job_(job), batch_(batch) {}
  void on_progress(int64_t step, int64_t total, const std::string& preview_png) override;
  bool cancelled() const override { return job_->cancel.load(std::memory_order_relaxed); }
  Clock::time_point deadline() const override { return job_->deadline; }

 private:
  Core* core_;
  Job* job_;
  BatchState* batch_;
};

class Core {
 public:
  explicit Core(std::shared_ptr<SchedulerMetrics> metrics)
      : metrics_(metrics ? std::move(metrics) : std::make_shared<SchedulerMetrics>()),
        null_listener_(std::make_shared<NullListener>()) {
    reaper_ = std::thread([this] { reaper_loop(); });
    dispatcher_ = std::thread([this] { dispatch_loop(); });
  }

  ~Core() {
    {
      std::unique_lock<std::mutex> lk(mu_);
      draining_ = true;
      cancel_all_locked("cancelled: the scheduler is shutting down");
      idle_cv_.wait(lk, [&] { return live_ == 0; });
      stopping_ = true;
      for (auto& [name, m] : models_) {
        m->cv.notify_all();
        for (auto& f : m->finishers) f->cv.notify_all();
      }
      reaper_cv_.notify_all();
    }
    for (auto& t : workers_) t.join();
    reaper_.join();
    {
      std::lock_guard<std::mutex> lk(mu_);
      dispatch_stop_ = true;
      events_cv_.notify_all();
    }
    dispatcher_.join();
  }

  void add_model(ModelConfig config, std::vector<std::unique_ptr<Executor>> executors) {
    if (config.name.empty()) throw std::invalid_argument("add_model: empty model name");
    if (executors.empty()) throw std::invalid_argument("add_model: no executor for " + config.name);
    for (const auto& e : executors) {
      if (e == nullptr) throw std::invalid_argument("add_model: null executor for " + config.name);
    }
    if (config.max_queue < 1 || config.max_batch < 1 || config.max_batch_delay.count() < 0) {
      throw std::invalid_argument("add_model " + config.name +
                                  ": max_queue and max_batch must be >= 1, max_batch_delay >= 0");
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (models_.count(config.name)) {
      throw std::invalid_argument("add_model: model " + config.name + " added twice");
    }
    auto m = std::make_unique<Model>();
    m->config = std::move(config);
    m->executors = std::move(executors);
    Model* raw = m.get();
    models_.emplace(raw->config.name, std::move(m));
    reposition(*raw);  // reports depth 0
    if (started_) start_workers(*raw);
  }

  void start() {
    std::lock_guard<std::mutex> lk(mu_);
    if (started_) return;
    started_ = true;
    for (auto& [name, m] : models_) start_workers(*m);
  }

  SubmitResult submit(Submission s) {
    const Clock::time_point submitted = Clock::now();
    Model* m = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (draining_) return {SubmitStatus::kDraining, "", "the scheduler is draining"};
      auto it = models_.find(s.model);
      if (it == models_.end()) {
        return {SubmitStatus::kUnknownModel, "", "unknown model '" + s.model + "'"};
      }
      m = it->second.get();  // models are never removed; executors fixed once added
    }
    const Executor& ex = *m->executors.front();
    auto job = std::make_shared<Job>();
    try {
      engine::Plan plan = ex.prepare(s.request);
      if (plan.error.code == engine::ErrorCode::kResourceExhausted) {
        return {SubmitStatus::kTooLarge, "", plan.error.message};
      }
      if (!plan.error.ok()) return {SubmitStatus::kInvalid, "", plan.error.message};
      job->key = std::move(plan.batch_key);
      job->max_batch = plan.max_batch;
      s.request = std::move(plan.request);  // resolved: what the worker will run
    } catch (const std::exception& x) {
      return {SubmitStatus::kInvalid, "", std::string("validation failed: ") + x.what()};
    }
    job->model = m;
    job->request = std::move(s.request);
    job->priority = s.priority;
    job->deadline = s.deadline;
    job->submitted = submitted;
    job->listener = s.listener ? std::move(s.listener) : null_listener_;

    std::lock_guard<std::mutex> lk(mu_);
    if (draining_) return {SubmitStatus::kDraining, "", "the scheduler is draining"};
    if (static_cast<int64_t>(m->queue.size()) >= m->config.max_queue) {
      return {SubmitStatus::kQueueFull, "",
              "queue of model " + m->config.name +
                  " is full (max_queue=" + std::to_string(m->config.max_queue) + ")"};
    }
    do {
      job->id = ids_.next();
    } while (jobs_.count(job->id));  // cannot happen within 2^64 ids; cheap to be sure
    job->seq = next_seq_++;
    jobs_.emplace(job->id, job);
    m->queue.insert(job.get());
    ++live_;
    if (job->deadline != Clock::time_point::max()) {
      job->deadline_it = deadlines_.emplace(job->deadline, job.get());
      job->in_deadlines = true;
      if (job->deadline_it == deadlines_.begin()) reaper_cv_.notify_all();
    }
    reposition(*m);
    m->cv.notify_all();
    return {SubmitStatus::kAccepted, job->id, ""};
  }

  bool cancel(const std::string& job_id) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return false;
    Job& j = *it->second;
    Model& m = *j.model;
    switch (j.state) {
      case State::kQueued:
        remove_queued(j);
        finish(j, error_result(ErrorCode::kCancelled, "cancelled while queued"));
        reposition(m);
        return true;
      case State::kForming:
      case State::kRunning:
        j.cancel.store(true);
        m.cv.notify_all();  // a forming batch drops it now
        return true;
      case State::kFinished:
        break;
    }
    return false;
  }

  void drain(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu_);
    draining_ = true;
    // Clamped so that milliseconds::max() means "no limit" without overflowing the clock.
    const auto limit =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::hours(24 * 365 * 100));
    const Clock::time_point until =
        Clock::now() + std::clamp(timeout, std::chrono::milliseconds(0), limit);
    if (!idle_cv_.wait_until(lk, until, [&] { return live_ == 0; })) {
      cancel_all_locked("cancelled: drain timeout passed");
      idle_cv_.wait(lk, [&] { return live_ == 0; });
    }
  }

  bool draining() const {
    std::lock_guard<std::mutex> lk(mu_);
    return draining_;
  }

  std::vector<std::string> models() const {
    std::lock_guard<std::mutex> lk(mu_);
    std::vector<std::string> names;
    for (const auto& [name, m] : models_) names.push_back(name);
    return names;
  }

  const engine::Manifest* manifest(const std::string& model) const {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = models_.find(model);
    return it == models_.end() ? nullptr : &it->second->executors.front()->manifest();
  }

  std::vector<WorkerStatus> workers() const {
    std::lock_guard<std::mutex> lk(mu_);
    std::vector<WorkerStatus> out;
    const Clock::time_point now = Clock::now();
    for (const auto& [name, m] : models_) {
      for (size_t i = 0; i < m->workers.size(); ++i) {
        WorkerStatus w = m->workers[i];
        w.since_progress_s = w.busy ? seconds(now - m->progress[i]) : 0;
        out.push_back(w);
      }
    }
    return out;
  }

  int64_t queue_depth(const std::string& model) const {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = models_.find(model);
    return it == models_.end() ? 0 : static_cast<int64_t>(it->second->queue.size());
  }

  // From the engine, on the worker thread, while the batch runs (mutex not held).
  void progress(Job& j, BatchState& batch, int64_t step, int64_t total, const std::string& png) {
    std::lock_guard<std::mutex> lk(mu_);
    if (j.state != State::kRunning) return;
    const Clock::time_point now = Clock::now();
    const std::string& model = j.model->config.name;
    if (!j.first_step_seen) {
      j.first_step_seen = true;
      metrics_->first_step(model, seconds(now - j.submitted));
    }
    *batch.progress = now;
    if (step > batch.last_step) {
      if (batch.last_step > 0) {
        const double dt = seconds(now - batch.last_time);
        metrics_->step_time(model, dt);
        double& avg = batch.worker->step_s;
        avg = avg == 0 ? dt : 0.7 * avg + 0.3 * dt;
      }
      batch.last_step = step;
      batch.last_time = now;
    }
    Event e;
    e.kind = Event::kProgress;
    e.listener = j.listener;
    e.a = step;
    e.b = total;
    e.text = png;
    post(std::move(e));
  }

 private:
  // --- under mu_ ---------------------------------------------------------------------------

  void post(Event e) {
    events_.push_back(std::move(e));
    events_cv_.notify_one();
  }

  void start_workers(Model& m) {
    m.workers.resize(m.executors.size());
    m.progress.resize(m.executors.size());
    for (size_t i = 0; i < m.executors.size(); ++i) {
      Executor* e = m.executors[i].get();
      m.workers[i].model = m.config.name;
      m.finishers.push_back(std::make_unique<Finisher>());
      Finisher* f = m.finishers.back().get();
      workers_.emplace_back([this, &m, e, i] { worker_loop(m, *e, i); });
      workers_.emplace_back([this, f] { finisher_loop(*f); });
    }
  }

  void remove_queued(Job& j) {
    j.model->queue.erase(&j);
    if (j.in_deadlines) {
      deadlines_.erase(j.deadline_it);
      j.in_deadlines = false;
    }
  }

  // Posts on_finished and forgets the job; `j` may be destroyed on return unless the caller
  // holds a JobPtr.
  void finish(Job& j, engine::Result result) {
    j.state = State::kFinished;
    metrics_->finished(j.model->config.name, result.error.code,
                       seconds(Clock::now() - j.submitted));
    Event e;
    e.kind = Event::kFinished;
    e.listener = j.listener;
    e.result = std::move(result);
    post(std::move(e));
    jobs_.erase(j.id);
  }

  // Reports changed queue positions and the depth.
  void reposition(Model& m) {
    int64_t i = 0;
    for (Job* j : m.queue) {
      if (j->position != i) {
        j->position = i;
        Event e;
        e.kind = Event::kQueued;
        e.listener = j->listener;
        e.a = i;
        post(std::move(e));
      }
      ++i;
    }
    const auto depth = static_cast<int64_t>(m.queue.size());
    if (depth != m.reported_depth) {
      m.reported_depth = depth;
      metrics_->queue_depth(m.config.name, depth);
    }
  }

  void cancel_all_locked(const std::string& why) {
    for (auto& [name, m] : models_) {
      std::vector<Job*> queued(m->queue.begin(), m->queue.end());
      for (Job* j : queued) {
        remove_queued(*j);
        finish(*j, error_result(ErrorCode::kCancelled, why));
      }
      reposition(*m);
    }
    for (auto& [id, j] : jobs_) j->cancel.store(true);  // forming and running ones
    for (auto& [name, m] : models_) m->cv.notify_all();
  }

  // The first queued job (priority, then FIFO) whose key no other worker is batching.
  static Job* pick_head(const Model& m) {
    for (Job* j : m.queue) {
      if (m.forming.count(j->key) == 0) return j;
    }
    return nullptr;
  }

  // The most jobs one batch of `head`'s key may hold: max_batch, and what fits in memory.
  static size_t batch_limit(const Model& m, const Job& head) {
    int64_t n = m.config.max_batch;
    if (head.max_batch > 0) n = std::min(n, head.max_batch);
    return static_cast<size_t>(n);
  }

  // Moves queued jobs with `key` into `batch`, in queue order, up to `max_batch`.
  void gather(Model& m, const std::string& key, size_t max_batch, std::vector<JobPtr>& batch) {
    for (auto it = m.queue.begin(); it != m.queue.end() && batch.size() < max_batch;) {
      Job* j = *it;
      if (j->key != key) {
        ++it;
        continue;
      }
      it = m.queue.erase(it);
      if (j->in_deadlines) {
        deadlines_.erase(j->deadline_it);
        j->in_deadlines = false;
      }
      j->state = State::kForming;
      batch.push_back(jobs_.at(j->id));
    }
  }

  // Finishes the forming jobs that were cancelled or ran out of time.
  void drop_stopped(std::vector<JobPtr>& batch) {
    const Clock::time_point now = Clock::now();
    for (auto it = batch.begin(); it != batch.end();) {
      Job& j = **it;
      if (j.cancel.load()) {
        finish(j, error_result(ErrorCode::kCancelled, "cancelled while queued"));
      } else if (now >= j.deadline) {
        finish(j, error_result(ErrorCode::kDeadlineExceeded, "deadline passed while queued"));
      } else {
        ++it;
        continue;
      }
      it = batch.erase(it);
    }
  }

  // --- threads -----------------------------------------------------------------------------

  void worker_loop(Model& m, Executor& ex, size_t index) {
    std::string device;
    try {
      device = ex.device();
    } catch (...) {
      device = "unknown";
    }
    const std::string& model = m.config.name;
    std::unique_lock<std::mutex> lk(mu_);
    WorkerStatus& self = m.workers[index];
    self.device = device;
    for (;;) {
      Job* head = nullptr;
      m.cv.wait(lk, [&] { return stopping_ || (head = pick_head(m)) != nullptr; });
      if (stopping_) return;
      std::vector<JobPtr> batch;
      const std::string key = head->key;
      const Clock::time_point form_until = head->submitted + m.config.max_batch_delay;
      const size_t limit = batch_limit(m, *head);
      gather(m, key, limit, batch);
      reposition(m);
      ++m.forming[key];
      for (;;) {
        drop_stopped(batch);
        if (batch.empty() || batch.size() >= limit || stopping_) {
          break;
        }
        Clock::time_point until = form_until;
        if (Clock::now() >= until) break;
        for (const JobPtr& j : batch) until = std::min(until, j->deadline);
        m.cv.wait_until(lk, until);
        gather(m, key, limit, batch);
        reposition(m);
      }
      if (--m.forming[key] == 0) m.forming.erase(key);
      m.cv.notify_all();  // jobs of this key left in the queue are free for other workers
      if (batch.empty()) continue;

      const Clock::time_point now = Clock::now();
      const auto n = static_cast<int64_t>(batch.size());
      BatchState state;
      state.worker = &self;
      state.progress = &m.progress[index];
      self.busy = true;
      m.progress[index] = now;
      std::vector<RunObserver> observers;
      observers.reserve(batch.size());
      std::vector<engine::Job> jobs(batch.size());
      for (size_t i = 0; i < batch.size(); ++i) {
        Job& j = *batch[i];
        j.state = State::kRunning;
        metrics_->queue_wait(model, seconds(now - j.submitted));
        Event e;
        e.kind = Event::kStarted;
        e.listener = j.listener;
        e.text = device;
        e.a = n;
        post(std::move(e));
        observers.emplace_back(this, &j, &state);
        jobs[i].request = std::move(j.request);
        jobs[i].observer = &observers.back();
      }
      metrics_->batch_started(model, device, n);

      lk.unlock();
      engine::DecodedBatch decoded = run_safely(ex, jobs);
      std::vector<engine::Result>& results = decoded.results;
      // A batch that ran out of device memory is retried one job at a time before anything
      // fails: one job needs a fraction of the batch's activations. (Its clients see the
      // progress count start again.) A batch that ran out of memory has nothing to encode.
      if (jobs.size() > 1) {
        for (size_t i = 0; i < jobs.size(); ++i) {
          if (results[i].error.code != ErrorCode::kOutOfMemory) continue;
          results[i] = encode_safely(run_safely(ex, {jobs[i]})).front();
        }
      }
      jobs.clear();
      lk.lock();
      self.busy = false;
      for (const engine::Result& r : results) {
        if (r.error.code == ErrorCode::kDeviceFailed) self.failed = true;
      }
      Finisher& f = *m.finishers[index];
      f.cv.wait(lk, [&] { return !f.full; });
      f.batch = std::move(batch);
      f.decoded = std::move(decoded);
      f.full = true;
      f.cv.notify_all();
      if (self.failed) return;  // nothing more can run on this device: leave its jobs to others
    }
  }

  // Encodes each batch the worker hands over, then finishes its jobs. The device is not used.
  void finisher_loop(Finisher& f) {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      f.cv.wait(lk, [&] { return stopping_ || f.full; });
      if (!f.full) return;  // stopping: every job has finished, so nothing is left here
      std::vector<JobPtr> batch = std::move(f.batch);
      engine::DecodedBatch decoded = std::move(f.decoded);
      lk.unlock();
      std::vector<engine::Result> results = encode_safely(std::move(decoded));
      lk.lock();
      f.full = false;
      f.cv.notify_all();
      for (size_t i = 0; i < batch.size(); ++i) finish(*batch[i], std::move(results[i]));
    }
  }

  // DecodedBatch::encode must not throw; if it does anyway, its outputs cannot be trusted:
  // the batch's ok jobs get kInternal.
  static std::vector<engine::Result> encode_safely(engine::DecodedBatch decoded) {
    std::string why;
    try {
      return std::move(decoded).finish();
    } catch (const std::exception& e) {
      why = std::string("encoding threw: ") + e.what();
    } catch (...) {
      why = "encoding threw a non-std exception";
    }
    for (engine::Result& r : decoded.results) {
      if (r.error.ok()) r = error_result(ErrorCode::kInternal, why);
    }
    return std::move(decoded.results);
  }

  // Executor::run_decoded must not throw; if it does anyway, or returns the wrong number of
  // results, the jobs get kInternal and the worker carries on.
  static engine::DecodedBatch run_safely(Executor& ex, const std::vector<engine::Job>& jobs) {
    engine::DecodedBatch decoded;
    std::vector<engine::Result>& results = decoded.results;
    try {
      decoded = ex.run_decoded(jobs);
    } catch (const std::exception& e) {
      results.assign(jobs.size(), error_result(ErrorCode::kInternal,
                                               std::string("executor threw: ") + e.what()));
    } catch (...) {
      results.assign(jobs.size(),
                     error_result(ErrorCode::kInternal, "executor threw a non-std exception"));
    }
    if (results.size() != jobs.size()) {
      const std::string why = "executor returned " + std::to_string(results.size()) +
                              " results for " + std::to_string(jobs.size()) + " jobs";
      results.assign(jobs.size(), error_result(ErrorCode::kInternal, why));
      decoded.encode = nullptr;
    }
    return decoded;
  }

  void reaper_loop() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stopping_) {
      if (deadlines_.empty()) {
        reaper_cv_.wait(lk);
        continue;
      }
      const Clock::time_point now = Clock::now();
      const Clock::time_point first = deadlines_.begin()->first;
      if (first > now) {
        // Bounded wait: deadlines near time_point::max() must not overflow the clock maths.
        reaper_cv_.wait_until(lk, std::min(first, now + std::chrono::hours(1)));
        continue;
      }
      std::set<Model*> touched;
      while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        Job* j = deadlines_.begin()->second;
        touched.insert(j->model);
        remove_queued(*j);
        finish(*j, error_result(ErrorCode::kDeadlineExceeded, "deadline passed while queued"));
      }
      for (Model* m : touched) reposition(*m);
    }
  }

  void dispatch_loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      events_cv_.wait(lk, [&] { return dispatch_stop_ || !events_.empty(); });
      if (events_.empty()) return;
      std::deque<Event> batch;
      batch.swap(events_);
      lk.unlock();
      int64_t finished = 0;
      for (Event& e : batch) {
        try {
          switch (e.kind) {
            case Event::kQueued:
              e.listener->on_queued(e.a);
              break;
            case Event::kStarted:
              e.listener->on_started(e.text, e.a);
              break;
            case Event::kProgress:
              e.listener->on_progress(e.a, e.b, e.text);
              break;
            case Event::kFinished:
              e.listener->on_finished(std::move(e.result));
              break;
          }
        } catch (...) {
          // A listener that throws loses that event; the scheduler carries on.
        }
        if (e.kind == Event::kFinished) ++finished;
      }
      batch.clear();  // listeners released outside the lock
      lk.lock();
      if (finished > 0) {
        live_ -= finished;
        if (live_ == 0) idle_cv_.notify_all();
      }
    }
  }

  const std::shared_ptr<SchedulerMetrics> metrics_;
  const std::shared_ptr<JobListener> null_listener_;

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Model>> models_;
  std::unordered_map<std::string, JobPtr> jobs_;      // every job not yet finished
  std::multimap<Clock::time_point, Job*> deadlines_;  // queued jobs with a deadline
  std::deque<Event> events_;
  JobIds ids_;
  uint64_t next_seq_ = 0;
  int64_t live_ = 0;  // accepted jobs whose on_finished has not been delivered yet
  bool started_ = false, draining_ = false, stopping_ = false, dispatch_stop_ = false;
  std::condition_variable reaper_cv_, events_cv_, idle_cv_;
  std::vector<std::thread> workers_;
  std::thread reaper_, dispatcher_;
};

void RunObserver::on_progress(int64_t step, int64_t total, const std::string& preview_png) {
  core_->progress(*job_, *batch_, step, total, preview_png);
}

}  // namespace

struct Scheduler::Impl {
  explicit Impl(std::shared_ptr<SchedulerMetrics> metrics) : core(std::move(metrics)) {}
  Core core;
};

Scheduler::Scheduler(std::shared_ptr<SchedulerMetrics> metrics)
    : impl_(std::make_unique<Impl>(std::move(metrics))) {}
Scheduler::~Scheduler() = default;

void Scheduler::add_model(ModelConfig config, std::vector<std::unique_ptr<Executor>> executors) {
  impl_->core.add_model(std::move(config), std::move(executors));
}
void Scheduler::start() { impl_->core.start(); }
SubmitResult Scheduler::submit(Submission submission) {
  return impl_->core.submit(std::move(submission));
}
bool Scheduler::cancel(const std::string& job_id) { return impl_->core.cancel(job_id); }
void Scheduler::drain(std::chrono::milliseconds timeout) { impl_->core.drain(timeout); }
bool Scheduler::draining() const { return impl_->core.draining(); }
std::vector<std::string> Scheduler::models() const { return impl_->core.models(); }
const engine::Manifest* Scheduler::manifest(const std::string& model) const {
  return impl_->core.manifest(model);
}
int64_t Scheduler::queue_depth(const std::string& model) const {
  return impl_->core.queue_depth(model);
}

std::vector<WorkerStatus> Scheduler::workers() const { return impl_->core.workers(); }

}  // namespace grat::scheduler
