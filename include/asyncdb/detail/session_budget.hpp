#pragma once
// A session's budget (asyncdb::session_budget): one deadline for the open and everything after it. The open
// waits with it as with a per-call budget; once granted, the session's queue closes at the deadline (later
// operations fail with deadline_exceeded at once, and the lane rolls back what the session left open), and
// each of its operations carries the same deadline, so the one running then is cancelled through the
// cancellation path, whose contract (nothing of it in the database, or committed and reported) is unchanged.
#include <asyncdb/detail/budget.hpp>
#include <asyncdb/detail/budget_token.hpp>
#include <asyncdb/detail/completion.hpp>
#include <asyncdb/detail/context_registry.hpp>
#include <asyncdb/detail/session_state.hpp>

#include <memory>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// The session's deadline timer. It belongs to the opener's execution context, but the lane arms, stops and
// drops it on its own thread, and the lane may grant or end the session after that context is gone (its
// io_context destroyed while the open waited, or while the session's last operation ran). So it is made on the
// opener's thread, while that context is surely alive, and registered with the context as a completion is:
// from then on the timer (and the opener's executor inside it: a strand's impl, say, whose last copy unlinks
// itself from the context's strand service) is touched only under the registry's lock while registered, and the
// context's shutdown drops it there otherwise. Nothing of the context is looked up on the lane's thread.
// Whoever holds one calls stop() before letting it go: an expiry still registered when its last reference goes
// could not be kept alive by a concurrent shutdown, which would then drop neither the timer nor the executor.
class session_expiry final : public pending_completion, public std::enable_shared_from_this<session_expiry> {
 public:
  ~session_expiry() override { stop(); }

  // On the opener's thread, as the open starts. `ex` is the opener's executor: the timer runs there.
  void prepare(net::any_io_executor ex, budget_clock::time_point deadline) {
    registry_ = net::use_service<context_registry>(context_of(ex)).registry();
    registry_->add_and(
        *this, [&] { timer_ = std::make_shared<budget_state>(std::move(ex), deadline, budget_left(deadline)); });
  }

  // On the lane's thread as the session is granted. False (nothing armed) if the context has dropped the timer.
  bool start(const std::shared_ptr<session_state>& s) {
    return registry_ != nullptr && registry_->while_registered(*this, [&] {
      // Weak: the session's state owns the timer; a session already released has nothing left to close.
      timer_->slot().assign([w = std::weak_ptr<session_state>(s)](net::cancellation_type) {
        if (auto st = w.lock()) st->queue.close(make_error_code(errc::deadline_exceeded));
      });
      timer_->arm();
    });
  }

  // As the lane stops serving the session, or as an open that was never granted goes: a pending timer would keep
  // the opener's executor busy until the deadline. Nothing if the context has dropped the timer already.
  void stop() noexcept {
    if (!registry_) return;
    registry_->remove_and(*this, [&] {
      timer_->finish();
      timer_.reset();
    });
  }

  void abandon() noexcept override { timer_.reset(); }
  void run_completion(std::shared_ptr<pending_completion>) override {}
  std::shared_ptr<pending_completion> keep_alive() noexcept override { return weak_from_this().lock(); }

 private:
  std::shared_ptr<completion_registry> registry_;
  std::shared_ptr<budget_state> timer_;
};

// On the opener's thread, as a budgeted open starts: the session's timer, not armed yet.
inline std::shared_ptr<session_expiry> prepare_expiry(net::any_io_executor ex, budget_clock::time_point deadline) {
  auto expiry = std::make_shared<session_expiry>();  // registered only once shared: shutdown keeps it alive
  expiry->prepare(std::move(ex), deadline);
  return expiry;
}

// On the lane's thread as the session is granted. `expiry` is the open's (null without a deadline).
inline void expire_at(const std::shared_ptr<session_state>& s, const std::shared_ptr<session_expiry>& expiry,
                      budget_clock::time_point deadline) {
  s->deadline = deadline;
  if (expiry != nullptr && expiry->start(s)) s->expiry = expiry;
}

// As the lane stops serving the session.
inline void stop_expiry(session_state& s) noexcept {
  if (s.expiry) s.expiry->stop();
}
// The token a session's own operations are started with: its deadline, if it has one. Once that has passed, the
// session is over even if its timer has not run yet (it runs on the opener's executor): an operation started now
// must fail at once, not race that timer to the connection.
inline until_t<net::use_awaitable_t<>> session_token(session_state* s) {
  if (s == nullptr || s->deadline == budget_clock::time_point::max()) return {budget_clock::time_point::max(), {}};
  if (budget_clock::now() >= s->deadline) s->queue.close(make_error_code(errc::deadline_exceeded));
  return {s->deadline, net::use_awaitable};
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
