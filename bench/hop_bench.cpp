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
//   BM_floor_cv_round_trip       the floor of a hop whose two threads sleep: a bare round trip through a mutex
//                                and condition variables, no Asio, no allocation
//   BM_floor_polling_round_trip  the floor of a hop whose threads never sleep: both spin on one atomic
// Every benchmark also reports the process's CPU time (all threads) and context switches per operation, and
// the run ends with asyncdb's hops as multiples of the two floors measured in the same run.
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
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.hpp"
#include "process_meter.hpp"

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

// The process's CPU time (all threads, us) and context switches per operation since `meter` started.
void report_process(benchmark::State& state, const bench::process_meter& meter, double ops_per_iteration = 1) {
  bench::sample s;
  const auto ops = static_cast<std::size_t>(static_cast<double>(state.iterations()) * ops_per_iteration);
  meter.stop(s, ops == 0 ? 1 : ops);
  state.counters["cpu_us/op"] = s.client_cpu_us;
  state.counters["switches/op"] = s.switches_per_op;
}

// Runs `loop(state, ...)` as a coroutine on a fresh single-threaded io_context, and reports allocs/op.
// With `busy_poll`, the loop thread polls instead of sleeping in epoll_wait (a floor, not a way to run).
template <class Awaitable>
void drive(benchmark::State& state, asio::io_context& ioc, Awaitable loop, bool busy_poll = false,
           double ops_per_iteration = 1) {
  std::exception_ptr error;
  bool done = false;
  const bench::process_meter meter;
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
  report_process(state, meter, ops_per_iteration);
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

// Two threads taking turns through a mutex and two condition variables, each sleeping until its turn: what
// any hop costs when its threads sleep between operations (two futex wake-ups, two context switches).
class cv_partner {
 public:
  cv_partner() : thread_([this] { run(); }) {}
  cv_partner(const cv_partner&) = delete;
  cv_partner& operator=(const cv_partner&) = delete;
  ~cv_partner() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    to_worker_.notify_one();
    thread_.join();
  }
  int round_trip() {
    std::unique_lock lock(mutex_);
    worker_turn_ = true;
    to_worker_.notify_one();
    to_caller_.wait(lock, [&] { return !worker_turn_; });
    return value_;
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      to_worker_.wait(lock, [&] { return worker_turn_ || stop_; });
      if (stop_) return;
      value_ = 42;
      worker_turn_ = false;
      to_caller_.notify_one();
    }
  }
  std::mutex mutex_;
  std::condition_variable to_worker_;
  std::condition_variable to_caller_;
  bool worker_turn_ = false;
  bool stop_ = false;
  int value_ = 0;
  std::thread thread_;
};

// Two threads taking turns on one atomic, neither ever sleeping: the floor of a hop between two busy cores
// (asyncdb's lanes with options::poll_before_sleep come closest).
class polling_partner {
 public:
  polling_partner() : thread_([this] { run(); }) {}
  polling_partner(const polling_partner&) = delete;
  polling_partner& operator=(const polling_partner&) = delete;
  ~polling_partner() {
    turn_.store(stop, std::memory_order_release);
    thread_.join();
  }
  void round_trip() {
    turn_.store(worker, std::memory_order_release);
    for (unsigned spins = 1; turn_.load(std::memory_order_acquire) != caller; ++spins) relax(spins);
  }

 private:
  enum : int { caller, worker, stop };
  // Every 64th spin yields: on a machine with more busy threads than cores, the partner may be waiting for
  // this core, and a pure spin would then wait out a whole time slice (milliseconds) for it.
  static void relax(unsigned spins) {
    if (spins % 64 == 0) {
      std::this_thread::yield();
    } else {
      asyncdb::detail::cpu_relax();
    }
  }
  void run() {
    for (unsigned spins = 1;; ++spins) {
      const int t = turn_.load(std::memory_order_acquire);
      if (t == stop) return;
      if (t == worker) {
        turn_.store(caller, std::memory_order_release);
        spins = 0;
        continue;
      }
      relax(spins);
    }
  }
  std::atomic<int> turn_{caller};
  std::thread thread_;
};

void BM_floor_cv_round_trip(benchmark::State& state) {
  cv_partner partner;
  const bench::process_meter meter;
  for (auto _ : state) benchmark::DoNotOptimize(partner.round_trip());
  report_process(state, meter);
}

void BM_floor_polling_round_trip(benchmark::State& state) {
  polling_partner partner;
  const bench::process_meter meter;
  for (auto _ : state) partner.round_trip();
  report_process(state, meter);
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
BENCHMARK(BM_floor_cv_round_trip)->UseRealTime();
BENCHMARK(BM_floor_polling_round_trip)->UseRealTime();

namespace {

// The console output as usual, plus each run's real time per iteration by name, for the closing summary.
class summary_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred || r.iterations == 0) continue;
      // Aggregates keep their own names (".._median"); plain repetitions overwrite each other: the last counts.
      ns_[r.benchmark_name()] = r.GetAdjustedRealTime() * to_ns(r.time_unit);
    }
  }
  // Each asyncdb hop as a multiple of the two floors, when all were run (with repetitions: their medians).
  void print_ratios() const {
    const std::string suffix = has("BM_floor_cv_round_trip/real_time_median") ? "/real_time_median" : "/real_time";
    const auto floor_cv = find("BM_floor_cv_round_trip" + suffix);
    const auto floor_poll = find("BM_floor_polling_round_trip" + suffix);
    if (floor_cv <= 0 && floor_poll <= 0) return;
    std::printf(
        "\nfloors in this run (us): condition-variable round trip %.2f, polling round trip %.2f (-1: not run)\n",
        floor_cv / 1e3, floor_poll / 1e3);
    for (const char* hop : {"BM_asyncdb_hop_writer", "BM_asyncdb_hop_reader", "BM_asyncdb_hop_dao_call"}) {
      const double t = find(hop + suffix);
      if (t <= 0) continue;
      std::printf("%-24s %8.2f us", hop, t / 1e3);
      if (floor_cv > 0) std::printf(" = %5.2fx the cv floor (%+.2f us)", t / floor_cv, (t - floor_cv) / 1e3);
      if (floor_poll > 0) std::printf(", %6.1fx the polling floor", t / floor_poll);
      std::printf("\n");
    }
  }

 private:
  static double to_ns(benchmark::TimeUnit u) {
    switch (u) {
      case benchmark::kSecond:
        return 1e9;
      case benchmark::kMillisecond:
        return 1e6;
      case benchmark::kMicrosecond:
        return 1e3;
      default:
        return 1;
    }
  }
  bool has(const std::string& name) const { return ns_.count(name) > 0; }
  double find(const std::string& name) const {
    const auto it = ns_.find(name);
    return it == ns_.end() ? -1 : it->second;
  }
  std::map<std::string, double> ns_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  summary_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios();
  benchmark::Shutdown();
  return 0;
}
