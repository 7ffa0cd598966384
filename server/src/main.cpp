// grat_server: serves the models of a YAML config (or, with no arguments, the default image
// model trained here on the CPU on localhost:50051; --tiny-video adds the tiny video bundle).
// SIGTERM/SIGINT drain and exit 0.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "grat/server/config.h"
#include "grat/server/log.h"
#include "grat/server/server.h"

namespace {

const char* kUsage =
    "usage: grat_server [--config FILE.yaml | --tiny-video] [--listen HOST:PORT]\n"
    "                   [--metrics-listen HOST:PORT] [--check-config]\n"
    "  --check-config: parse the config (and environment), print it, exit 0 (or 2 naming the\n"
    "  bad key) without loading models.\n"
    "  With no --config: the default image model flux-shapes ($GRAT_SHAPES_BUNDLE or\n"
    "  bundles/flux-shapes: flat shapes, models/train/README.md) on the CPU; --tiny-video also\n"
    "  serves the tiny video bundle as model hunyuan-video-tiny ($GRAT_TINY_VIDEO_BUNDLE or\n"
    "  bundles/hunyuan-video-tiny; flux-shapes stays the default).\n"
    "  Environment: GRAT_LISTEN, GRAT_METRICS_LISTEN, GRAT_LOG_LEVEL, GRAT_MODEL_<NAME>_PATH.\n"
    "  Keys of the config: deploy/config.example.yaml.\n";

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken by sigwait on the main thread; every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);   // reload the API key file
  sigaddset(&signals, SIGUSR1);  // from the watchdog: a device failed
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::string config_path, listen, metrics_listen;
  bool have_metrics_listen = false, check_only = false, tiny_video = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "grat_server: %s needs a value\n%s", a.c_str(), kUsage);
        std::exit(2);
      }
      *out = argv[++i];
    };
    if (a == "--config") {
      value(&config_path);
    } else if (a == "--listen") {
      value(&listen);
    } else if (a == "--metrics-listen") {
      value(&metrics_listen);
      have_metrics_listen = true;
    } else if (a == "--check-config") {
      check_only = true;
    } else if (a == "--tiny-video") {
      tiny_video = true;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "grat_server: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }

  if (tiny_video && !config_path.empty()) {
    std::fprintf(stderr,
                 "grat_server: --tiny-video is for the no-config default; list the video model "
                 "in the config's models instead\n%s",
                 kUsage);
    return 2;
  }
  grat::server::ServerConfig config;
  try {
    config = config_path.empty() ? grat::server::default_config(argv[0])
                                 : grat::server::load_config_file(config_path);
    if (tiny_video) config.models.push_back(grat::server::tiny_video_model(argv[0]));
    grat::server::apply_env_overrides(config);
    if (!listen.empty()) config.listen = listen;
    if (have_metrics_listen) config.metrics_listen = metrics_listen;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "grat_server: %s\n", e.what());
    return 2;
  }
  if (check_only) {
    std::printf("config ok: listen %s, metrics %s, %zu model(s)\n", config.listen.c_str(),
                config.metrics_listen.empty() ? "off" : config.metrics_listen.c_str(),
                config.models.size());
    for (const auto& m : config.models) {
      std::printf("  %s: %s on", m.name.c_str(), m.bundle.c_str());
      for (const auto& d : m.devices) std::printf(" %s", d.c_str());
      std::printf("\n");
    }
    return 0;
  }
  grat::server::init_json_logging(config.log_level);
  // libprotobuf's complaints (e.g. a client's invalid UTF-8 in a string field) become JSON
  // lines at debug level: clients can trigger them at will.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
        grat::server::log(level >= google::protobuf::LOGLEVEL_FATAL ? spdlog::level::critical
                                                                    : spdlog::level::debug,
                          "protobuf", {{"error", message}});
      });

  try {
    grat::server::Server server(config);
    server.on_fatal([] { kill(getpid(), SIGUSR1); });
    server.start();
    int sig = 0;
    for (sigwait(&signals, &sig); sig == SIGHUP; sigwait(&signals, &sig)) server.reload_keys();
    if (sig == SIGUSR1) {
      // A device failed: what runs elsewhere gets a short drain, then exit non-zero so the
      // orchestrator restarts the process (and with it the CUDA context).
      server.drain(std::min(config.drain_timeout_s, 10.0));
      server.wait();
      grat::server::log(spdlog::level::critical, "exit after device failure", {});
      return 3;
    }
    grat::server::log(spdlog::level::info, "signal received",
                      {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    server.drain();
    server.wait();
    grat::server::log(spdlog::level::info, "exit", {});
  } catch (const std::exception& e) {
    grat::server::log(spdlog::level::critical, "fatal", {{"error", e.what()}});
    return 1;
  }
  return 0;
}
