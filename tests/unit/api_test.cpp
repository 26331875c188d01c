// api_test.cpp: the control socket's framing limits (userspace/api.cpp).
#include "api.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "error.h"

namespace ballast {
namespace {

std::string socket_path() {
  return "/tmp/ballast-api-test-" + std::to_string(getpid()) + ".sock";
}

// An answer far over the request limit (a change log of thousands of
// entries is a few MiB) reaches the client whole.
TEST(ApiTest, AnswersLargerThanARequestArrive) {
  ApiServer server(socket_path());
  const std::string big(3u << 20, 'x');
  std::thread serve([&] {
    server.serve_one([&](const nlohmann::json&, const PeerCred&) { return nlohmann::json(big); });
  });
  nlohmann::json result;
  EXPECT_NO_THROW(result = api_call(server.path(), {{"command", "log"}}));
  serve.join();
  EXPECT_EQ(result.get<std::string>().size(), big.size());
}

// A request over 1 MiB is refused with a message that says why.
TEST(ApiTest, RequestsOverOneMiBAreRefused) {
  ApiServer server(socket_path());
  std::thread serve([&] {
    server.serve_one([](const nlohmann::json&, const PeerCred&) { return nlohmann::json("ok"); });
  });
  try {
    api_call(server.path(), {{"command", std::string(2u << 20, 'y')}});
    ADD_FAILURE() << "a 2 MiB request was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("message larger than 1 MiB"), std::string::npos)
        << e.what();
  }
  serve.join();
}

}  // namespace
}  // namespace ballast
