// error.h: the one error type inside ballastd and the CLI. Thrown where a
// step fails, caught at the edges (main, the API boundary) and shown as one
// line that names what failed and why.
#pragma once

#include <stdexcept>
#include <string>

namespace ballast {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// "what: strerror(errno_value)", for failed system and libbpf calls
// (libbpf returns -errno).
std::string errno_message(const std::string& what, int errno_value);

}  // namespace ballast
