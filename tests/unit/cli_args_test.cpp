// cli_args_test.cpp: the CLI's command-line words into typed values
// (userspace/cli/args.cpp). A weight is read the way the config reads it:
// decimal digits only, so 0x10 is not 16 and 1e23 is not INT64_MAX (found
// by probing, issue #16).
#include <gtest/gtest.h>

#include "cli.h"
#include "error.h"

namespace ballast::cli {
namespace {

TEST(CliArgs, WeightIsDecimalDigitsInRange) {
  EXPECT_EQ(weight_arg("0"), 0u);
  EXPECT_EQ(weight_arg("65535"), 65535u);
  for (const char* bad : {"0x10", "1e23", "-3", "70000", "", " 2", "2 ", "+2", "2.0", "99999999999"})
    try {
      weight_arg(bad);
      ADD_FAILURE() << "weight '" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("weight must be an integer 0..65535, got '") + bad + "'");
    }
}

TEST(CliArgs, AddressesAndVipsAreParsedOrNamed) {
  EXPECT_EQ(address_arg("10.0.0.11").str(), "10.0.0.11");
  EXPECT_EQ(vip_arg("[2001:db8::1]:443/tcp").str(), "[2001:db8::1]:443/tcp");
  try {
    address_arg("nope");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "'nope' is not an IP address");
  }
  EXPECT_THROW(vip_arg("10.0.0.1:80"), Error);
  EXPECT_EQ(duration_ms("1500ms"), 1500);
  EXPECT_THROW(duration_ms("soon"), CLI::ValidationError);
}

}  // namespace
}  // namespace ballast::cli
