#pragma once
// The one place asyncdb includes Asio: a Boost.Asio flavour would change only this file.

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
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
#include <asio/use_awaitable.hpp>

#if !defined(ASIO_HAS_CO_AWAIT)
#error \
    "asyncdb needs Asio's C++20 coroutine support. With clang and libstdc++, Asio 1.22 does not detect it: \
define ASIO_HAS_CO_AWAIT=1 and ASIO_HAS_STD_COROUTINE=1 (linking asyncdb::asyncdb does this for you)."
#endif

namespace asyncdb {
/// The Asio flavour asyncdb is built on; every other header names Asio only through this alias.
namespace net = ::asio;
}  // namespace asyncdb
