#pragma once
// The sizes and the pre-generated inputs of bench/WORKLOADS.md, identical for every contender, every
// repetition and both backends.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "user.hpp"

namespace bench {

/// Operation counts. The defaults are WORKLOADS.md's SQLite sizes; --quick divides every count by 20.
struct sizes {
  std::int64_t seed_rows = 100'000;
  std::size_t w1_ops = 200'000;  // W1 and W1c1
  std::size_t w2_ops = 10'000;   // W2 and W2f
  std::size_t w3_reps = 10;
  std::size_t w4_ops = 100'000;
  std::size_t in_flight = 64;  // W1 and W4
};

/// One W4 operation: a read of seed row keys[index], or the add of mixed_adds[index].
struct mixed_op {
  bool add = false;
  std::size_t index = 0;
};

/// What the workloads send, generated once from a fixed seed.
struct workload_inputs {
  sizes n;
  std::vector<std::string> keys;        // W1: "user<k>", k pseudo-random in 1..seed_rows
  std::vector<UserCreate> new_users;    // W2: "new<i>"
  std::vector<mixed_op> mixed;          // W4: exactly 10% adds, in pseudo-random positions
  std::vector<std::string> mixed_keys;  // W4 reads
  std::vector<UserCreate> mixed_adds;   // W4 adds: "mix<i>"
};

/// Generates the inputs for `n` (deterministic: the same sizes give the same inputs).
workload_inputs make_inputs(const sizes& n);

}  // namespace bench
