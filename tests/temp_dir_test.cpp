// Temp folders (temp_dir.hpp): one left by a process that died without unwinding is removed by the next one made.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "support.hpp"

TEST_CASE("a temp folder whose process died is removed when the next one is made", "[support]") {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Dies as a crash or ctest's SIGKILL would end it: no destructor runs.
    test::temp_dir orphan;
    const std::string path = orphan.file().parent_path().string();
    const ssize_t written = ::write(pipe_fds[1], path.data(), path.size());
    ::_exit(written == static_cast<ssize_t>(path.size()) ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  std::string path;
  char buf[256];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) path.append(buf, static_cast<std::size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(std::filesystem::is_directory(path));  // left behind by the dead process
  test::temp_dir next;
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK(std::filesystem::is_directory(next.file().parent_path()));
}
