// ballastd: loads and attaches the XDP balancer and keeps its maps in step
// with the config and the control API. It never stops forwarding by itself:
// SIGTERM, an error and a failed start all leave the program attached and
// the maps pinned, for the next ballastd to adopt; `ballastd --cleanup`
// removes them when an operator asks.
//
// Start order (each step can fail without touching what the next ones
// own): validate the config, take the instance lock, open the control
// socket and the metrics listener, load (adopting pinned maps), write the
// config into the maps, and attach last.
#include <grp.h>
#include <net/if.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include "announce.h"
#include "api.h"
#include "audit.h"
#include "balancer_state.h"
#include "bpf_dataplane.h"
#include "change_journal.h"
#include "changelog.h"
#include "change_pipeline.h"
#include "event_loop.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "fd.h"
#include "health.h"
#include "http_server.h"
#include "instance_lock.h"
#include "kernel_routes.h"
#include "loader.h"
#include "log.h"
#include "metrics.h"
#include "service_notify.h"
#include "neighbor.h"
#include "skew.h"

namespace ballast {
namespace {

using Clock = std::chrono::steady_clock;  // (health checks take theirs from SteadyClock)

// How long start-up waits for backend MACs before serving with what it has,
// and how often MACs are looked at afterwards (sooner while some are missing).
constexpr auto kInitialResolveWait = std::chrono::seconds(3);
constexpr auto kRefreshUnresolved = std::chrono::seconds(1);
constexpr auto kRefreshResolved = std::chrono::seconds(10);
// How often skew samples the counters (the window slides by this much).
constexpr auto kSkewSample = std::chrono::seconds(1);
// After a change the audit runs this much later, so that a burst of
// changes (a script, a flapping backend) costs one audit.
constexpr auto kAuditAfterChange = std::chrono::seconds(1);
// How often ballastd writes its sign of life into the pinned meta map.
constexpr auto kHeartbeat = std::chrono::seconds(1);
// A heartbeat this late means ballastd itself did not run meanwhile.
constexpr auto kPauseNoticed = std::chrono::seconds(3);
// While clients are connected, the servers look at their deadlines this
// often even when no byte arrives.
constexpr auto kServerDeadlines = std::chrono::milliseconds(100);

struct Options {
  std::string config_path;
  std::string socket_path = kDefaultSocket;
  std::string pin_dir = "/sys/fs/bpf/ballast";
  std::string run_dir = kDefaultRunDir;
  bool cleanup = false;
  std::string interface;  // --cleanup without --config
  std::string read_group = "ballast";  // "" for none
  std::string admin_group;             // "" for none: root only
};

// The steps of the loop; each one's errors are caught, logged and counted
// on its own (ballast_daemon_errors_total{step}).
constexpr const char* kLoopSteps[] = {"signals",    "control",   "health-checks", "skew",
                                      "metrics",    "audit",     "neighbours",    "heartbeat",
                                      "interface",  "journal",   "flows",         "pins",
                                      "announce"};

std::unique_ptr<HttpServer> open_metrics(const std::string& listen,
                                         HttpServer::Handler handler) {
  if (listen.empty()) return nullptr;
  const auto at = parse_listen_address(listen);
  if (!at) throw Error("metrics.listen: not ADDRESS:PORT: " + listen);
  return std::make_unique<HttpServer>(*at, std::move(handler));
}

class Daemon {
 public:
  // Writes @config into @loader's maps (adopting what they hold). Does not
  // attach: start() does, last.
  Daemon(const Options& options, Config config, Loader& loader, ApiServer& api,
         const ControlAccess& access)
      : options_(options),
        loader_(loader),
        api_(api),
        dataplane_(loader_.map_fds()),
        state_(dataplane_, neighbors_, loader_.ifindex()),
        checker_(clock_),
        skew_(config.skew),
        pipeline_(state_, changes_),
        commands_(
            pipeline_, dataplane_, changes_, [this] { return status(); },
            [this](uint32_t id) { return checker_.last_result(id); }, &skew_,
            [this] { return audit(); }, &census_),
        metrics_listen_(config.metrics_listen) {
    for (const char* step : kLoopSteps) errors_[step] = 0;
    open_journal();
    commands_.set_access(access);
    commands_.set_fleet(&announcer_, [this](bool leave, const std::string& actor) {
      return set_fleet_left(leave, actor);
    });
    api_.set_handler([this](const nlohmann::json& req, const PeerCred& peer) {
      return commands_.handle(req, peer);
    });
    pipeline_.add_listener([this](const std::vector<Change>& changes) { changed(changes); });
    state_.set_interface(read_interface_facts(config.interface));
    if (loader_.adopted()) changes_.record("restart", state_.adopt(dataplane_.snapshot(), config));
    adopt_announcements(config);
    // The config a daemon starts with is audited but not refused (better
    // balanced than not, loudly: start() runs the full audit).
    pipeline_.submit(ConfigRequest{config},
                     {"config " + options_.config_path, ChangeLog::Origin::operator_request,
                      /*force=*/false, /*refusable=*/false});
    const auto deadline = Clock::now() + kInitialResolveWait;
    while (!state_.unresolved().empty() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      follow_host();
    }
    for (const auto& b : state_.unresolved())
      log_line(LogLevel::warning, "backend " + b + ": no MAC on " + config.interface +
                                      " (no neighbour entry after ARP; is it on " +
                                      config.interface +
                                      "'s subnet?). It takes no traffic until it resolves.");
    sync_checker();
  }

  // The metrics listener, opened before the loader (a port taken fails the
  // start before anything is touched); served by this daemon.
  void set_metrics(std::unique_ptr<HttpServer> metrics) { metrics_ = std::move(metrics); }

  // The last step of a start: the program goes on the interface with its
  // maps already written, then the first audit (a risky config still
  // starts, better balanced than not, loudly).
  void start() {
    loader_.attach();
    log_line(LogLevel::info, loader_.story());
    attached_once_ = true;
    announce();
    run_audit();
  }

  // Serves until SIGTERM or SIGINT, on one EventLoop: every descriptor,
  // and a timer for every timed job. An error in one step is logged,
  // counted and survived: the step runs again when it is next due.
  void run(int signal_fd) {
    log_line(LogLevel::info, "ready: program id " + std::to_string(loader_.program_id()) + " on " +
                                 loader_.options().interface + " (" +
                                 attach_mode_name(loader_.options().mode) + "), control socket " +
                                 api_.path() +
                                 (metrics_ ? ", metrics http://" + metrics_listen_ + "/metrics"
                                           : ", no metrics endpoint"));
    // The service manager hears "ready" only now: the program is attached
    // and the control socket serves.
    notify_ready("serving " + loader_.options().interface + " with program " +
                 std::to_string(loader_.program_id()));
    bool stop = false;
    loop_.watch(signal_fd, [&] {
      guard("signals", [&] {
        signalfd_siginfo si{};
        if (read(signal_fd, &si, sizeof(si)) != sizeof(si)) return;
        if (si.ssi_signo == SIGHUP) {
          reload();
        } else {
          log_line(LogLevel::info, "signal " + std::to_string(si.ssi_signo) + ": stopping");
          notify_stopping();
          stop = true;
        }
      });
    });
    // The servers: on input, and while clients are connected every
    // kServerDeadlines for their deadlines (a client that sends nothing
    // more is timed out all the same).
    control_deadlines_ = &loop_.timer([this] { serve_control(); });
    loop_.watch(api_.fd(), [this] { serve_control(); });
    if (metrics_) {
      metrics_deadlines_ = &loop_.timer([this] { serve_metrics(); });
      loop_.watch(metrics_->fd(), [this] { serve_metrics(); });
    }
    health_timer_ = &loop_.timer([this] { run_health_checks(); });
    loop_.watch(checker_.fd(), [this] { run_health_checks(); });
    flows_timer_ = &loop_.timer([this] { count_flows(); });
    auto& skew = loop_.timer([this] {
      guard("skew", [&] { skew_.record(clock_.now(), state_.view(), dataplane_); });
      if (metrics_) guard("metrics", [&] { refresh_metrics(); });
    });
    auto& heartbeat = loop_.timer([this] {
      notice_pause();
      guard("heartbeat", [&] {
        loader_.heartbeat(static_cast<uint32_t>(getpid()));
        notify_watchdog();
        changes_.flush();
        commands_.flush_log();
      });
      guard("interface", [&] { follow_interface(); });
      guard("pins", [&] { restore_pins(); });
      announce();
      // Second chance: a previous table serves the flows that began by it
      // for fleet.second_chance_keep, then goes.
      guard("heartbeat", [&] {
        dataplane_.expire_previous_tables(Clock::now() -
                                          state_.desired().fleet.second_chance_keep);
      });
    });
    audit_timer_ = &loop_.timer([this] {
      run_audit();
      schedule_audit(Clock::now() + state_.desired().audit.interval);
    });
    neighbours_timer_ = &loop_.timer([this] {
      guard("neighbours", [&] {
        // An operator may change the interface's MTU or addresses live.
        state_.set_interface(read_interface_facts(state_.desired().interface));
        follow_host();
      });
      schedule_refresh(Clock::now() +
                       (state_.unresolved().empty() ? kRefreshResolved : kRefreshUnresolved));
    });
    schedule_audit(Clock::now() + state_.desired().audit.interval);
    schedule_refresh(Clock::now());
    // The first skew sample at once: the baseline the first window's
    // counts are taken against, before any traffic of this daemon's.
    skew.arm(std::chrono::nanoseconds::zero());
    heartbeat.arm(std::chrono::nanoseconds::zero());
    run_health_checks();
    while (!stop) {
      const uint64_t changes_before = changes_.recorded();
      try {
        loop_.run_once();
        // Periodic jobs re-arm themselves when they run, so a failure
        // inside one never stops it for good.
        if (!skew.armed()) skew.arm(kSkewSample);
        if (!heartbeat.armed()) heartbeat.arm(kHeartbeat);
      } catch (const Error& e) {
        // Nothing to serve this turn; wait a little so that a persistent
        // failure does not spin.
        count_error("signals", e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (changes_.recorded() != changes_before) {
        // The metrics show a change at once, not at the next sample.
        if (metrics_) guard("metrics", [&] { refresh_metrics(); });
        // An apply or reload that added backends whose MACs are unknown:
        // look again within a second, not at the resolved-state pace.
        if (!state_.unresolved().empty())
          schedule_refresh(std::min(next_refresh_, Clock::now() + kRefreshUnresolved));
      }
    }
  }

  void serve_control() {
    guard("control", [&] { api_.serve(); });
    guard("control", [&] {
      if (api_.has_clients())
        control_deadlines_->arm(kServerDeadlines);
      else
        control_deadlines_->disarm();
    });
    // backend.flows may have asked for a count.
    if (!flows_timer_->armed()) count_flows_later();
  }

  void serve_metrics() {
    guard("metrics", [&] {
      metrics_->serve();
      if (metrics_->has_clients())
        metrics_deadlines_->arm(kServerDeadlines);
      else
        metrics_deadlines_->disarm();
    });
  }

  // The checker's sockets and deadlines; its descriptor is left out of the
  // set while answers gather (HealthChecker::watch_fd), its timer armed for
  // its next start, deadline or the end of that gathering.
  void run_health_checks() {
    guard("health-checks", [&] {
      for (const auto& event : checker_.run())
        pipeline_.submit(HealthRequest{static_cast<uint32_t>(event.id), event.to, event.detail},
                         {"health-check", ChangeLog::Origin::automatic});
    });
    guard("health-checks", [&] {
      loop_.pause(checker_.fd(), !checker_.watch_fd());
      health_timer_->arm(checker_.time_to_next());
    });
  }

  // A slice of the connection-table walk behind drain --wait, then the
  // next when one is due.
  void count_flows() {
    guard("flows", [&] {
      if (census_.walking(Clock::now())) census_.step(dataplane_, Clock::now());
    });
    count_flows_later();
  }
  void count_flows_later() {
    guard("flows", [&] {
      if (const auto in = census_.next_step_in(Clock::now())) flows_timer_->arm(*in);
    });
  }

  void schedule_audit(Clock::time_point when) {
    next_audit_ = when;
    if (audit_timer_) guard("audit", [&] { audit_timer_->arm(when - Clock::now()); });
  }
  void schedule_refresh(Clock::time_point when) {
    next_refresh_ = when;
    if (neighbours_timer_) guard("neighbours", [&] { neighbours_timer_->arm(when - Clock::now()); });
  }

  // The metrics endpoint: GET /metrics, and a pointer to it at /. A GET
  // reads no map: it gets the snapshot the loop renders every second, so
  // scrapes cost the same however often they come.
  HttpResponse serve_http(const std::string& method, const std::string& path) {
    if (method != "GET") return {405, "text/plain; charset=utf-8", "GET only\n"};
    if (path == "/") return {200, "text/plain; charset=utf-8", "Ballast metrics: /metrics\n"};
    if (path != "/metrics") return {404, "text/plain; charset=utf-8", "not found: " + path + "\n"};
    if (metrics_text_.empty()) refresh_metrics();
    return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_text_};
  }

  void refresh_metrics() {
    const auto vips = state_.view();
    const auto report = skew_.report(vips, &dataplane_);
    MetricsInput in;
    in.vips = &vips;
    in.skew = &report;
    in.dataplane = &dataplane_;
    in.skew_settings = skew_.settings();
    in.interface = loader_.options().interface;
    in.attach_mode = attach_mode_name(loader_.options().mode);
    in.program_attached = loader_.is_attached();
    in.daemon_errors = errors_;
    in.announcer = &announcer_;
    for (const auto& check : audit_check_ids())
      for (Severity sev : {Severity::error, Severity::warning, Severity::info})
        in.audit_findings[{check, std::string(severity_name(sev))}] = 0;
    for (const auto& f : findings_)
      ++in.audit_findings[{f.check, std::string(severity_name(f.severity))}];
    metrics_text_ = render_metrics(in);
  }

 private:
  // SIGHUP: the config file again, validated whole; a bad file changes
  // nothing. The interface and attach mode are fixed for the daemon's life.
  void reload() {
    notify_reloading();
    reload_config();
    notify_ready("serving " + loader_.options().interface + " with program " +
                 std::to_string(loader_.program_id()));
  }

  void reload_config() {
    try {
      Config next = load_config_file(options_.config_path);
      if (next.interface != loader_.options().interface ||
          next.attach_mode != loader_.options().mode)
        throw Error("interface and attach_mode cannot change on reload; restart ballastd");
      // The pre-apply audit, as for `ballast apply`; a reload cannot be
      // forced (use `ballast apply -f FILE --force`).
      const std::string metrics_listen = next.metrics_listen;
      pipeline_.submit(ConfigRequest{std::move(next)}, {"reload " + options_.config_path});
      if (metrics_listen != metrics_listen_)
        log_line(LogLevel::warning, "metrics.listen changed to '" + metrics_listen +
                                        "': takes effect at the next restart");
    } catch (const AuditRefused& e) {
      log_line(LogLevel::error,
               "reload refused, nothing changed: the new config fails the pre-apply audit "
               "(apply it with `ballast apply -f " +
                   options_.config_path + " --force` if intended):\n" +
                   findings_text(e.errors()));
    } catch (const Error& e) {
      log_line(LogLevel::error, std::string("reload refused, nothing changed: ") + e.what());
    }
  }

  // Gives the checker the current backends. A target it starts afresh
  // (new, or its check changed) continues from the health the state already
  // knows (adopted after a restart, or before the change), so one result
  // alone never flips it; rise and fall apply.
  void sync_checker() {
    try {
      checker_.set_targets(state_.health_targets());
    } catch (const Error& e) {
      log_line(LogLevel::error, std::string("health checks not updated: ") + e.what());
      return;
    }
    for (const auto& vip : state_.view())
      for (const auto& b : vip.backends)
        if (b.health != Health::unknown) checker_.assume(b.id, b.health);
    // New targets may be due before the checker's timer.
    if (health_timer_)
      guard("health-checks", [&] { health_timer_->arm(checker_.time_to_next()); });
  }

  // Route health injection (announce.h): the routes a previous ballastd
  // left are taken over as they are, so a restart withdraws nothing; with
  // fresh pins (a first start, or after --cleanup) no leave is in force.
  void adopt_announcements(const Config& config) {
    const std::string left_path = pin_dir_left_path(options_.run_dir, options_.pin_dir);
    std::error_code ec;
    if (!loader_.adopted()) std::filesystem::remove(left_path, ec);
    guard("announce", [&] { announcer_.adopt(config, std::filesystem::exists(left_path, ec)); });
    if (announcer_.left())
      log_line(LogLevel::warning,
               "this balancer left the fleet (ballast fleet leave) before the restart: it "
               "announces nothing until `ballast fleet join`");
  }

  // Brings the announced routes in line with the state: after every change
  // and every second (the program's attachment and the interface are
  // looked at once a second). Each announce and withdraw is logged and
  // recorded in the change log.
  void announce(const std::string& actor = "announce",
                ChangeLog::Origin origin = ChangeLog::Origin::automatic) {
    // Not before start() attached this daemon's program: until then the
    // one forwarding may be the previous ballastd's, and judging by ours
    // would withdraw (and then announce again) what a restart adopted.
    if (!attached_once_) return;
    guard("announce", [&] {
      const bool attached = !interface_gone_ && loader_.is_attached();
      record_announcements(announcer_.update(state_.desired(), state_.view(), attached), actor,
                           origin);
    });
  }

  // Records what an update did; the routes it could not write are the
  // `announce` step's errors (logged, counted, tried again every second).
  void record_announcements(const std::vector<Change>& changes, const std::string& actor,
                            ChangeLog::Origin origin) {
    if (!announcer_.failure().empty()) count_error("announce", announcer_.failure());
    if (changes.empty()) return;
    for (const auto& c : changes) {
      const auto& a = std::get<AnnounceChanged>(c);
      log_line(a.announced ? LogLevel::info : LogLevel::warning, describe(c));
    }
    changes_.record(actor, changes, origin);
    audit_soon();
  }

  // `ballast fleet leave` / `join` for @actor: the mark that survives a
  // restart, then the routes.
  std::vector<Change> set_fleet_left(bool leave, const std::string& actor) {
    if (!announcer_.enabled())
      throw Error(std::string("fleet ") + (leave ? "leave" : "join") +
                  ": this balancer announces nothing (no fleet.announce in its config), so there "
                  "is nothing to " + (leave ? "withdraw" : "announce"));
    const std::string left_path = pin_dir_left_path(options_.run_dir, options_.pin_dir);
    std::error_code ec;
    if (leave) {
      std::filesystem::create_directories(options_.run_dir, ec);
      if (FILE* f = fopen(left_path.c_str(), "w")) {
        fputs((actor + "\n").c_str(), f);
        fclose(f);
      } else {
        throw Error(errno_message("fleet leave: cannot write " + left_path, errno));
      }
    } else {
      std::filesystem::remove(left_path, ec);
    }
    announcer_.set_left(leave);
    const bool attached = !interface_gone_ && loader_.is_attached();
    auto changes = announcer_.update(state_.desired(), state_.view(), attached);
    log_line(LogLevel::info, std::string("fleet ") + (leave ? "leave" : "join") + " by " + actor +
                                 ": " + std::to_string(changes.size()) + " address(es) " +
                                 (leave ? "withdrawn" : "announced"));
    record_announcements(changes, actor + (leave ? " fleet leave" : " fleet join"),
                         ChangeLog::Origin::operator_request);
    // The mark is set and what could change did; say what could not.
    if (!announcer_.failure().empty())
      throw Error(std::string("fleet ") + (leave ? "leave" : "join") + " is in force, but " +
                  announcer_.failure() + " (ballastd tries again every second)");
    return changes;
  }

  // Every check of audit.h, now.
  std::vector<Finding> audit() {
    const auto vips = state_.view();
    const Config& desired = state_.desired();
    auto findings = audit_config(desired, vips);
    if (const auto table = announcer_.table())
      for (auto& f : audit_announcements(
               judge_addresses(desired, vips, !interface_gone_ && loader_.is_attached(),
                               announcer_.left()),
               routes_.list(*table), announcer_.left(), *table))
        findings.push_back(std::move(f));
    for (auto& f : audit_live(vips, skew_.report(vips, &dataplane_), desired.skew))
      findings.push_back(std::move(f));
    for (auto& f : audit_drift(state_.expected(), dataplane_.snapshot(), vips,
                               loader_.is_attached(), loader_.options().interface))
      findings.push_back(std::move(f));
    return findings;
  }

  // The host under the backends: routes, neighbours, interfaces.
  void follow_host() {
    pipeline_.submit(HostRequest{}, {"neighbour table", ChangeLog::Origin::automatic});
  }

  // After every change: the health checker follows the backends and
  // their checks, the skew tracker the settings; the audit runs soon.
  void changed(const std::vector<Change>& changes) {
    const bool backends_changed = std::any_of(changes.begin(), changes.end(), [](const Change& c) {
      return std::holds_alternative<BackendAdded>(c) || std::holds_alternative<BackendRemoved>(c) ||
             std::holds_alternative<CheckChanged>(c) || std::holds_alternative<VipRemoved>(c);
    });
    if (backends_changed) sync_checker();
    skew_.set_settings(state_.desired().skew);
    announce();
    audit_soon();
  }

  void audit_soon() { schedule_audit(std::min(next_audit_, Clock::now() + kAuditAfterChange)); }

  // The periodic audit: logs what appeared and what cleared since the last
  // one, and with `reconcile: true` rewrites drifted maps from the state.
  void run_audit() {
    std::vector<Finding> findings;
    try {
      findings = audit();
      // Map drift is repaired by rewriting the maps; a detached program is
      // not (that needs a restart).
      const bool drift = std::any_of(findings.begin(), findings.end(), [](const Finding& f) {
        return f.repair == Repair::rewrite_maps;
      });
      if (drift && state_.desired().reconcile) {
        pipeline_.submit(RepairRequest{dataplane_.snapshot()},
                         {"reconcile", ChangeLog::Origin::automatic});
        findings = audit();
      }
    } catch (const std::exception& e) {
      count_error("audit", e.what());
      return;
    }
    for (const auto& f : new_findings(findings_, findings))
      log_line(f.severity == Severity::error ? LogLevel::error : LogLevel::warning,
               "audit " + std::string(severity_name(f.severity)) + " " + f.check + ": " +
                   f.message + " (hint: " + f.hint + ")");
    for (const auto& f : new_findings(findings, findings_))
      log_line(LogLevel::info, "audit cleared " + f.check + ": " + f.message);
    findings_ = std::move(findings);
  }

  // The change log's history from before this start (when the pins are
  // adopted: a fresh start begins a fresh history), and its file from now
  // on. A journal that cannot be written costs the history, not the start.
  void open_journal() {
    const std::string path = pin_dir_journal_path(options_.run_dir, options_.pin_dir);
    try {
      if (!loader_.adopted()) std::filesystem::remove(path);
      journal_ = std::make_unique<ChangeJournal>(path, ChangeLog::kDefaultCapacity);
      changes_.restore(journal_->load());
      changes_.set_sink([this](const ChangeEntry& e) {
        guard("journal", [&] { journal_->append(e); });
      });
    } catch (const std::exception& e) {
      count_error("journal", e.what());
    }
  }

  // Once a second: a heartbeat seconds late means this process did not run
  // (SIGSTOP, a debugger, a starved CPU). The program forwarded on its own
  // meanwhile; health checks, audits and the control socket waited. Said
  // once per pause, so an operator who sees a gap in the log knows why.
  void notice_pause() {
    const auto now = Clock::now();
    if (last_heartbeat_ && now - *last_heartbeat_ > kPauseNoticed) {
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - *last_heartbeat_).count();
      log_line(LogLevel::warning,
               "ballastd did not run for " + std::to_string(ms / 1000) + "." +
                   std::to_string(ms % 1000 / 100) +
                   " s (stopped, or starved of CPU): the program forwarded on its own; health "
                   "checks, audits and requests resume now");
    }
    last_heartbeat_ = now;
  }

  // Once a second: a pin removed by hand is made again from our own
  // descriptors (Loader::restore_pins), so a restart still adopts the maps.
  void restore_pins() {
    for (const auto& path : loader_.restore_pins())
      log_line(LogLevel::warning,
               path + " was removed while ballastd ran: pinned it again (the map itself never "
                      "went away: the program holds it), so the next ballastd adopts it");
  }

  // Once a second: is the interface still the one the program is on? Gone,
  // it is said once (log; the audit and ballast_xdp_program_attached say
  // so too); back under its name with a new index, the program goes on
  // again and what names the index follows, with no restart.
  void follow_interface() {
    const std::string& name = loader_.options().interface;
    const int now = static_cast<int>(if_nametoindex(name.c_str()));
    if (now == 0) {
      if (!interface_gone_)
        log_line(LogLevel::error, "interface " + name +
                                      " is gone, and forwarding with it; ballastd attaches again "
                                      "when an interface of that name comes back");
      interface_gone_ = true;
      audit_soon();
      return;
    }
    if (now == loader_.ifindex()) {
      interface_gone_ = false;
      return;
    }
    const int old = loader_.ifindex();
    loader_.reattach(now);  // throws: counted, tried again next second
    interface_gone_ = false;
    pipeline_.submit(InterfaceRequest{read_interface_facts(name)},
                     {"interface " + name, ChangeLog::Origin::automatic});
    changes_.record("interface " + name,
                    {ProgramReattached{name, loader_.program_id(), loader_.attach_story()}},
                    ChangeLog::Origin::automatic);
    follow_host();
    log_line(LogLevel::info, "interface " + name + " is back (index " + std::to_string(old) +
                                 " -> " + std::to_string(now) + "): forwarding again");
    audit_soon();
  }

  // Runs one step of the loop; an error is logged and counted, and the
  // loop goes on (forwarding never depends on it).
  template <typename Step>
  void guard(const char* step, Step&& body) {
    try {
      body();
    } catch (const std::exception& e) {
      count_error(step, e.what());
    }
  }

  void count_error(const char* step, const std::string& what) {
    ++errors_[step];
    log_line(LogLevel::error, std::string(step) + ": " + what + " (survived; " +
                                  std::to_string(errors_[step]) + " so far in this step)");
  }

  api::StatusReply status() const {
    size_t backends = 0;
    for (const auto& v : state_.desired().vips) backends += v.backends.size();
    return {.interface = loader_.options().interface,
            .ifindex = loader_.ifindex(),
            .attach_mode = attach_mode_name(loader_.options().mode),
            .program_id = loader_.program_id(),
            .pin_dir = loader_.options().pin_dir,
            .config = options_.config_path,
            .vips = state_.desired().vips.size(),
            .backends = backends,
            .unresolved_backends = state_.unresolved(),
            .version = kBallastVersion,
            .metrics = metrics_ ? "http://" + metrics_listen_ + "/metrics" : "",
            // Errors caught and survived, per loop step (also
            // ballast_daemon_errors_total).
            .errors = errors_,
            .uptime_seconds =
                std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count(),
            .announce_table = announcer_.table(),
            .fleet_left = announcer_.left(),
            .announced = announced_addresses()};
  }

  std::vector<std::string> announced_addresses() const {
    std::vector<std::string> out;
    for (const auto& v : announcer_.verdicts())
      if (announcer_.announced(v.address)) out.push_back(v.address.str());
    return out;
  }

  Options options_;
  Clock::time_point started_ = Clock::now();
  Loader& loader_;
  ApiServer& api_;
  BpfDataPlane dataplane_;
  KernelNeighbors neighbors_;
  BalancerState state_;
  SteadyClock clock_;
  HealthChecker checker_;
  SkewTracker skew_;
  ChangeLog changes_;
  FlowCensus census_;
  ChangePipeline pipeline_;
  KernelRoutes routes_;
  Announcer announcer_{routes_};
  Commands commands_;
  std::string metrics_listen_;     // as configured at start; "" for none
  std::vector<Finding> findings_;  // of the last periodic audit
  Clock::time_point next_audit_ = Clock::now();
  Clock::time_point next_refresh_ = Clock::now();
  EventLoop loop_;
  // The loop's timers (owned by loop_), armed by run().
  EventLoop::Timer* control_deadlines_ = nullptr;
  EventLoop::Timer* metrics_deadlines_ = nullptr;
  std::optional<Clock::time_point> last_heartbeat_;  // notice_pause()
  EventLoop::Timer* health_timer_ = nullptr;
  EventLoop::Timer* flows_timer_ = nullptr;
  EventLoop::Timer* audit_timer_ = nullptr;
  EventLoop::Timer* neighbours_timer_ = nullptr;
  std::unique_ptr<HttpServer> metrics_;
  std::map<std::string, uint64_t> errors_;  // per loop step, caught and survived
  std::string metrics_text_;                // rendered every second, served per GET
  bool interface_gone_ = false;
  bool attached_once_ = false;  // start() attached the program: announce() may judge
  std::unique_ptr<ChangeJournal> journal_;
};

}  // namespace
}  // namespace ballast

namespace ballast {
namespace {

// `ballastd --cleanup`: removes Ballast from the interface (the program
// and the pins), the one way forwarding stops on purpose. Refused while a
// ballastd serves the interface or pin directory.
int cleanup(const Options& options) {
  std::string interface = options.interface;
  std::optional<uint32_t> announce_table;
  if (!options.config_path.empty()) {
    const Config config = load_config_file(options.config_path);
    if (interface.empty()) interface = config.interface;
    if (config.fleet.announce) announce_table = config.fleet.announce->table;
  }
  if (interface.empty()) throw Error("--cleanup needs --interface or --config");
  InstanceLock lock = [&] {
    try {
      return InstanceLock::acquire(options.run_dir, interface, options.pin_dir);
    } catch (const AlreadyRunning& e) {
      throw Error("another ballastd (pid " + std::to_string(e.holder().pid) + ") serves " +
                  interface + " from " + options.pin_dir + "; stop it first, nothing was removed");
    }
  }();
  // First the routers stop sending traffic here: Ballast's routes go
  // (those of the config's table; without a config, every Ballast route in
  // this network namespace). Then forwarding stops. (`ballast fleet leave
  // --wait` before a cleanup lets the routers move away first.)
  KernelRoutes routes;
  size_t withdrawn = 0;
  for (const auto& [table, address] : routes.list_all()) {
    if (announce_table && table != *announce_table) continue;
    routes.remove(table, address);
    ++withdrawn;
  }
  const RemoveResult r = remove_ballast(interface, options.pin_dir);
  std::error_code ec;
  std::filesystem::remove(pin_dir_journal_path(options.run_dir, options.pin_dir), ec);
  std::filesystem::remove(pin_dir_left_path(options.run_dir, options.pin_dir), ec);
  log_line(LogLevel::info,
           "cleanup: " +
               (r.detached_program ? "detached program " + std::to_string(r.detached_program) +
                                         " from " + interface
                                   : "no ballast program on " + interface) +
               ", removed " + std::to_string(r.removed_pins) + " pins from " + options.pin_dir +
               ", withdrew " + std::to_string(withdrawn) + " announced routes");
  return 0;
}

// A group by name: nullopt for "" (none), and for the default read group
// "ballast" when the host has no such group; Error for a group given on
// the command line that does not exist.
std::optional<gid_t> group_id(const std::string& name, bool required) {
  if (name.empty()) return std::nullopt;
  if (const group* g = getgrnam(name.c_str())) return g->gr_gid;
  if (required) throw Error("no such group: " + name);
  return std::nullopt;
}

int serve(const Options& options, int signal_fd) {
  Config config = load_config_file(options.config_path);
  ControlAccess access;
  access.read_group = group_id(options.read_group, options.read_group != "ballast");
  access.admin_group = group_id(options.admin_group, true);
  InstanceLock lock = InstanceLock::acquire(options.run_dir, config.interface, options.pin_dir);
  // The socket's group: the read group (its members connect; the kernel
  // refuses everyone else), else the admin group.
  ApiServer api(options.socket_path, access.read_group ? access.read_group : access.admin_group);
  // Declared before the daemon, which holds a reference to it: destroyed
  // after it.
  std::optional<Loader> loader;
  std::unique_ptr<Daemon> daemon;
  // Served only from the daemon's loop, so the daemon exists by then.
  auto metrics = open_metrics(
      config.metrics_listen, [&daemon](const std::string& method, const std::string& path) {
        return daemon->serve_http(method, path);
      });
  loader.emplace(LoaderOptions{config.interface, config.attach_mode, options.pin_dir});
  daemon = std::make_unique<Daemon>(options, std::move(config), *loader, api, access);
  daemon->set_metrics(std::move(metrics));
  daemon->start();
  daemon->run(signal_fd);
  loader->stopped();
  log_line(LogLevel::info, "stopped: program " + std::to_string(loader->program_id()) +
                               " stays attached to " + loader->options().interface +
                               " and keeps forwarding with the maps pinned in " +
                               loader->options().pin_dir +
                               "; the next ballastd adopts them (`ballastd --cleanup` removes them)");
  return 0;
}

}  // namespace
}  // namespace ballast

int main(int argc, char** argv) {
  using namespace ballast;
  Options options;
  CLI::App app{"ballastd: the Ballast XDP load balancer daemon"};
  app.add_option("-c,--config", options.config_path, "YAML config file");
  app.add_option("-s,--socket", options.socket_path, "control socket path")->capture_default_str();
  app.add_option("--pin-dir", options.pin_dir, "bpffs directory for the pinned maps")
      ->capture_default_str();
  app.add_option("--run-dir", options.run_dir, "directory for the instance lock files")
      ->capture_default_str();
  app.add_flag("--cleanup", options.cleanup,
               "remove Ballast from the interface: detach its program and remove the pinned "
               "maps (established flows lose their entries), then exit");
  app.add_option("--read-group", options.read_group,
                 "group whose members may read through the control socket (status, lists, stats, "
                 "skew, log, audit); the socket belongs to it; \"\" for none")
      ->capture_default_str();
  app.add_option("--admin-group", options.admin_group,
                 "group whose members may also change things (default: root only)");
  app.add_option("--interface", options.interface,
                 "the interface --cleanup removes Ballast from (default: the config's)");
  CLI11_PARSE(app, argc, argv);
  if (!options.cleanup && options.config_path.empty()) {
    std::cerr << "--config is required (unless --cleanup)\n";
    return 2;
  }

  route_library_logs();
  // Each health check in flight holds a socket: 1,000 backends that do not
  // answer would exhaust the default 1,024 descriptors.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  // Signals are read from a signalfd in the main loop: block them first.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd signal_fd(signalfd(-1, &mask, SFD_CLOEXEC));

  try {
    return options.cleanup ? cleanup(options) : serve(options, signal_fd.get());
  } catch (const std::exception& e) {
    // Whatever failed, nothing here detaches or unpins: a program that was
    // forwarding before this start still is.
    log_line(LogLevel::error, e.what());
    return 1;
  }
}
