// A cancel request that cannot reach its server (a host that accepts and never answers, as a stalled proxy or
// load balancer does): libpq's PQcancel waits for the server to close the request's socket, with no bound.
// It must delay neither the cancels of the database's other connections nor close().
#include "pg_support.hpp"

#include <asyncdb/detail/pg/canceller.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/post.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
// Forwards TCP connections to the primary until stall(); from then on it accepts new ones and never answers
// them, nor closes them.
class stalling_proxy {
 public:
  stalling_proxy() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(listener_, 16) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0 || ::pipe2(stop_, O_CLOEXEC) != 0) {
      throw std::runtime_error("stalling_proxy: cannot listen");
    }
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~stalling_proxy() {
    if (::write(stop_[1], "x", 1) < 0) std::perror("stalling_proxy");
    acceptor_.join();  // first: it is what adds pump threads
    for (auto& t : threads_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(listener_);
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  stalling_proxy(const stalling_proxy&) = delete;
  stalling_proxy& operator=(const stalling_proxy&) = delete;

  std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=asyncdb_test user=postgres connect_timeout=5";
  }
  void stall() { stalled_ = true; }
  void resume() { stalled_ = false; }  // forwards new connections again; those stalled stay so
  int stalled_requests() const { return stalled_seen_; }

 private:
  void accept_loop() {
    for (;;) {
      pollfd p[2] = {{listener_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 || p[1].revents != 0) return;
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      std::lock_guard lock(mutex_);
      fds_.push_back(client);
      if (stalled_) {
        ++stalled_seen_;
        continue;  // held open, never read
      }
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(pgtest::primary_port()));
      if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(server);
        continue;
      }
      fds_.push_back(server);
      threads_.emplace_back([this, client, server] { pump(client, server); });
    }
  }
  void pump(int a, int b) {
    char buf[16384];
    for (;;) {
      pollfd p[3] = {{a, POLLIN, 0}, {b, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(p, 3, -1) < 0 || p[2].revents != 0) return;
      for (int i = 0; i < 2; ++i) {
        if (p[i].revents == 0) continue;
        const ssize_t n = ::read(p[i].fd, buf, sizeof buf);
        if (n <= 0) {
          ::shutdown(p[1 - i].fd, SHUT_WR);
          return;
        }
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::write(p[1 - i].fd, buf + off, static_cast<std::size_t>(n - off));
          if (w <= 0) return;
          off += w;
        }
      }
    }
  }

  int listener_ = -1;
  int stop_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<bool> stalled_{false};
  std::atomic<int> stalled_seen_{0};
  std::mutex mutex_;
  std::vector<int> fds_;
  std::thread acceptor_;
  std::vector<std::thread> threads_;  // pump threads, added only by the acceptor
};

// A libpq connection through `proxy` and its canceller target, as a lane sets them up.
struct proxied_connection {
  PGconn* conn;
  explicit proxied_connection(const stalling_proxy& proxy) : conn(PQconnectdb(proxy.conninfo().c_str())) {}
  ~proxied_connection() { PQfinish(conn); }
  proxied_connection(const proxied_connection&) = delete;
  proxied_connection& operator=(const proxied_connection&) = delete;
};

std::size_t thread_count() {
  return static_cast<std::size_t>(
      std::distance(std::filesystem::directory_iterator("/proc/self/task"), std::filesystem::directory_iterator{}));
}

bool sleeping_on(const std::string& marker, bool on_replica) {
  return pgtest::wait_for("SELECT count(*) = 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" +
                              marker + "%' AND pid <> pg_backend_pid()",
                          10s, on_replica);
}

// Starts `sql` on `pg` (read-only: on the replica) with a cancellation slot; completes on ctx.
struct started {
  asio::cancellation_signal signal;
  std::exception_ptr outcome;
  bool done = false;
};
void start(asyncdb::postgres::database& pg, asio::io_context& ctx, bool read_only, std::string sql, started& s) {
  auto fn = [sql](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    t.exec(sql);
    return 1;
  };
  auto handler =
      asio::bind_cancellation_slot(s.signal.slot(), asio::bind_executor(ctx, [&s](std::exception_ptr e, int) {
                                     s.outcome = e;
                                     s.done = true;
                                   }));
  if (read_only) {
    asyncdb::async_run(pg, asyncdb::read_only, fn, std::move(handler));
  } else {
    asyncdb::async_run(pg, fn, std::move(handler));
  }
}
}  // namespace

TEST_CASE("a cancel that cannot reach its server delays neither other connections' cancels nor close()",
          "[postgres][cancellation]") {
  pgtest::primary();
  stalling_proxy proxy;
  asyncdb::postgres::options o;
  o.primary = proxy.conninfo();
  o.replicas = {pgtest::replica()};
  o.writers = 1;
  o.readers = 1;
  o.close_grace = 200ms;
  o.connect_timeout = 1s;  // also how long a cancel request may go unanswered
  auto pg = std::make_unique<asyncdb::postgres::database>(o);
  asio::io_context ctx;
  // The primary's statement runs; its cancel request goes to the proxy, which from now on never answers.
  started stuck;
  start(*pg, ctx, false, "SELECT pg_sleep(60) /* asyncdb-unreachable-cancel */", stuck);
  REQUIRE(sleeping_on("asyncdb-unreachable-cancel", false));
  proxy.stall();
  asio::post(ctx, [&] { stuck.signal.emit(asio::cancellation_type::terminal); });
  const auto sent_by = std::chrono::steady_clock::now() + 10s;
  while (proxy.stalled_requests() == 0 && std::chrono::steady_clock::now() < sent_by) ctx.run_for(10ms);
  REQUIRE(proxy.stalled_requests() == 1);  // the cancel request is stuck at the proxy
  // A statement on the replica, cancelled after that: its cancel must not wait behind the stuck one.
  started other;
  start(*pg, ctx, true, "SELECT pg_sleep(60) /* asyncdb-reachable-cancel */", other);
  REQUIRE(sleeping_on("asyncdb-reachable-cancel", true));
  asio::post(ctx, [&] { other.signal.emit(asio::cancellation_type::terminal); });
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!other.done && std::chrono::steady_clock::now() < give_up) ctx.run_for(10ms);
  REQUIRE(other.done);  // long before the replica's pg_sleep(60) would end
  std::error_code code;
  try {
    std::rethrow_exception(other.outcome);
  } catch (const std::system_error& e) {
    code = e.code();
  } catch (...) {
  }
  CHECK(code == asio::error::operation_aborted);
  // close() is bounded too: the primary's statement, which no cancel reaches, does not hold it for 60 s.
  const auto before_close = std::chrono::steady_clock::now();
  std::thread closer([&] { pg->close(); });
  while (!stuck.done && std::chrono::steady_clock::now() < before_close + 30s) ctx.run_for(10ms);
  closer.join();
  const auto close_took = std::chrono::steady_clock::now() - before_close;
  CHECK(stuck.done);
  CHECK(close_took < 30s);  // half the statement's 60 s: it was not waited for
  pg.reset();
  pgtest::admin(
      "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%asyncdb-unreachable-cancel%' "
      "AND pid <> pg_backend_pid()");
}

TEST_CASE(
    "a severed connection's descriptor number, once libpq closed it and another socket took it, is not "
    "shut down by the next grace tick",
    "[postgres][cancellation]") {
  pgtest::primary();
  stalling_proxy proxy;
  proxied_connection pc(proxy);
  REQUIRE(PQstatus(pc.conn) == CONNECTION_OK);
  const int fd = PQsocket(pc.conn);
  asyncdb::detail::pg::canceller cancels(20ms);
  auto& target = cancels.add_target();
  cancels.set_handle(target, PQgetCancel(pc.conn), fd);
  proxy.stall();
  cancels.request(target);  // stuck at the proxy
  // close()'s grace ticks, until the request has gone unanswered for the bound and the socket is shut down.
  pollfd p{fd, POLLIN, 0};
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (::poll(&p, 1, 10) == 0 && std::chrono::steady_clock::now() < give_up) cancels.sever_if_unanswered(target);
  REQUIRE(p.revents != 0);
  // libpq finds the connection ended and closes its descriptor; another socket gets the same number.
  PQclear(PQexec(pc.conn, "SELECT 1"));
  REQUIRE(PQsocket(pc.conn) == -1);
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  const int reused = pair[0] == fd ? 0 : 1;
  REQUIRE(pair[reused] == fd);
  cancels.sever_if_unanswered(target);  // the next tick
  char ch = 'x';
  CHECK(::send(pair[1 - reused], &ch, 1, MSG_NOSIGNAL) == 1);
  CHECK(::recv(pair[reused], &ch, 1, MSG_DONTWAIT) == 1);  // 0 if it was shut down
  ::close(pair[0]);
  ::close(pair[1]);
}

TEST_CASE("cancel requests that go unanswered keep at most one request thread per connection",
          "[postgres][cancellation]") {
  pgtest::primary();
  stalling_proxy proxy;
  proxied_connection pc(proxy);
  REQUIRE(PQstatus(pc.conn) == CONNECTION_OK);
  asyncdb::detail::pg::canceller cancels(20ms);
  auto& target = cancels.add_target();
  cancels.set_handle(target, PQgetCancel(pc.conn), PQsocket(pc.conn));
  proxy.stall();
  const std::size_t before = thread_count();
  constexpr int rounds = 6;
  for (int i = 0; i < rounds; ++i) {
    // An operation's cancel, given up; then the replacement connection's handle (here the same server's).
    cancels.request(target);
    CHECK_FALSE(cancels.settle(target));
    cancels.set_handle(target, PQgetCancel(pc.conn), PQsocket(pc.conn));
  }
  CHECK(thread_count() <= before + 1);
  CHECK(cancels.live_requests() == 1);
}

TEST_CASE("after a cancel request that went unanswered, asyncdb's own SQL runs on the replacement connection",
          "[postgres][cancellation]") {
  pgtest::primary();
  stalling_proxy proxy;
  asyncdb::postgres::options o;
  o.primary = proxy.conninfo() + " application_name=asyncdb_after_unanswered";
  o.replicas = {pgtest::replica()};
  o.writers = 1;
  o.readers = 1;
  o.connect_timeout = 1s;
  o.read_your_writes = true;  // each operation that may have committed asks the primary's WAL position
  asyncdb::postgres::database pg(o);
  asio::io_context ctx;
  asio::cancellation_signal signal;
  int old_pid = 0;
  bool done = false;
  // A write (any statement that succeeds on the primary may have), then a statement the cancel is meant for.
  auto fn = [](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    const int pid = t.exec1("SELECT pg_backend_pid()")[0].as<int>();
    t.exec("SELECT pg_sleep(2) /* asyncdb-after-unanswered */");
    return pid;
  };
  auto handler =
      asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ctx, [&](std::exception_ptr e, int pid) {
                                     if (!e) old_pid = pid;
                                     done = true;
                                   }));
  asyncdb::async_run(pg, fn, std::move(handler));
  REQUIRE(sleeping_on("asyncdb-after-unanswered", false));
  proxy.stall();
  asio::post(ctx, [&] { signal.emit(asio::cancellation_type::terminal); });
  const auto sent_by = std::chrono::steady_clock::now() + 10s;
  while (proxy.stalled_requests() == 0 && std::chrono::steady_clock::now() < sent_by) ctx.run_for(10ms);
  REQUIRE(proxy.stalled_requests() == 1);  // held: it may still land whenever the proxy lets it through
  proxy.resume();                          // the replacement connection can be made
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!done && std::chrono::steady_clock::now() < give_up) ctx.run_for(10ms);
  REQUIRE(done);
  REQUIRE(old_pid != 0);  // the statement ended on its own: the operation succeeded
  // As the caller resumes, the WAL position was asked on a new backend, none on the one the cancel may reach.
  pqxx::connection admin{pgtest::primary()};
  pqxx::nontransaction t{admin};
  const std::string mine = "application_name = 'asyncdb_after_unanswered' AND query = 'SELECT pg_current_wal_lsn()'";
  CHECK(t.exec1("SELECT count(*) FROM pg_stat_activity WHERE " + mine + " AND pid <> " + std::to_string(old_pid))[0]
            .as<int>() == 1);
  CHECK(t.exec1("SELECT count(*) FROM pg_stat_activity WHERE " + mine + " AND pid = " + std::to_string(old_pid))[0]
            .as<int>() == 0);
}
