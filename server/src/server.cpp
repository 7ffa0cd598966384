#include "grat/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "engine_options.h"
#include "grat/engine/engine.h"
#include "grat/scheduler/scheduler.h"
#include "grat/server/auth.h"
#include "grat/server/log.h"
#include "grat/server/metrics.h"
#include "grat/server/rich_status.h"
#include "grat/server/validation.h"
#include "grat/v1/generation.grpc.pb.h"

namespace grat::server {

double device_memory_in_use(const std::string& device);  // device_memory.cpp

namespace {

using engine::ErrorCode;
using spdlog::level::level_enum;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxJobIdBytes = 128;

std::string status_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "ok";
    case grpc::StatusCode::CANCELLED:
      return "cancelled";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid_argument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "deadline_exceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "not_found";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "resource_exhausted";
    case grpc::StatusCode::UNAVAILABLE:
      return "unavailable";
    case grpc::StatusCode::INTERNAL:
      return "internal";
    default:
      return "other";
  }
}

// Keeps client-supplied text in messages and logs short.
std::string clip(const std::string& s, size_t n = 64) {
  return s.size() <= n ? s : s.substr(0, n) + "...";
}

grpc::Status status_of(const engine::Error& e, bool draining) {
  switch (e.code) {
    case ErrorCode::kOk:
      return grpc::Status::OK;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kTokenizer:
      return {grpc::StatusCode::INVALID_ARGUMENT, e.message};
    case ErrorCode::kOutOfMemory:  // the allocator's own report goes to the log only
      return rich_status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                         "the device ran out of memory running this request (it was retried "
                         "alone); try a smaller size or fewer frames, or retry later",
                         kGpuOutOfMemory, std::chrono::seconds(10));
    case ErrorCode::kResourceExhausted:
      return rich_status(grpc::StatusCode::RESOURCE_EXHAUSTED, e.message, kMemoryLimit);
    case ErrorCode::kCancelled:
      if (draining) {
        return rich_status(grpc::StatusCode::UNAVAILABLE, "server is shutting down: " + e.message,
                           kDraining, std::chrono::seconds(1));
      }
      return {grpc::StatusCode::CANCELLED, e.message};
    case ErrorCode::kDeadlineExceeded:
      return {grpc::StatusCode::DEADLINE_EXCEEDED, e.message};
    case ErrorCode::kDeviceFailed:
      return rich_status(grpc::StatusCode::UNAVAILABLE,
                         "the device failed while running this request; the server restarts: "
                         "retry on another replica",
                         kDeviceFailed, std::chrono::seconds(1));
    case ErrorCode::kBadBundle:
    case ErrorCode::kInternal:
      break;
  }
  return {grpc::StatusCode::INTERNAL, e.message};
}

std::string read_pem(const std::string& path, const char* key) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  if (!in || buf.str().find("-----BEGIN") == std::string::npos) {
    throw std::runtime_error(std::string("tls.") + key + ": cannot read a PEM file at '" + path +
                             "'");
  }
  return buf.str();
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const TlsConfig& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  o.pem_key_cert_pairs.push_back({read_pem(tls.key, "key"), read_pem(tls.cert, "cert")});
  if (!tls.client_ca.empty()) {
    o.pem_root_certs = read_pem(tls.client_ca, "client_ca");
    o.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(o);
}

// Linking grpc++_reflection registers its plugin with every ServerBuilder (a static
// initializer); this option takes it out again.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
                                    return p->name() == "proto_server_reflection";
                                  }),
                   plugins->end());
  }
};

grpc::Status draining_status() {
  return rich_status(grpc::StatusCode::UNAVAILABLE, "server is draining (shutting down)", kDraining,
                     std::chrono::seconds(1));
}

Clock::time_point steady_deadline(const grpc::CallbackServerContext* ctx) {
  const auto d = ctx->deadline();
  if (d == std::chrono::system_clock::time_point::max()) return Clock::time_point::max();
  const auto left = d - std::chrono::system_clock::now();
  if (left > std::chrono::hours(24 * 365)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
}

struct Model {
  ModelEntry entry;
  ModelLimits limits;
};

class GenerateReactor;

// What the reactors share with the server.
struct Context {
  ServerConfig config;
  std::map<std::string, Model> models;
  std::string default_model;
  std::unique_ptr<Auth> auth;  // null: no API keys (declared before the scheduler: outlives it)
  std::shared_ptr<Metrics> metrics;
  std::unique_ptr<scheduler::Scheduler> scheduler;
  std::atomic<bool> draining{false};
  // Result bytes waiting in streams for their clients to read (max_buffered_bytes).
  std::atomic<int64_t> buffered_bytes{0};
  // Live Generate streams, for the write-progress sweeper (Server::Impl); guarded by
  // streams_mu. A reactor leaves the set in OnDone, before it is deleted.
  std::mutex streams_mu;
  std::set<GenerateReactor*> streams;
  std::mutex seed_mu;
  std::mt19937_64 seeds{std::random_device{}()};

  uint64_t random_seed() {
    std::lock_guard<std::mutex> lk(seed_mu);
    return seeds() >> 1;  // 63 bits: fits every client's signed 64-bit integers
  }
};

// The caller's tenant from its `authorization` metadata, or null.
std::shared_ptr<const Tenant> authenticate(const Context& c, const grpc::ServerContextBase* ctx) {
  const auto& md = ctx->client_metadata();
  const auto it = md.find("authorization");
  if (it == md.end()) return nullptr;
  return c.auth->authenticate(std::string(it->second.data(), it->second.size()));
}

int64_t result_bytes(const v1::GenerateEvent& e) {
  return e.has_result_chunk() ? static_cast<int64_t>(e.result_chunk().data().size()) : 0;
}

grpc::Status unauthenticated() {
  return {grpc::StatusCode::UNAUTHENTICATED,
          "missing or invalid API key: send metadata 'authorization: Bearer <key>'"};
}

// A tenant's per-request ceilings: priority and cost (width x height x frames x steps, with
// the model's defaults for 0).
grpc::Status check_tenant(const Tenant& t, int32_t priority, const engine::Request& r,
                          const ModelLimits& limits) {
  if (priority > t.max_priority) {
    return {grpc::StatusCode::PERMISSION_DENIED,
            "priority " + std::to_string(priority) + " is above tenant " + t.name +
                "'s max_priority " + std::to_string(t.max_priority)};
  }
  const auto& d = limits.manifest.defaults;
  const int64_t frames = r.frames != 0 ? r.frames : (limits.manifest.is_video() ? d.frames : 1);
  const int64_t steps = r.steps != 0 ? r.steps : d.steps;
  const double cost = static_cast<double>(r.width) * static_cast<double>(r.height) *
                      static_cast<double>(frames) * static_cast<double>(steps);
  if (t.max_cost > 0 && cost > t.max_cost) {
    std::ostringstream m;
    m << "request cost width x height x frames x steps = " << r.width << " x " << r.height << " x "
      << frames << " x " << steps << " = " << static_cast<int64_t>(cost) << " is over tenant "
      << t.name << "'s max_cost " << static_cast<int64_t>(t.max_cost);
    return rich_status(grpc::StatusCode::RESOURCE_EXHAUSTED, m.str(), kTenantQuota);
  }
  return grpc::Status::OK;
}

// The scheduler's events for one job, forwarded to the reactor while it lives.
struct Link {
  std::mutex mu;
  GenerateReactor* reactor = nullptr;  // guarded by mu; null once the RPC is done
  // API keys: the tenant's quota slot, held until the job ends, and the job id registered as
  // the tenant's (for cancel), removed when it ends. Guarded by mu.
  std::shared_ptr<void> quota_slot;
  std::string owned_job;
  bool job_done = false;
  Auth* auth = nullptr;
};

class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateEvent> {
 public:
  GenerateReactor(Context& c, grpc::CallbackServerContext* ctx, const v1::GenerateRequest& req);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // From the listener, with link_->mu held.
  void queued_locked(int64_t position);
  void started_locked(const std::string& device, int64_t batch);
  void progress_locked(int64_t step, int64_t total, const std::string& preview);
  void finished_locked(engine::Result result);
  void pump(std::unique_lock<std::mutex>& lk);
  // Cancels the stream if one write has waited longer than `timeout` for the client to read.
  void cancel_if_stalled(Clock::time_point now, std::chrono::milliseconds timeout);

 private:
  void release_locked(int64_t bytes);
  void admit(const v1::GenerateRequest& req);
  void reject(grpc::Status s);
  void request_finish_locked(grpc::Status s);
  void log_finish(const grpc::Status& s);

  Context& c_;
  grpc::CallbackServerContext* ctx_;
  std::shared_ptr<Link> link_ = std::make_shared<Link>();
  std::string model_ = "unknown";
  Clock::time_point accepted_at_ = Clock::now();
  Clock::time_point started_at_{};
  // Guarded by link_->mu.
  std::string job_id_;  // set once, when the scheduler accepts the job
  std::deque<v1::GenerateEvent> pending_;
  v1::GenerateEvent current_;
  bool ready_ = false;  // Accepted is first in pending_ (or the RPC was refused)
  bool writing_ = false;
  Clock::time_point write_since_{};  // when the outstanding write started
  bool stall_cancelled_ = false;
  int64_t buffered_ = 0;        // result bytes of this stream not yet written
  bool rpc_cancelled_ = false;  // client gone: nothing more is written
  bool job_finished_ = true;    // no job, or its on_finished came
  bool finish_requested_ = false;
  bool finish_called_ = false;
  grpc::Status final_;
};

class Listener final : public scheduler::JobListener {
 public:
  explicit Listener(std::shared_ptr<Link> link) : link_(std::move(link)) {}
  void on_queued(int64_t position) override {
    std::unique_lock<std::mutex> lk(link_->mu);
    if (link_->reactor) link_->reactor->queued_locked(position), link_->reactor->pump(lk);
  }
  void on_started(const std::string& device, int64_t batch) override {
    std::unique_lock<std::mutex> lk(link_->mu);
    if (link_->reactor) link_->reactor->started_locked(device, batch), link_->reactor->pump(lk);
  }
  void on_progress(int64_t step, int64_t total, const std::string& preview) override {
    std::unique_lock<std::mutex> lk(link_->mu);
    if (link_->reactor) {
      link_->reactor->progress_locked(step, total, preview), link_->reactor->pump(lk);
    }
  }
  void on_finished(engine::Result result) override {
    std::unique_lock<std::mutex> lk(link_->mu);
    link_->job_done = true;
    link_->quota_slot.reset();
    if (link_->auth != nullptr && !link_->owned_job.empty()) link_->auth->disown(link_->owned_job);
    if (link_->reactor) {
      link_->reactor->finished_locked(std::move(result)), link_->reactor->pump(lk);
    }
  }

 private:
  std::shared_ptr<Link> link_;
};

GenerateReactor::GenerateReactor(Context& c, grpc::CallbackServerContext* ctx,
                                 const v1::GenerateRequest& req)
    : c_(c), ctx_(ctx) {
  link_->reactor = this;
  {
    std::lock_guard<std::mutex> g(c_.streams_mu);
    c_.streams.insert(this);
  }
  admit(req);
}

void GenerateReactor::admit(const v1::GenerateRequest& req) {
  if (c_.draining.load()) {
    return reject(draining_status());
  }
  const std::string name = req.model().empty() ? c_.default_model : req.model();
  auto it = c_.models.find(name);
  if (it == c_.models.end()) {
    return reject({grpc::StatusCode::NOT_FOUND, "unknown model '" + clip(name) + "'"});
  }
  model_ = name;
  std::shared_ptr<const Tenant> tenant;
  if (c_.auth) {
    tenant = authenticate(c_, ctx_);
    if (!tenant) return reject(unauthenticated());
  }
  scheduler::Submission sub;
  sub.model = name;
  if (grpc::Status s = to_engine_request(req, it->second.limits, c_.random_seed(), &sub.request);
      !s.ok()) {
    return reject(s);
  }
  if (tenant) {
    if (grpc::Status s = check_tenant(*tenant, req.priority(), sub.request, it->second.limits);
        !s.ok()) {
      return reject(s);
    }
    std::shared_ptr<void> slot = c_.auth->acquire(tenant);
    if (!slot) {
      return reject(rich_status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "tenant " + tenant->name + " has " +
                                    std::to_string(tenant->max_concurrent_jobs) +
                                    " jobs queued or running (max_concurrent_jobs " +
                                    std::to_string(tenant->max_concurrent_jobs) + ")",
                                kTenantQuota, std::chrono::seconds(1)));
    }
    std::lock_guard<std::mutex> g(link_->mu);
    link_->quota_slot = std::move(slot);
    link_->auth = c_.auth.get();
  }
  sub.priority = req.priority();
  sub.deadline = steady_deadline(ctx_);
  if (sub.deadline <= Clock::now()) {
    return reject({grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed before admission"});
  }
  sub.listener = std::make_shared<Listener>(link_);
  const uint64_t seed = sub.request.seed;
  std::string shape = std::to_string(sub.request.width) + "x" + std::to_string(sub.request.height);
  if (it->second.limits.manifest.is_video()) {
    const auto& mf = it->second.limits.manifest;
    shape +=
        "x" + std::to_string(sub.request.frames != 0 ? sub.request.frames : mf.defaults.frames);
  }
  const int64_t steps = sub.request.steps;
  // job_finished_ and job_id_ are read by scheduler threads (listener events) and OnCancel
  // under link_->mu: written under it too.
  const auto set_finished = [this](bool finished) {
    std::lock_guard<std::mutex> g(link_->mu);
    job_finished_ = finished;
  };
  set_finished(false);
  scheduler::SubmitResult r = c_.scheduler->submit(std::move(sub));
  switch (r.status) {
    case scheduler::SubmitStatus::kAccepted:
      break;
    case scheduler::SubmitStatus::kUnknownModel:
      set_finished(true);
      return reject({grpc::StatusCode::NOT_FOUND, r.message});
    case scheduler::SubmitStatus::kInvalid:
      set_finished(true);
      return reject({grpc::StatusCode::INVALID_ARGUMENT, r.message});
    case scheduler::SubmitStatus::kTooLarge:
      set_finished(true);
      return reject(rich_status(grpc::StatusCode::RESOURCE_EXHAUSTED, r.message, kMemoryLimit));
    case scheduler::SubmitStatus::kQueueFull:
      set_finished(true);
      return reject(rich_status(grpc::StatusCode::RESOURCE_EXHAUSTED, r.message, kQueueFull,
                                std::chrono::seconds(1)));
    case scheduler::SubmitStatus::kDraining:
      set_finished(true);
      return reject(draining_status());
  }
  {
    std::lock_guard<std::mutex> g(link_->mu);
    job_id_ = r.job_id;
    if (tenant && !link_->job_done) {  // a job that already ended needs no owner
      link_->owned_job = r.job_id;
      c_.auth->own(r.job_id, tenant->name);
    }
  }
  log(level_enum::info, "accepted",
      {{"job_id", job_id_},
       {"model", model_},
       {"size", shape},
       num("steps", steps),
       {"seed", std::to_string(seed), true},
       {"peer", ctx_->peer()}});
  std::unique_lock<std::mutex> lk(link_->mu);
  v1::GenerateEvent e;
  e.mutable_accepted()->set_job_id(job_id_);
  pending_.push_front(std::move(e));
  ready_ = true;
  pump(lk);
}

void GenerateReactor::reject(grpc::Status s) {
  log(level_enum::info, "rejected",
      {{"model", model_},
       {"code", status_name(s.error_code())},
       {"error", s.error_message()},
       {"peer", ctx_->peer()}});
  std::unique_lock<std::mutex> lk(link_->mu);
  ready_ = true;
  request_finish_locked(std::move(s));
  pump(lk);
}

void GenerateReactor::request_finish_locked(grpc::Status s) {
  if (finish_requested_) return;
  finish_requested_ = true;
  final_ = std::move(s);
}

void GenerateReactor::pump(std::unique_lock<std::mutex>& lk) {
  if (!ready_ || writing_ || finish_called_) return;
  if (!pending_.empty() && !rpc_cancelled_) {
    current_ = std::move(pending_.front());
    pending_.pop_front();
    writing_ = true;
    write_since_ = Clock::now();
    lk.unlock();
    StartWrite(&current_);
    lk.lock();
    return;
  }
  if (finish_requested_) {
    finish_called_ = true;
    for (const auto& e : pending_) release_locked(result_bytes(e));
    pending_.clear();
    grpc::Status s = final_;
    lk.unlock();
    log_finish(s);
    Finish(s);
    lk.lock();
  }
}

void GenerateReactor::log_finish(const grpc::Status& s) {
  c_.metrics->request_done(model_, status_name(s.error_code()));
  if (job_id_.empty()) return;
  const double secs = std::chrono::duration<double>(Clock::now() - accepted_at_).count();
  log(s.ok() ? level_enum::info : level_enum::warn, "finished",
      {{"job_id", job_id_},
       {"model", model_},
       {"code", status_name(s.error_code())},
       {"error", s.error_message()},
       num("seconds", secs)});
}

void GenerateReactor::queued_locked(int64_t position) {
  v1::GenerateEvent e;
  e.mutable_queued()->set_position(position);
  pending_.push_back(std::move(e));
}

void GenerateReactor::started_locked(const std::string& device, int64_t batch) {
  started_at_ = Clock::now();
  v1::GenerateEvent e;
  e.mutable_started()->set_device(device);
  e.mutable_started()->set_batch_size(batch);
  pending_.push_back(std::move(e));
  log(level_enum::info, "started",
      {{"job_id", job_id_}, {"device", device}, num("batch_size", batch)});
}

void GenerateReactor::progress_locked(int64_t step, int64_t total, const std::string& preview) {
  // A slow reader gets the latest progress, not a backlog of it.
  if (!pending_.empty() && pending_.back().has_progress() && preview.empty() &&
      !pending_.back().progress().has_preview_png()) {
    pending_.pop_back();
  }
  v1::GenerateEvent e;
  e.mutable_progress()->set_step(step);
  e.mutable_progress()->set_total(total);
  if (!preview.empty()) e.mutable_progress()->set_preview_png(preview);
  pending_.push_back(std::move(e));
}

void GenerateReactor::finished_locked(engine::Result r) {
  job_finished_ = true;
  if (r.error.code == ErrorCode::kOutOfMemory) {
    log(level_enum::warn, "out of device memory",
        {{"job_id", job_id_}, {"error", r.error.message}});
  }
  if (!r.error.ok()) {
    request_finish_locked(status_of(r.error, c_.draining.load()));
    return;
  }
  const auto size = static_cast<int64_t>(r.bytes.size());
  if (c_.buffered_bytes.load() + size > c_.config.max_buffered_bytes) {
    log(level_enum::warn, "result buffer full",
        {{"job_id", job_id_}, num("bytes", size), num("buffered_bytes", c_.buffered_bytes.load())});
    request_finish_locked(rich_status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        "the server's result buffer is full (" + std::to_string(c_.buffered_bytes.load()) +
            " bytes wait for slow clients; max_buffered_bytes " +
            std::to_string(c_.config.max_buffered_bytes) + "); retry later",
        kResultBufferFull, std::chrono::seconds(5)));
    return;
  }
  buffered_ += size;
  c_.buffered_bytes += size;
  const size_t chunk = static_cast<size_t>(c_.config.chunk_bytes);
  const size_t n = std::max<size_t>(1, (r.bytes.size() + chunk - 1) / chunk);
  for (size_t i = 0; i < n; ++i) {
    v1::GenerateEvent e;
    v1::ResultChunk* c = e.mutable_result_chunk();
    const size_t off = i * chunk;
    if (off < r.bytes.size()) c->set_data(r.bytes.substr(off, chunk));
    c->set_mime_type(r.mime);
    c->set_index(static_cast<int32_t>(i));
    c->set_last(i + 1 == n);
    c->set_total_bytes(static_cast<int64_t>(r.bytes.size()));
    pending_.push_back(std::move(e));
  }
  v1::GenerateEvent e;
  v1::Finished* f = e.mutable_finished();
  f->set_seed(r.seed);
  f->set_width(static_cast<int32_t>(r.width));
  f->set_height(static_cast<int32_t>(r.height));
  f->set_frames(static_cast<int32_t>(r.frames));
  f->set_steps(static_cast<int32_t>(r.steps));
  f->set_guidance(static_cast<float>(r.guidance));
  f->set_attention(r.attention);
  f->set_job_id(job_id_);
  f->set_fps(static_cast<int32_t>(r.fps));
  v1::StageTimings* t = f->mutable_timings();
  const Clock::time_point now = Clock::now();
  if (started_at_ != Clock::time_point{}) {
    t->set_queue_wait_s(std::chrono::duration<double>(started_at_ - accepted_at_).count());
  }
  t->set_text_encode_s(r.timings.text_encode_s);
  t->set_denoise_s(r.timings.denoise_s);
  t->set_decode_s(r.timings.decode_s);
  t->set_encode_s(r.timings.encode_s);
  t->set_first_step_s(r.timings.first_step_s);
  t->set_total_s(std::chrono::duration<double>(now - accepted_at_).count());
  pending_.push_back(std::move(e));
  request_finish_locked(grpc::Status::OK);
}

void GenerateReactor::OnWriteDone(bool ok) {
  const std::shared_ptr<Link> link = link_;  // pump() may end in OnDone on another thread
  std::unique_lock<std::mutex> lk(link->mu);
  writing_ = false;
  release_locked(result_bytes(current_));
  current_.Clear();
  if (!ok) rpc_cancelled_ = true;
  if (!ok && !finish_requested_) {
    request_finish_locked({grpc::StatusCode::CANCELLED, "stream closed by the client"});
  }
  pump(lk);
}

void GenerateReactor::OnCancel() {
  const std::shared_ptr<Link> link = link_;
  std::unique_lock<std::mutex> lk(link->mu);
  rpc_cancelled_ = true;
  const bool deadline = ctx_->deadline() <= std::chrono::system_clock::now();
  request_finish_locked(deadline
                            ? grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded")
                            : grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  const bool cancel_job = !job_finished_ && !job_id_.empty();
  const std::string job_id = job_id_;
  lk.unlock();
  if (cancel_job) {
    c_.scheduler->cancel(job_id);
    log(level_enum::info,
        deadline ? "deadline passed; job cancelled" : "rpc cancelled; job cancelled",
        {{"job_id", job_id}});
  }
  lk.lock();
  pump(lk);
}

void GenerateReactor::OnDone() {
  {
    std::lock_guard<std::mutex> g(c_.streams_mu);
    c_.streams.erase(this);
  }
  {
    std::lock_guard<std::mutex> lk(link_->mu);
    link_->reactor = nullptr;
    release_locked(buffered_);
  }
  delete this;
}

void GenerateReactor::release_locked(int64_t bytes) {
  buffered_ -= bytes;
  c_.buffered_bytes -= bytes;
}

void GenerateReactor::cancel_if_stalled(Clock::time_point now, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(link_->mu);
  if (!writing_ || stall_cancelled_ || finish_called_ || now - write_since_ < timeout) return;
  stall_cancelled_ = true;
  const int64_t held = buffered_;
  const std::string job_id = job_id_;
  lk.unlock();
  log(level_enum::warn, "client stopped reading; stream cancelled",
      {{"job_id", job_id},
       {"peer", ctx_->peer()},
       num("buffered_bytes", held),
       num("write_timeout_s", std::chrono::duration<double>(timeout).count())});
  ctx_->TryCancel();  // OnCancel stops the job; the failed write frees the buffered bytes
}

class GenerationService final : public v1::Generation::CallbackService {
 public:
  explicit GenerationService(Context& c) : c_(c) {}

  grpc::ServerWriteReactor<v1::GenerateEvent>* Generate(grpc::CallbackServerContext* ctx,
                                                        const v1::GenerateRequest* req) override {
    return new GenerateReactor(c_, ctx, *req);
  }

  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* req,
                                      v1::CancelJobResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->job_id().empty() || req->job_id().size() > kMaxJobIdBytes) {
      reactor->Finish({grpc::StatusCode::INVALID_ARGUMENT,
                       "job_id must be 1.." + std::to_string(kMaxJobIdBytes) + " bytes"});
      return reactor;
    }
    if (c_.auth) {
      const std::shared_ptr<const Tenant> tenant = authenticate(c_, ctx);
      if (!tenant) {
        reactor->Finish(unauthenticated());
        return reactor;
      }
      const std::string owner = c_.auth->owner(req->job_id());
      if (!owner.empty() && owner != tenant->name) {
        log(level_enum::warn, "cancel refused: another tenant's job",
            {{"job_id", req->job_id()}, {"tenant", tenant->name}, {"peer", ctx->peer()}});
        reactor->Finish({grpc::StatusCode::PERMISSION_DENIED,
                         "job '" + clip(req->job_id()) + "' belongs to another tenant"});
        return reactor;
      }
    }
    const bool ok = c_.scheduler->cancel(req->job_id());
    log(level_enum::info, ok ? "cancel requested" : "cancel: unknown job",
        {{"job_id", req->job_id()}, {"peer", ctx->peer()}});
    if (!ok) {
      reactor->Finish(
          {grpc::StatusCode::NOT_FOUND, "no queued or running job '" + clip(req->job_id()) + "'"});
      return reactor;
    }
    resp->set_cancelled(true);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest*,
                                       v1::ListModelsResponse* resp) override {
    if (c_.auth && !authenticate(c_, ctx)) {
      auto* reactor = ctx->DefaultReactor();
      reactor->Finish(unauthenticated());
      return reactor;
    }
    resp->set_default_model(c_.default_model);
    for (const auto& [name, m] : c_.models) {
      const engine::Manifest& mf = m.limits.manifest;
      v1::ModelInfo* info = resp->add_models();
      info->set_name(name);
      info->set_kind(mf.kind);
      info->set_architecture(mf.architecture);
      v1::ModelLimits* l = info->mutable_limits();
      l->set_min_side(static_cast<int32_t>(mf.limits.min_side));
      l->set_max_side(static_cast<int32_t>(mf.limits.max_side));
      l->set_side_multiple(static_cast<int32_t>(mf.limits.side_multiple));
      l->set_max_pixels(mf.limits.max_pixels);
      l->set_min_steps(static_cast<int32_t>(mf.limits.min_steps));
      l->set_max_steps(static_cast<int32_t>(mf.limits.max_steps));
      l->set_max_frames(static_cast<int32_t>(mf.limits.max_frames));
      l->set_max_prompt_tokens(static_cast<int32_t>(mf.limits.max_prompt_tokens));
      l->set_max_video_pixels(mf.is_video() ? mf.limits.max_video_pixels : 0);
      v1::ModelDefaults* d = info->mutable_defaults();
      d->set_steps(static_cast<int32_t>(mf.defaults.steps));
      d->set_guidance(static_cast<float>(mf.defaults.guidance));
      d->set_attention_pattern(mf.grat.pattern);
      for (int64_t g : mf.grat.group) d->add_attention_group(static_cast<int32_t>(g));
      d->set_attention_radius(static_cast<int32_t>(mf.grat.radius));
      d->set_frames(mf.is_video() ? static_cast<int32_t>(mf.defaults.frames) : 1);
      d->set_fps(mf.is_video() ? static_cast<int32_t>(mf.defaults.fps) : 0);
      for (const std::string& dev : m.entry.devices) info->add_devices(dev);
      info->set_max_queue(static_cast<int32_t>(m.entry.max_queue));
      info->set_max_batch(static_cast<int32_t>(m.entry.max_batch));
      info->set_ready(!c_.draining.load());
    }
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  Context& c_;
};

}  // namespace

struct Server::Impl {
  Context c;
  // Background work on fixed periods (memory gauge, watchdog, stream sweeper): one thread
  // each, all stopped together by stop_periodic().
  std::vector<std::thread> periodic;
  std::mutex periodic_mu;
  std::condition_variable periodic_cv;
  bool periodic_stop = false;
  void every(std::chrono::milliseconds period, std::function<void()> tick) {
    periodic.emplace_back([this, period, tick = std::move(tick)] {
      std::unique_lock<std::mutex> lk(periodic_mu);
      while (!periodic_stop) {
        lk.unlock();
        tick();
        lk.lock();
        periodic_cv.wait_for(lk, period, [this] { return periodic_stop; });
      }
    });
  }
  void stop_periodic() {
    {
      std::lock_guard<std::mutex> lk(periodic_mu);
      periodic_stop = true;
    }
    periodic_cv.notify_all();
    for (std::thread& t : periodic) {
      if (t.joinable()) t.join();
    }
  }

  // Every 2 s: device memory into grat_gpu_memory_bytes (CPU only: the gauge stays 0).
  void sample_memory() {
    std::vector<std::string> devices;
    for (const auto& e : c.config.models) {
      for (const auto& d : e.devices) {
        if (d.rfind("cuda", 0) == 0) devices.push_back(d);
      }
    }
    if (devices.empty()) return;
    every(std::chrono::seconds(2), [this, devices] {
      for (const auto& d : devices) {
        const double bytes = device_memory_in_use(d);
        if (bytes >= 0) c.metrics->gpu_memory(d, bytes);
      }
    });
  }

  // Readiness ("", grat.v1.Generation, each model): false at drain; the watchdog sets models
  // it finds stalled or failed. Liveness (kLivenessService) is the watchdog's alone.
  std::mutex health_mu;
  std::set<std::string> unhealthy;  // models with a stalled or failed worker
  void set_ready(bool ready) {
    if (!grpc_server) return;
    std::lock_guard<std::mutex> g(health_mu);
    auto* h = grpc_server->GetHealthCheckService();
    const bool up = ready && !c.draining.load() && unhealthy.empty();
    h->SetServingStatus("", up);
    h->SetServingStatus("grat.v1.Generation", up);
    for (const auto& [name, m] : c.models) {
      h->SetServingStatus(name, ready && !c.draining.load() && !unhealthy.count(name));
    }
  }
  // Every second: a worker with no step progress for max(min_stall_s, stall_factor x its
  // typical step) is stalled, one whose device failed is dead; their models turn NOT_SERVING.
  // Stalled: liveness NOT_SERVING too (a hung kernel does not come back; Kubernetes restarts
  // the pod). Dead: `fatal` is called once (the process exits non-zero).
  std::function<void()> fatal;
  void watch_workers() {
    every(std::chrono::seconds(1), [this, fatal_sent = false]() mutable {
      std::set<std::string> bad;
      bool stalled_any = false, failed_any = false;
      for (const scheduler::WorkerStatus& w : c.scheduler->workers()) {
        const double limit =
            std::max(c.config.watchdog_min_stall_s, c.config.watchdog_stall_factor * w.step_s);
        const bool stalled = w.busy && w.since_progress_s > limit;
        if (stalled || w.failed) bad.insert(w.model);
        stalled_any |= stalled;
        failed_any |= w.failed;
        if (stalled && !unhealthy.count(w.model)) {
          log(level_enum::critical, "worker stalled",
              {{"model", w.model},
               {"device", w.device},
               num("since_progress_s", w.since_progress_s),
               num("limit_s", limit)});
        }
      }
      if (bad != unhealthy) {
        {
          std::lock_guard<std::mutex> g(health_mu);
          unhealthy = bad;
        }
        set_ready(true);
      }
      if (grpc_server) {
        grpc_server->GetHealthCheckService()->SetServingStatus(kLivenessService, !stalled_any);
      }
      if (failed_any && !fatal_sent && fatal) {
        fatal_sent = true;
        log(level_enum::critical, "device failed; the process exits to be restarted", {});
        fatal();
      }
    });
  }

  // Every 0.5 s: streams whose client has not read for write_timeout_s are cancelled.
  void sweep_streams() {
    if (c.config.write_timeout_s <= 0) return;
    const auto timeout =
        std::chrono::milliseconds(static_cast<int64_t>(c.config.write_timeout_s * 1000.0));
    every(std::chrono::milliseconds(500), [this, timeout] {
      std::lock_guard<std::mutex> g(c.streams_mu);
      const Clock::time_point now = Clock::now();
      for (GenerateReactor* r : c.streams) r->cancel_if_stalled(now, timeout);
    });
  }
  std::unique_ptr<GenerationService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  int port = 0;
  std::once_flag drained;
};

engine::EngineOptions engine_options(const ModelEntry& e, const std::string& device) {
  engine::EngineOptions o;
  o.bundle = e.bundle;
  o.device = device;
  o.dtype = e.dtype;
  o.memory_limit_gib = e.memory_limit_gib;
  o.cuda_graphs = e.cuda_graphs;
  o.log = [model = e.name, device](const std::string& msg, const std::string& key) {
    log(level_enum::info, msg, {{"model", model}, {"device", device}, {"graph_key", key}});
  };
  return o;
}

Server::Server(ServerConfig config) : impl_(std::make_unique<Impl>()) {
  Context& c = impl_->c;
  c.config = std::move(config);
  c.default_model =
      c.config.default_model.empty() ? c.config.models.front().name : c.config.default_model;
  std::vector<std::string> names, devices;
  for (const ModelEntry& e : c.config.models) {
    names.push_back(e.name);
    for (const auto& d : e.devices) devices.push_back(d);
  }
  if (c.config.auth.enabled()) {
    c.auth = std::make_unique<Auth>(c.config.auth.api_keys_file, c.config.auth.api_keys_env);
    log(level_enum::info, "api keys loaded",
        {{"source",
          c.config.auth.api_keys_file.empty() ? "GRAT_API_KEYS" : c.config.auth.api_keys_file},
         num("tenants", static_cast<int64_t>(c.auth->tenants()))});
  }
  c.metrics = std::make_shared<Metrics>(names, devices);
  if (!c.config.metrics_listen.empty()) c.metrics->expose(c.config.metrics_listen);
  for (const auto& d : devices) c.metrics->gpu_memory(d, 0.0);
  c.scheduler = std::make_unique<scheduler::Scheduler>(c.metrics);
  for (const ModelEntry& e : c.config.models) {
    std::vector<std::unique_ptr<scheduler::Executor>> executors;
    Model m;
    m.entry = e;
    for (const std::string& device : e.devices) {
      const auto t0 = Clock::now();
      auto engine = engine::Engine::load(engine_options(e, device));
      log(level_enum::info, "model loaded",
          {{"model", e.name},
           {"bundle", e.bundle},
           {"device", device},
           num("seconds", std::chrono::duration<double>(Clock::now() - t0).count())});
      if (executors.empty()) m.limits.manifest = engine->manifest();
      if (e.inject_oom_at_step >= 0) engine->inject_oom_at_step(e.inject_oom_at_step);
      if (e.inject_hang_at_step >= 0)
        engine->inject_hang_at_step(e.inject_hang_at_step, e.inject_hang_s);
      if (e.inject_device_error_at_step >= 0) {
        engine->inject_device_error_at_step(e.inject_device_error_at_step);
      }
      executors.push_back(scheduler::make_engine_executor(std::move(engine)));
    }
    m.limits.max_prompt_bytes = e.max_prompt_bytes;
    scheduler::ModelConfig mc;
    mc.name = e.name;
    mc.max_queue = e.max_queue;
    mc.max_batch = e.max_batch;
    mc.max_batch_delay = std::chrono::milliseconds(e.max_batch_delay_ms);
    c.scheduler->add_model(mc, std::move(executors));
    c.models.emplace(e.name, std::move(m));
  }
}

Server::~Server() {
  impl_->stop_periodic();
  if (impl_->grpc_server) impl_->grpc_server->Shutdown(std::chrono::system_clock::now());
}

void Server::start() {
  Context& c = impl_->c;
  c.scheduler->start();
  impl_->sample_memory();
  impl_->sweep_streams();
  impl_->service = std::make_unique<GenerationService>(c);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder b;
  if (!c.config.reflection) b.SetOption(std::make_unique<WithoutReflection>());
  b.AddListeningPort(c.config.listen, server_credentials(c.config.tls), &impl_->port);
  b.RegisterService(impl_->service.get());
  b.SetMaxReceiveMessageSize(static_cast<int>(c.config.max_receive_bytes));
  // Dead peers are found by keepalive pings; connections can be aged out so clients
  // re-resolve and spread over replicas (0: off).
  const auto ms = [](double s) { return static_cast<int>(s * 1000.0); };
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(c.config.keepalive_time_s));
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ms(c.config.keepalive_timeout_s));
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (c.config.max_connection_age_s > 0) {
    b.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(c.config.max_connection_age_s));
    b.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                         ms(c.config.max_connection_age_grace_s));
  }
  impl_->grpc_server = b.BuildAndStart();
  if (!impl_->grpc_server || impl_->port == 0) {
    throw std::runtime_error("cannot listen on " + c.config.listen);
  }
  auto* health = impl_->grpc_server->GetHealthCheckService();
  health->SetServingStatus("", true);
  for (const auto& [name, m] : c.models) health->SetServingStatus(name, true);
  health->SetServingStatus("grat.v1.Generation", true);
  health->SetServingStatus(kLivenessService, true);
  impl_->watch_workers();
  log(level_enum::info, "serving",
      {{"listen", c.config.listen},
       {"tls", !c.config.tls.enabled()          ? "off"
               : c.config.tls.client_ca.empty() ? "tls"
                                                : "mtls"},
       {"auth", c.auth ? "api keys" : "off"},
       num("port", int64_t{impl_->port}),
       {"metrics", c.config.metrics_listen},
       {"default_model", c.default_model}});
}

int Server::port() const { return impl_->port; }

void Server::on_fatal(std::function<void()> fatal) { impl_->fatal = std::move(fatal); }

std::string Server::reload_keys() {
  if (!impl_->c.auth) return "";
  const std::string err = impl_->c.auth->reload();
  if (err.empty()) {
    log(level_enum::info, "api keys reloaded",
        {num("tenants", static_cast<int64_t>(impl_->c.auth->tenants()))});
  } else {
    log(level_enum::err, "api keys not reloaded; the previous keys stay", {{"error", err}});
  }
  return err;
}

void Server::drain(double timeout_s) {
  std::call_once(impl_->drained, [this, timeout_s] {
    Context& c = impl_->c;
    const double drain_s = timeout_s >= 0 ? timeout_s : c.config.drain_timeout_s;
    c.draining.store(true);
    impl_->set_ready(false);
    log(level_enum::info, "draining", {num("timeout_s", drain_s)});
    const auto t0 = Clock::now();
    c.scheduler->drain(std::chrono::milliseconds(static_cast<int64_t>(drain_s * 1000.0)));
    log(level_enum::info, "drained",
        {num("seconds", std::chrono::duration<double>(Clock::now() - t0).count())});
    // Streams of drained jobs get a moment to deliver their last messages.
    if (impl_->grpc_server) {
      impl_->grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    }
  });
}

void Server::wait() {
  if (impl_->grpc_server) impl_->grpc_server->Wait();
}

}  // namespace grat::server
