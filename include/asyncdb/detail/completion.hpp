#pragma once
#include <asyncdb/detail/asio.hpp>
#include <asyncdb/detail/context_registry.hpp>
#include <asyncdb/detail/operation.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// The execution context behind a handler's executor: standard executors answer the query, older ones
// (use_future's promise executor among them) have context().
template <class Executor>
net::execution_context& context_of(const Executor& ex) {
  if constexpr (net::can_query<const Executor&, net::execution::context_t>::value) {
    return net::query(ex, net::execution::context);
  } else {
    return ex.context();
  }
}

// Owns the handler and delivers `void(std::exception_ptr, Results...)` to its associated executor, the
// way Asio's own operations do: a work guard keeps that executor's context running meanwhile, and the
// completion is posted, so the caller never resumes on a database thread. Handler, work guard and
// outcome change hands only under the registry's lock: delivered, or abandoned by the context's
// shutdown, never both.
template <class Handler, class... Results>
class async_op : public operation_base {
 public:
  explicit async_op(Handler handler) : handler_(std::move(handler)) {
    work_.emplace(net::get_associated_executor(*handler_));
  }

  ~async_op() override {
    // Only reachable undelivered if a job was dropped; unregister so the registry keeps no dangling node.
    if (registry_) registry_->remove_and(*this, [] {});
  }

  // Registers with the handler's execution context and connects the cancellation slot. False when that
  // context is already shutting down: the handler has then been dropped.
  bool attach() {
    drains_ = completes_on_its_context();
    slot_ = net::get_associated_cancellation_slot(*handler_);
    if (slot_.is_connected()) slot_.template emplace<cancel_handler>(weak_from_this());
    registry_ = net::use_service<context_registry>(context_of(work_->get_executor())).registry();
    if (!registry_->add(*this)) {
      abandon();
      return false;
    }
    return true;
  }

  void fail(error_code ec) noexcept override {
    release_work();
    deliver(std::make_exception_ptr(system_error(ec)), Results{}...);
  }

  void abandon() noexcept override {
    outcome_.reset();
    handler_.reset();
    work_.reset();
  }

  void run_completion() override {
    struct release_work_at_exit {  // once the handler has run, even if it throws
      async_op& op;
      ~release_work_at_exit() { op.work_.reset(); }
    } release{*this};
    auto handler = std::move(*handler_);
    handler_.reset();
    auto outcome = std::move(*outcome_);
    outcome_.reset();
    slot_.clear();
    std::apply([&](std::exception_ptr& ep, auto&... a) { std::move(handler)(ep, std::move(a)...); }, outcome);
  }

 protected:
  // Destroys what the operation would have run; called before a completion that skips the run.
  virtual void release_work() noexcept {}

  void deliver(std::exception_ptr ep, Results... results) noexcept {
    mark_done();
    if (drains_) {
      registry_->queue_ready(*this, [&] { outcome_.emplace(std::move(ep), std::move(results)...); });
      return;
    }
    registry_->remove_and(*this, [&] {
      // `ep` moves too: the last reference to an exception must not be dropped on this thread while the
      // caller reads it (a real free-vs-read race as far as TSan can see into libstdc++).
      net::post(work_->get_executor(), [handler = std::move(*handler_), slot = slot_, ep = std::move(ep),
                                        args = std::make_tuple(std::move(results)...)]() mutable {
        slot.clear();  // here, on the handler's executor, where the slot's owner emits
        std::apply([&](auto&... a) { std::move(handler)(ep, std::move(a)...); }, args);
      });
      // Now, not whenever this operation dies: their executors (a strand's impl, say) may unlink from
      // services of a context gone by then.
      work_.reset();
      handler_.reset();
    });
  }

 private:
  // Weak: the slot belongs to the handler this operation owns, and a strong reference would be a cycle.
  struct cancel_handler {
    std::weak_ptr<operation_base> op;
    void operator()(net::cancellation_type type) const noexcept {
      if ((type & (net::cancellation_type::terminal | net::cancellation_type::partial |
                   net::cancellation_type::total)) == net::cancellation_type::none) {
        return;
      }
      if (auto self = op.lock()) self->cancel();
    }
  };

  // Whether the handler may run on any thread running its io_context, i.e. inside the registry's drain.
  bool completes_on_its_context() const noexcept {
    using executor = net::associated_executor_t<Handler>;
    if constexpr (std::is_same_v<executor, net::io_context::executor_type>) {
      return true;
    } else if constexpr (std::is_same_v<executor, net::any_io_executor>) {
      // Not target<T>() != nullptr: Asio 1.22's target<T>() returns its pointer whatever T is.
      return work_->get_executor().target_type() == typeid(net::io_context::executor_type);
    } else {
      return false;
    }
  }

  std::optional<Handler> handler_;
  std::optional<net::executor_work_guard<net::associated_executor_t<Handler>>> work_;
  net::cancellation_slot slot_;
  std::optional<std::tuple<std::exception_ptr, Results...>> outcome_;  // stored for the drain
  std::shared_ptr<completion_registry> registry_;                      // set once, by attach()
  bool drains_ = false;  // completes_on_its_context(), decided before any other thread can abandon us
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
