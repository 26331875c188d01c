// apply: a whole config file as one change.
#include <fstream>
#include <sstream>

#include "cli.h"
#include "error.h"
#include "format.h"

namespace ballast::cli {

void add_apply_command(CLI::App& app, Action& action) {
  struct Args {
    std::string file;
    bool dry_run = false, force = false;
  };
  auto args = std::make_shared<Args>();
  auto* apply = app.add_subcommand(
      "apply", "apply a whole config file as one change (validated whole; prints what changes)");
  apply->add_option("-f,--file", args->file, "YAML config file")
      ->required()
      ->check(CLI::ExistingFile);
  apply->add_flag("--dry-run", args->dry_run,
                  "print what would change and the audit of the new config, change nothing "
                  "(exit 1 when the audit finds an error)");
  apply->add_flag("--force", args->force, kForceHelp);
  apply->callback([&action, args] {
    action = [args](const Globals& g) {
      std::ifstream in(args->file);
      std::stringstream text;
      text << in.rdbuf();
      if (!in) throw Error("cannot read " + args->file);
      api::Apply request;
      request.config = text.str();
      request.source = args->file;
      request.dry_run = args->dry_run;
      request.force = args->force;
      const auto reply = show(g, request, print_changes);
      // A dry run whose config the audit finds an error in.
      return !reply.applied && count_errors(reply.findings) > 0 ? 1 : 0;
    };
  });
}

}  // namespace ballast::cli
