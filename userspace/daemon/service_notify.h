// service_notify.h: what ballastd tells its service manager (systemd's
// sd_notify protocol, through libsystemd): ready once the program is
// attached and the control socket serves, reloading and ready again around
// a SIGHUP, stopping, and a watchdog ping every turn of the heartbeat.
// Without NOTIFY_SOCKET (not started by systemd) every call does nothing.
#pragma once

#include <chrono>
#include <string>

namespace ballast {

void notify_ready(const std::string& status);
void notify_reloading();
void notify_stopping();
void notify_status(const std::string& status);
// WATCHDOG=1, when the manager asked for pings (WatchdogSec=).
void notify_watchdog();
// Whether the manager asked for pings, and how often they are due.
bool watchdog_enabled(std::chrono::microseconds* interval);

}  // namespace ballast
