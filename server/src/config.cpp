#include "grat/server/config.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace grat::server {
namespace {

// POSIX paths, not std::filesystem: libtorch.so exports its own copies of some
// std::filesystem functions, which a process linking LibTorch may bind to (see
// engine/src/core/manifest.cpp).
std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// A path from the config file: relative ones are relative to the file's folder.
std::string relative_to(const std::string& base_dir, const std::string& path) {
  return path.empty() || path.front() == '/' ? path : join(base_dir, path);
}

std::string parent(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

[[noreturn]] void fail(const std::string& key, const std::string& msg) {
  throw ConfigError("config key '" + key + "': " + msg);
}

// A mapping whose keys must all be known.
class Map {
 public:
  Map(const YAML::Node& node, std::string where, const std::set<std::string>& known)
      : node_(node), where_(std::move(where)) {
    if (!node_.IsMap()) fail(where_.empty() ? "<root>" : where_, "must be a mapping");
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (!known.count(k)) fail(key(k), "unknown key");
    }
  }
  std::string key(const std::string& k) const { return where_.empty() ? k : where_ + "." + k; }
  bool has(const std::string& k) const { return static_cast<bool>(node_[k]); }
  YAML::Node at(const std::string& k) const { return node_[k]; }

  std::string text(const std::string& k) const {
    const YAML::Node n = node_[k];
    if (!n.IsScalar()) fail(key(k), "expected a string");
    return n.Scalar();
  }
  void boolean(const std::string& k, bool& out) const {
    const std::string v = text(k);
    if (v != "true" && v != "false") fail(key(k), "expected true or false, got '" + v + "'");
    out = v == "true";
  }
  int64_t integer(const std::string& k, int64_t lo, int64_t hi) const {
    const YAML::Node n = node_[k];
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) {
      fail(key(k), "expected an integer");
    }
    if (v < lo || v > hi) {
      fail(key(k), "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                       std::to_string(v));
    }
    return v;
  }
  double number(const std::string& k, double lo, double hi) const {
    const YAML::Node n = node_[k];
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !std::isfinite(v)) {
      fail(key(k), "expected a number");
    }
    if (v < lo || v > hi) {
      std::ostringstream o;
      o << "must be in [" << lo << ", " << hi << "], got " << v;
      fail(key(k), o.str());
    }
    return v;
  }

 private:
  YAML::Node node_;
  std::string where_;
};

bool valid_address(const std::string& a) {
  const auto colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == a.size()) return false;
  for (size_t i = colon + 1; i < a.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(a[i]))) return false;
  }
  return std::stol(a.substr(colon + 1)) <= 65535;
}

bool valid_device(const std::string& d) {
  if (d == "cpu" || d == "cuda") return true;
  if (d.rfind("cuda:", 0) != 0 || d.size() == 5) return false;
  for (size_t i = 5; i < d.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(d[i]))) return false;
  }
  return true;
}

const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                       "error", "critical", "off"};

bool loopback(const std::string& address) {
  const std::string host = address.substr(0, address.rfind(':'));
  return host == "localhost" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

void check_top(const ServerConfig& c) {
  if (!valid_address(c.listen)) fail("listen", "expected host:port, got '" + c.listen + "'");
  if (!c.tls.enabled() && !c.tls.plaintext && !loopback(c.listen)) {
    fail("tls", "serving on " + c.listen +
                    " (not loopback) needs tls.cert and tls.key, or tls.plaintext: true to "
                    "serve without TLS (e.g. behind a TLS-terminating proxy)");
  }
  if (!c.metrics_listen.empty() && !valid_address(c.metrics_listen)) {
    fail("metrics_listen", "expected host:port or \"\", got '" + c.metrics_listen + "'");
  }
  if (!kLevels.count(c.log_level)) {
    fail("log_level",
         "expected trace|debug|info|warn|error|critical|off, got '" + c.log_level + "'");
  }
  if (c.models.empty()) fail("models", "at least one model is required");
  std::set<std::string> names;
  for (size_t i = 0; i < c.models.size(); ++i) {
    const std::string k = "models[" + std::to_string(i) + "]";
    if (!names.insert(c.models[i].name).second) {
      fail(k + ".name", "duplicate model name '" + c.models[i].name + "'");
    }
  }
  if (!c.default_model.empty() && !names.count(c.default_model)) {
    fail("default_model", "no model named '" + c.default_model + "'");
  }
}

ModelEntry parse_model(const YAML::Node& node, const std::string& where,
                       const std::string& base_dir, bool allow_test_settings) {
  const Map m(node, where,
              {"name", "bundle", "devices", "dtype", "max_queue", "max_batch", "max_batch_delay_ms",
               "max_prompt_bytes", "memory_limit_gib", "cuda_graphs", "inject_oom_at_step",
               "inject_hang_at_step", "inject_hang_s", "inject_device_error_at_step"});
  ModelEntry e;
  if (!m.has("name")) fail(m.key("name"), "missing");
  e.name = m.text("name");
  if (e.name.empty() || e.name.size() > 128) fail(m.key("name"), "must be 1..128 characters");
  for (char ch : e.name) {
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) {
      fail(m.key("name"), "may hold only letters, digits, '-', '_' and '.'");
    }
  }
  if (!m.has("bundle")) fail(m.key("bundle"), "missing");
  e.bundle = m.text("bundle");
  if (e.bundle.empty()) fail(m.key("bundle"), "must not be empty");
  e.bundle = relative_to(base_dir, e.bundle);
  if (m.has("devices")) {
    const YAML::Node d = m.at("devices");
    if (!d.IsSequence() || d.size() == 0) fail(m.key("devices"), "expected a non-empty list");
    for (size_t i = 0; i < d.size(); ++i) {
      const std::string k = m.key("devices") + "[" + std::to_string(i) + "]";
      if (!d[i].IsScalar() || !valid_device(d[i].Scalar())) {
        fail(k, "expected cpu, cuda or cuda:N");
      }
      e.devices.push_back(d[i].Scalar());
    }
  } else {
    e.devices = {"cpu"};
  }
  if (m.has("dtype")) {
    e.dtype = m.text("dtype");
    if (e.dtype != "auto" && e.dtype != "bf16" && e.dtype != "fp16" && e.dtype != "fp32") {
      fail(m.key("dtype"), "expected auto|bf16|fp16|fp32, got '" + e.dtype + "'");
    }
  }
  // >= 1: the scheduler needs room for one waiting job (0 passed --check-config, then the
  // server aborted at start).
  if (m.has("max_queue")) e.max_queue = m.integer("max_queue", 1, 1000000);
  if (m.has("max_batch")) e.max_batch = m.integer("max_batch", 1, 256);
  if (m.has("max_batch_delay_ms")) e.max_batch_delay_ms = m.integer("max_batch_delay_ms", 0, 60000);
  if (m.has("max_prompt_bytes")) e.max_prompt_bytes = m.integer("max_prompt_bytes", 1, 1 << 20);
  if (m.has("memory_limit_gib")) e.memory_limit_gib = m.number("memory_limit_gib", 0, 1 << 20);
  if (m.has("cuda_graphs")) {
    const Map g(m.at("cuda_graphs"), m.key("cuda_graphs"),
                {"enabled", "max_graphs", "max_tokens", "max_gib"});
    engine::GraphCacheOptions& o = e.cuda_graphs;
    if (g.has("enabled")) g.boolean("enabled", o.enabled);
    if (g.has("max_graphs")) o.max_graphs = g.integer("max_graphs", 0, 1024);
    if (g.has("max_tokens")) o.max_tokens = g.integer("max_tokens", 0, int64_t{1} << 30);
    if (g.has("max_gib")) o.max_gib = g.number("max_gib", 0, 1 << 20);
  }
  // Test hooks: -1 (off) anywhere, a step only in builds with GRAT_TEST_HOOKS.
  for (const auto& [k, step] :
       {std::pair<const char*, int64_t*>{"inject_oom_at_step", &e.inject_oom_at_step},
        {"inject_hang_at_step", &e.inject_hang_at_step},
        {"inject_device_error_at_step", &e.inject_device_error_at_step}}) {
    if (!m.has(k)) continue;
    *step = m.integer(k, -1, 1000000);
    if (*step >= 0 && !allow_test_settings) {
      fail(m.key(k), "is a test-only setting; this server was built without GRAT_TEST_HOOKS");
    }
  }
  if (m.has("inject_hang_s")) e.inject_hang_s = m.number("inject_hang_s", 0, 86400);
  return e;
}

// A bundle the build makes: $env, else the build's path (`built`), else bundles/<folder> next
// to the executable's repository or the working directory.
std::string built_bundle(const std::string& executable_path, const char* env_name,
                         const char* built, const std::string& folder) {
  if (const char* env = std::getenv(env_name); env && *env) return env;
  std::vector<std::string> candidates;
  if (built && *built) candidates.emplace_back(built);
  char buf[PATH_MAX];
  const std::string rel = "bundles/" + folder;
  if (!executable_path.empty() && ::realpath(executable_path.c_str(), buf)) {
    std::string dir = parent(buf);
    for (int up = 0; up < 4 && !dir.empty() && dir != "/"; ++up, dir = parent(dir)) {
      candidates.push_back(join(dir, rel));
    }
  }
  if (::getcwd(buf, sizeof buf)) candidates.push_back(join(buf, rel));
  candidates.push_back(rel);
  for (const auto& c : candidates) {
    if (is_file(join(c, "model.yaml"))) return c;
  }
  return candidates.front();
}

#ifdef GRAT_DEFAULT_BUNDLE
constexpr const char* kBuiltBundle = GRAT_DEFAULT_BUNDLE;
#else
constexpr const char* kBuiltBundle = nullptr;
#endif
#ifdef GRAT_DEFAULT_VIDEO_BUNDLE
constexpr const char* kBuiltVideoBundle = GRAT_DEFAULT_VIDEO_BUNDLE;
#else
constexpr const char* kBuiltVideoBundle = nullptr;
#endif

}  // namespace

bool test_hooks_built() {
#if GRAT_TEST_HOOKS
  return true;
#else
  return false;
#endif
}

ServerConfig parse_config(const std::string& yaml_text, const std::string& base_dir,
                          bool allow_test_settings) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(std::string("config is not valid YAML: ") + e.what());
  }
  if (!root || root.IsNull()) throw ConfigError("config is empty");
  const Map m(root, "",
              {"listen", "metrics_listen", "drain_timeout_s", "default_model", "log_level",
               "chunk_bytes", "max_receive_bytes", "models", "tls", "auth", "reflection",
               "write_timeout_s", "max_buffered_bytes", "keepalive_time_s", "keepalive_timeout_s",
               "max_connection_age_s", "max_connection_age_grace_s", "watchdog"});
  ServerConfig c;
  if (m.has("listen")) c.listen = m.text("listen");
  if (m.has("metrics_listen")) {
    c.metrics_listen = m.at("metrics_listen").IsNull() ? "" : m.text("metrics_listen");
  }
  if (m.has("drain_timeout_s")) c.drain_timeout_s = m.number("drain_timeout_s", 0, 86400);
  if (m.has("default_model")) c.default_model = m.text("default_model");
  if (m.has("log_level")) c.log_level = m.text("log_level");
  if (m.has("chunk_bytes")) c.chunk_bytes = m.integer("chunk_bytes", 1024, 3 << 20);
  if (m.has("max_receive_bytes")) {
    c.max_receive_bytes = m.integer("max_receive_bytes", 1024, 64 << 20);
  }
  if (m.has("write_timeout_s")) c.write_timeout_s = m.number("write_timeout_s", 0, 86400);
  if (m.has("max_buffered_bytes")) {
    c.max_buffered_bytes = m.integer("max_buffered_bytes", 1 << 20, int64_t{1} << 40);
  }
  if (m.has("keepalive_time_s")) c.keepalive_time_s = m.number("keepalive_time_s", 1, 86400);
  if (m.has("keepalive_timeout_s")) {
    c.keepalive_timeout_s = m.number("keepalive_timeout_s", 1, 3600);
  }
  if (m.has("max_connection_age_s")) {
    c.max_connection_age_s = m.number("max_connection_age_s", 0, 86400 * 30);
  }
  if (m.has("max_connection_age_grace_s")) {
    c.max_connection_age_grace_s = m.number("max_connection_age_grace_s", 0, 86400);
  }
  if (m.has("watchdog")) {
    const Map w(m.at("watchdog"), "watchdog", {"stall_factor", "min_stall_s"});
    if (w.has("stall_factor")) c.watchdog_stall_factor = w.number("stall_factor", 1, 1000);
    if (w.has("min_stall_s")) c.watchdog_min_stall_s = w.number("min_stall_s", 0.5, 86400);
  }
  if (m.has("tls")) {
    const Map t(m.at("tls"), "tls", {"plaintext", "cert", "key", "client_ca"});
    if (t.has("plaintext")) t.boolean("plaintext", c.tls.plaintext);
    if (t.has("cert")) c.tls.cert = relative_to(base_dir, t.text("cert"));
    if (t.has("key")) c.tls.key = relative_to(base_dir, t.text("key"));
    if (t.has("client_ca")) c.tls.client_ca = relative_to(base_dir, t.text("client_ca"));
    if (c.tls.cert.empty() != c.tls.key.empty()) fail("tls", "cert and key go together");
    if (!c.tls.client_ca.empty() && !c.tls.enabled()) fail("tls.client_ca", "needs cert and key");
    if (c.tls.plaintext && c.tls.enabled()) fail("tls.plaintext", "cannot go with cert and key");
  }
  if (m.has("auth")) {
    const Map a(m.at("auth"), "auth", {"api_keys_file"});
    if (a.has("api_keys_file"))
      c.auth.api_keys_file = relative_to(base_dir, a.text("api_keys_file"));
  }
  if (m.has("reflection")) m.boolean("reflection", c.reflection);
  if (!m.has("models")) fail("models", "missing");
  const YAML::Node models = m.at("models");
  if (!models.IsSequence()) fail("models", "expected a list of models");
  for (size_t i = 0; i < models.size(); ++i) {
    c.models.push_back(
        parse_model(models[i], "models[" + std::to_string(i) + "]", base_dir, allow_test_settings));
  }
  check_top(c);
  return c;
}

ServerConfig load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read config file '" + path + "'");
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_config(buf.str(), parent(path));
}

ServerConfig default_config(const std::string& executable_path) {
  ServerConfig c;
  ModelEntry e;
  e.name = "flux-shapes";
  e.bundle = built_bundle(executable_path, "GRAT_SHAPES_BUNDLE", kBuiltBundle, "flux-shapes");
  e.devices = {"cpu"};
  c.models.push_back(e);
  return c;
}

ModelEntry tiny_video_model(const std::string& executable_path) {
  ModelEntry e;
  e.name = "hunyuan-video-tiny";
  e.bundle = built_bundle(executable_path, "GRAT_TINY_VIDEO_BUNDLE", kBuiltVideoBundle,
                          "hunyuan-video-tiny");
  e.devices = {"cpu"};
  return e;
}

std::string model_path_env(const std::string& model_name) {
  std::string v = "GRAT_MODEL_";
  for (char ch : model_name) {
    const auto u = static_cast<unsigned char>(ch);
    v += std::isalnum(u) ? static_cast<char>(std::toupper(u)) : '_';
  }
  return v + "_PATH";
}

void apply_env_overrides(ServerConfig& c, const char* (*getenv_fn)(const char*)) {
  const auto get = [&](const char* name) -> const char* {
    return getenv_fn ? getenv_fn(name) : std::getenv(name);
  };
  if (const char* v = get("GRAT_LISTEN"); v && *v) c.listen = v;
  if (const char* v = get("GRAT_METRICS_LISTEN"); v) c.metrics_listen = v;
  if (const char* v = get("GRAT_LOG_LEVEL"); v && *v) c.log_level = v;
  if (const char* v = get("GRAT_API_KEYS"); v && *v) c.auth.api_keys_env = v;
  for (ModelEntry& e : c.models) {
    const std::string key = model_path_env(e.name);
    if (const char* v = get(key.c_str()); v && *v) e.bundle = v;
  }
  try {
    check_top(c);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(e.what()) + " (after environment overrides)");
  }
}

}  // namespace grat::server
