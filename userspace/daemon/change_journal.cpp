#include "change_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>

#include "error.h"

namespace ballast {
namespace {

std::string line_of(const ChangeEntry& e) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(e.time.time_since_epoch()).count();
  return nlohmann::json{{"unix_ms", ms}, {"actor", e.actor}, {"change", e.change}}.dump(
             -1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

void write_all(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(errno_message("writing " + path, errno));
    off += static_cast<size_t>(n);
  }
}

}  // namespace

ChangeJournal::ChangeJournal(std::string path, size_t capacity)
    : path_(std::move(path)), capacity_(capacity) {
  fd_ = UniqueFd(open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640));
  if (!fd_.valid()) throw Error(errno_message("opening change journal " + path_, errno));
  std::ifstream in(path_);
  std::string line;
  bool ends_in_newline = true;
  while (std::getline(in, line)) {
    ++lines_;
    ends_in_newline = !in.eof();
  }
  // A last line cut short (a crash mid-write) ends here, so that the next
  // entry starts a line of its own.
  if (!ends_in_newline) write_all(fd_.get(), "\n", path_);
}

std::vector<ChangeEntry> ChangeJournal::load() const {
  std::deque<ChangeEntry> out;
  std::ifstream in(path_);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("unix_ms") || !j["unix_ms"].is_number_integer() ||
        !j.contains("actor") || !j["actor"].is_string() || !j.contains("change") ||
        !j["change"].is_string())
      continue;
    out.push_back({std::chrono::system_clock::time_point(
                       std::chrono::milliseconds(j["unix_ms"].get<int64_t>())),
                   j["actor"], j["change"]});
    if (out.size() > capacity_) out.pop_front();
  }
  return {out.begin(), out.end()};
}

void ChangeJournal::append(const ChangeEntry& entry) {
  write_all(fd_.get(), line_of(entry), path_);
  if (++lines_ > 2 * capacity_) compact();
}

void ChangeJournal::compact() {
  const auto keep = load();
  const std::string tmp = path_ + ".new";
  UniqueFd out(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640));
  if (!out.valid()) throw Error(errno_message("opening " + tmp, errno));
  std::string data;
  for (const auto& e : keep) data += line_of(e);
  write_all(out.get(), data, tmp);
  if (rename(tmp.c_str(), path_.c_str()) != 0) throw Error(errno_message("renaming " + tmp, errno));
  fd_ = UniqueFd(open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW));
  if (!fd_.valid()) throw Error(errno_message("reopening change journal " + path_, errno));
  lines_ = keep.size();
}

}  // namespace ballast
