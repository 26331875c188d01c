#include "service_notify.h"

#include <systemd/sd-daemon.h>

namespace ballast {

void notify_ready(const std::string& status) {
  sd_notify(0, ("READY=1\nSTATUS=" + status).c_str());
}

void notify_reloading() { sd_notify(0, "RELOADING=1"); }

void notify_stopping() { sd_notify(0, "STOPPING=1"); }

void notify_status(const std::string& status) { sd_notify(0, ("STATUS=" + status).c_str()); }

void notify_watchdog() {
  if (watchdog_enabled(nullptr)) sd_notify(0, "WATCHDOG=1");
}

bool watchdog_enabled(std::chrono::microseconds* interval) {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0) return false;
  if (interval) *interval = std::chrono::microseconds(usec);
  return true;
}

}  // namespace ballast
