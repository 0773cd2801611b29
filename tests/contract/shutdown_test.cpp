// close() against both backends: bounded by close_grace even with an operation that never ends, what
// has not started fails with errc::closed, and a failure leaves nothing behind.
#include "contract.hpp"

#include <chrono>

namespace {
using namespace std::chrono_literals;
}  // namespace

TEMPLATE_TEST_CASE("close() returns within its grace of an endless operation and queued work fails with closed",
                   "[contract][shutdown]", CONTRACT_BACKENDS) {
  using B = TestType;
  constexpr auto grace = 200ms;
  B b;
  auto& db = b.open({.close_grace = grace});
  net::io_context ctx;
  std::atomic<std::int64_t> started{0};
  std::atomic<int> queued_ran{0};
  contract::outcome endless_out;
  contract::outcome queued_out;
  auto endless = [&started](auto& c) { B::insert_endlessly(c, "endless", started); };
  auto insert = [&queued_ran](auto& c) {
    ++queued_ran;
    B::insert(c, "queued");
  };
  B::write(db, endless, net::bind_executor(ctx, contract::record(endless_out)));
  contract::run_until(ctx, [&] { return b.stuck(started.load()); });
  B::write(db, insert, net::bind_executor(ctx, contract::record(queued_out)));
  contract::run_until(ctx, [&] { return db.stats().queued == 1; });

  const auto start = std::chrono::steady_clock::now();
  db.close();
  const auto took = std::chrono::steady_clock::now() - start;
  contract::run_until(ctx, [&] { return endless_out.done && queued_out.done; });

  INFO("close() took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took >= grace);      // the grace was given
  CHECK(took < 20 * grace);  // and close() did not wait for the endless operation
  CHECK(endless_out.error);  // interrupted, as the backend reports it
  CHECK(test::code_of(queued_out.error) == asyncdb::errc::closed);
  CHECK(queued_ran == 0);
  CHECK(b.rows("endless%") == 0);
  CHECK(b.rows("queued") == 0);
}
