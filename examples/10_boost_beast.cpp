// 10 — A Boost.Beast HTTP server (asyncdb's Boost.Asio flavour: link asyncdb::asyncdb_boost).
//
// One boost::asio::io_context runs the server, its coroutine handlers and an in-process client. The handlers
// co_await the same AsyncUserOper the other examples use: GET /users is one query on a reader, GET /users/stats
// is two queries awaited together with asyncdb::gather. The client makes a few requests, prints the responses
// and closes the server, so the program exits 0 when every answer was the expected one.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <iostream>
#include <string>

#include "async_user_oper.hpp"
#include "demo.hpp"

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Completion handler for co_spawn: a coroutine's exception leaves io_context::run(), so main reports it.
void rethrow(const std::exception_ptr& e) {
  if (e) std::rethrow_exception(e);
}

std::string to_json(const std::vector<User>& users) {
  std::string out = "[";
  for (const User& u : users) {
    if (out.size() > 1) out += ',';
    out += R"({"id":)" + std::to_string(u.id) + R"(,"name":")" + u.name + R"(","active":)" +
           (u.is_active ? "true" : "false") + "}";
  }
  return out + "]";
}

// The route table: what the handler co_awaits runs on asyncdb's connection threads, never on this one.
net::awaitable<http::response<http::string_body>> handle(AsyncUserOper& users,
                                                         const http::request<http::string_body>& req) {
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  try {
    if (req.method() == http::verb::get && req.target() == "/users") {
      res.body() = to_json(co_await users.list());
    } else if (req.method() == http::verb::get && req.target() == "/users/stats") {
      auto [all, active] = co_await asyncdb::gather(users.list(), users.get_active_users());
      res.body() = R"({"total_users":)" + std::to_string(all.size()) + R"(,"active_users":)" +
                   std::to_string(active.size()) + "}";
    } else {
      res.result(http::status::not_found);
      res.body() = R"({"error":"no such route"})";
    }
  } catch (const boost::system::system_error& e) {
    // In this flavour asyncdb's own failures are boost::system::system_error, like Beast's.
    if (e.code() != asyncdb::errc::closed && e.code() != asyncdb::errc::queue_full) throw;
    res.result(http::status::service_unavailable);
    res.body() = R"({"error":")" + e.code().message() + "\"}";
  }
  res.prepare_payload();
  co_return res;
}

// One connection: read a request, answer it, until the client closes.
net::awaitable<void> serve(tcp::socket socket, AsyncUserOper& users) {
  beast::tcp_stream stream{std::move(socket)};
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    auto [ec, n] = co_await http::async_read(stream, buffer, req, net::as_tuple(net::use_awaitable));
    if (ec == http::error::end_of_stream) break;
    if (ec) throw boost::system::system_error{ec};
    http::response<http::string_body> res = co_await handle(users, req);
    co_await http::async_write(stream, res, net::use_awaitable);
    if (!res.keep_alive()) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

// Accepts connections until the acceptor is closed.
net::awaitable<void> listen(tcp::acceptor& acceptor, AsyncUserOper& users) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(net::as_tuple(net::use_awaitable));
    if (ec == net::error::operation_aborted) co_return;
    if (ec) throw boost::system::system_error{ec};
    net::co_spawn(acceptor.get_executor(), serve(std::move(socket), users), rethrow);
  }
}

// The in-process client: a few requests on one keep-alive connection, each answer checked, then the
// server is closed.
net::awaitable<void> client(tcp::endpoint server, tcp::acceptor& acceptor) {
  struct exchange {
    const char* target;
    http::status status;
    const char* body;
  };
  static constexpr exchange exchanges[] = {
      {"/users", http::status::ok,
       R"([{"id":1,"name":"ann","active":true},{"id":2,"name":"bob","active":false},)"
       R"({"id":3,"name":"cid","active":true}])"},
      {"/users/stats", http::status::ok, R"({"total_users":3,"active_users":2})"},
      {"/nope", http::status::not_found, R"({"error":"no such route"})"},
  };
  beast::tcp_stream stream{co_await net::this_coro::executor};
  co_await stream.async_connect(server, net::use_awaitable);
  beast::flat_buffer buffer;
  for (const exchange& x : exchanges) {
    http::request<http::empty_body> req{http::verb::get, x.target, 11};
    req.set(http::field::host, "localhost");
    co_await http::async_write(stream, req, net::use_awaitable);
    http::response<http::string_body> res;
    co_await http::async_read(stream, buffer, res, net::use_awaitable);
    std::cout << "GET " << x.target << " -> " << res.result_int() << ' ' << res.reason() << "\n  " << res.body()
              << '\n';
    if (res.result() != x.status || res.body() != x.body)
      throw std::runtime_error{std::string{"unexpected answer to GET "} + x.target};
  }
  stream.socket().shutdown(tcp::socket::shutdown_both);
  acceptor.close();
}

net::awaitable<void> main_coroutine(AsyncUserOper& users, tcp::acceptor& acceptor) {
  for (const char* name : {"ann", "bob", "cid"}) {
    UserCreate u{name, std::string{name} + "@example.org", name[0] != 'b'};
    co_await users.add(u);
  }
  net::co_spawn(acceptor.get_executor(), listen(acceptor, users), rethrow);
  co_await client(acceptor.local_endpoint(), acceptor);
}

int main() {
  try {
    net::io_context ctx;
    asyncdb::database db{demo::fresh_file("10_boost_beast.db"), {.readers = 2, .on_open = create_schema}};
    AsyncUserOper users{db};
    tcp::acceptor acceptor{ctx, {net::ip::make_address("127.0.0.1"), 0}};
    std::cout << "serving on " << acceptor.local_endpoint() << '\n';
    net::co_spawn(ctx, main_coroutine(users, acceptor), rethrow);
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "10_boost_beast failed: " << e.what() << '\n';
    return 1;
  }
}
