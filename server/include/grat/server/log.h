// JSON logs through spdlog: one object per line, {"ts", "level", "msg", fields...}. Every line
// about a job carries its "job_id". Thread-safe (spdlog's default logger is).
#pragma once

#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace grat::server {

// Switches the default spdlog logger to JSON lines on stderr at `level` (a spdlog level name).
void init_json_logging(const std::string& level);

// `value` is written as a JSON string; `raw` fields (numbers, booleans) as they are.
struct Field {
  std::string_view key;
  std::string value;
  bool raw = false;
};
Field num(std::string_view key, double v);
Field num(std::string_view key, int64_t v);

std::string json_escape(std::string_view s);

void log(spdlog::level::level_enum level, std::string_view msg,
         std::initializer_list<Field> fields);

}  // namespace grat::server
