// Where code runs and what reaches the co_await, against both backends: the DAO runs on a database
// thread, the coroutine resumes on its own strand and never on a database thread, and what the DAO throws
// (or what fails while its result is handed over) reaches the co_await with its own type.
#include "contract.hpp"

#include <set>
#include <string>
#include <thread>

namespace {

struct not_a_std_exception {
  int code;
};

struct thread_log {
  std::set<std::thread::id> dao;      // threads the DAO code ran on
  std::set<std::thread::id> resumed;  // threads the coroutine resumed on
  int off_strand = 0;                 // resumptions outside the coroutine's strand
  int dao_on_caller = 0;              // DAO calls on the thread that awaited them
};

template <class B>
net::awaitable<void> hop_around(typename B::database& db, net::strand<net::io_context::executor_type> strand,
                                thread_log& log) {
  typename B::users users{db};
  auto resumed = [&](std::thread::id ran_on) {
    log.dao.insert(ran_on);
    log.resumed.insert(std::this_thread::get_id());
    if (!strand.running_in_this_thread()) ++log.off_strand;
    if (ran_on == std::this_thread::get_id()) ++log.dao_on_caller;
  };
  auto where = [](auto&) { return std::this_thread::get_id(); };
  for (int round = 0; round < 4; ++round) {
    resumed(co_await users.template call<&B::dao::where>());  // a DAO member, on the writer
    resumed(co_await B::write(db, where));
    resumed(co_await B::read(db, where));
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    resumed(co_await B::in_session(s, where));
    asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    resumed(co_await B::in_session(r, where));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("a coroutine resumes on its own strand, never on the database thread that ran its DAO",
                   "[contract][threads]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  auto strand = net::make_strand(ctx);
  thread_log log;
  contract::outcome out;
  net::co_spawn(strand, hop_around<B>(db, strand, log), contract::record(out));
  test::run_on_threads(ctx, 3, std::chrono::seconds(60));

  REQUIRE(out.done);
  CHECK_FALSE(out.error);
  CHECK(log.off_strand == 0);
  CHECK(log.dao_on_caller == 0);
  CHECK_FALSE(log.dao.empty());
  for (std::thread::id t : log.resumed) CHECK(log.dao.count(t) == 0);  // never resumed on a database thread
}

// ------------------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("what the DAO throws reaches the co_await with its own type and message", "[contract][errors]",
                   CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  int caught = 0;
  auto body = [&]() -> net::awaitable<void> {
    auto thrower = [](auto&) -> int { throw contract::dao_error("no such user", 42); };
    try {
      co_await B::write(db, thrower);
    } catch (const contract::dao_error& e) {
      if (e.code == 42 && std::string(e.what()) == "no such user") ++caught;
    }
    try {
      co_await B::read(db, thrower);
    } catch (const contract::dao_error& e) {
      if (e.code == 42 && std::string(e.what()) == "no such user") ++caught;
    }
    // Not even a std::exception: still itself.
    auto odd = [](auto&) { throw not_a_std_exception{17}; };
    try {
      co_await B::write(db, odd);
    } catch (const not_a_std_exception& e) {
      if (e.code == 17) ++caught;
    }
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    try {
      co_await B::in_session(s, thrower);
    } catch (const contract::dao_error& e) {
      if (e.code == 42) ++caught;
    }
  };
  test::run(ctx, body());
  CHECK(caught == 4);
}

// ------------------------------------------------------------------------------------------------

// Issue 17 defect 1: the move ran in a noexcept path on the database thread, and std::terminate ended the
// whole program.
TEMPLATE_TEST_CASE("a result whose move throws reaches the co_await as that exception, not terminate",
                   "[contract][errors][defect1]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  int caught = 0;
  auto body = [&]() -> net::awaitable<void> {
    auto make = [](auto&) { return contract::throws_when_moved(true); };
    try {
      co_await B::write(db, make);
    } catch (const contract::move_failed&) {
      ++caught;
    }
    try {
      co_await B::read(db, make);
    } catch (const contract::move_failed&) {
      ++caught;
    }
  };
  test::run(ctx, body());
  CHECK(caught == 2);
}
