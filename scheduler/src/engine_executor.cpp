// Executor over a loaded engine::Engine: one engine per device, driven by one worker.
#include <stdexcept>
#include <utility>

#include "grat/scheduler/scheduler.h"

namespace grat::scheduler {
namespace {

class EngineExecutor : public Executor {
 public:
  explicit EngineExecutor(std::unique_ptr<engine::Engine> engine) : engine_(std::move(engine)) {
    if (engine_ == nullptr) throw std::invalid_argument("make_engine_executor: null engine");
  }
  const engine::Manifest& manifest() const override { return engine_->manifest(); }
  std::string device() const override { return engine_->options().device; }
  engine::Plan prepare(const engine::Request& request) const override {
    return engine_->prepare(request);
  }
  std::vector<engine::Result> run(const std::vector<engine::Job>& jobs) override {
    return engine_->generate(jobs);
  }
  engine::DecodedBatch run_decoded(const std::vector<engine::Job>& jobs) override {
    return engine_->generate_decoded(jobs);
  }

 private:
  std::unique_ptr<engine::Engine> engine_;
};

}  // namespace

std::unique_ptr<Executor> make_engine_executor(std::unique_ptr<engine::Engine> engine) {
  return std::make_unique<EngineExecutor>(std::move(engine));
}

}  // namespace grat::scheduler
