// change_journal_test.cpp: the change log's history across a restart
// (userspace/daemon/change_journal.cpp, ChangeLog's sink and restore).
#include "change_journal.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace ballast {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;

class ChangeJournalTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::remove(path_); }
  void TearDown() override { std::filesystem::remove(path_); }
  ChangeEntry entry(int i) {
    return {system_clock::time_point(milliseconds(1'700'000'000'000 + i)), "uid=0 pid=1",
            "change " + std::to_string(i)};
  }
  const std::string path_ =
      std::filesystem::temp_directory_path() / ("ballast-journal-" + std::to_string(getpid()));
};

// Typed changes to record, and their text.
const VipKey kVip = VipKey::parse("10.0.0.100:80/tcp");
Change down(const char* backend) {
  return HealthChanged{kVip, *IpAddress::parse(backend), Health::up, Health::down, ""};
}
std::string down_text(const char* backend) {
  return "backend health 10.0.0.100:80/tcp " + std::string(backend) + " up -> down";
}

TEST_F(ChangeJournalTest, ARestartedLogHasEveryEntryBeforeItsOwn) {
  {
    ChangeLog log;
    ChangeJournal journal(path_, 100);
    log.set_sink([&](const ChangeEntry& e) { journal.append(e); });
    log.record("health-check", {down("10.0.0.1"), down("10.0.0.2")});
  }
  ChangeJournal journal(path_, 100);
  ChangeLog log;
  log.restore(journal.load());
  log.record("restart", {VipAdopted{kVip, 3, 2}});
  const auto all = log.since(system_clock::time_point{});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].change, down_text("10.0.0.1"));
  EXPECT_EQ(all[1].actor, "health-check");
  EXPECT_EQ(all[2].change, "adopt vip 10.0.0.100:80/tcp id 3 with 2 backends");
  // Restored entries are history, not news.
  EXPECT_EQ(log.recorded(), 1u);
}

TEST_F(ChangeJournalTest, StaysBoundedAndKeepsTheNewest) {
  ChangeJournal journal(path_, 10);
  for (int i = 0; i < 35; ++i) journal.append(entry(i));
  const auto kept = journal.load();
  ASSERT_EQ(kept.size(), 10u);
  EXPECT_EQ(kept.front().change, "change 25");
  EXPECT_EQ(kept.back().change, "change 34");
  size_t lines = 0;
  std::ifstream in(path_);
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_LE(lines, 20u) << "the file is never more than twice the capacity";
}

TEST_F(ChangeJournalTest, LinesThatDoNotParseAreSkipped) {
  {
    std::ofstream out(path_);
    out << "{\"unix_ms\": 5, \"actor\": \"a\", \"change\": \"one\"}\n"
        << "garbage\n"
        << "{\"unix_ms\": \"x\", \"actor\": \"a\", \"change\": \"bad time\"}\n"
        << "{\"unix_ms\": 6, \"actor\": \"a\", \"change\": \"two\"}\n"
        << "{\"unix_ms\": 7, \"actor\": \"a\", \"cha";  // cut short by a crash
  }
  ChangeJournal journal(path_, 100);
  journal.append(entry(9));  // after the cut line, on a line of its own
  const auto kept = journal.load();
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].change, "one");
  EXPECT_EQ(kept[1].change, "two");
  EXPECT_EQ(kept[2].change, "change 9");
}

TEST(ChangeLogRestore, KeepsTheCapacity) {
  ChangeLog log(3);
  std::vector<ChangeEntry> earlier;
  for (int i = 0; i < 5; ++i) earlier.push_back({system_clock::now(), "a", std::to_string(i)});
  log.restore(earlier);
  log.record("b", {VipAdded{kVip}});
  const auto all = log.since(system_clock::time_point{});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].change, "3");
  EXPECT_EQ(all[2].change, "vip add 10.0.0.100:80/tcp");
}

// A flap storm: 300 health transitions in 3 s log the burst and the rate,
// then one summary line; the change log keeps all 300. An operator's
// changes are never held back.
TEST(ChangeLogLines, AStormOfHealthChangesIsSummarisedNotHidden) {
  auto t = system_clock::time_point(std::chrono::seconds(1'700'000'000));
  std::vector<std::string> lines;
  ChangeLog log(
      10000, [&] { return t; }, [&](const std::string& l) { lines.push_back(l); });
  for (int i = 0; i < 300; ++i) {
    log.record("health-check", {down("10.0.0.1")}, ChangeLog::Origin::automatic);
    t += milliseconds(10);
    log.flush();
  }
  // 20 at once, then 5 a second for 3 s.
  EXPECT_LE(lines.size(), 20u + 15u + 1u);
  EXPECT_GE(lines.size(), 20u + 14u);
  const size_t logged = lines.size();
  log.record("uid=0 pid=1", {WeightChanged{kVip, *IpAddress::parse("10.0.0.1"), 1, 2}});
  EXPECT_EQ(lines.size(), logged + 1) << "an operator's change was held back";
  t += std::chrono::seconds(10);
  log.flush();
  ASSERT_EQ(lines.size(), logged + 2);
  EXPECT_EQ(lines.back().rfind(std::to_string(300 - (logged)) + " more automatic changes", 0), 0u)
      << lines.back();
  EXPECT_EQ(log.since(system_clock::time_point{}).size(), 301u);
  log.flush();
  EXPECT_EQ(lines.size(), logged + 2) << "the summary is said once";
}

}  // namespace
}  // namespace ballast

namespace ballast {
namespace {

// The budget itself: a burst, then the rate; the rest counted and said
// once per period.
TEST(LogLimiterTest, BurstThenRateThenOneSummary) {
  LogLimiter limiter(3, 2, std::chrono::seconds(10));
  auto t = system_clock::time_point(std::chrono::seconds(1'700'000'000));
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += limiter.allow(t);
  EXPECT_EQ(allowed, 3) << "the burst";
  EXPECT_FALSE(limiter.summary(t + std::chrono::seconds(9)).has_value()) << "too early";
  t += std::chrono::seconds(1);
  allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += limiter.allow(t);
  EXPECT_EQ(allowed, 2) << "one second's rate";
  const auto held = limiter.summary(t + std::chrono::seconds(9));
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->lines, 15u);
  EXPECT_DOUBLE_EQ(held->seconds, 10.0);
  EXPECT_FALSE(limiter.summary(t + std::chrono::seconds(30)).has_value()) << "said once";
}

}  // namespace
}  // namespace ballast
