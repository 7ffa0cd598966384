// Schedules against the values diffusers' scheduler produces (make_sigmas_reference.py).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "grat/engine/flow_match.h"

namespace grat::engine {
namespace {

TEST(FlowMatch, MatchesDiffusersSchedules) {
  const char* path = std::getenv("GRAT_SIGMAS_JSON");
  ASSERT_NE(path, nullptr) << "run through ctest (needs the diffusers reference fixture)";
  std::ifstream f(path);
  ASSERT_TRUE(f.good()) << path;
  const nlohmann::json cases = nlohmann::json::parse(f);
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    const int64_t steps = c["steps"];
    std::vector<double> got;
    if (c["kind"] == "flux") {
      const double mu = flux_mu(c["tokens"].get<int64_t>());
      EXPECT_NEAR(mu, c["mu"].get<double>(), 1e-12);
      got = flux_sigmas(steps, mu);
    } else {
      got = shifted_sigmas(steps, c["shift"].get<double>());
    }
    const auto want = c["sigmas"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), want.size()) << c.dump();
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 2e-6) << c["kind"] << " steps=" << steps << " i=" << i;
    }
  }
}

TEST(FlowMatch, SchedulesDecreaseToZero) {
  for (const auto& s : {flux_sigmas(28, flux_mu(4096)), shifted_sigmas(50, 7.0)}) {
    EXPECT_DOUBLE_EQ(s.front(), 1.0);
    EXPECT_DOUBLE_EQ(s.back(), 0.0);
    for (size_t i = 1; i < s.size(); ++i) EXPECT_LT(s[i], s[i - 1]);
  }
  EXPECT_THROW(flux_sigmas(0, 1.0), std::invalid_argument);
}

}  // namespace
}  // namespace grat::engine
