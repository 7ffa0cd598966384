// Scheduler with fake executors: priorities and FIFO, queue bound, deadlines and cancellation
// (queued and running), batching by key with max_batch and max_batch_delay, several devices,
// failing and throwing executors, drain, shutdown, metrics, and many concurrent submitters.
// Timing: tests wait on events; where a duration is checked the margins are wide.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "grat/scheduler/scheduler.h"

namespace grat::scheduler {
namespace {

using engine::ErrorCode;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

constexpr auto kWait = 10s;  // how long a test waits for an event before failing

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A one-shot gate: run() waits until it opens (so a test controls when a worker is busy).
class Gate {
 public:
  void open() {
    std::lock_guard<std::mutex> lk(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct Call {
  std::string device;
  std::vector<std::string> prompts;
  std::set<std::string> keys;
  Clock::time_point start;
};

struct Encode {
  std::vector<std::string> prompts;
  Clock::time_point start, end;
};

// Shared by the fakes of one test: the calls made, in order.
struct Log {
  std::mutex mu;
  std::vector<Call> calls;
  std::vector<Encode> encodes;  // deferred encodes (run_decoded), in order of their start
  std::atomic<int> encoding{0}, max_encoding{0};
  std::atomic<int> concurrent{0}, max_concurrent{0};
  std::vector<Call> snapshot() {
    std::lock_guard<std::mutex> lk(mu);
    return calls;
  }
};

// Behaviour from the request: `steps` fake steps of `step_time` each (checking cancel and
// deadline before every step, as the engine does); prompt "throw" throws, "oom" fails with
// kOutOfMemory, "oom-batch" only in a batch of more than one, "short" returns no results;
// batch key = width x height. With `encode_time` >= 0, run_decoded defers the output's
// "encoding" (encode_time long, bytes "encoded:" + run's bytes; prompt "encode-throw" throws).
class FakeExecutor : public Executor {
 public:
  FakeExecutor(std::string device, std::shared_ptr<Log> log, milliseconds step_time,
               std::shared_ptr<Gate> gate = nullptr, milliseconds encode_time = -1ms)
      : device_(std::move(device)),
        log_(std::move(log)),
        step_time_(step_time),
        gate_(std::move(gate)),
        encode_time_(encode_time) {
    manifest_.name = "fake";
  }
  const engine::Manifest& manifest() const override { return manifest_; }
  std::string device() const override { return device_; }
  engine::Plan prepare(const engine::Request& r) const override {
    engine::Plan p;
    p.request = r;
    if (r.width <= 0) p.error = {ErrorCode::kInvalidArgument, "width must be > 0"};
    // A pretend memory table: width 4096 and up cannot fit, 1024 and up fit two at a time.
    if (r.width >= 4096) p.error = {ErrorCode::kResourceExhausted, "needs about 200 GiB"};
    if (r.width >= 1024) p.max_batch = 2;
    p.batch_key = batch_key(r);
    return p;
  }
  static std::string batch_key(const engine::Request& r) {
    return std::to_string(r.width) + "x" + std::to_string(r.height);
  }
  std::vector<engine::Result> run(const std::vector<engine::Job>& jobs) override {
    Call call{device_, {}, {}, Clock::now()};
    for (const auto& j : jobs) {
      call.prompts.push_back(j.request.prompt);
      call.keys.insert(batch_key(j.request));
    }
    {
      std::lock_guard<std::mutex> lk(log_->mu);
      log_->calls.push_back(call);
    }
    const int now_running = ++log_->concurrent;
    int seen = log_->max_concurrent.load();
    while (now_running > seen && !log_->max_concurrent.compare_exchange_weak(seen, now_running)) {
    }
    struct Leave {
      Log* log;
      ~Leave() { --log->concurrent; }
    } leave{log_.get()};
    if (gate_) gate_->wait();
    for (const auto& j : jobs) {
      if (j.request.prompt == "throw") throw std::runtime_error("fake failure");
      if (j.request.prompt == "short") return {};
    }
    std::vector<engine::Result> results(jobs.size());
    std::vector<bool> active(jobs.size(), true);
    const int64_t steps = jobs.front().request.steps;
    for (int64_t s = 0; s < steps; ++s) {
      bool any = false;
      for (size_t i = 0; i < jobs.size(); ++i) {
        if (!active[i]) continue;
        const engine::JobObserver* o = jobs[i].observer;
        if (o->cancelled()) {
          results[i].error = {ErrorCode::kCancelled, "cancelled"};
          active[i] = false;
        } else if (Clock::now() >= o->deadline()) {
          results[i].error = {ErrorCode::kDeadlineExceeded, "deadline"};
          active[i] = false;
        } else if (jobs[i].request.prompt == "device-failure") {
          results[i].error = {ErrorCode::kDeviceFailed, "illegal memory access"};
          active[i] = false;
        } else if (jobs[i].request.prompt == "oom" ||
                   (jobs[i].request.prompt == "oom-batch" && jobs.size() > 1)) {
          results[i].error = {ErrorCode::kOutOfMemory, "out of memory"};
          active[i] = false;
        }
        any = any || active[i];
      }
      if (!any) break;
      std::this_thread::sleep_for(step_time_);
      for (size_t i = 0; i < jobs.size(); ++i) {
        if (active[i]) jobs[i].observer->on_progress(s + 1, steps, "");
      }
    }
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (active[i]) results[i].bytes = "image:" + jobs[i].request.prompt;
    }
    return results;
  }
  engine::DecodedBatch run_decoded(const std::vector<engine::Job>& jobs) override {
    if (encode_time_ < 0ms) return Executor::run_decoded(jobs);
    engine::DecodedBatch d{run(jobs), nullptr};
    std::vector<std::string> prompts;
    for (const auto& j : jobs) prompts.push_back(j.request.prompt);
    d.encode = [log = log_, t = encode_time_, prompts](std::vector<engine::Result>& rs) {
      const int now_encoding = ++log->encoding;
      int seen = log->max_encoding.load();
      while (now_encoding > seen && !log->max_encoding.compare_exchange_weak(seen, now_encoding)) {
      }
      Encode e{prompts, Clock::now(), {}};
      std::this_thread::sleep_for(t);
      e.end = Clock::now();
      --log->encoding;
      {
        std::lock_guard<std::mutex> lk(log->mu);
        log->encodes.push_back(e);
      }
      for (size_t i = 0; i < rs.size(); ++i) {
        if (prompts[i] == "encode-throw") throw std::runtime_error("fake encoder failure");
        if (rs[i].error.ok()) rs[i].bytes = "encoded:" + rs[i].bytes;
      }
    };
    return d;
  }

 private:
  std::string device_;
  std::shared_ptr<Log> log_;
  milliseconds step_time_;
  std::shared_ptr<Gate> gate_;
  milliseconds encode_time_;
  engine::Manifest manifest_;
};

// Records a job's events and checks their order: queued+ started progress* finished.
class Recorder : public JobListener {
 public:
  void on_queued(int64_t position) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (started_ || finished_) order_ok_ = false;
    positions_.push_back(position);
    cv_.notify_all();
  }
  void on_started(const std::string& device, int64_t batch_size) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (started_ || finished_ || positions_.empty()) order_ok_ = false;
    started_ = true;
    device_ = device;
    batch_size_ = batch_size;
    started_at_ = Clock::now();
    cv_.notify_all();
  }
  void on_progress(int64_t step, int64_t total, const std::string&) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (!started_ || finished_) order_ok_ = false;
    steps_.push_back(step);
    total_ = total;
    cv_.notify_all();
  }
  void on_finished(engine::Result result) override {
    std::lock_guard<std::mutex> lk(mu_);
    if (positions_.empty()) order_ok_ = false;
    ++finished_;
    result_ = std::move(result);
    finished_at_ = Clock::now();
    cv_.notify_all();
  }

  bool wait_started(std::chrono::nanoseconds t = kWait) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, t, [&] { return started_; });
  }
  bool wait_step(int64_t step, std::chrono::nanoseconds t = kWait) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, t, [&] { return !steps_.empty() && steps_.back() >= step; });
  }
  bool wait_position(int64_t position, std::chrono::nanoseconds t = kWait) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, t,
                        [&] { return !positions_.empty() && positions_.back() == position; });
  }
  bool wait_finished(std::chrono::nanoseconds t = kWait) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, t, [&] { return finished_ > 0; });
  }
  ErrorCode code() {
    std::lock_guard<std::mutex> lk(mu_);
    return result_.error.code;
  }
  engine::Result result() {
    std::lock_guard<std::mutex> lk(mu_);
    return result_;
  }
  std::vector<int64_t> positions() {
    std::lock_guard<std::mutex> lk(mu_);
    return positions_;
  }
  std::vector<int64_t> steps() {
    std::lock_guard<std::mutex> lk(mu_);
    return steps_;
  }
  std::string device() {
    std::lock_guard<std::mutex> lk(mu_);
    return device_;
  }
  int64_t batch_size() {
    std::lock_guard<std::mutex> lk(mu_);
    return batch_size_;
  }
  bool started() {
    std::lock_guard<std::mutex> lk(mu_);
    return started_;
  }
  int finished_count() {
    std::lock_guard<std::mutex> lk(mu_);
    return finished_;
  }
  bool order_ok() {
    std::lock_guard<std::mutex> lk(mu_);
    return order_ok_ && finished_ == 1 && (steps_.empty() || started_);
  }
  Clock::time_point started_at() {
    std::lock_guard<std::mutex> lk(mu_);
    return started_at_;
  }
  Clock::time_point finished_at() {
    std::lock_guard<std::mutex> lk(mu_);
    return finished_at_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int64_t> positions_, steps_;
  bool started_ = false, order_ok_ = true;
  int finished_ = 0;
  std::string device_;
  int64_t batch_size_ = 0, total_ = 0;
  engine::Result result_;
  Clock::time_point started_at_, finished_at_;
};

engine::Request req(const std::string& prompt, int64_t steps = 2, int64_t width = 64) {
  engine::Request r;
  r.prompt = prompt;
  r.width = width;
  r.height = 64;
  r.steps = steps;
  return r;
}

struct Fixture {
  std::shared_ptr<Log> log = std::make_shared<Log>();
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  std::unique_ptr<Scheduler> sched;

  // One model "m" with `devices` fakes sharing the gate.
  explicit Fixture(ModelConfig cfg = {}, int devices = 1, milliseconds step = 10ms,
                   bool gated = true, std::shared_ptr<SchedulerMetrics> metrics = nullptr,
                   milliseconds encode = -1ms) {
    sched = std::make_unique<Scheduler>(std::move(metrics));
    cfg.name = "m";
    std::vector<std::unique_ptr<Executor>> ex;
    for (int d = 0; d < devices; ++d) {
      ex.push_back(std::make_unique<FakeExecutor>("fake:" + std::to_string(d), log, step,
                                                  gated ? gate : nullptr, encode));
    }
    sched->add_model(cfg, std::move(ex));
    sched->start();
  }
  ~Fixture() { gate->open(); }

  std::pair<std::string, std::shared_ptr<Recorder>> submit(
      engine::Request r, int32_t priority = 0,
      Clock::time_point deadline = Clock::time_point::max()) {
    auto rec = std::make_shared<Recorder>();
    Submission s;
    s.model = "m";
    s.request = std::move(r);
    s.priority = priority;
    s.deadline = deadline;
    s.listener = rec;
    SubmitResult res = sched->submit(std::move(s));
    EXPECT_EQ(res.status, SubmitStatus::kAccepted) << res.message;
    return {res.job_id, rec};
  }
};

ModelConfig config(int64_t max_batch = 1, milliseconds delay = 0ms, int64_t max_queue = 64) {
  ModelConfig c;
  c.max_batch = max_batch;
  c.max_batch_delay = delay;
  c.max_queue = max_queue;
  return c;
}

TEST(Scheduler, HigherPriorityFirstFifoWithinPriority) {
  Fixture f(config());
  auto [bid, blocker] = f.submit(req("blocker"));
  ASSERT_TRUE(blocker->wait_started());
  std::map<std::string, std::shared_ptr<Recorder>> recs;
  const std::vector<std::pair<std::string, int>> jobs = {{"a0", 0}, {"b0", 0}, {"c5", 5},
                                                         {"d1", 1}, {"e5", 5}, {"f0", 0}};
  for (const auto& [name, prio] : jobs) recs[name] = f.submit(req(name), prio).second;
  EXPECT_EQ(f.sched->queue_depth("m"), 6);
  f.gate->open();
  for (auto& [name, r] : recs) ASSERT_TRUE(r->wait_finished()) << name;

  std::vector<std::string> order;
  for (const Call& c : f.log->snapshot()) order.push_back(c.prompts.at(0));
  EXPECT_EQ(order, (std::vector<std::string>{"blocker", "c5", "e5", "d1", "a0", "b0", "f0"}));
  for (auto& [name, r] : recs) {
    EXPECT_TRUE(r->order_ok()) << name;
    EXPECT_EQ(r->code(), ErrorCode::kOk) << name;
    EXPECT_EQ(r->result().bytes, "image:" + name);
    // Each job saw its position move up to 0 before it started.
    const auto p = r->positions();
    ASSERT_FALSE(p.empty());
    EXPECT_EQ(p.back(), 0) << name;
  }
  // a0 was first in line (0), pushed back by c5, e5, d1 (3), then moved up one at a time.
  EXPECT_EQ(recs["a0"]->positions(), (std::vector<int64_t>{0, 1, 2, 3, 2, 1, 0}));
  EXPECT_EQ(recs["f0"]->positions(), (std::vector<int64_t>{5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(f.sched->queue_depth("m"), 0);
}

TEST(Scheduler, FullQueueRefusesAndTheRestSucceed) {
  Fixture f(config(1, 0ms, 3));
  auto [bid, blocker] = f.submit(req("blocker"));
  ASSERT_TRUE(blocker->wait_started());
  std::vector<std::shared_ptr<Recorder>> recs;
  for (int i = 0; i < 3; ++i) recs.push_back(f.submit(req("q" + std::to_string(i))).second);
  Submission s;
  s.model = "m";
  s.request = req("overflow");
  SubmitResult full = f.sched->submit(std::move(s));
  EXPECT_EQ(full.status, SubmitStatus::kQueueFull);
  EXPECT_TRUE(full.job_id.empty());
  EXPECT_NE(full.message.find("max_queue=3"), std::string::npos) << full.message;
  f.gate->open();
  recs.push_back(blocker);
  for (auto& r : recs) {
    ASSERT_TRUE(r->wait_finished());
    EXPECT_EQ(r->code(), ErrorCode::kOk);
    EXPECT_TRUE(r->order_ok());
  }
}

TEST(Scheduler, UnknownModelInvalidRequestAndLookups) {
  Fixture f(config());
  Submission s;
  s.model = "nope";
  s.request = req("x");
  EXPECT_EQ(f.sched->submit(s).status, SubmitStatus::kUnknownModel);
  s.model = "m";
  s.request.width = 0;
  SubmitResult bad = f.sched->submit(s);
  EXPECT_EQ(bad.status, SubmitStatus::kInvalid);
  EXPECT_EQ(bad.message, "width must be > 0");
  EXPECT_EQ(f.sched->models(), (std::vector<std::string>{"m"}));
  ASSERT_NE(f.sched->manifest("m"), nullptr);
  EXPECT_EQ(f.sched->manifest("m")->name, "fake");
  EXPECT_EQ(f.sched->manifest("nope"), nullptr);
  EXPECT_FALSE(f.sched->cancel("0123456789abcdef"));
  // Job ids: 16 hex digits, distinct; a null listener is allowed.
  f.gate->open();
  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    s.request = req("ok");
    SubmitResult r = f.sched->submit(s);
    ASSERT_EQ(r.status, SubmitStatus::kAccepted);
    EXPECT_EQ(r.job_id.size(), 16u);
    EXPECT_EQ(r.job_id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ids.insert(r.job_id);
  }
  EXPECT_EQ(ids.size(), 20u);
}

TEST(Scheduler, DeadlineWhileQueuedFinishesWithoutAWorker) {
  Fixture f(config());
  auto [bid, blocker] = f.submit(req("blocker"));
  ASSERT_TRUE(blocker->wait_started());
  const auto t0 = Clock::now();
  auto [id, rec] = f.submit(req("late"), 0, t0 + 150ms);
  auto [id2, keep] = f.submit(req("keep"));
  ASSERT_TRUE(rec->wait_finished());
  EXPECT_EQ(rec->code(), ErrorCode::kDeadlineExceeded);
  EXPECT_GE(since(t0), 0.14);
  EXPECT_FALSE(rec->started());
  EXPECT_FALSE(blocker->wait_finished(0ms));  // the worker is still held by the gate
  EXPECT_TRUE(rec->order_ok());
  EXPECT_TRUE(keep->wait_position(0));  // moved up when "late" left the queue
  f.gate->open();
  ASSERT_TRUE(keep->wait_finished());
  EXPECT_EQ(keep->code(), ErrorCode::kOk);
}

TEST(Scheduler, DeadlineWhileRunningStopsWithinAStep) {
  Fixture f(config(), 1, 20ms, false);
  const auto t0 = Clock::now();
  auto [id, rec] = f.submit(req("slow", 500), 0, t0 + 200ms);
  ASSERT_TRUE(rec->wait_finished());
  EXPECT_EQ(rec->code(), ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(rec->started());
  EXPECT_FALSE(rec->steps().empty());
  EXPECT_LT(rec->steps().size(), 100u);
  EXPECT_LT(since(t0), 3.0);
  EXPECT_TRUE(rec->order_ok());
}

TEST(Scheduler, CancelQueuedFinishesAtOnce) {
  Fixture f(config());
  auto [bid, blocker] = f.submit(req("blocker"));
  ASSERT_TRUE(blocker->wait_started());
  auto [id, rec] = f.submit(req("victim"));
  EXPECT_TRUE(f.sched->cancel(id));
  ASSERT_TRUE(rec->wait_finished());
  EXPECT_EQ(rec->code(), ErrorCode::kCancelled);
  EXPECT_FALSE(rec->started());
  EXPECT_FALSE(f.sched->cancel(id));  // already finished
  EXPECT_EQ(f.sched->queue_depth("m"), 0);
  EXPECT_TRUE(rec->order_ok());
  f.gate->open();
  ASSERT_TRUE(blocker->wait_finished());
  EXPECT_EQ(blocker->code(), ErrorCode::kOk);
}

TEST(Scheduler, CancelRunningStopsWithinAStep) {
  Fixture f(config(), 1, 20ms, false);
  auto [id, rec] = f.submit(req("long", 500));
  ASSERT_TRUE(rec->wait_step(3));
  const size_t at_cancel = rec->steps().size();
  const auto t0 = Clock::now();
  EXPECT_TRUE(f.sched->cancel(id));
  ASSERT_TRUE(rec->wait_finished());
  EXPECT_EQ(rec->code(), ErrorCode::kCancelled);
  EXPECT_LE(rec->steps().size(), at_cancel + 2);  // the step in flight, plus slack
  EXPECT_LT(since(t0), 2.0);
  EXPECT_TRUE(rec->order_ok());
  // The worker serves the next job.
  auto [id2, next] = f.submit(req("next"));
  ASSERT_TRUE(next->wait_finished());
  EXPECT_EQ(next->code(), ErrorCode::kOk);
}

TEST(Scheduler, BatchesSameKeyUpToMaxBatchAndNeverMixesKeys) {
  Fixture f(config(3, 200ms));
  auto [bid, blocker] = f.submit(req("blocker", 2, 16));
  ASSERT_TRUE(blocker->wait_started());
  std::map<std::string, std::shared_ptr<Recorder>> recs;
  for (const char* name : {"A1", "B1", "A2", "A3", "B2", "A4", "A5"}) {
    const int64_t width = name[0] == 'A' ? 32 : 48;
    recs[name] = f.submit(req(name, 2, width)).second;
  }
  f.gate->open();
  for (auto& [name, r] : recs) ASSERT_TRUE(r->wait_finished()) << name;
  std::vector<std::vector<std::string>> batches;
  for (const Call& c : f.log->snapshot()) {
    EXPECT_EQ(c.keys.size(), 1u);
    batches.push_back(c.prompts);
  }
  EXPECT_EQ(batches, (std::vector<std::vector<std::string>>{
                         {"blocker"}, {"A1", "A2", "A3"}, {"B1", "B2"}, {"A4", "A5"}}));
  EXPECT_EQ(recs["A2"]->batch_size(), 3);
  EXPECT_EQ(recs["B2"]->batch_size(), 2);
  EXPECT_EQ(recs["A5"]->batch_size(), 2);
  for (auto& [name, r] : recs) {
    EXPECT_EQ(r->code(), ErrorCode::kOk) << name;
    EXPECT_TRUE(r->order_ok()) << name;
  }
}

TEST(Scheduler, BatchesHoldOnlyWhatFitsInMemory) {
  Fixture f(config(4, 200ms));
  auto [bid, blocker] = f.submit(req("blocker", 2, 16));
  ASSERT_TRUE(blocker->wait_started());
  Submission s;
  s.model = "m";
  s.request = req("huge", 2, 4096);
  const SubmitResult huge = f.sched->submit(std::move(s));
  EXPECT_EQ(huge.status, SubmitStatus::kTooLarge);
  EXPECT_EQ(huge.message, "needs about 200 GiB");
  EXPECT_TRUE(huge.job_id.empty());
  std::vector<std::shared_ptr<Recorder>> recs;
  for (int i = 0; i < 5; ++i)
    recs.push_back(f.submit(req("L" + std::to_string(i), 2, 1024)).second);
  f.gate->open();
  for (auto& r : recs) ASSERT_TRUE(r->wait_finished());
  std::vector<size_t> sizes;
  for (const Call& c : f.log->snapshot()) sizes.push_back(c.prompts.size());
  EXPECT_EQ(sizes, (std::vector<size_t>{1, 2, 2, 1}));  // max_batch 4, but two fit
  for (auto& r : recs) EXPECT_EQ(r->code(), ErrorCode::kOk);
}

TEST(Scheduler, BatchWaitsAtMostMaxBatchDelay) {
  // A lone job waits for company up to the delay, takes what arrives, then runs.
  {
    Fixture f(config(4, 300ms), 1, 5ms, false);
    const auto t0 = Clock::now();
    auto a = f.submit(req("a")).second;
    auto b = f.submit(req("b")).second;
    ASSERT_TRUE(a->wait_finished());
    ASSERT_TRUE(b->wait_finished());
    const double waited = std::chrono::duration<double>(a->started_at() - t0).count();
    EXPECT_GE(waited, 0.29);
    EXPECT_LT(waited, 2.0);
    EXPECT_EQ(a->batch_size(), 2);
  }
  // A full batch starts at once, however long the delay.
  {
    Fixture f(config(2, 20s), 1, 5ms, false);
    const auto t0 = Clock::now();
    auto a = f.submit(req("a")).second;
    auto b = f.submit(req("b")).second;
    ASSERT_TRUE(a->wait_finished());
    ASSERT_TRUE(b->wait_finished());
    EXPECT_LT(since(t0), 5.0);
    EXPECT_EQ(a->batch_size(), 2);
  }
  // A job cancelled while its batch forms finishes at once; its deadline likewise.
  {
    Fixture f(config(4, 20s), 1, 5ms, false);
    const auto t0 = Clock::now();
    auto [id, a] = f.submit(req("a"));
    auto b = f.submit(req("b"), 0, t0 + 200ms).second;
    ASSERT_TRUE(f.sched->cancel(id));
    ASSERT_TRUE(a->wait_finished());
    EXPECT_EQ(a->code(), ErrorCode::kCancelled);
    ASSERT_TRUE(b->wait_finished());
    EXPECT_EQ(b->code(), ErrorCode::kDeadlineExceeded);
    EXPECT_LT(since(t0), 5.0);
  }
}

TEST(Scheduler, TwoDevicesBothServe) {
  Fixture f(config(), 2);
  auto a = f.submit(req("a")).second;
  auto b = f.submit(req("b")).second;
  ASSERT_TRUE(a->wait_started());
  ASSERT_TRUE(b->wait_started());  // both held by the gate at once: two workers
  EXPECT_EQ((std::set<std::string>{a->device(), b->device()}),
            (std::set<std::string>{"fake:0", "fake:1"}));
  // on_started comes just before run(): give the second worker a moment to enter it.
  const auto until = Clock::now() + kWait;
  while (f.log->max_concurrent.load() < 2 && Clock::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(f.log->max_concurrent.load(), 2);
  f.gate->open();
  std::vector<std::shared_ptr<Recorder>> more;
  for (int i = 0; i < 10; ++i) more.push_back(f.submit(req("x" + std::to_string(i), 3)).second);
  for (auto& r : more) {
    ASSERT_TRUE(r->wait_finished());
    EXPECT_EQ(r->code(), ErrorCode::kOk);
  }
}

TEST(Scheduler, AnIdleDeviceLeavesAFormingBatchItsJobs) {
  Fixture f(config(2, 500ms), 2, 5ms, false);
  auto a = f.submit(req("a")).second;
  ASSERT_TRUE(a->wait_position(0));
  std::this_thread::sleep_for(20ms);  // a worker has taken "a" and waits for company
  auto b = f.submit(req("b")).second;
  ASSERT_TRUE(a->wait_finished());
  ASSERT_TRUE(b->wait_finished());
  EXPECT_EQ(a->batch_size(), 2);
  EXPECT_EQ(b->batch_size(), 2);
  // Other keys still go to the idle device at once.
  auto c = f.submit(req("c", 2, 16)).second;
  auto d = f.submit(req("d", 2, 32)).second;
  ASSERT_TRUE(c->wait_started());
  ASSERT_TRUE(d->wait_started());
  EXPECT_NE(c->device(), d->device());
  ASSERT_TRUE(c->wait_finished());
  ASSERT_TRUE(d->wait_finished());
}

TEST(Scheduler, FailingAndThrowingExecutorsKeepTheWorkerServing) {
  Fixture f(config(), 1, 1ms, false);
  auto thrown = f.submit(req("throw")).second;
  ASSERT_TRUE(thrown->wait_finished());
  EXPECT_EQ(thrown->code(), ErrorCode::kInternal);
  EXPECT_NE(thrown->result().error.message.find("fake failure"), std::string::npos);
  auto oom = f.submit(req("oom")).second;
  ASSERT_TRUE(oom->wait_finished());
  EXPECT_EQ(oom->code(), ErrorCode::kOutOfMemory);
  auto shortr = f.submit(req("short")).second;
  ASSERT_TRUE(shortr->wait_finished());
  EXPECT_EQ(shortr->code(), ErrorCode::kInternal);
  auto ok = f.submit(req("fine")).second;
  ASSERT_TRUE(ok->wait_finished());
  EXPECT_EQ(ok->code(), ErrorCode::kOk);
  for (auto* r : {&thrown, &oom, &shortr, &ok}) EXPECT_TRUE((*r)->order_ok());
}

TEST(Scheduler, WorkerStatusShowsBusyProgressAndDeviceFailure) {
  Fixture f(config());
  auto [bid, blocker] = f.submit(req("blocker", 4));
  ASSERT_TRUE(blocker->wait_started());
  std::this_thread::sleep_for(50ms);
  std::vector<WorkerStatus> w = f.sched->workers();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].model, "m");
  EXPECT_TRUE(w[0].busy);  // held by the gate before its first step
  EXPECT_GE(w[0].since_progress_s, 0.04);
  EXPECT_FALSE(w[0].failed);
  f.gate->open();
  ASSERT_TRUE(blocker->wait_finished());
  std::this_thread::sleep_for(20ms);
  w = f.sched->workers();
  EXPECT_FALSE(w[0].busy);
  EXPECT_GT(w[0].step_s, 0);  // measured from the steps it ran
  auto failed = f.submit(req("device-failure")).second;
  ASSERT_TRUE(failed->wait_finished());
  EXPECT_EQ(failed->code(), ErrorCode::kDeviceFailed);
  std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(f.sched->workers()[0].failed);
  // The failed worker takes nothing more: a new job stays queued.
  auto after = f.submit(req("after")).second;
  EXPECT_FALSE(after->wait_started(300ms));
  EXPECT_EQ(f.sched->queue_depth("m"), 1);
}

TEST(Scheduler, BatchOutOfMemoryIsRetriedOneJobAtATime) {
  Fixture f(config(3, 20s), 1, 1ms, false);  // the three jobs run as one full batch
  auto a = f.submit(req("oom-batch")).second;
  auto b = f.submit(req("fine")).second;
  auto c = f.submit(req("oom-batch")).second;
  for (auto* r : {&a, &b, &c}) ASSERT_TRUE((*r)->wait_finished());
  EXPECT_EQ(a->batch_size(), 3);
  EXPECT_EQ(a->code(), ErrorCode::kOk);  // retried alone: fits
  EXPECT_EQ(c->code(), ErrorCode::kOk);
  EXPECT_EQ(b->code(), ErrorCode::kOk);  // not retried: it had its result
  EXPECT_EQ(a->result().bytes, "image:oom-batch");
  const auto calls = f.log->snapshot();
  ASSERT_EQ(calls.size(), 3u);  // the batch, then the two failed jobs alone
  EXPECT_EQ(calls[0].prompts.size(), 3u);
  EXPECT_EQ(calls[1].prompts, (std::vector<std::string>{"oom-batch"}));
  EXPECT_EQ(calls[2].prompts, (std::vector<std::string>{"oom-batch"}));
  for (auto* r : {&a, &b, &c}) EXPECT_TRUE((*r)->order_ok());
}

TEST(Scheduler, EncodingOverlapsTheNextBatchAndAtMostOneBatchEncodes) {
  Fixture f(config(), 1, 20ms, false, nullptr, 300ms);  // runs of 40 ms, encodes of 300 ms
  auto a = f.submit(req("a")).second;
  auto b = f.submit(req("b")).second;
  auto c = f.submit(req("c")).second;
  for (auto* r : {&a, &b, &c}) ASSERT_TRUE((*r)->wait_finished());
  for (auto* r : {&a, &b, &c}) {
    EXPECT_EQ((*r)->code(), ErrorCode::kOk);
    EXPECT_TRUE((*r)->order_ok());
  }
  EXPECT_EQ(a->result().bytes, "encoded:image:a");
  const auto calls = f.log->snapshot();
  std::vector<Encode> encodes;
  {
    std::lock_guard<std::mutex> lk(f.log->mu);
    encodes = f.log->encodes;
  }
  ASSERT_EQ(calls.size(), 3u);
  ASSERT_EQ(encodes.size(), 3u);
  // b ran on the device while a was encoding, and a finished only once encoded.
  EXPECT_LT(calls[1].start, encodes[0].end);
  EXPECT_GE(a->finished_at(), encodes[0].end);
  EXPECT_LT(b->started_at(), a->finished_at());
  // The worker handed b over only once a's encode was done: c ran after it.
  EXPECT_GE(calls[2].start, encodes[0].end);
  EXPECT_EQ(f.log->max_encoding.load(), 1);
}

TEST(Scheduler, AFailedEncodeFailsOnlyItsBatch) {
  Fixture f(config(), 1, 1ms, false, nullptr, 1ms);
  auto bad = f.submit(req("encode-throw")).second;
  auto good = f.submit(req("good")).second;
  ASSERT_TRUE(bad->wait_finished());
  ASSERT_TRUE(good->wait_finished());
  EXPECT_EQ(bad->code(), ErrorCode::kInternal);
  EXPECT_NE(bad->result().error.message.find("fake encoder failure"), std::string::npos);
  EXPECT_EQ(good->code(), ErrorCode::kOk);
  EXPECT_EQ(good->result().bytes, "encoded:image:good");
}

TEST(Scheduler, DrainWaitsForABatchStillEncoding) {
  Fixture f(config(), 1, 1ms, false, nullptr, 400ms);
  auto job = f.submit(req("job")).second;
  while (f.log->encoding.load() == 0) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(f.sched->workers()[0].busy);  // the device is free while it encodes
  f.sched->drain(20s);
  EXPECT_EQ(job->finished_count(), 1);
  EXPECT_EQ(job->code(), ErrorCode::kOk);
  EXPECT_EQ(job->result().bytes, "encoded:image:job");
}

TEST(Scheduler, DrainRefusesNewAndLetsQueuedAndRunningFinish) {
  Fixture f(config(), 1, 20ms, false);
  auto running = f.submit(req("running", 5)).second;
  auto queued = f.submit(req("queued", 5)).second;
  ASSERT_TRUE(running->wait_started());
  std::thread drainer([&] { f.sched->drain(20s); });
  while (!f.sched->draining()) std::this_thread::sleep_for(1ms);
  Submission s;
  s.model = "m";
  s.request = req("new");
  EXPECT_EQ(f.sched->submit(std::move(s)).status, SubmitStatus::kDraining);
  drainer.join();
  // drain() returns after every on_finished.
  EXPECT_EQ(running->finished_count(), 1);
  EXPECT_EQ(queued->finished_count(), 1);
  EXPECT_EQ(running->code(), ErrorCode::kOk);
  EXPECT_EQ(queued->code(), ErrorCode::kOk);
}

TEST(Scheduler, DrainTimeoutCancelsTheRest) {
  Fixture f(config(), 1, 10ms, false);
  auto running = f.submit(req("running", 2000)).second;
  auto queued = f.submit(req("queued", 2000)).second;
  ASSERT_TRUE(running->wait_step(1));
  const auto t0 = Clock::now();
  f.sched->drain(200ms);
  EXPECT_GE(since(t0), 0.19);
  EXPECT_LT(since(t0), 5.0);
  EXPECT_EQ(running->finished_count(), 1);
  EXPECT_EQ(queued->finished_count(), 1);
  EXPECT_EQ(running->code(), ErrorCode::kCancelled);
  EXPECT_EQ(queued->code(), ErrorCode::kCancelled);
  EXPECT_FALSE(queued->started());
  EXPECT_TRUE(running->order_ok());
  EXPECT_TRUE(queued->order_ok());
}

TEST(Scheduler, DestructorCancelsAndFinishesEverything) {
  std::shared_ptr<Recorder> running, queued;
  {
    Fixture f(config(), 1, 10ms, false);
    running = f.submit(req("running", 2000)).second;
    queued = f.submit(req("queued", 2000)).second;
    ASSERT_TRUE(running->wait_step(1));
  }
  EXPECT_EQ(running->finished_count(), 1);
  EXPECT_EQ(queued->finished_count(), 1);
  EXPECT_EQ(running->code(), ErrorCode::kCancelled);
  EXPECT_EQ(queued->code(), ErrorCode::kCancelled);
}

class RecordingMetrics : public SchedulerMetrics {
 public:
  void queue_depth(const std::string& model, int64_t depth) override {
    std::lock_guard<std::mutex> lk(mu);
    depths.push_back(depth);
  }
  void queue_wait(const std::string&, double s) override {
    std::lock_guard<std::mutex> lk(mu);
    waits.push_back(s);
  }
  void batch_started(const std::string&, const std::string& device, int64_t size) override {
    std::lock_guard<std::mutex> lk(mu);
    batches.push_back(size);
  }
  void first_step(const std::string&, double s) override {
    std::lock_guard<std::mutex> lk(mu);
    first_steps.push_back(s);
  }
  void step_time(const std::string&, double s) override {
    std::lock_guard<std::mutex> lk(mu);
    step_times.push_back(s);
  }
  void finished(const std::string&, ErrorCode code, double s) override {
    std::lock_guard<std::mutex> lk(mu);
    codes.push_back(code);
    latencies.push_back(s);
  }
  std::mutex mu;
  std::vector<int64_t> depths, batches;
  std::vector<double> waits, first_steps, step_times, latencies;
  std::vector<ErrorCode> codes;
};

TEST(Scheduler, MetricsHooks) {
  auto metrics = std::make_shared<RecordingMetrics>();
  {
    Fixture f(config(2, 0ms), 1, 20ms, true, metrics);
    auto blocker = f.submit(req("blocker", 3)).second;
    ASSERT_TRUE(blocker->wait_started());
    auto a = f.submit(req("a", 3)).second;
    auto b = f.submit(req("b", 3)).second;
    auto [cid, c] = f.submit(req("c", 3));
    f.sched->cancel(cid);
    std::this_thread::sleep_for(50ms);
    f.gate->open();
    for (auto* r : {&blocker, &a, &b, &c}) ASSERT_TRUE((*r)->wait_finished());
  }
  std::lock_guard<std::mutex> lk(metrics->mu);
  // 0 at add_model; blocker in and out; a, b, c in; c cancelled; a and b out together.
  EXPECT_EQ(metrics->depths, (std::vector<int64_t>{0, 1, 0, 1, 2, 3, 2, 0}));
  EXPECT_EQ(metrics->batches, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(metrics->waits.size(), 3u);
  EXPECT_GE(*std::max_element(metrics->waits.begin(), metrics->waits.end()), 0.04);
  EXPECT_EQ(metrics->first_steps.size(), 3u);
  EXPECT_EQ(metrics->step_times.size(), 4u);  // 2 per batch of 3 steps
  for (double s : metrics->step_times) EXPECT_GE(s, 0.015);
  ASSERT_EQ(metrics->codes.size(), 4u);
  EXPECT_EQ(std::count(metrics->codes.begin(), metrics->codes.end(), ErrorCode::kOk), 3);
  EXPECT_EQ(std::count(metrics->codes.begin(), metrics->codes.end(), ErrorCode::kCancelled), 1);
  for (double s : metrics->latencies) EXPECT_GE(s, 0.0);
}

TEST(Scheduler, ManyConcurrentSubmitters) {
  auto metrics = std::make_shared<RecordingMetrics>();
  Fixture f(config(4, 2ms, 10000), 2, 1ms, false, metrics);
  constexpr int kThreads = 8, kPerThread = 60;
  std::mutex mu;
  std::vector<std::shared_ptr<Recorder>> all;
  std::atomic<int> cancelled_ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        const int64_t width = 16 * (1 + static_cast<int64_t>(rng() % 3));
        const auto deadline =
            rng() % 10 == 0 ? Clock::now() + milliseconds(rng() % 20) : Clock::time_point::max();
        auto [id, rec] =
            f.submit(req("p", 1 + rng() % 3, width), static_cast<int32_t>(rng() % 4), deadline);
        if (rng() % 8 == 0 && f.sched->cancel(id)) ++cancelled_ok;
        f.sched->queue_depth("m");
        std::lock_guard<std::mutex> lk(mu);
        all.push_back(rec);
      }
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0;
  for (auto& r : all) {
    ASSERT_TRUE(r->wait_finished(30s));
    EXPECT_TRUE(r->order_ok());
    if (r->code() == ErrorCode::kOk) ++ok;
  }
  EXPECT_GT(ok, kThreads * kPerThread / 2);
  for (const Call& c : f.log->snapshot()) {
    EXPECT_EQ(c.keys.size(), 1u);
    EXPECT_LE(c.prompts.size(), 4u);
  }
  f.sched.reset();
  std::lock_guard<std::mutex> lk(metrics->mu);
  EXPECT_EQ(metrics->codes.size(), all.size());
  EXPECT_EQ(metrics->depths.back(), 0);
}

}  // namespace
}  // namespace grat::scheduler
