#include "grat/server/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <cmath>
#include <cstdio>

namespace grat::server {

void init_json_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("grat");
  logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v})",
                      spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

std::string json_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size() + 2);
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\r':
        o += "\\r";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f || c >= 0x80) {
          // Non-ASCII bytes are escaped one by one, so invalid UTF-8 cannot break the line's
          // JSON (valid UTF-8 is then shown as \u00XX bytes; logs keep messages short).
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o;
}

Field num(std::string_view key, double v) {
  char buf[32];
  if (!std::isfinite(v)) return {key, "null", true};
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return {key, buf, true};
}

Field num(std::string_view key, int64_t v) { return {key, std::to_string(v), true}; }

void log(spdlog::level::level_enum level, std::string_view msg,
         std::initializer_list<Field> fields) {
  auto* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  std::string line = "\"msg\":\"" + json_escape(msg) + "\"";
  for (const Field& f : fields) {
    line += ",\"";
    line += json_escape(f.key);
    line += "\":";
    if (f.raw) {
      line += f.value;
    } else {
      line += '"';
      line += json_escape(f.value);
      line += '"';
    }
  }
  logger->log(level, line);
}

}  // namespace grat::server
