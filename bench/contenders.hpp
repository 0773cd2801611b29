#pragma once
// What the worker coroutines of W1, W2 and W4 issue, for asyncdb and for the hand-rolled peer, whatever the
// backend: `Users` is the asyncdb DAO wrapper, `Peer` a basic_peer, `Data` the backend's prepared inputs.
#include <asyncdb/asyncdb.hpp>

#include <asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "inputs.hpp"
#include "loop.hpp"
#include "user.hpp"

namespace bench {

/// Throws when a workload's own check fails: a figure from a run that did not do its work is worthless.
inline void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("bench: check failed: " + what);
}

inline double seconds_since(clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); }

/// W1: get_by_name of keys[i] through asyncdb.
template <class Users>
struct asyncdb_reads {
  Users users;
  const std::vector<std::string>* keys;
  std::size_t found = 0;
  auto operator()(std::size_t i) const { return users.get_by_name((*keys)[i]); }
  void consume(const std::optional<User>& u) { found += u.has_value() ? 1 : 0; }
};

/// W1: get_by_name of keys[i] through the peer.
template <class Peer>
struct peer_reads {
  Peer* p;
  const std::vector<std::string>* keys;
  std::size_t found = 0;
  auto operator()(std::size_t i) const {
    auto fn = [key = (*keys)[i]](auto& dao) { return dao.get_by_name(key); };
    return p->run(fn);
  }
  void consume(const std::optional<User>& u) { found += u.has_value() ? 1 : 0; }
};

/// W4: mixed[i] (a read or an add) through asyncdb.
template <class Users, class Data>
struct asyncdb_mixed {
  Users users;
  const Data* d;
  std::size_t ok = 0;
  asio::awaitable<bool> operator()(std::size_t i) const {
    const mixed_op& op = d->mixed[i];
    if (op.add) {
      const std::int64_t id = co_await users.add(d->mixed_adds[op.index]);
      co_return id > 0;
    }
    const std::optional<User> u = co_await users.get_by_name(d->mixed_keys[op.index]);
    co_return u.has_value();
  }
  void consume(bool r) { ok += r ? 1 : 0; }
};

/// W4: mixed[i] (a read or an add) through the peer.
template <class Peer, class Data>
struct peer_mixed {
  Peer* p;
  const Data* d;
  std::size_t ok = 0;
  asio::awaitable<bool> operator()(std::size_t i) const {
    const mixed_op& op = d->mixed[i];
    if (op.add) {
      auto add = [u = d->mixed_adds[op.index]](auto& dao) { return dao.add(u); };
      const std::int64_t id = co_await p->run(add);
      co_return id > 0;
    }
    auto get = [key = d->mixed_keys[op.index]](auto& dao) { return dao.get_by_name(key); };
    const std::optional<User> u = co_await p->run(get);
    co_return u.has_value();
  }
  void consume(bool r) { ok += r ? 1 : 0; }
};

/// W2: every row added at once through asyncdb (gather); returns the seconds until the last id came back.
template <class Users>
asio::awaitable<double> asyncdb_batch(Users users, const std::vector<UserCreate>* rows, lag_probe* lag) {
  try {
    const auto t0 = clock::now();
    std::vector<asio::awaitable<std::int64_t>> adds;
    adds.reserve(rows->size());
    for (const UserCreate& u : *rows) adds.push_back(users.add(u));
    const std::vector<std::int64_t> ids = co_await asyncdb::gather(std::move(adds));
    const double seconds = seconds_since(t0);
    lag->stop();
    expect(ids.size() == rows->size(), "W2 asyncdb: one id per add");
    co_return seconds;
  } catch (...) {
    lag->stop();
    throw;
  }
}

/// W2: every row added at once through the peer; returns the seconds until the last id came back.
template <class Peer>
asio::awaitable<double> peer_batch(Peer* p, const std::vector<UserCreate>* rows, lag_probe* lag) {
  try {
    const auto t0 = clock::now();
    std::vector<asio::awaitable<std::int64_t>> adds;
    adds.reserve(rows->size());
    for (const UserCreate& u : *rows) {
      auto add = [u](auto& dao) { return dao.add(u); };
      adds.push_back(p->run(add));
    }
    const std::vector<std::int64_t> ids = co_await when_all(std::move(adds));
    const double seconds = seconds_since(t0);
    lag->stop();
    expect(ids.size() == rows->size(), "W2 peer: one id per add");
    co_return seconds;
  } catch (...) {
    lag->stop();
    throw;
  }
}

}  // namespace bench
