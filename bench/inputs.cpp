#include "inputs.hpp"

#include <algorithm>
#include <random>

namespace bench {

workload_inputs make_inputs(const sizes& n) {
  workload_inputs d;
  d.n = n;
  std::mt19937_64 rng{20240601};
  std::uniform_int_distribution<std::int64_t> key(1, n.seed_rows);
  d.keys.reserve(n.w1_ops);
  for (std::size_t i = 0; i < n.w1_ops; ++i) d.keys.push_back(seed_name(key(rng)));

  const auto new_user = [&](const std::string& prefix, std::size_t i) {
    const std::string name = prefix + std::to_string(i);
    return UserCreate{name, name + "@example.com", i % 3 != 0, n.seed_rows + 1 + static_cast<std::int64_t>(i)};
  };
  for (std::size_t i = 0; i < n.w2_ops; ++i) d.new_users.push_back(new_user("new", i));

  d.mixed.resize(n.w4_ops);
  for (std::size_t i = 0; i < n.w4_ops / 10; ++i) d.mixed[i].add = true;
  std::shuffle(d.mixed.begin(), d.mixed.end(), rng);
  for (mixed_op& op : d.mixed) {
    if (op.add) {
      op.index = d.mixed_adds.size();
      d.mixed_adds.push_back(new_user("mix", op.index));
    } else {
      op.index = d.mixed_keys.size();
      d.mixed_keys.push_back(seed_name(key(rng)));
    }
  }
  return d;
}

}  // namespace bench
