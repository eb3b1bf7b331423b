#pragma once
/// What the engine tells its operator: start, stop, the disk refusing writes and taking them again,
/// refused receipts, notifications that could not be sent for a reason of herald's own. A sink
/// given in EngineOptions receives each record; the Python binding hands them to the `herald`
/// logger (and `herald serve` writes them as JSON lines). Never a secret in a message or a field.
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace herald {

enum class LogLevel { debug, info, warning, error };

/// Named values that travel with a message (rendered as JSON fields under serve).
using LogFields = std::vector<std::pair<std::string, std::string>>;

/// Called from the engine's threads (the loop, the store's writer, the closing caller). It must not
/// block for long and must not call back into the engine.
using LogSink = std::function<void(LogLevel level, const std::string& message, const LogFields& fields)>;

}  // namespace herald
