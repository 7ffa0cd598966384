#include "grat/engine/graph_cache.h"

#include <sstream>
#include <utility>

namespace grat::engine {
namespace {

// Failed keys are few in practice; the bound keeps a stream of odd shapes from growing it.
constexpr size_t kMaxFailedKeys = 1024;

void join(std::ostringstream& o, const std::vector<int64_t>& v) {
  for (size_t i = 0; i < v.size(); ++i) o << (i ? "x" : "") << v[i];
}

}  // namespace

int64_t StepGraphKey::tokens() const {
  int64_t n = batch;
  for (int64_t g : grid) n *= g;
  return n;
}

std::string StepGraphKey::str() const {
  // Every field, each behind its own tag, so no two keys print alike.
  std::ostringstream o;
  o << model << "|" << device << "|" << dtype << "|grid=";
  join(o, grid);
  o << "|b=" << batch << "|" << pattern << "|g=";
  join(o, group);
  o << "|r=" << radius << "|text=" << text_tokens << "|valid=";
  join(o, valid_text);
  o << "|cfg=" << true_cfg << "|ge=" << guidance_embeds;
  return o.str();
}

GraphCache::GraphCache(GraphCacheOptions options, Log log)
    : options_(options), log_(std::move(log)) {}

GraphCache::~GraphCache() = default;

CachedGraph* GraphCache::find(const StepGraphKey& key) {
  if (!options_.enabled) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = index_.find(key.str());
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  ++it->second->info.replays;
  ++stats_.hits;
  return it->second->graph.get();
}

bool GraphCache::wants_capture(const StepGraphKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string k = key.str();
  bool backing_off = false;
  if (const auto b = backoff_.find(k); b != backoff_.end()) {
    backing_off = --b->second > 0;
    if (!backing_off) backoff_.erase(b);
  }
  const bool want = options_.enabled && options_.max_graphs > 0 &&
                    (options_.max_tokens <= 0 || key.tokens() <= options_.max_tokens) &&
                    !failed_.count(k) && !backing_off;
  if (!want) ++stats_.eager_steps;
  return want;
}

CachedGraph* GraphCache::capture(const StepGraphKey& key, const CaptureFn& capture) {
  const std::string k = key.str();
  Capture c;
  try {
    c = capture();  // long (a forward or more): not under mu_
    if (!c.graph) throw std::runtime_error("the capture returned no graph");
  } catch (const TransientCaptureError& e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.capture_failures;
      ++stats_.eager_steps;
      backoff_[k] = kTransientCaptureBackoffSteps;
    }
    if (log_) log_(std::string("cuda graph capture failed, graphs dropped: ") + e.what(), k);
    clear();
    return nullptr;
  } catch (const std::exception& e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.capture_failures;
      ++stats_.eager_steps;
      remember_failure(k);
    }
    if (log_) log_(std::string("cuda graph capture failed, this key runs eagerly: ") + e.what(), k);
    return nullptr;
  }
  const double max_bytes = options_.max_gib * double(1ull << 30);
  std::vector<std::string> evicted;
  CachedGraph* out = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.captures;
    stats_.capture_s += c.seconds;
    stats_.last_capture_s = c.seconds;
    if (max_bytes > 0 && double(c.bytes) > max_bytes) {
      remember_failure(k);  // would evict itself every time
    } else {
      if (const auto old = index_.find(k); old != index_.end()) {  // recaptured: replace
        stats_.bytes -= old->second->info.bytes;
        lru_.erase(old->second);
        index_.erase(old);
      }
      Entry e{k, std::move(c.graph), GraphInfo{k, c.bytes, c.seconds, 0}};
      out = e.graph.get();
      lru_.push_front(std::move(e));
      index_[k] = lru_.begin();
      stats_.bytes += c.bytes;
      // Evict past the caps, never the graph just stored.
      while (lru_.size() > 1 && (int64_t(lru_.size()) > options_.max_graphs ||
                                 (max_bytes > 0 && double(stats_.bytes) > max_bytes))) {
        Entry& victim = lru_.back();
        evicted.push_back(victim.key);
        stats_.bytes -= victim.info.bytes;
        ++stats_.evictions;
        index_.erase(victim.key);
        lru_.pop_back();  // destroys the graph: its memory pool goes back to the allocator
      }
    }
    stats_.graphs = int64_t(lru_.size());
  }
  if (log_) {
    std::ostringstream msg;
    msg.precision(3);
    if (out == nullptr) {
      msg << "cuda graph of " << c.bytes / double(1ull << 30)
          << " GiB is over max_gib; this key runs eagerly";
    } else {
      msg << "cuda graph captured in " << c.seconds << " s, holding " << c.bytes / double(1 << 20)
          << " MiB";
    }
    log_(msg.str(), k);
    for (const auto& v : evicted) log_("cuda graph evicted (least recently used)", v);
  }
  return out;
}

void GraphCache::fail(const StepGraphKey& key, const std::string& why) {
  const std::string k = key.str();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (const auto it = index_.find(k); it != index_.end()) {
      stats_.bytes -= it->second->info.bytes;
      lru_.erase(it->second);
      index_.erase(it);
      stats_.graphs = int64_t(lru_.size());
    }
    ++stats_.capture_failures;
    remember_failure(k);
  }
  if (log_) log_("cuda graph dropped, this key runs eagerly: " + why, k);
}

void GraphCache::clear() {
  std::list<Entry> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dropped.swap(lru_);
    index_.clear();
    stats_.graphs = 0;
    stats_.bytes = 0;
  }
  // `dropped` destroys the graphs here, outside the lock.
}

void GraphCache::remember_failure(const std::string& key) {
  if (!failed_.insert(key).second) return;
  failed_order_.push_back(key);
  if (failed_order_.size() > kMaxFailedKeys) {
    failed_.erase(failed_order_.front());
    failed_order_.pop_front();
  }
}

GraphCacheStats GraphCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::vector<GraphInfo> GraphCache::graphs() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<GraphInfo> out;
  for (const Entry& e : lru_) out.push_back(e.info);
  return out;
}

}  // namespace grat::engine
