#pragma once
#include <asyncdb/detail/asio.hpp>
#include <asyncdb/detail/budget.hpp>
#include <asyncdb/detail/context_registry.hpp>
#include <asyncdb/detail/op_memory.hpp>
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
    record_budget(*handler_, *this);
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
    deliver_outcome(std::make_exception_ptr(system_error(ec)), static_cast<Results*>(nullptr)...);
  }

  void abandon() noexcept override {
    outcome_.reset();
    handler_.reset();
    work_.reset();
  }

  // Everything the handler needs leaves the operation first, and the drain's reference is dropped: when
  // the lane has let go already, the operation is freed here, on the loop's thread, before the handler
  // resumes a coroutine that starts the next one, which then finds its memory in the cache. The slot is
  // cleared first: its cancel_handler's weak reference would keep the memory allocated. The work guard
  // goes last, once the handler has run, even if it throws.
  void run_completion(std::shared_ptr<pending_completion> self) override {
    auto work = std::move(*work_);
    work_.reset();
    auto handler = std::move(*handler_);
    handler_.reset();
    auto outcome = std::move(*outcome_);
    outcome_.reset();
    slot_.clear();
    self.reset();  // may destroy *this: nothing of it is touched from here on
    call_handler(std::move(handler), outcome);
  }

 protected:
  // Destroys what the operation would have run; called before a completion that skips the run.
  virtual void release_work() noexcept {}

  // Delivers `ep`, or when it is null `results` (moved from). Nothing of `results` is moved when `ep` is set.
  void deliver(std::exception_ptr ep, Results&&... results) noexcept { deliver_outcome(std::move(ep), &results...); }

  // As deliver(), for a run that kept its value in `result` (empty on failure; std::monostate when void).
  template <class Stored>
  void deliver_result(std::exception_ptr ep, std::optional<Stored>& result) noexcept {
    if constexpr (sizeof...(Results) == 0) {
      deliver_outcome(std::move(ep));
    } else {
      using value_type = std::tuple_element_t<0, std::tuple<Results...>>;  // the one result of a run
      value_type* const value = ep || !result ? nullptr : &*result;
      deliver_outcome(std::move(ep), value);
    }
  }

 private:
  // What the handler receives. A failure carries no values: they are made on the caller's side. A success's
  // values are moved into it once, where a throwing move or copy is caught and becomes the failure: this
  // runs on a database thread in noexcept code, and a user's type must not end the process there. The
  // moves into the handler's arguments happen on the caller's thread, where a throw propagates as from
  // any handler.
  using outcome = std::tuple<std::exception_ptr, std::optional<Results>...>;

  static void fill(outcome& o, std::exception_ptr ep, Results*... values) noexcept {
    if (!ep) {
      try {
        const std::tuple<Results*...> from(values...);
        [&]<std::size_t... I>(std::index_sequence<I...>) {
          (std::get<I + 1>(o).emplace(std::move(*std::get<I>(from))), ...);
        }
        (std::index_sequence_for<Results...>{});
      } catch (...) {
        o = outcome();
        ep = std::current_exception();
      }
    }
    std::get<0>(o) = std::move(ep);
  }

  template <class H>
  static void call_handler(H&& handler, outcome& o) {
    std::apply([&](std::exception_ptr& ep, auto&... v) { std::move(handler)(ep, take(v)...); }, o);
  }

  template <class T>
  static T take(std::optional<T>& v) {
    if (v) return std::move(*v);
    return T{};
  }

  void deliver_outcome(std::exception_ptr ep, Results*... values) noexcept {
    mark_done();
    if (drains_) {
      registry_->queue_ready(*this, [&] { fill(outcome_.emplace(), std::move(ep), values...); });
      return;
    }
    // Filled outside the registry's lock and handed over as a pointer: nothing of the user's moves under it.
    // `ep` moves with it: the last reference to an exception must not be dropped on this thread while the
    // caller reads it (a real free-vs-read race as far as TSan can see into libstdc++). The outcome and the
    // posted function live in the operations' cache (op_memory.hpp), which, unlike Asio's own recycling,
    // takes them back from whatever thread frees them; the handler's own allocator is not used, as for the
    // operation.
    auto o = make_op_unique<outcome>();
    fill(*o, std::move(ep), values...);
    registry_->remove_and(*this, [&] {
      auto deliver = [handler = std::move(*handler_), slot = slot_, o = std::move(o)]() mutable {
        slot.clear();  // here, on the handler's executor, where the slot's owner emits
        call_handler(std::move(handler), *o);
      };
      net::post(work_->get_executor(), net::bind_allocator(op_allocator<void>(), std::move(deliver)));
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
  std::optional<outcome> outcome_;                 // stored for the drain
  std::shared_ptr<completion_registry> registry_;  // set once, by attach()
  bool drains_ = false;  // completes_on_its_context(), decided before any other thread can abandon us
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
