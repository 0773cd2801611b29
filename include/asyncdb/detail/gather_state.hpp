#pragma once
#include <asyncdb/detail/asio.hpp>

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <vector>

namespace asyncdb::detail {

// Shared by the children of one gather. Each child writes only its own value slot; the one that
// brings `remaining_` to zero (acq_rel: it sees every other child's writes) completes the parent.
// Children run with cancellation slots of their own, fed from the parent's slot, so cancelling the
// gather cancels every child. That slot holds a weak reference: the parent's handler lives in this
// state, and a strong one would keep both alive forever if the context were destroyed first.
// Traits: values_type, and complete(handler, first_error, values).
template <class Handler, class Traits>
class gather_state : public std::enable_shared_from_this<gather_state<Handler, Traits>> {
 public:
  gather_state(Handler handler, std::size_t n) : handler_(std::move(handler)), errors_(n), signals_(n), remaining_(n) {}

  auto get_executor() const { return asio::get_associated_executor(handler_); }
  typename Traits::values_type& values() noexcept { return values_; }
  asio::cancellation_slot child_slot(std::size_t i) { return signals_[i].slot(); }

  // For a child spawned after the gather was cancelled: it is cancelled as it starts.
  void cancel_if_cancelled(std::size_t i) {
    if (cancelled_ != asio::cancellation_type::none) signals_[i].emit(cancelled_);
  }

  void connect_cancellation() {
    slot_ = asio::get_associated_cancellation_slot(handler_);
    if (slot_.is_connected()) slot_.template emplace<forward_cancellation>(this->weak_from_this());
  }

  // On the parent's executor, from child `i`'s completion.
  void child_done(std::size_t i, std::exception_ptr ep) {
    errors_[i] = std::move(ep);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) finish();
  }

  // Results in input order; on failure, the first failure in input order.
  void finish() {
    slot_.clear();
    std::exception_ptr first;
    for (auto& e : errors_) {
      if (e) {
        first = e;
        break;
      }
    }
    auto ex = get_executor();  // before the handler moves out
    asio::post(ex, [h = std::move(handler_), first, v = std::move(values_)]() mutable {
      Traits::complete(std::move(h), first, std::move(v));
    });
  }

 private:
  struct forward_cancellation {
    std::weak_ptr<gather_state> state;
    void operator()(asio::cancellation_type type) const {
      if (auto s = state.lock()) {
        s->cancelled_ = type;
        for (auto& sig : s->signals_) sig.emit(type);
      }
    }
  };

  Handler handler_;
  typename Traits::values_type values_{};
  std::vector<std::exception_ptr> errors_;
  std::vector<asio::cancellation_signal> signals_;
  std::atomic<std::size_t> remaining_;
  asio::cancellation_slot slot_;
  asio::cancellation_type cancelled_ = asio::cancellation_type::none;  // on the parent's executor only
};

}  // namespace asyncdb::detail
