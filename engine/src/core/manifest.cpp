#include "grat/engine/manifest.h"

#include <yaml-cpp/yaml.h>

#include "grat/pattern.h"

#include <sys/stat.h>

#include <initializer_list>
#include <set>

namespace grat::engine {
namespace {

// POSIX, not std::filesystem: libtorch.so (torch 2.11 wheel) exports its own copies of some
// std::filesystem functions, and a process that links LibTorch may bind to them (one of them
// crashed in a test here).
bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join(const std::string& folder, const std::string& name) {
  if (folder.empty() || folder.back() == '/') return folder + name;
  return folder + "/" + name;
}

[[noreturn]] void fail(const std::string& key, const std::string& msg) {
  throw BundleError("model.yaml." + key + ": " + msg);
}

// Reads a mapping, refusing keys not in `known`.
class Table {
 public:
  Table(const YAML::Node& node, std::string where, std::set<std::string> known)
      : node_(node), where_(std::move(where)) {
    if (!node_.IsMap()) throw BundleError(label("") + "must be a mapping");
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (!known.count(k)) fail(sub(k), "unknown key");
    }
  }

  YAML::Node get(const std::string& key) const {
    const YAML::Node n = node_[key];
    if (!n) fail(sub(key), "missing");
    return n;
  }

  template <typename T>
  T scalar(const std::string& key, const char* type) const {
    const YAML::Node n = get(key);
    if (!n.IsScalar()) fail(sub(key), std::string("expected ") + type);
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail(sub(key), std::string("expected ") + type + ", got '" + n.Scalar() + "'");
    }
  }

  int64_t integer(const std::string& key, int64_t min = INT64_MIN) const {
    const auto v = scalar<int64_t>(key, "int");
    if (v < min) fail(sub(key), "must be >= " + std::to_string(min) + ", got " + std::to_string(v));
    return v;
  }
  double number(const std::string& key) const { return scalar<double>(key, "float"); }
  std::string text(const std::string& key) const { return scalar<std::string>(key, "str"); }
  bool boolean(const std::string& key) const {
    const std::string s = text(key);
    if (s != "true" && s != "false") fail(sub(key), "expected bool, got '" + s + "'");
    return s == "true";
  }
  std::string sub(const std::string& key) const {
    return where_.empty() ? key : where_ + "." + key;
  }

 private:
  std::string label(const std::string&) const {
    return "model.yaml" + (where_.empty() ? "" : "." + where_) + ": ";
  }
  YAML::Node node_;
  std::string where_;
};

const std::vector<std::string> kFileRoles = {
    "transformer", "t5", "clip", "vae_decoder", "t5_tokenizer", "clip_vocab", "clip_merges"};
const std::vector<std::string> kVideoFileRoles = {
    "transformer", "llm", "clip", "vae_decoder", "llm_tokenizer", "clip_vocab", "clip_merges"};

std::set<std::string> with(std::set<std::string> keys, std::initializer_list<const char*> more) {
  for (const char* k : more) keys.insert(k);
  return keys;
}

}  // namespace

double Manifest::Memory::estimate_gib(int64_t tokens) const {
  if (peak_gib.empty()) return 0;
  const auto& p = peak_gib;
  if (tokens <= p.front().first || p.size() == 1) return p.front().second;
  size_t i = 1;  // the segment [i-1, i] holding tokens, or the last one
  while (i + 1 < p.size() && tokens > p[i].first) ++i;
  const double slope =
      (p[i].second - p[i - 1].second) / static_cast<double>(p[i].first - p[i - 1].first);
  return p[i - 1].second + slope * static_cast<double>(tokens - p[i - 1].first);
}

std::string Manifest::path(const std::string& role) const {
  const auto it = files.find(role);
  if (it == files.end()) throw BundleError("model.yaml.files." + role + ": missing");
  return join(folder, it->second);
}

Manifest load_manifest(const std::string& folder) {
  const std::string file = join(folder, "model.yaml");
  if (!is_file(file)) {
    throw BundleError("model.yaml: not found in " + folder);
  }
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::Exception& e) {
    throw BundleError(std::string("model.yaml: not valid YAML: ") + e.what());
  }
  Manifest m;
  m.folder = folder;
  const std::set<std::string> top_keys = {
      "format", "name", "kind",     "architecture", "latent_channels", "vae_scale", "patch",
      "text",   "vae",  "defaults", "grat",         "limits",          "files",     "memory"};
  const bool video =
      root.IsMap() && root["kind"] && root["kind"].IsScalar() && root["kind"].Scalar() == "video";
  const Table top(root, "", video ? with(top_keys, {"vae_temporal_scale"}) : top_keys);
  m.format = static_cast<int>(top.integer("format"));
  if (m.format != 1) fail("format", "expected 1, got " + std::to_string(m.format));
  m.name = top.text("name");
  m.kind = top.text("kind");
  if (m.kind != "image" && m.kind != "video")
    fail("kind", "must be image or video, got '" + m.kind + "'");
  m.architecture = top.text("architecture");
  const std::string arch = video ? "hunyuan" : "flux";
  if (m.architecture != arch) {
    fail("architecture",
         "a " + m.kind + " bundle must be '" + arch + "', got '" + m.architecture + "'");
  }
  m.latent_channels = top.integer("latent_channels", 1);
  m.vae_scale = top.integer("vae_scale", 1);
  m.patch = top.integer("patch", 1);
  if (video) m.vae_temporal_scale = top.integer("vae_temporal_scale", 1);

  if (video) {
    const Table text(top.get("text"), "text",
                     {"llm_max_length", "llm_crop_start", "llm_template", "clip_max_length"});
    m.text.llm_max_length = text.integer("llm_max_length", 1);
    m.text.llm_crop_start = text.integer("llm_crop_start", 0);
    m.text.llm_template = text.text("llm_template");
    const auto slot = m.text.llm_template.find("{}");
    if (slot == std::string::npos ||
        m.text.llm_template.find("{}", slot + 1) != std::string::npos) {
      fail("text.llm_template", "must contain '{}' exactly once");
    }
    m.text.clip_max_length = text.integer("clip_max_length", 1);
  } else {
    const Table text(top.get("text"), "text", {"t5_max_length", "clip_max_length"});
    m.text.t5_max_length = text.integer("t5_max_length", 1);
    m.text.clip_max_length = text.integer("clip_max_length", 1);
  }
  const Table vae(top.get("vae"), "vae", {"scaling_factor", "shift_factor"});
  m.vae.scaling_factor = vae.number("scaling_factor");
  m.vae.shift_factor = vae.number("shift_factor");
  if (video) {
    const Table def(top.get("defaults"), "defaults",
                    {"steps", "guidance", "shift", "true_cfg", "frames", "fps"});
    m.defaults.steps = def.integer("steps", 1);
    m.defaults.guidance = def.number("guidance");
    m.defaults.shift = def.number("shift");
    m.defaults.true_cfg = def.boolean("true_cfg");
    m.defaults.frames = def.integer("frames", 1);
    m.defaults.fps = def.integer("fps", 1);
  } else {
    const Table def(top.get("defaults"), "defaults",
                    {"steps", "guidance", "shift_base", "shift_max", "true_cfg"});
    m.defaults.steps = def.integer("steps", 1);
    m.defaults.guidance = def.number("guidance");
    m.defaults.shift_base = def.number("shift_base");
    m.defaults.shift_max = def.number("shift_max");
    m.defaults.true_cfg = def.boolean("true_cfg");
  }

  const Table grat(top.get("grat"), "grat", {"pattern", "group", "radius"});
  m.grat.pattern = grat.text("pattern");
  // As the kernels spell it (grat/pattern.h), exactly.
  const auto pattern = find_pattern(m.grat.pattern);
  if (!pattern || m.grat.pattern != pattern_name(*pattern)) {
    fail("grat.pattern", "must be full, B or X, got '" + m.grat.pattern + "'");
  }
  const YAML::Node group = grat.get("group");
  const std::string group_rule = video ? "3 positive ints" : "2 positive ints";
  if (!group.IsSequence() || group.size() != (video ? 3u : 2u)) fail("grat.group", group_rule);
  for (const auto& g : group) {
    int64_t v = 0;
    try {
      v = g.as<int64_t>();
    } catch (const YAML::Exception&) {
      fail("grat.group", group_rule);
    }
    if (v < 1) fail("grat.group", group_rule);
    m.grat.group.push_back(v);
  }
  m.grat.radius = grat.integer("radius", 1);

  const std::set<std::string> limit_keys = {"min_side",   "max_side",         "side_multiple",
                                            "max_pixels", "min_steps",        "max_steps",
                                            "max_frames", "max_prompt_tokens"};
  const Table lim(top.get("limits"), "limits",
                  video ? with(limit_keys, {"max_video_pixels"}) : limit_keys);
  auto& L = m.limits;
  L.min_side = lim.integer("min_side", 1);
  L.max_side = lim.integer("max_side", 1);
  L.side_multiple = lim.integer("side_multiple", 1);
  L.max_pixels = lim.integer("max_pixels", 1);
  L.min_steps = lim.integer("min_steps", 1);
  L.max_steps = lim.integer("max_steps", 1);
  L.max_frames = lim.integer("max_frames", 1);
  L.max_prompt_tokens = lim.integer("max_prompt_tokens", 1);
  if (L.min_side > L.max_side) fail("limits.min_side", "must be in [1, max_side]");
  if (L.min_steps > L.max_steps) fail("limits.min_steps", "must be in [1, max_steps]");
  if (m.defaults.steps < L.min_steps || m.defaults.steps > L.max_steps) {
    fail("defaults.steps", "must be within limits.min_steps..max_steps");
  }
  if (video) {
    L.max_video_pixels = lim.integer("max_video_pixels", 1);
    if ((L.max_frames - 1) % 4 != 0) {
      fail("limits.max_frames", "must be 4k+1, got " + std::to_string(L.max_frames));
    }
    const int64_t f = m.defaults.frames;
    if ((f - 1) % 4 != 0 || f > L.max_frames) {
      fail("defaults.frames", "must be 4k+1 in [1, limits.max_frames]; got " + std::to_string(f));
    }
  }

  if (root["memory"]) {
    const Table mem(top.get("memory"), "memory", {"measured_on", "peak_gib"});
    m.memory.measured_on = mem.text("measured_on");
    const YAML::Node points = mem.get("peak_gib");
    const char* rule = "a list of [tokens, GiB] pairs, tokens increasing, GiB > 0";
    if (!points.IsSequence() || points.size() == 0) fail("memory.peak_gib", rule);
    for (const auto& pt : points) {
      std::pair<int64_t, double> v;
      try {
        if (!pt.IsSequence() || pt.size() != 2) fail("memory.peak_gib", rule);
        v = {pt[0].as<int64_t>(), pt[1].as<double>()};
      } catch (const YAML::Exception&) {
        fail("memory.peak_gib", rule);
      }
      const bool increasing = m.memory.peak_gib.empty() || v.first > m.memory.peak_gib.back().first;
      if (v.first < 1 || !(v.second > 0) || !increasing) fail("memory.peak_gib", rule);
      m.memory.peak_gib.push_back(v);
    }
  }

  const auto& roles = video ? kVideoFileRoles : kFileRoles;
  const Table files(top.get("files"), "files", std::set<std::string>(roles.begin(), roles.end()));
  for (const std::string& role : roles) {
    const std::string name = files.text(role);
    if (name.empty() || name[0] == '/' || name.find("..") != std::string::npos) {
      fail("files." + role, "must be a path inside the bundle");
    }
    if (!is_file(join(folder, name))) {
      fail("files." + role, "file " + name + " not found in " + folder);
    }
    m.files[role] = name;
  }
  return m;
}

}  // namespace grat::engine
