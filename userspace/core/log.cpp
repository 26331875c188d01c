#include "log.h"

#include <cstdio>

namespace ballast {

void log_line(LogLevel level, const std::string& message) {
  const char* name = level == LogLevel::error     ? "error"
                     : level == LogLevel::warning ? "warning"
                     : level == LogLevel::info    ? "info"
                                                  : "debug";
  // One event per line, even when a message (a config's problems) has many.
  size_t start = 0;
  do {
    size_t end = message.find('\n', start);
    if (end == std::string::npos) end = message.size();
    std::fprintf(stderr, "<%d>ballastd %s: %.*s\n", static_cast<int>(level), name,
                 static_cast<int>(end - start), message.data() + start);
    start = end + 1;
  } while (start < message.size());
  std::fflush(stderr);
}

}  // namespace ballast
