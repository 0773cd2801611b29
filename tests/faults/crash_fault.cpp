// Case 1, crash durability: a child process adds 10,000 items at once (group commit on) and reports each
// add whose co_await returned; it is SIGKILLed at a random moment. The file must then pass
// integrity_check, hold every acknowledged item, and hold no item half written.
#include "fault_support.hpp"
#include "items.hpp"
#include "process.hpp"

#include <catch2/catch.hpp>
#include <support.hpp>

#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::int64_t burst = 10'000;

std::vector<std::int64_t> acks_in(const std::vector<std::string>& lines) {
  std::vector<std::int64_t> ids;
  for (const auto& l : lines) {
    if (l.rfind("ack ", 0) == 0) ids.push_back(std::stoll(l.substr(4)));
  }
  return ids;
}

std::set<std::int64_t> ids_from(const std::filesystem::path& file, std::int64_t first, std::int64_t last) {
  SQLite::Database c(file, SQLite::OPEN_READONLY);
  SQLite::Statement q(c, "SELECT id FROM items WHERE id >= ? AND id < ?");
  q.bind(1, first);
  q.bind(2, last);
  std::set<std::int64_t> ids;
  while (q.executeStep()) ids.insert(q.getColumn(0).getInt64());
  return ids;
}

std::uint64_t seed() {
  const long long s = faults::env_or("ASYNCDB_FAULT_SEED", 0);
  return s != 0 ? static_cast<std::uint64_t>(s) : std::random_device{}();
}

struct tally {
  int kills = 0;
  int before = 0;   // killed before the first acknowledgement
  int mid_way = 0;  // after some acknowledgements and before the last
  std::size_t acked = 0;
  std::int64_t rows = 0;
};

// Reads lines until `marker`, keeping them; fails the test if the child never says it.
std::vector<std::string> until(faults::child_process& c, const std::string& marker) {
  std::vector<std::string> lines;
  for (;;) {
    auto l = c.read_line();
    if (!l) FAIL("the child process ended or went silent before saying '" << marker << "'");
    if (*l == marker) return lines;
    lines.push_back(std::move(*l));
  }
}

long long done_ms(const std::vector<std::string>& lines) {
  for (const auto& l : lines) {
    if (l.rfind("done ", 0) == 0) return std::stoll(l.substr(5));
  }
  return -1;
}

// One variant: `mode` is burst or close (the kill lands while close() runs the queued adds). A first run
// goes to its end and measures the window the kills are then spread over.
void kill_during(const std::string& mode, const std::string& synchronous) {
  const int kills = static_cast<int>(faults::env_or("ASYNCDB_FAULT_KILLS", 20));
  const std::uint64_t s = seed();
  const std::string marker = mode == "close" ? "closing" : "ready";
  faults::watchdog dog(std::chrono::seconds(60 + kills * 6), "crash " + mode + " " + synchronous);
  test::temp_dir dir;
  const auto file = dir.file("crash.db");
  const auto t0 = std::chrono::steady_clock::now();

  long long window_ms = 0, first_ack_ms = -1;
  {
    faults::child_process c({ASYNCDB_FAULT_CHILD, mode, file.string(), synchronous, "0", std::to_string(burst)});
    auto lines = until(c, marker);
    const auto said = std::chrono::steady_clock::now();
    while (auto l = c.read_line()) {
      if (first_ack_ms < 0 && l->rfind("ack ", 0) == 0) {
        first_ack_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - said).count();
      }
      lines.push_back(std::move(*l));
    }
    const int status = c.wait();
    REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    REQUIRE(acks_in(lines).size() == static_cast<std::size_t>(burst));
    window_ms = std::max(1LL, done_ms(lines));
    const faults::file_check fc = faults::check_file(file);
    REQUIRE(fc.integrity == "ok");
    REQUIRE(fc.items == burst);
  }

  std::mt19937_64 rng(s);
  // From a little before the first acknowledgement (the burst's first commit) to its end.
  const long long from_ms = std::min(std::max(0LL, first_ack_ms) * 3 / 4, window_ms);
  std::uniform_int_distribution<long long> delay_us(from_ms * 1000, window_ms * 1000);
  tally t;
  for (int k = 1; k <= kills; ++k) {
    const std::int64_t first = burst * k;
    faults::child_process c(
        {ASYNCDB_FAULT_CHILD, mode, file.string(), synchronous, std::to_string(first), std::to_string(burst)});
    std::vector<std::string> lines = until(c, marker);
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));  // the random moment of the kill
    c.kill_now();
    c.wait();
    for (auto& l : c.rest()) lines.push_back(std::move(l));
    const std::vector<std::int64_t> acked = acks_in(lines);

    const faults::file_check fc = faults::check_file(file, first, first + burst);
    INFO("kill " << k << " of " << mode << " " << synchronous << ", seed " << s);
    REQUIRE(fc.integrity == "ok");
    REQUIRE(fc.torn == 0);
    const std::set<std::int64_t> present = ids_from(file, first, first + burst);
    std::size_t lost = 0;
    for (std::int64_t id : acked) lost += present.count(id) == 0 ? 1 : 0;
    REQUIRE(lost == 0);
    ++t.kills;
    t.before += acked.empty() ? 1 : 0;
    t.mid_way += !acked.empty() && acked.size() < static_cast<std::size_t>(burst) ? 1 : 0;
    t.acked += acked.size();
    t.rows = fc.items;
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "crash %s synchronous=%s: %d kills (%d before the first acknowledgement, %d mid-way), window %lld-%lld ms, %zu "
      "acknowledged ids checked, 0 lost, 0 torn, "
      "%lld rows, seed %llu, %lld ms\n",
      mode.c_str(), synchronous.c_str(), t.kills, t.before, t.mid_way, from_ms, window_ms, t.acked,
      static_cast<long long>(t.rows), static_cast<unsigned long long>(s), static_cast<long long>(ms));
  std::fflush(stdout);
}

}  // namespace

TEST_CASE("acknowledged adds survive a SIGKILL with synchronous FULL", "[faults][crash]") {
  kill_during("burst", "FULL");
}

TEST_CASE("acknowledged adds survive a SIGKILL with synchronous NORMAL", "[faults][crash]") {
  kill_during("burst", "NORMAL");
}

TEST_CASE("acknowledged adds survive a SIGKILL during close", "[faults][crash]") { kill_during("close", "NORMAL"); }

TEST_CASE("nothing of a write session's transaction survives a SIGKILL", "[faults][crash]") {
  const int kills = static_cast<int>(faults::env_or("ASYNCDB_FAULT_KILLS", 20));
  const std::uint64_t s = seed();
  faults::watchdog dog(std::chrono::seconds(60 + kills * 6), "crash session");
  test::temp_dir dir;
  const auto file = dir.file("crash.db");
  const auto t0 = std::chrono::steady_clock::now();
  std::mt19937_64 rng(s);
  std::uniform_int_distribution<long long> delay_us(0, 100'000);
  std::size_t acked_total = 0, session_rows_reported = 0;
  for (int k = 0; k < kills; ++k) {
    const std::int64_t first = 1'000'000 * (k + 1);
    faults::child_process c({ASYNCDB_FAULT_CHILD, "session", file.string(), "FULL", std::to_string(first)});
    std::vector<std::string> lines = until(c, "begun");
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    c.kill_now();
    c.wait();
    const std::vector<std::string> after = c.rest();
    const std::vector<std::int64_t> acked = acks_in(lines);
    REQUIRE(acked.size() == 100);
    for (const auto& l : after) session_rows_reported += l.rfind("row ", 0) == 0 ? 1 : 0;

    const faults::file_check fc = faults::check_file(file, first, first + 1'000'000);
    INFO("session kill " << k << ", seed " << s);
    REQUIRE(fc.integrity == "ok");
    REQUIRE(fc.torn == 0);
    const std::set<std::int64_t> present = ids_from(file, first, first + 1'000'000);
    std::size_t lost = 0;
    for (std::int64_t id : acked) lost += present.count(id) == 0 ? 1 : 0;
    REQUIRE(lost == 0);
    REQUIRE(present.size() == acked.size());  // not one row of the session's open transaction
    acked_total += acked.size();
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "crash session: %d kills inside an open transaction (%zu rows inserted in them, 0 visible after), %zu "
      "acknowledged ids checked, 0 lost, seed %llu, %lld ms\n",
      kills, session_rows_reported, acked_total, static_cast<unsigned long long>(s), static_cast<long long>(ms));
  std::fflush(stdout);
}
