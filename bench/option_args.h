// option_args.h: the "--name value" command line of the bench tools that
// take one (build/bench_wire, build/tools/syn_flood): each option's setter
// by name, every option with a value.
#pragma once

#include <functional>
#include <map>
#include <stdexcept>
#include <string>

namespace ballast::bench {

using OptionSetters = std::map<std::string, std::function<void(const std::string&)>>;

// Calls each option's setter with its value. @usage gets an unknown option,
// a missing value, or a setter's std::sto* failure; it must throw (the
// tools' usage() does), and if it returned this would throw for it.
inline void apply_options(int argc, char** argv, const OptionSetters& setters,
                          void (*usage)(const std::string&)) {
  auto refuse = [usage](const std::string& why) {
    usage(why);
    throw std::invalid_argument(why);
  };
  for (int i = 1; i < argc; i++) {
    const std::string arg = argv[i];
    const auto setter = setters.find(arg);
    if (setter == setters.end()) refuse("unknown option " + arg);
    if (i + 1 >= argc) refuse(arg + ": needs a value");
    const std::string v = argv[++i];
    try {
      setter->second(v);
    } catch (const std::logic_error&) {  // std::sto* on text that is no number
      refuse(arg + ": not a number: " + v);
    }
  }
}

}  // namespace ballast::bench
