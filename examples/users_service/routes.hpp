#pragma once
// The HTTP surface: which path and method go to which handler, the current-user dependency, and the mapping of
// every outcome to a status code. Handlers are coroutines spawned on the server's io_context; they respond when
// the store's awaitable completes, so no loop thread waits for SQLite (unless the store is the --sync one).

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/strand.hpp>
#include <restinio/all.hpp>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>

#include "auth.hpp"
#include "json_mapping.hpp"
#include "metrics.hpp"
#include "store.hpp"

namespace users_service {

struct service_config {
  std::string secret;
  std::size_t max_body = 1 << 20;
  metrics* stats = nullptr;  // what /metrics serves; owned by the caller, who fed it the database's observer
};

class routes {
 public:
  routes(net::io_context& ioc, store& users, service_config config)
      : ioc_{ioc}, users_{users}, config_{std::move(config)} {}

  // RESTinio's request handler: answers /health, /metrics and every error it can decide at once, and hands the
  // rest to a coroutine on a strand of its own (a batch starts its adds from several coroutines at once).
  restinio::request_handling_status_t operator()(restinio::request_handle_t req) {
    const auto started = std::chrono::steady_clock::now();
    const std::string_view path{req->header().path().data(), req->header().path().size()};
    const auto method = req->header().method();
    const route* r = find(path);
    if (!r) return respond(req, "", started, 404, error_body("not found"));
    if (method != r->method)
      return respond(req, r->path, started, 405, error_body("method not allowed"), false,
                     "application/json; charset=utf-8", r->method.c_str());
    if (r->kind == route_kind::health) return respond(req, r->path, started, 200, R"({"status":"ok"})");
    if (r->kind == route_kind::metrics) return respond_metrics(req, started);
    if (req->body().size() > config_.max_body)
      return respond(req, r->path, started, 413,
                     error_body("the body is larger than " + std::to_string(config_.max_body) + " bytes"));
    net::co_spawn(net::make_strand(ioc_), serve(req, *r, started), net::detached);
    return restinio::request_accepted();
  }

  // Responses handed to RESTinio whose bytes are not written yet, plus handlers still running.
  std::size_t in_flight() const noexcept { return in_flight_.load(); }

 private:
  enum class route_kind { health, metrics, me, list, batch, stats };
  struct route {
    std::string_view path;
    restinio::http_method_id_t method;
    route_kind kind;
  };

  static const route* find(std::string_view path) {
    static const route table[] = {
        {"/health", restinio::http_method_get(), route_kind::health},
        {"/metrics", restinio::http_method_get(), route_kind::metrics},
        {"/me/async", restinio::http_method_get(), route_kind::me},
        {"/users/async", restinio::http_method_get(), route_kind::list},
        {"/users/batch-async", restinio::http_method_post(), route_kind::batch},
        {"/users/stats/async", restinio::http_method_get(), route_kind::stats},
    };
    for (const route& r : table)
      if (r.path == path) return &r;
    return nullptr;
  }

  static std::string error_body(const std::string& detail) { return dump({{"detail", detail}}); }

  // The guide's get_current_user_async_dependency: the token's user, or 401/403.
  net::awaitable<User> current_user(const restinio::request_handle_t& req) {
    const std::string* header = req->header().try_get_field(restinio::http_field::authorization);
    const std::int64_t id =
        verify_token(config_.secret, bearer_token(header ? std::optional<std::string_view>{*header} : std::nullopt));
    const std::optional<User> user = co_await users_.get_user(id);
    if (!user) throw http_error{403, "user does not exist"};
    if (!user->is_active) throw http_error{403, "inactive user"};
    co_return *user;
  }

  net::awaitable<std::string> handle(const restinio::request_handle_t& req, route_kind kind, int& status) {
    const User me = co_await current_user(req);
    status = 200;
    switch (kind) {
      case route_kind::me:
        co_return dump(to_json(me));
      case route_kind::list: {
        const auto query =
            restinio::try_parse_query<restinio::parse_query_traits::javascript_compatible>(req->header().query());
        if (!query) throw http_error{422, "malformed query string"};
        auto param = [&](const char* name) -> std::optional<std::string_view> {
          const auto v = query->get_param(name);
          if (!v) return std::nullopt;
          return std::string_view{v->data(), v->size()};
        };
        const std::int64_t skip = parse_bounded(param("skip"), "skip", 0, 0, std::int64_t{1} << 62);
        const std::int64_t limit = parse_bounded(param("limit"), "limit", default_limit, 0, max_limit);
        const std::vector<User> page = co_await users_.list(skip, limit);
        co_return dump(to_json(page));
      }
      case route_kind::batch: {
        std::vector<UserCreate> batch = parse_batch(req->body());
        const std::vector<User> created = co_await users_.create_batch(std::move(batch));
        status = 201;
        co_return dump(to_json(created));
      }
      case route_kind::stats: {
        const user_counts n = co_await users_.counts();
        co_return dump(
            {{"total_users", n.active + n.inactive}, {"active_users", n.active}, {"inactive_users", n.inactive}});
      }
      default:
        throw std::logic_error{"unrouted kind"};
    }
  }

  // Every outcome becomes exactly one response: nothing escapes this coroutine.
  net::awaitable<void> serve(restinio::request_handle_t req, route r, std::chrono::steady_clock::time_point started) {
    const in_flight_guard guard{in_flight_};
    int status = 500;
    std::string body;
    bool retry_later = false;
    try {
      body = co_await handle(req, r.kind, status);
    } catch (const http_error& e) {
      status = e.status;
      body = error_body(e.what());
    } catch (const std::system_error& e) {
      if (e.code() == asyncdb::errc::deadline_exceeded) {  // the async store's operation or session budget
        status = 504;
        body = error_body(timed_out().what());
      } else if (e.code() == asyncdb::errc::queue_full || e.code() == asyncdb::errc::closed) {
        status = 503;
        retry_later = true;
        body = error_body("the service is busy, retry later");
      } else {
        log_internal(r, e);
        status = 500;
        body = error_body("internal error");
      }
    } catch (const std::exception& e) {
      log_internal(r, e);
      status = 500;
      body = error_body("internal error");
    }
    respond(req, r.path, started, status, std::move(body), retry_later);
  }

  static void log_internal(const route& r, const std::exception& e) {
    std::ostringstream line;  // one write, so lines of concurrent requests do not interleave
    line << "users_service: 500 on " << r.path << ": " << e.what() << '\n';
    std::cerr << line.str() << std::flush;
  }

  restinio::request_handling_status_t respond_metrics(const restinio::request_handle_t& req,
                                                      std::chrono::steady_clock::time_point started) {
    return respond(req, "/metrics", started, 200, metrics_.scrape(), false, "text/plain; version=0.0.4; charset=utf-8");
  }

  restinio::request_handling_status_t respond(const restinio::request_handle_t& req, std::string_view route,
                                              std::chrono::steady_clock::time_point started, int status,
                                              std::string body, bool retry_later = false,
                                              const char* type = "application/json; charset=utf-8",
                                              const char* allow = nullptr) {
    auto response = req->create_response(restinio::http_status_line_t{
        restinio::http_status_code_t{static_cast<std::uint16_t>(status)}, std::string{reason(status)}});
    response.append_header(restinio::http_field::content_type, type);
    if (status == 401) response.append_header(restinio::http_field::www_authenticate, "Bearer");
    if (retry_later) response.append_header(restinio::http_field::retry_after, "1");
    if (allow) response.append_header(restinio::http_field::allow, allow);
    if (status == 400) response.connection_close();  // after a body we could not read, the stream may be off
    response.set_body(std::move(body));
    metrics_.record_request(req->header().method().c_str(), route, status,
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    // The guard lives in the write callback, which RESTinio destroys once the bytes are out or the connection is
    // gone: shutdown waits for it.
    return response.done([guard = std::make_shared<in_flight_guard>(in_flight_)](const auto&) {});
  }

  static const char* reason(int status) {
    switch (status) {
      case 200:
        return "OK";
      case 201:
        return "Created";
      case 400:
        return "Bad Request";
      case 401:
        return "Unauthorized";
      case 403:
        return "Forbidden";
      case 404:
        return "Not Found";
      case 405:
        return "Method Not Allowed";
      case 409:
        return "Conflict";
      case 413:
        return "Payload Too Large";
      case 422:
        return "Unprocessable Entity";
      case 503:
        return "Service Unavailable";
      case 504:
        return "Gateway Timeout";
      default:
        return "Internal Server Error";
    }
  }

  struct in_flight_guard {
    std::atomic<std::size_t>& n;
    explicit in_flight_guard(std::atomic<std::size_t>& c) : n{c} { ++n; }
    ~in_flight_guard() { --n; }
    in_flight_guard(const in_flight_guard&) = delete;
    in_flight_guard& operator=(const in_flight_guard&) = delete;
  };

  net::io_context& ioc_;
  store& users_;
  service_config config_;
  metrics& metrics_{*config_.stats};
  std::atomic<std::size_t> in_flight_{0};
};

}  // namespace users_service
