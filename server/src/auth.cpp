#include "grat/server/auth.h"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace grat::server {
namespace {

[[noreturn]] void bad(const std::string& source, const std::string& key, const std::string& msg) {
  throw std::runtime_error(source + ": " + key + ": " + msg);
}

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read API key file '" + path + "'");
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

KeyTable KeyTable::parse(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(source + ": not valid YAML: " + e.what());
  }
  if (!root.IsMap() || !root["tenants"] || !root["tenants"].IsSequence()) {
    bad(source, "tenants", "expected a list of tenants");
  }
  for (const auto& kv : root) {
    if (kv.first.as<std::string>() != "tenants")
      bad(source, kv.first.as<std::string>(), "unknown key");
  }
  KeyTable t;
  std::set<std::string> names;
  const YAML::Node list = root["tenants"];
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node n = list[i];
    const std::string at = "tenants[" + std::to_string(i) + "]";
    if (!n.IsMap()) bad(source, at, "expected a mapping");
    static const std::set<std::string> known = {"name", "keys_sha256", "max_priority",
                                                "max_concurrent_jobs", "max_cost"};
    for (const auto& kv : n) {
      const std::string k = kv.first.as<std::string>();
      if (!known.count(k)) bad(source, at + "." + k, "unknown key");
    }
    auto tenant = std::make_shared<Tenant>();
    try {
      if (!n["name"]) bad(source, at + ".name", "missing");
      tenant->name = n["name"].as<std::string>();
      if (tenant->name.empty() || !names.insert(tenant->name).second) {
        bad(source, at + ".name", "must be non-empty and unique");
      }
      if (n["max_priority"]) tenant->max_priority = n["max_priority"].as<int32_t>();
      if (n["max_concurrent_jobs"]) {
        tenant->max_concurrent_jobs = n["max_concurrent_jobs"].as<int64_t>();
      }
      if (tenant->max_concurrent_jobs < 1) bad(source, at + ".max_concurrent_jobs", "must be >= 1");
      if (n["max_cost"]) tenant->max_cost = n["max_cost"].as<double>();
      if (!(tenant->max_cost >= 0)) bad(source, at + ".max_cost", "must be >= 0");
    } catch (const YAML::Exception& e) {
      bad(source, at, std::string("bad value: ") + e.what());
    }
    const YAML::Node keys = n["keys_sha256"];
    if (!keys || !keys.IsSequence() || keys.size() == 0) {
      bad(source, at + ".keys_sha256", "expected a list of SHA-256 hashes (64 hex digits)");
    }
    for (const auto& k : keys) {
      const std::string h = k.IsScalar() ? k.Scalar() : "";
      if (!is_hex64(h))
        bad(source, at + ".keys_sha256", "'" + h + "' is not 64 lower-case hex digits");
      if (!t.by_hash.emplace(h, tenant).second)
        bad(source, at + ".keys_sha256", "a key is listed twice");
    }
    ++t.tenants;
  }
  return t;
}

Auth::Auth(std::string file, std::string env_text) : file_(std::move(file)) {
  table_ = file_.empty() ? KeyTable::parse(env_text, "GRAT_API_KEYS")
                         : KeyTable::parse(read_file(file_), file_);
}

std::string Auth::reload() {
  if (file_.empty()) return "";  // the environment does not change under a running process
  try {
    KeyTable t = KeyTable::parse(read_file(file_), file_);
    std::lock_guard<std::mutex> lk(mu_);
    table_ = std::move(t);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::shared_ptr<const Tenant> Auth::authenticate(const std::string& authorization) const {
  static const std::string kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() || authorization.compare(0, kBearer.size(), kBearer)) {
    return nullptr;
  }
  const std::string hash = sha256_hex(authorization.substr(kBearer.size()));
  std::lock_guard<std::mutex> lk(mu_);
  const auto it = table_.by_hash.find(hash);
  return it == table_.by_hash.end() ? nullptr : it->second;
}

std::shared_ptr<void> Auth::acquire(const std::shared_ptr<const Tenant>& tenant) {
  std::lock_guard<std::mutex> lk(mu_);
  int64_t& n = active_[tenant->name];
  if (n >= tenant->max_concurrent_jobs) return nullptr;
  ++n;
  const std::string name = tenant->name;
  return std::shared_ptr<void>(new char(0), [this, name](void* p) {
    delete static_cast<char*>(p);
    std::lock_guard<std::mutex> g(mu_);
    --active_[name];
  });
}

int64_t Auth::active(const std::string& tenant) const {
  std::lock_guard<std::mutex> lk(mu_);
  const auto it = active_.find(tenant);
  return it == active_.end() ? 0 : it->second;
}

void Auth::own(const std::string& job_id, const std::string& tenant) {
  std::lock_guard<std::mutex> lk(mu_);
  owners_[job_id] = tenant;
}

void Auth::disown(const std::string& job_id) {
  std::lock_guard<std::mutex> lk(mu_);
  owners_.erase(job_id);
}

std::string Auth::owner(const std::string& job_id) const {
  std::lock_guard<std::mutex> lk(mu_);
  const auto it = owners_.find(job_id);
  return it == owners_.end() ? "" : it->second;
}

size_t Auth::tenants() const {
  std::lock_guard<std::mutex> lk(mu_);
  return table_.tenants;
}

}  // namespace grat::server
