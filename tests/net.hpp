#pragma once
// The Asio the tests are written against: the flavour asyncdb is built with. The same test sources make
// asyncdb_tests (standalone Asio) and asyncdb_tests_boost (Boost.Asio, ASYNCDB_USE_BOOST_ASIO), so they
// spell Asio `net::`, asyncdb's error types `asyncdb::error_code` / `asyncdb::system_error`, and the one
// name the two Asio releases spell differently `test::deferred`.
#include <asyncdb/detail/asio.hpp>

#if defined(ASYNCDB_USE_BOOST_ASIO)
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#else
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#endif

namespace net = asyncdb::net;

namespace test {
/// The deferred completion token: asio::experimental::deferred in Asio 1.22, boost::asio::deferred in 1.81.
#if defined(ASYNCDB_USE_BOOST_ASIO)
inline constexpr const auto& deferred = net::deferred;
#else
inline constexpr const auto& deferred = net::experimental::deferred;
#endif
}  // namespace test
