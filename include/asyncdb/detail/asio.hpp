#pragma once
// The one place asyncdb includes Asio. The flavour is standalone Asio (<asio/...>, namespace ::asio,
// std::error_code) unless ASYNCDB_USE_BOOST_ASIO is defined, then Boost.Asio (<boost/asio/...>, namespace
// ::boost::asio, boost::system::error_code). Linking asyncdb::asyncdb_boost defines the macro.

#include <asyncdb/detail/config.hpp>

#if defined(ASYNCDB_USE_BOOST_ASIO)

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_category.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>
#include <boost/version.hpp>

#if BOOST_VERSION < 108100
#error "asyncdb's Boost.Asio flavour needs Boost 1.81 or later."
#endif
#if !defined(BOOST_ASIO_HAS_CO_AWAIT)
#error "asyncdb needs Boost.Asio's C++20 coroutine support (BOOST_ASIO_HAS_CO_AWAIT): compile with -std=c++20."
#endif

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
/// The Asio flavour asyncdb is built on; every other header names Asio only through this alias.
namespace net = ::boost::asio;
/// The error code of the flavour: what asyncdb's errors and operation_aborted compare against.
using error_code = ::boost::system::error_code;
/// The exception asyncdb throws for its own failures and for a cancelled operation.
using system_error = ::boost::system::system_error;
namespace detail {
using error_category_base = ::boost::system::error_category;
}
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb

#else

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_allocator.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/co_spawn.hpp>
#include <asio/dispatch.hpp>
#include <asio/error.hpp>
#include <asio/execution_context.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/system_executor.hpp>
#include <asio/use_awaitable.hpp>

#include <system_error>

#if !defined(ASIO_HAS_CO_AWAIT)
#error \
    "asyncdb needs Asio's C++20 coroutine support. With clang and libstdc++, Asio 1.22 does not detect it: \
define ASIO_HAS_CO_AWAIT=1 and ASIO_HAS_STD_COROUTINE=1 (linking asyncdb::asyncdb does this for you)."
#endif

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
/// The Asio flavour asyncdb is built on; every other header names Asio only through this alias.
namespace net = ::asio;
/// The error code of the flavour: what asyncdb's errors and operation_aborted compare against.
using error_code = std::error_code;
/// The exception asyncdb throws for its own failures and for a cancelled operation.
using system_error = std::system_error;
namespace detail {
using error_category_base = std::error_category;
}
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb

#endif
