// API keys and tenants. A key table (YAML; from a file reloaded on SIGHUP, or the GRAT_API_KEYS
// environment variable) names each tenant, the SHA-256 of its keys, and its limits:
//
//   tenants:
//     - name: team-a
//       keys_sha256: [<64 hex digits>, ...]   # sha256 of each key; several allow rotation
//       max_priority: 10           # requests above it are refused (PERMISSION_DENIED)
//       max_concurrent_jobs: 4     # queued + running; beyond it RESOURCE_EXHAUSTED
//       max_cost: 2.0e9            # width x height x frames x steps of one request; 0: none
//
// Clients send `authorization: Bearer <key>`. Keys are never stored, only their hashes.
// Thread-safe: lookups, quota slots and reloads may happen on any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace grat::server {

struct Tenant {
  std::string name;
  int32_t max_priority = 0;
  int64_t max_concurrent_jobs = 1;
  double max_cost = 0;  // 0: no per-request ceiling
};

// Parsed key table: hash (hex) -> tenant. Throws std::runtime_error naming the bad key.
struct KeyTable {
  std::map<std::string, std::shared_ptr<const Tenant>> by_hash;
  size_t tenants = 0;
  static KeyTable parse(const std::string& yaml_text, const std::string& source);
};

std::string sha256_hex(const std::string& data);

class Auth {
 public:
  // `file`: the key table's path (reloadable); else `env_text` (GRAT_API_KEYS). Throws if the
  // first load fails.
  Auth(std::string file, std::string env_text);

  // Re-reads the file; on error keeps the current table and returns the message ("" if ok).
  std::string reload();

  // The tenant of an `authorization` metadata value ("Bearer <key>"), or null.
  std::shared_ptr<const Tenant> authenticate(const std::string& authorization) const;

  // A held slot of the tenant's max_concurrent_jobs; released when the last copy goes.
  // Null when the tenant is at its quota.
  std::shared_ptr<void> acquire(const std::shared_ptr<const Tenant>& tenant);
  int64_t active(const std::string& tenant) const;

  // Which tenant submitted a job (for cancel); set once accepted, erased when it ends.
  void own(const std::string& job_id, const std::string& tenant);
  void disown(const std::string& job_id);
  std::string owner(const std::string& job_id) const;  // "" if unknown

  size_t tenants() const;

 private:
  std::string file_;
  mutable std::mutex mu_;
  KeyTable table_;
  std::map<std::string, int64_t> active_;
  std::map<std::string, std::string> owners_;
};

}  // namespace grat::server
