// The cost of one hop through asyncdb with a trivial function, against the plain Asio round trip a user
// would otherwise write (post to an asio::thread_pool, post back), both awaited from a coroutine on a
// single-threaded io_context. Real time: the work happens on other threads. allocs/op counts every
// operator new of the process during the loop.
//   BM_asyncdb_hop_*             async_run on the writer / a reader, and to_async_db_oper::call on the writer
//   BM_asyncdb_gather            10,000 trivial async_run started at once through gather (W2 without SQLite)
//   BM_asio_pool_round_trip      the hand-written hop, thread_pool of 1 or 4 threads
//   BM_spinning_worker_*         floors: a worker that never sleeps, with the loop sleeping or busy-polling,
//                                with 0 or 5 us of work standing for the DAO call
//   BM_loop_post_only            a coroutine suspended and resumed through the loop, no thread involved
#include <benchmark/benchmark.h>

#include <stdlib.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asyncdb/asyncdb.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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
// With `busy_poll`, the loop thread polls instead of sleeping in epoll_wait (a floor, not a way to run).
template <class Awaitable>
void drive(benchmark::State& state, asio::io_context& ioc, Awaitable loop, bool busy_poll = false,
           double ops_per_iteration = 1) {
  std::exception_ptr error;
  bool done = false;
  const std::uint64_t allocs = bench::allocations();
  asio::co_spawn(ioc, std::move(loop), [&](std::exception_ptr e) {
    error = e;
    done = true;
  });
  if (busy_poll) {
    while (!done) ioc.poll();
  } else {
    ioc.run();
  }
  const std::uint64_t made = bench::allocations() - allocs;
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
    }
  }
  state.counters["allocs/op"] =
      benchmark::Counter(static_cast<double>(made) / ops_per_iteration, benchmark::Counter::kAvgIterations);
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

// W2's shape without SQLite: N trivial operations started at once through gather. The time per operation
// is what the loop thread and the lane spend outside the database, the ceiling of W2 even with free commits.
asio::awaitable<void> asyncdb_gather_loop(benchmark::State* state, asyncdb::database* db) {
  const auto n = static_cast<std::size_t>(state->range(0));
  for (auto _ : *state) {
    std::vector<asio::awaitable<int>> ops;
    ops.reserve(n);
    for (std::size_t i = 0; i < n; ++i) ops.push_back(asyncdb::async_run(*db, &trivial));
    const std::vector<int> results = co_await asyncdb::gather(std::move(ops));
    benchmark::DoNotOptimize(results.data());
  }
  state->SetItemsProcessed(state->iterations() * state->range(0));
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

// The floor of any design that hands work to another thread without putting that thread to sleep: a
// worker spinning on a one-slot mailbox, the result posted back as above. Burns a core; a measurement only.
class spinning_worker {
 public:
  spinning_worker() : thread_([this] { run(); }) {}
  spinning_worker(const spinning_worker&) = delete;
  spinning_worker& operator=(const spinning_worker&) = delete;
  ~spinning_worker() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  void submit(std::function<void()>* job) { slot_.store(job, std::memory_order_release); }

 private:
  void run() {
    while (!stop_.load(std::memory_order_relaxed)) {
      if (std::function<void()>* job = slot_.exchange(nullptr, std::memory_order_acquire)) {
        (*job)();
        delete job;
      }
    }
  }
  std::atomic<std::function<void()>*> slot_{nullptr};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// `work` of busy time on the worker stands for the DAO call (S's p50 for W1c1 is about 5 us here).
asio::awaitable<int> spinning_round_trip(spinning_worker& worker, std::chrono::nanoseconds work) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, int)>(
      [&worker, busy = work](auto handler) {
        auto guard = asio::make_work_guard(asio::get_associated_executor(handler));
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        worker.submit(new std::function<void()>([shared, guard, busy]() mutable {
          const auto until = std::chrono::steady_clock::now() + busy;
          while (std::chrono::steady_clock::now() < until) {
          }
          asio::post(guard.get_executor(), [shared]() mutable { std::move (*shared)(nullptr, 42); });
        }));
      },
      asio::use_awaitable);
}

asio::awaitable<void> spinning_loop(benchmark::State* state, spinning_worker* worker, std::chrono::nanoseconds work) {
  for (auto _ : *state) {
    const int v = co_await spinning_round_trip(*worker, work);
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

void BM_asyncdb_gather(benchmark::State& state) {
  scratch_db db(0);
  asio::io_context ioc{1};
  drive(state, ioc, asyncdb_gather_loop(&state, &db.get()), false, static_cast<double>(state.range(0)));
}

void BM_asio_pool_round_trip(benchmark::State& state) {
  asio::thread_pool pool(static_cast<std::size_t>(state.range(0)));
  asio::io_context ioc{1};
  drive(state, ioc, pool_loop(&state, &pool));
  pool.join();
}

void BM_spinning_worker_round_trip(benchmark::State& state) {
  spinning_worker worker;
  asio::io_context ioc{1};
  drive(state, ioc, spinning_loop(&state, &worker, std::chrono::microseconds(state.range(1))), state.range(0) != 0);
}

void BM_loop_post_only(benchmark::State& state) {
  asio::io_context ioc{1};
  drive(state, ioc, loop_only(&state));
}

}  // namespace

BENCHMARK(BM_asyncdb_hop_writer)->UseRealTime();
BENCHMARK(BM_asyncdb_hop_reader)->UseRealTime();
BENCHMARK(BM_asyncdb_hop_dao_call)->UseRealTime();
BENCHMARK(BM_asyncdb_gather)->Arg(10000)->ArgName("ops")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_asio_pool_round_trip)->Arg(1)->Arg(4)->ArgName("threads")->UseRealTime();
BENCHMARK(BM_spinning_worker_round_trip)
    ->ArgsProduct({{0, 1}, {0, 5}})
    ->ArgNames({"loop_polls", "work_us"})
    ->UseRealTime();
BENCHMARK(BM_loop_post_only)->UseRealTime();

BENCHMARK_MAIN();
