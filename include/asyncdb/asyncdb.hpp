#pragma once
// asyncdb: co_await existing synchronous SQLiteCpp code from Asio coroutines.
#include <asyncdb/async_db_operation.hpp>
#include <asyncdb/async_run.hpp>
#include <asyncdb/budget.hpp>
#include <asyncdb/database.hpp>
#include <asyncdb/error.hpp>
#include <asyncdb/gather.hpp>
#include <asyncdb/options.hpp>
#include <asyncdb/routing.hpp>
#include <asyncdb/session.hpp>
#include <asyncdb/stats.hpp>
#include <asyncdb/to_async_db_oper.hpp>
