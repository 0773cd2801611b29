#pragma once
#include <asyncdb/detail/asio.hpp>
#include <asyncdb/detail/context_registry.hpp>
#include <asyncdb/detail/job.hpp>
#include <asyncdb/detail/lane.hpp>

#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace asyncdb::detail {

// What every operation shares, whatever its handler: the state machine that decides who completes
// it (the lane, a cancellation, or a refusing queue) and the interrupt guard.
//
//   queued --lane--> running --lane--> done
//   queued --cancel or refusal (claim)--> done
//
// `mutex_` orders the interrupt against the end of the run: lane_->interrupt() is only ever
// called with the mutex held and the state `running`, so the lane cannot have moved on to the
// next lease, and that lease can never see this interrupt.
class operation_base : public job, public pending_completion, public std::enable_shared_from_this<operation_base> {
 public:
  std::shared_ptr<pending_completion> keep_alive() noexcept override { return weak_from_this().lock(); }

  // From the handler's cancellation slot.
  void cancel() noexcept {
    std::unique_lock lock(mutex_);
    if (state_ == op_state::queued) {
      state_ = op_state::done;
      lock.unlock();
      fail(asio::error::operation_aborted);
    } else if (state_ == op_state::running) {
      cancel_requested_ = true;
      lane_->interrupt();
    }
  }

  // Takes the right to complete an operation that never ran; false if someone else has it.
  bool claim() noexcept {
    std::lock_guard lock(mutex_);
    if (state_ != op_state::queued) return false;
    state_ = op_state::done;
    return true;
  }

 protected:
  enum class op_state : unsigned char { queued, running, done };

  bool start(lane& l) noexcept {
    std::lock_guard lock(mutex_);
    if (state_ != op_state::queued) return false;
    state_ = op_state::running;
    lane_ = &l;
    return true;
  }

  // Puts a running operation back in the queued state, to be replayed on another lane. False, and
  // done, if a cancellation arrived while it ran: the caller then completes it as cancelled.
  bool requeue() noexcept {
    std::lock_guard lock(mutex_);
    lane_ = nullptr;
    state_ = cancel_requested_ ? op_state::done : op_state::queued;
    return state_ == op_state::queued;
  }

  // Returns whether a cancellation arrived while the operation ran.
  bool finish() noexcept {
    std::lock_guard lock(mutex_);
    state_ = op_state::done;
    lane_ = nullptr;
    return cancel_requested_;
  }

  // Destroys what the operation would have run; called before a completion that skips the run.
  virtual void release_work() noexcept {}

  std::mutex mutex_;
  op_state state_ = op_state::queued;
  lane* lane_ = nullptr;
  bool cancel_requested_ = false;
  context_registry* registry_ = nullptr;  // guarded by mutex_; null once delivered or abandoned
};

// The execution context behind a handler's executor: standard executors answer the query, older ones
// (use_future's promise executor among them) have context().
template <class Executor>
asio::execution_context& context_of(const Executor& ex) {
  if constexpr (asio::can_query<const Executor&, asio::execution::context_t>::value) {
    return asio::query(ex, asio::execution::context);
  } else {
    return ex.context();
  }
}

// Owns the handler and delivers `void(std::exception_ptr, Results...)` to its associated executor,
// the way Asio's own operations do: a work guard keeps that executor's context running meanwhile,
// and the completion is posted, so the caller never resumes on a database thread.
template <class Handler, class... Results>
class async_op : public operation_base {
 public:
  explicit async_op(Handler handler) : handler_(std::move(handler)) {
    work_.emplace(asio::get_associated_executor(*handler_));
  }

  ~async_op() override {
    // Only reachable without delivery if a job was dropped, which the queues never do; unregister
    // anyway so a registry never keeps a dangling node.
    if (auto* reg = std::exchange(registry_, nullptr)) reg->remove_and(*this, [] {});
  }

  // Registers with the handler's execution context and connects the cancellation slot. False when
  // that context is already shutting down: the handler has then been dropped.
  bool attach() {
    auto& reg = asio::use_service<context_registry>(context_of(work_->get_executor()));
    if (!reg.add(*this)) {
      abandon();
      return false;
    }
    {
      std::lock_guard lock(mutex_);
      registry_ = &reg;
    }
    slot_ = asio::get_associated_cancellation_slot(*handler_);
    if (slot_.is_connected()) slot_.template emplace<cancel_handler>(weak_from_this());
    return true;
  }

  void fail(std::error_code ec) noexcept override {
    release_work();
    deliver(std::make_exception_ptr(std::system_error(ec)), Results{}...);
  }

  void abandon() noexcept override {
    {
      std::lock_guard lock(mutex_);
      registry_ = nullptr;
    }
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
  void deliver(std::exception_ptr ep, Results... results) noexcept {
    context_registry* reg = nullptr;
    {
      std::lock_guard lock(mutex_);
      reg = std::exchange(registry_, nullptr);
    }
    if (reg == nullptr) return;
    if (completes_on_its_context()) {
      outcome_.emplace(std::move(ep), std::move(results)...);
      if (!reg->queue_ready(*this)) outcome_.reset();
      return;
    }
    reg->remove_and(*this, [&] {
      // `ep` moves too: the last reference to an exception must not be dropped on this thread while
      // the caller reads it (a real free-vs-read race as far as TSan can see into libstdc++).
      asio::post(work_->get_executor(), [handler = std::move(*handler_), slot = slot_, ep = std::move(ep),
                                         args = std::make_tuple(std::move(results)...)]() mutable {
        // Cleared here, on the handler's executor, where the slot's owner emits.
        slot.clear();
        std::apply([&](auto&... a) { std::move(handler)(ep, std::move(a)...); }, args);
      });
      // Destroyed now, after the post (which holds its own work), and not whenever this operation dies:
      // their executors (a strand's impl, say) may unlink from services of a context gone by then.
      work_.reset();
      handler_.reset();
    });
  }

 private:
  // Weak: the slot belongs to the handler this operation owns, and a strong reference would be a cycle.
  struct cancel_handler {
    std::weak_ptr<operation_base> op;
    void operator()(asio::cancellation_type type) const noexcept {
      if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                   asio::cancellation_type::total)) == asio::cancellation_type::none) {
        return;
      }
      if (auto self = op.lock()) self->cancel();
    }
  };

  // Whether the handler may run on any thread running its io_context, i.e. inside the registry's drain.
  bool completes_on_its_context() const noexcept {
    using executor = asio::associated_executor_t<Handler>;
    if constexpr (std::is_same_v<executor, asio::io_context::executor_type>) {
      return true;
    } else if constexpr (std::is_same_v<executor, asio::any_io_executor>) {
      // Not target<T>() != nullptr: Asio 1.22's target<T>() returns its pointer whatever T is.
      return work_->get_executor().target_type() == typeid(asio::io_context::executor_type);
    } else {
      return false;
    }
  }

  std::optional<Handler> handler_;
  std::optional<asio::executor_work_guard<asio::associated_executor_t<Handler>>> work_;
  asio::cancellation_slot slot_;
  std::optional<std::tuple<std::exception_ptr, Results...>> outcome_;  // set by deliver() for the drain
};

}  // namespace asyncdb::detail
