// log.h: ballastd's log: one line per event on stderr, with a level prefix
// journald understands (<N>), so `journalctl -p warning` works unchanged.
#pragma once

#include <string>

namespace ballast {

enum class LogLevel { error = 3, warning = 4, info = 6, debug = 7 };

void log_line(LogLevel level, const std::string& message);

}  // namespace ballast
