// Where code runs and what reaches the co_await, against both backends: the DAO runs on a database
// thread, the coroutine resumes on its own strand and never on a database thread, and what the DAO throws
// (or what fails while its result is handed over) reaches the co_await with its own type.
#include "contract.hpp"

#include <atomic>
#include <memory>
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

// ------------------------------------------------------------------------------------------------

namespace {

// Counts what is allocated through it and not yet freed: Asio's rule for a handler's associated allocator
// is that all of it is freed before the handler is invoked (the handler may own the memory it comes from).
template <class T>
struct counted_allocator {
  using value_type = T;
  std::atomic<int>* live;
  explicit counted_allocator(std::atomic<int>* l) noexcept : live(l) {}
  template <class U>
  counted_allocator(const counted_allocator<U>& other) noexcept : live(other.live) {}
  T* allocate(std::size_t n) {
    live->fetch_add(1);
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    live->fetch_sub(1);
    std::allocator<T>().deallocate(p, n);
  }
  friend bool operator==(const counted_allocator& a, const counted_allocator& b) noexcept { return a.live == b.live; }
};

// A plain callback with its own executor and allocator.
struct allocating_handler {
  using executor_type = net::io_context::executor_type;
  using allocator_type = counted_allocator<void>;
  executor_type ex;
  std::atomic<int>* live;
  int* live_when_called;
  int* value;
  executor_type get_executor() const noexcept { return ex; }
  allocator_type get_allocator() const noexcept { return allocator_type(live); }
  void operator()(std::exception_ptr ep, int v) {
    *live_when_called = live->load();
    *value = ep ? -1 : v;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("memory from a handler's associated allocator is freed before the handler runs",
                   "[contract][allocator]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  std::atomic<int> live{0};
  int live_when_called = -2;
  int value = 0;
  auto seven = [](auto&) { return 7; };
  B::write(db, seven, allocating_handler{ctx.get_executor(), &live, &live_when_called, &value});
  ctx.run();
  CHECK(value == 7);
  CHECK(live_when_called == 0);
  CHECK(live.load() == 0);
}
