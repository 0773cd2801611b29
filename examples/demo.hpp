#pragma once
// Helpers shared by the examples: a fresh database file per run, and readable thread names.

#include <atomic>
#include <filesystem>
#include <string>

namespace demo {

// Removes `name` and the -wal and -shm files an earlier run left behind; returns `name`.
inline std::filesystem::path fresh_file(const std::string& name) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(name + suffix);
  return name;
}

// The calling thread's name: "main" (set in main), "writer", "reader-1", ... or "unnamed".
inline std::string& thread_name() {
  thread_local std::string name = "unnamed";
  return name;
}

// Call from asyncdb::options::on_open, which runs once per connection on that connection's own thread,
// the writer first: names those threads "writer", "reader-1", "reader-2", ...
inline void name_connection_thread() {
  static std::atomic<int> opened{0};
  const int n = opened++;
  thread_name() = n == 0 ? "writer" : "reader-" + std::to_string(n);
}

}  // namespace demo
