#pragma once
// A child process of the fault suite: spawned with posix_spawn (safe from a test process that has
// threads), its stdin and stdout on pipes, read line by line with a deadline, killed with SIGKILL.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace faults {

class child_process {
 public:
  /// Starts `argv[0]` with `argv`; its stdout and stdin are ours, its stderr is the test's.
  explicit child_process(const std::vector<std::string>& argv) {
    int out[2], in[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    ::close(in[0]);
    out_ = out[0];
    in_ = in[1];
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
    if (in_ >= 0) ::close(in_);
  }

  /// The next line the child wrote (without '\n'); nullopt at end of output or past `deadline`.
  std::optional<std::string> read_line(std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (eof_ || left.count() <= 0) return std::nullopt;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[65536];
      const ssize_t n = ::read(out_, chunk, sizeof chunk);
      if (n <= 0) {
        eof_ = true;
      } else {
        buffer_.append(chunk, static_cast<std::size_t>(n));
      }
    }
  }

  /// Every remaining line until the child's stdout closes (call after it died).
  std::vector<std::string> rest(std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    std::vector<std::string> lines;
    while (auto l = read_line(deadline)) lines.push_back(std::move(*l));
    return lines;
  }

  /// Writes `line` and a newline to the child's stdin.
  void send(const std::string& line) {
    const std::string s = line + "\n";
    if (::write(in_, s.data(), s.size()) != static_cast<ssize_t>(s.size())) throw std::runtime_error("write failed");
  }

  /// Closes the child's stdin (it sees end of input).
  void close_input() {
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }

  void kill_now() { ::kill(pid_, SIGKILL); }

  /// Waits for the child to end (SIGKILL past `deadline`, then throws); returns its wait status.
  int wait(std::chrono::milliseconds deadline = std::chrono::seconds(60)) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        throw std::runtime_error("child process did not end in time (killed)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

}  // namespace faults

namespace faults {

/// The integer in environment variable `name`, or `fallback` (the CI value) when it is unset or empty.
inline long long env_or(const char* name, long long fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoll(v) : fallback;
}

}  // namespace faults
