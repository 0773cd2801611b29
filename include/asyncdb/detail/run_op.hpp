#pragma once
#include <asyncdb/detail/operation.hpp>

#include <chrono>
#include <optional>
#include <string_view>
#include <type_traits>
#include <variant>

namespace asyncdb::detail {

template <class Handler, class R>
struct async_op_for {
  using type = async_op<Handler, R>;
};
template <class Handler>
struct async_op_for<Handler, void> {
  using type = async_op<Handler>;
};

// Runs `fn(lane&) -> R` on whichever lane pops it: the database work of every public operation.
template <class Handler, class Fn, class R>
class run_op final : public async_op_for<Handler, R>::type {
  using base = typename async_op_for<Handler, R>::type;

 public:
  run_op(Handler handler, Fn fn, std::string_view name, session_state* session)
      : base(std::move(handler)), fn_(std::in_place, std::move(fn)), name_(name), session_(session) {}

  void execute(lane& l) noexcept override {
    counters& c = l.stats_counters();
    if (!this->start(l)) {
      c.cancelled.fetch_add(1, std::memory_order_relaxed);  // already completed by the canceller
      return;
    }
    c.queue_wait_ns.fetch_add((std::chrono::steady_clock::now() - this->enqueued_at).count(),
                              std::memory_order_relaxed);
    c.running.fetch_add(1, std::memory_order_relaxed);
    if (session_ == nullptr) l.hold(writer_holder::kind::operation, name_);
    const bool txn_before = session_ != nullptr && in_transaction(l.handle());

    std::exception_ptr ep;
    std::optional<result_type> result;
    try {
      if constexpr (std::is_void_v<R>) {
        (*fn_)(l);
        result.emplace();
      } else {
        result.emplace((*fn_)(l));
      }
    } catch (...) {
      ep = std::current_exception();
    }
    fn_.reset();  // Asio's rule: what the operation captured is gone before its completion runs
    const bool cancelled = this->finish() && ep;
    l.clear_interrupt();
    ep = l.settle(ep, cancelled, session_, txn_before);
    if (cancelled) ep = std::make_exception_ptr(std::system_error(asio::error::operation_aborted));
    if (session_ == nullptr) l.release_hold();

    c.running.fetch_sub(1, std::memory_order_relaxed);
    (cancelled ? c.cancelled : ep ? c.failed : c.completed).fetch_add(1, std::memory_order_relaxed);
    if constexpr (std::is_void_v<R>) {
      this->deliver(std::move(ep));
    } else if (ep) {
      this->deliver(std::move(ep), R{});
    } else {
      this->deliver(nullptr, std::move(*result));
    }
  }

 protected:
  // Never ran (cancelled while queued, or refused): the lane will not touch fn_ any more.
  void release_work() noexcept override { fn_.reset(); }

 private:
  using result_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
  std::optional<Fn> fn_;
  std::string_view name_;   // static storage: a function name or a literal
  session_state* session_;  // the lane serving the session keeps it alive while this runs
};

}  // namespace asyncdb::detail
