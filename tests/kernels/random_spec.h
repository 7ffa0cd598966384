// Random small GRAT layouts for property tests.
#pragma once

#include <random>
#include <sstream>

#include "dense_reference.h"

namespace grat::test {

inline Spec random_spec(std::mt19937_64& rng, int64_t max_image = 320) {
  auto uni = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  Spec s;
  do {
    const bool three = uni(0, 1) == 1;
    s.grid = three ? std::vector<int64_t>{uni(1, 5), uni(1, 10), uni(1, 10)}
                   : std::vector<int64_t>{uni(1, 20), uni(1, 20)};
  } while (s.image() > max_image);
  s.group.clear();
  for (int64_t g : s.grid) s.group.push_back(uni(1, g));
  const char* patterns[] = {"full", "B", "X"};
  s.pattern = patterns[uni(0, 2)];
  s.radius = uni(1, 2);
  s.text = uni(0, 3) == 0 ? 0 : uni(1, 24);
  s.text_first = uni(0, 1) == 1;
  s.batch = uni(1, 3);
  s.heads = uni(1, 4);
  const int64_t dims[] = {4, 8, 16, 32, 64};
  s.dim = dims[uni(0, 4)];
  switch (uni(0, 2)) {
    case 0:
      break;
    case 1:
      s.valid = {uni(0, s.text)};
      break;
    default:
      for (int64_t b = 0; b < s.batch; ++b) s.valid.push_back(uni(0, s.text));
  }
  return s;
}

inline std::string describe(const Spec& s) {
  std::ostringstream o;
  auto list = [&](const std::vector<int64_t>& v) {
    o << "[";
    for (size_t i = 0; i < v.size(); ++i) o << (i ? "," : "") << v[i];
    o << "]";
  };
  o << "grid=";
  list(s.grid);
  o << " group=";
  list(s.group);
  o << " pattern=" << s.pattern << " r=" << s.radius << " text=" << s.text
    << (s.text_first ? " first" : " last") << " valid=";
  list(s.valid);
  o << " B=" << s.batch << " H=" << s.heads << " D=" << s.dim;
  return o.str();
}

}  // namespace grat::test
