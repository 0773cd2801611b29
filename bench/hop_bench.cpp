// The cost of one hop through asyncdb with a trivial function, against the plain Asio round trip a user
// would otherwise write (post to an asio::thread_pool, post back), both awaited from a coroutine on a
// single-threaded io_context. Real time: the work happens on other threads. allocs/op counts every
// operator new of the process during the loop.
#include <benchmark/benchmark.h>

#include <stdlib.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asyncdb/asyncdb.hpp>

#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "alloc_counter.hpp"

namespace {

int trivial(SQLite::Database&) { return 42; }

// A DAO whose member does nothing: the hop through to_async_db_oper::call (the path of the workloads).
struct ping_dao {
  explicit ping_dao(SQLite::Database&) {}
  int ping() { return 42; }
};
class async_ping : public asyncdb::to_async_db_oper<async_ping, ping_dao> {
 public:
  using to_async_db_oper::to_async_db_oper;
};

// A fresh database file per benchmark, in a folder removed afterwards.
class scratch_db {
 public:
  explicit scratch_db(std::size_t readers) {
    std::string templ = (std::filesystem::temp_directory_path() / "asyncdb-hop-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    folder_ = templ;
    asyncdb::options o;
    o.readers = readers;
    db_.emplace(folder_ / "hop.db", std::move(o));
  }
  scratch_db(const scratch_db&) = delete;
  scratch_db& operator=(const scratch_db&) = delete;
  ~scratch_db() {
    db_.reset();
    std::error_code ec;
    std::filesystem::remove_all(folder_, ec);
  }
  asyncdb::database& get() { return *db_; }

 private:
  std::filesystem::path folder_;
  std::optional<asyncdb::database> db_;
};

// Runs `loop(state, ...)` as a coroutine on a fresh single-threaded io_context, and reports allocs/op.
template <class Awaitable>
void drive(benchmark::State& state, asio::io_context& ioc, Awaitable loop) {
  std::exception_ptr error;
  const std::uint64_t allocs = bench::allocations();
  asio::co_spawn(ioc, std::move(loop), [&](std::exception_ptr e) { error = e; });
  ioc.run();
  const std::uint64_t made = bench::allocations() - allocs;
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
    }
  }
  state.counters["allocs/op"] = benchmark::Counter(static_cast<double>(made), benchmark::Counter::kAvgIterations);
}

asio::awaitable<void> asyncdb_writer_loop(benchmark::State* state, asyncdb::database* db) {
  for (auto _ : *state) {
    const int v = co_await asyncdb::async_run(*db, &trivial);
    benchmark::DoNotOptimize(v);
  }
}

asio::awaitable<void> asyncdb_reader_loop(benchmark::State* state, asyncdb::database* db) {
  for (auto _ : *state) {
    const int v = co_await asyncdb::async_run(*db, asyncdb::read_only, &trivial);
    benchmark::DoNotOptimize(v);
  }
}

asio::awaitable<void> asyncdb_call_loop(benchmark::State* state, asyncdb::database* db) {
  const async_ping dao{*db};
  for (auto _ : *state) {
    const int v = co_await dao.call<&ping_dao::ping>();
    benchmark::DoNotOptimize(v);
  }
}

// The hand-written hop: post to the pool, compute, post the result back to the coroutine's executor.
asio::awaitable<int> pool_round_trip(asio::thread_pool& pool) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, int)>(
      [&pool](auto handler) {
        auto work = asio::make_work_guard(asio::get_associated_executor(handler));
        asio::post(pool, [handler = std::move(handler), work = std::move(work)]() mutable {
          asio::post(work.get_executor(),
                     [handler = std::move(handler)]() mutable { std::move(handler)(nullptr, 42); });
        });
      },
      asio::use_awaitable);
}

asio::awaitable<void> pool_loop(benchmark::State* state, asio::thread_pool* pool) {
  for (auto _ : *state) {
    const int v = co_await pool_round_trip(*pool);
    benchmark::DoNotOptimize(v);
  }
}

// The floor of both: suspending and resuming a coroutine through the loop, no thread involved.
asio::awaitable<void> loop_only(benchmark::State* state) {
  for (auto _ : *state) co_await asio::post(asio::use_awaitable);
}

void BM_asyncdb_hop_writer(benchmark::State& state) {
  scratch_db db(0);
  asio::io_context ioc{1};
  drive(state, ioc, asyncdb_writer_loop(&state, &db.get()));
}

void BM_asyncdb_hop_reader(benchmark::State& state) {
  scratch_db db(1);
  asio::io_context ioc{1};
  drive(state, ioc, asyncdb_reader_loop(&state, &db.get()));
}

void BM_asyncdb_hop_dao_call(benchmark::State& state) {
  scratch_db db(0);
  asio::io_context ioc{1};
  drive(state, ioc, asyncdb_call_loop(&state, &db.get()));
}

void BM_asio_pool_round_trip(benchmark::State& state) {
  asio::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  asio::io_context ioc{1};
  drive(state, ioc, pool_loop(&state, &pool));
  pool.join();
}

void BM_loop_post_only(benchmark::State& state) {
  asio::io_context ioc{1};
  drive(state, ioc, loop_only(&state));
}

}  // namespace

BENCHMARK(BM_asyncdb_hop_writer)->UseRealTime();
BENCHMARK(BM_asyncdb_hop_reader)->UseRealTime();
BENCHMARK(BM_asyncdb_hop_dao_call)->UseRealTime();
BENCHMARK(BM_asio_pool_round_trip)->Arg(1)->Arg(4)->ArgName("threads")->UseRealTime();
BENCHMARK(BM_loop_post_only)->UseRealTime();

BENCHMARK_MAIN();
