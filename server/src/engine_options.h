// The engine options of one configured model on one device: the seam between the config and
// the engine, apart so tests can check that every engine setting gets through.
#pragma once

#include <string>

#include "grat/engine/engine.h"
#include "grat/server/config.h"

namespace grat::server {

// From the model's entry; the engine's log lines (CUDA graph captures, failures, evictions)
// become the server's JSON lines, naming the model, the device and the graph key.
engine::EngineOptions engine_options(const ModelEntry& e, const std::string& device);

}  // namespace grat::server
