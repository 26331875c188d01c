// change_journal.h: the change log's history on disk, so that `ballast log`
// goes on across a restart as the counters do. One JSON object per line
// ({"unix_ms", "actor", "change"}) in a file beside the instance locks,
// named after the pin directory (/run/ballast/ballastd-pins-<dir>.changes):
// it lives exactly as long as the pinned maps (tmpfs: until a reboot, which
// also clears the pins; `ballastd --cleanup` removes both). The file is
// rewritten with the newest entries when it grows past twice the log's
// capacity, so it stays bounded.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "changelog.h"
#include "fd.h"

namespace ballast {

class ChangeJournal {
 public:
  // Opens (creating) @path for appending. Throws Error.
  ChangeJournal(std::string path, size_t capacity);

  // The newest @capacity entries in the file, oldest first; lines that do
  // not parse are skipped.
  std::vector<ChangeEntry> load() const;
  // Appends one entry; compacts when the file is over twice the capacity.
  // Throws Error (the caller counts it: the in-memory log is unaffected).
  void append(const ChangeEntry& entry);

  const std::string& path() const { return path_; }

 private:
  void compact();

  std::string path_;
  size_t capacity_;
  UniqueFd fd_;
  size_t lines_ = 0;  // in the file now
};

}  // namespace ballast
