// config_fuzz.cpp: libFuzzer target for the YAML config (core/config.cpp),
// the parser and the whole-config validation every config passes through.
// On every input:
//   - no crash, no hang, no exception but ballast::Error;
//   - a refusal names the file and line on every one of its lines
//     ("fuzz.yaml:LINE: field: reason");
//   - an accepted config is valid by the same rules a one-VIP API edit
//     uses (validate_config finds nothing).
// Built by `make fuzz` (clang-14, -fsanitize=fuzzer,address,undefined);
// `make test` replays tests/fuzz/corpus/config/ through it.
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <regex>
#include <sstream>
#include <string>

#include "config.h"
#include "error.h"

namespace {

[[noreturn]] void broken(const std::string& what, const std::string& input) {
  std::fprintf(stderr, "config_fuzz: %s\n--- input ---\n%s\n--- end ---\n", what.c_str(),
               input.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ballast::Config config;
  try {
    config = ballast::parse_config(text, "fuzz.yaml");
  } catch (const ballast::Error& e) {
    static const std::regex located("^fuzz\\.yaml:[0-9]+: .+");
    std::istringstream lines(e.what());
    for (std::string line; std::getline(lines, line);)
      if (!std::regex_match(line, located)) broken("a refusal without file:line: " + line, text);
    return 0;
  } catch (const std::exception& e) {
    broken(std::string("an exception that is not a refusal: ") + e.what(), text);
  }
  if (const auto problems = ballast::validate_config(config); !problems.empty())
    broken("accepted, but validate_config says: " + problems.front(), text);
  return 0;
}
