// budget(duration::max()) is no budget: an operation or session open given it is never cut off, not by the
// database's default budget (options::operation_budget) either.
#include "contract.hpp"

#include <asyncdb/budget.hpp>

#include <chrono>

namespace {
using namespace std::chrono_literals;

struct unbounded_state {
  test::completion write;  // budget(max()), queued behind the holder
  bool session_done = false;
  asyncdb::error_code session_error;  // the session open's, also with budget(max())
  bool write_done_when_default_passed = true;
  bool session_done_when_default_passed = true;
  asyncdb::error_code defaulted_error;  // the default's operation, queued after both
};

template <class B>
net::awaitable<void> open_unbounded_session(typename B::database& db, unbounded_state& st) {
  const auto no_budget = asyncdb::budget(std::chrono::nanoseconds::max());
  try {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db, no_budget);
    s.release();
  } catch (const asyncdb::system_error& e) {
    st.session_error = e.code();
  }
  st.session_done = true;
}

// A session holds the writer; behind it queue a write and a session open with budget(max()), then (once both are
// queued) an operation with the database's default. Once the default has cut that one off (the first two queued
// before it, so their default would have passed first), the first two are still waiting; let go, they run.
template <class B>
net::awaitable<void> queued_past_the_default(typename B::database& db, unbounded_state& st) {
  auto ex = co_await net::this_coro::executor;
  asyncdb::AsyncDbSession holder = co_await asyncdb::async_db_session(db);
  auto insert = [](auto& c) { B::insert(c, "unbounded"); };
  const auto no_budget =
      asyncdb::budget(std::chrono::nanoseconds::max(), net::bind_executor(ex, test::record_into(st.write)));
  B::write(db, insert, no_budget);
  net::co_spawn(ex, open_unbounded_session<B>(db, st), net::detached);
  auto both_queued = [&db] { return db.stats().queued == 2; };
  co_await test::poll_until(both_queued);
  auto count = [](auto& c) { B::count(c); };
  st.defaulted_error = co_await test::error_of(B::write(db, count));
  st.write_done_when_default_passed = st.write.done;
  st.session_done_when_default_passed = st.session_done;
  holder.release();
  auto both_done = [&st] { return st.write.done && st.session_done; };
  co_await test::poll_until(both_done);
}

}  // namespace

TEMPLATE_TEST_CASE("budget(duration::max()) is no budget: the database's default does not cut the operation off",
                   "[contract][budget]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  unbounded_state st;
  {
    contract::config c;
    c.readers = 0;
    c.operation_budget = 100ms;
    auto& db = b.open(c);
    net::io_context ctx;
    test::run(ctx, queued_past_the_default<B>(db, st));
  }
  REQUIRE(st.defaulted_error == asyncdb::errc::deadline_exceeded);  // the default holds for the others
  CHECK_FALSE(st.write_done_when_default_passed);
  CHECK_FALSE(st.session_done_when_default_passed);
  CHECK_FALSE(st.write.error);
  CHECK_FALSE(st.session_error);
  CHECK(b.rows("unbounded") == 1);
}
