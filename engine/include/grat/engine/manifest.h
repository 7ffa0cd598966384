// model.yaml of a model bundle (written by models/export.py; same rules as
// models/bundle.py). Loading refuses unknown keys, missing keys, wrong types, bad values and
// missing files, with a message naming the key. Image bundles (kind image, architecture flux)
// and video bundles (kind video, architecture hunyuan) differ in the text, defaults and files
// tables; fields of the other kind stay zero.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace grat::engine {

class BundleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Manifest {
  std::string folder;  // absolute or as given
  int format = 0;
  std::string name, kind, architecture;
  int64_t latent_channels = 0, vae_scale = 0, patch = 0;
  int64_t vae_temporal_scale = 1;  // video: frames per latent frame (after the first)
  struct Text {
    int64_t t5_max_length = 0, clip_max_length = 0;
    // Video: prompt tokens after the crop, and the prompt template's length before the prompt.
    int64_t llm_max_length = 0, llm_crop_start = 0;
    std::string llm_template;  // "{}" marks the prompt
  } text;
  struct Vae {
    double scaling_factor = 0, shift_factor = 0;
  } vae;
  struct Defaults {
    int64_t steps = 0;
    double guidance = 0, shift_base = 0, shift_max = 0;  // image: resolution-dependent shift
    double shift = 0;                                    // video: one fixed flow shift
    bool true_cfg = false;
    int64_t frames = 1, fps = 0;  // video
  } defaults;
  struct Grat {
    std::string pattern;
    std::vector<int64_t> group;
    int64_t radius = 1;
  } grat;
  struct Limits {
    int64_t min_side = 0, max_side = 0, side_multiple = 0, max_pixels = 0, min_steps = 0,
            max_steps = 0, max_frames = 0, max_prompt_tokens = 0;
    int64_t max_video_pixels = 0;  // video: frames x width x height
  } limits;
  // Optional: the measured peak device memory of one request by its transformer tokens (the
  // token grid's product), weights included, so a request that cannot fit is refused up front.
  struct Memory {
    std::string measured_on;                           // e.g. "NVIDIA H200"
    std::vector<std::pair<int64_t, double>> peak_gib;  // (tokens, GiB); tokens increasing
    // Peak GiB at `tokens` (a batch: the sum over its items): linear between the measured
    // points, the first point's value below it, the last segment's slope beyond it.
    double estimate_gib(int64_t tokens) const;
    bool empty() const { return peak_gib.empty(); }
  } memory;
  std::map<std::string, std::string> files;  // role -> file name inside the bundle

  bool is_video() const { return kind == "video"; }

  // Absolute path of a file role; throws BundleError for an unknown role.
  std::string path(const std::string& role) const;
};

// Parses and validates <folder>/model.yaml and checks that every listed file exists.
Manifest load_manifest(const std::string& folder);

}  // namespace grat::engine
