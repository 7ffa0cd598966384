// The scheduler driving the real engine on the tiny bundle (CPU): two same-shape requests
// share one batch and come back as PNGs with progress; a running job is cancelled within a
// step while the engine keeps serving; validation goes through the engine.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>

#include "grat/scheduler/scheduler.h"

namespace grat::scheduler {
namespace {

using engine::ErrorCode;
using namespace std::chrono_literals;

std::string bundle_dir() {
  const char* b = std::getenv("GRAT_TINY_BUNDLE");
  return b == nullptr ? std::string("bundles/flux-tiny") : std::string(b);
}

class Listener : public JobListener {
 public:
  void on_queued(int64_t) override {}
  void on_started(const std::string& device, int64_t batch_size) override {
    std::lock_guard<std::mutex> lk(mu);
    this->device = device;
    this->batch_size = batch_size;
  }
  void on_progress(int64_t step, int64_t total, const std::string&) override {
    std::lock_guard<std::mutex> lk(mu);
    steps.push_back(step);
    this->total = total;
    cv.notify_all();
  }
  void on_finished(engine::Result r) override {
    std::lock_guard<std::mutex> lk(mu);
    result = std::move(r);
    done = true;
    cv.notify_all();
  }
  bool wait(std::function<bool()> pred) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, 60s, pred);
  }

  std::mutex mu;
  std::condition_variable cv;
  std::string device;
  int64_t batch_size = 0, total = 0;
  std::vector<int64_t> steps;
  engine::Result result;
  bool done = false;
};

engine::Request request(const std::string& prompt, uint64_t seed, int64_t steps) {
  engine::Request r;
  r.prompt = prompt;
  r.width = 128;
  r.height = 96;
  r.seed = seed;
  r.steps = steps;
  return r;
}

TEST(SchedulerEngine, BatchesCancelsAndServesOnTheTinyBundle) {
  engine::EngineOptions o;
  o.bundle = bundle_dir();
  std::vector<std::unique_ptr<Executor>> ex;
  ex.push_back(make_engine_executor(engine::Engine::load(o)));
  EXPECT_EQ(ex[0]->device(), "cpu");
  Scheduler sched;
  ModelConfig cfg;
  cfg.name = "flux-tiny";
  cfg.max_batch = 2;
  cfg.max_batch_delay = 1s;  // the two submissions below surely meet
  sched.add_model(cfg, std::move(ex));
  sched.start();
  ASSERT_NE(sched.manifest("flux-tiny"), nullptr);
  EXPECT_EQ(sched.manifest("flux-tiny")->name, "flux-tiny");

  Submission bad;
  bad.model = "flux-tiny";
  bad.request = request("x", 1, 4);
  bad.request.width = 100;
  SubmitResult refused = sched.submit(bad);
  EXPECT_EQ(refused.status, SubmitStatus::kInvalid);
  EXPECT_NE(refused.message.find("multiple of 16"), std::string::npos) << refused.message;

  auto a = std::make_shared<Listener>(), b = std::make_shared<Listener>();
  for (auto& [l, prompt] : {std::pair{a, "a red fox"}, std::pair{b, "a blue bird"}}) {
    Submission s;
    s.model = "flux-tiny";
    s.request = request(prompt, 7, 3);
    s.listener = l;
    ASSERT_EQ(sched.submit(std::move(s)).status, SubmitStatus::kAccepted);
  }
  for (auto* l : {&a, &b}) {
    Listener& x = **l;
    ASSERT_TRUE(x.wait([&] { return x.done; }));
    std::lock_guard<std::mutex> lk(x.mu);
    ASSERT_TRUE(x.result.error.ok()) << x.result.error.message;
    EXPECT_EQ(x.result.bytes.substr(0, 4), "\x89PNG");
    EXPECT_EQ(x.result.mime, "image/png");
    EXPECT_EQ(x.device, "cpu");
    EXPECT_EQ(x.batch_size, 2);
    EXPECT_EQ(x.steps, (std::vector<int64_t>{1, 2, 3}));
    EXPECT_EQ(x.total, 3);
  }

  // Cancel mid-run: nothing after the step in flight; the engine then serves the next job.
  auto c = std::make_shared<Listener>();
  Submission s;
  s.model = "flux-tiny";
  s.request = request("a castle", 3, 40);
  s.listener = c;
  SubmitResult accepted = sched.submit(std::move(s));
  ASSERT_EQ(accepted.status, SubmitStatus::kAccepted);
  ASSERT_TRUE(c->wait([&] { return !c->steps.empty(); }));
  size_t at_cancel = 0;
  {
    std::lock_guard<std::mutex> lk(c->mu);
    at_cancel = c->steps.size();
  }
  EXPECT_TRUE(sched.cancel(accepted.job_id));
  ASSERT_TRUE(c->wait([&] { return c->done; }));
  {
    std::lock_guard<std::mutex> lk(c->mu);
    EXPECT_EQ(c->result.error.code, ErrorCode::kCancelled);
    EXPECT_LE(c->steps.size(), at_cancel + 1);
    EXPECT_LT(c->steps.size(), 40u);
  }

  auto d = std::make_shared<Listener>();
  s = Submission{};
  s.model = "flux-tiny";
  s.request = request("after", 5, 2);
  s.listener = d;
  ASSERT_EQ(sched.submit(std::move(s)).status, SubmitStatus::kAccepted);
  ASSERT_TRUE(d->wait([&] { return d->done; }));
  std::lock_guard<std::mutex> lk(d->mu);
  EXPECT_TRUE(d->result.error.ok()) << d->result.error.message;
}

}  // namespace
}  // namespace grat::scheduler
