// users_service: the guide's FastAPI users service in C++, on RESTinio and asyncdb.
//
//   users_service serve --db PATH --listen HOST:PORT --secret-file F [--threads N] [--readers N]
//                       [--max-body BYTES] [--request-timeout MS] [--max-queued N] [--slow-ms MS] [--sync]
//   (--max-queued is asyncdb's options::max_queued: past it a request is answered 503 with Retry-After; --slow-ms logs
//   each database operation that took MS or longer, queue wait included, on stderr)
//   users_service token --db PATH --secret-file F --user NAME [--ttl SECONDS]
//   users_service seed  --db PATH --users N
//
// `serve` runs the HTTP server and every asyncdb caller on one io_context, run by --threads threads. `token` and
// `seed` use the synchronous UserOper directly, as the unmigrated parts of a code base would.

#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <pthread.h>
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "operation_log.hpp"
#include "routes.hpp"

namespace {

using namespace users_service;

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --name value pairs and bare --flags, checked against what the command accepts.
class arguments {
 public:
  arguments(int argc, char** argv, const std::vector<std::string>& valued, const std::vector<std::string>& flags) {
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (std::find(flags.begin(), flags.end(), a) != flags.end()) {
        values_[a] = "";
      } else if (std::find(valued.begin(), valued.end(), a) != valued.end()) {
        if (i + 1 >= argc) throw usage_error{a + " needs a value"};
        values_[a] = argv[++i];
      } else {
        throw usage_error{"unknown argument: " + a};
      }
    }
  }

  bool has(const std::string& name) const { return values_.count(name) != 0; }

  std::string required(const std::string& name) const {
    const auto it = values_.find(name);
    if (it == values_.end() || it->second.empty()) throw usage_error{name + " is required"};
    return it->second;
  }

  std::int64_t number(const std::string& name, std::int64_t fallback, std::int64_t lo, std::int64_t hi) const {
    const auto it = values_.find(name);
    if (it == values_.end()) return fallback;
    std::int64_t v = 0;
    const std::string& s = it->second;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v < lo || v > hi)
      throw usage_error{name + " must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi)};
    return v;
  }

 private:
  std::map<std::string, std::string> values_;
};

// There is no default secret: a missing, unreadable or empty file stops the program.
std::string read_secret(const std::string& file) {
  std::ifstream in{file, std::ios::binary};
  if (!in) throw usage_error{"cannot read the secret file " + file};
  std::string secret{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) throw usage_error{"the secret file " + file + " is empty"};
  return secret;
}

struct listen_address {
  std::string host;
  std::uint16_t port;
};

listen_address parse_listen(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) throw usage_error{"--listen must be HOST:PORT"};
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = text.substr(colon + 1);
  unsigned v = 0;
  const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (port.empty() || ec != std::errc{} || p != port.data() + port.size() || v > 65535)
    throw usage_error{"--listen port must be 0 to 65535"};
  asio::error_code bad;
  asio::ip::make_address(host, bad);
  if (bad) throw usage_error{"--listen host must be an IP address: " + host};
  return {host, static_cast<std::uint16_t>(v)};
}

// The database must exist already for token; serve and seed create the table if needed.
void open_schema(const std::string& path) {
  SQLite::Database db{path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE};
  db.exec("PRAGMA journal_mode=WAL");
  create_schema(db);
}

int token_command(const arguments& args) {
  const std::string secret = read_secret(args.required("--secret-file"));
  const std::int64_t ttl = args.number("--ttl", 3600, -(std::int64_t{1} << 31), std::int64_t{1} << 31);
  const std::string name = args.required("--user");
  SQLite::Database db{args.required("--db"), SQLite::OPEN_READONLY};
  UserOper users{db};
  const std::optional<User> user = users.get_by_name(name);
  if (!user) {
    std::cerr << "users_service token: no user named " << name << '\n';
    return 1;
  }
  std::cout << make_token(secret, user->id, std::chrono::seconds{ttl}) << '\n';
  return 0;
}

int seed_command(const arguments& args) {
  const std::int64_t n = args.number("--users", -1, 1, 10'000'000);
  if (n < 0) throw usage_error{"--users is required"};
  const std::string path = args.required("--db");
  open_schema(path);
  SQLite::Database db{path, SQLite::OPEN_READWRITE};
  UserOper users{db};
  SQLite::Transaction tx{db};
  const std::int64_t first = db.execAndGet("SELECT coalesce(max(id), 0) FROM users").getInt64() + 1;
  for (std::int64_t i = first; i < first + n; ++i) {
    const UserCreate u{"seed" + std::to_string(i), "seed" + std::to_string(i) + "@example.org", i % 4 != 0};
    users.add(u);
  }
  tx.commit();
  std::cout << "seeded " << n << " users\n";
  return 0;
}

int serve_command(const arguments& args) {
  const std::string db_path = args.required("--db");
  const listen_address listen = parse_listen(args.required("--listen"));
  const std::string secret = read_secret(args.required("--secret-file"));
  const auto cores = static_cast<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  const auto threads = static_cast<std::size_t>(args.number("--threads", cores, 1, 1024));
  const auto readers = static_cast<std::size_t>(args.number("--readers", 2, 0, 1024));
  const auto max_body = static_cast<std::size_t>(args.number("--max-body", 1 << 20, 1, std::int64_t{1} << 30));
  const std::chrono::milliseconds timeout{args.number("--request-timeout", 5000, 1, 3'600'000)};
  const auto max_queued = static_cast<std::size_t>(args.number("--max-queued", 65536, 1, std::int64_t{1} << 30));
  const bool sync = args.has("--sync");
  std::optional<std::chrono::milliseconds> slow;
  if (args.has("--slow-ms")) slow = std::chrono::milliseconds{args.number("--slow-ms", 0, 0, 3'600'000)};

  open_schema(db_path);
  metrics stats{!sync};
  asio::io_context ioc{static_cast<int>(threads)};
  std::optional<asyncdb::database> db;
  std::unique_ptr<store> users;
  if (sync) {
    users = std::make_unique<sync_store>(db_path, timeout);
  } else {
    db.emplace(db_path, asyncdb::options{.readers = readers,
                                         .max_queued = max_queued,
                                         .on_open = create_schema,
                                         .observer = observe_operations(stats, slow),
                                         .operation_budget = timeout});
    stats.watch(*db);
    users = std::make_unique<async_store>(*db, timeout);
  }
  routes handler{ioc, *users, service_config{secret, max_body, &stats}};

  // RESTinio 0.6 cannot answer from its header callback: a body over its own limit closes the connection with no
  // response. So its limit is a hard ceiling well above --max-body, and the handler answers 413 below it.
  const std::uint64_t ceiling = std::max<std::uint64_t>(std::uint64_t{max_body} * 2, 16u << 20);
  asio::ip::tcp::endpoint bound;
  using traits = restinio::traits_t<restinio::asio_timer_manager_t, restinio::null_logger_t>;
  restinio::http_server_t<traits> server{
      restinio::external_io_context(ioc),
      restinio::server_settings_t<traits>{}
          .address(listen.host)
          .port(listen.port)
          .request_handler([&handler](restinio::request_handle_t req) { return handler(std::move(req)); })
          .incoming_http_msg_limits(restinio::incoming_http_msg_limits_t{}.max_body_size(ceiling))
          // A request must arrive within the timeout (a client that never finishes its body is cut off), and
          // RESTinio's own handler deadline sits past ours so that the 504 is ours.
          .read_next_http_message_timelimit(timeout)
          .write_http_response_timelimit(timeout)
          .handle_request_timeout(timeout * 2 + std::chrono::seconds{5})
          .acceptor_post_bind_hook([&bound](asio::ip::tcp::acceptor& a) { bound = a.local_endpoint(); })};

  int status = 0;
  server.open_async(
      [&] {
        const std::string host =
            bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();
        std::cout << "listening on http://" << host << ':' << bound.port() << std::endl;
      },
      [&](std::exception_ptr e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          std::cerr << "users_service: cannot listen on " << listen.host << ':' << listen.port << ": " << x.what()
                    << '\n';
        }
        status = 1;
        ioc.stop();
      });

  // SIGINT/SIGTERM: stop accepting, let every request in flight be answered and written (bounded by the request
  // timeout and a margin), then stop the loop; the database is closed after the threads are joined.
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  asio::steady_timer drain{ioc};
  std::chrono::steady_clock::time_point give_up{};
  std::function<void()> wait_for_drain = [&] {
    if (handler.in_flight() == 0 || std::chrono::steady_clock::now() > give_up) return ioc.stop();
    drain.expires_after(std::chrono::milliseconds{5});
    drain.async_wait([&](const asio::error_code&) { wait_for_drain(); });
  };
  signals.async_wait([&](const asio::error_code& ec, int) {
    if (ec) return;
    give_up = std::chrono::steady_clock::now() + timeout + std::chrono::seconds{2};
    server.close_async([&] { wait_for_drain(); }, [&](std::exception_ptr) { ioc.stop(); });
  });

  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  for (std::thread& t : pool) t.join();
  if (db) db->close();
  // Once `signals` is destroyed, a second SIGINT/SIGTERM would meet the default action and end the process with
  // 128 + signal mid-cleanup. Every other thread is joined now, so blocking both here keeps them pending until exit.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return status;
}

int usage(const std::string& why) {
  std::cerr << "users_service: " << why
            << " (usage: users_service serve|token|seed --db PATH ...; see examples/users_service/main.cpp)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "serve")
      return serve_command(arguments{argc,
                                     argv,
                                     {"--db", "--listen", "--secret-file", "--threads", "--readers", "--max-body",
                                      "--request-timeout", "--max-queued", "--slow-ms"},
                                     {"--sync"}});
    if (command == "token")
      return token_command(arguments{argc, argv, {"--db", "--secret-file", "--user", "--ttl"}, {}});
    if (command == "seed") return seed_command(arguments{argc, argv, {"--db", "--users"}, {}});
    return usage(command.empty() ? "a command is required" : "unknown command: " + command);
  } catch (const usage_error& e) {
    return usage(e.what());
  } catch (const std::exception& e) {
    std::cerr << "users_service " << command << ": " << e.what() << '\n';
    return 1;
  }
}
