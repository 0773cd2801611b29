#pragma once
// Temp folders for tests and fault cases, removed at scope exit. A process that ends without unwinding (a
// crash, a sanitizer's abort, std::_Exit on a skip, ctest's SIGKILL at a timeout) cannot remove its own, so
// each folder's name carries its owner's pid, and every new folder first removes those whose owner is gone.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace test {

/// Removes `<prefix>-<pid>-*` folders under `parent` whose process no longer exists (left by one that died).
inline void remove_orphaned_dirs(const std::filesystem::path& parent, std::string_view prefix) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() + 1 || name.compare(0, prefix.size(), prefix) != 0 || name[prefix.size()] != '-')
      continue;
    const char* digits = name.c_str() + prefix.size() + 1;
    char* stop = nullptr;
    const long pid = std::strtol(digits, &stop, 10);
    if (stop == digits || *stop != '-' || pid <= 0) continue;
    // Alive, or another user's (EPERM): not ours to remove.
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    std::filesystem::remove_all(it->path(), ignored);
  }
}

/// A fresh directory under the system temp dir (`<prefix>-<pid>-XXXXXX`), removed with everything in it at scope
/// exit, or by the next temp_dir of any process if this one dies first.
class temp_dir {
 public:
  explicit temp_dir(std::string_view prefix = "asyncdb-test") {
    const std::filesystem::path parent = std::filesystem::temp_directory_path();
    remove_orphaned_dirs(parent, prefix);
    std::string templ = (parent / (std::string(prefix) + "-" + std::to_string(::getpid()) + "-XXXXXX")).string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::filesystem::path file(const std::string& name = "test.db") const { return path_ / name; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace test
