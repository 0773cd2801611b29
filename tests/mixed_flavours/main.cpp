// Both flavours in one program: each part's asyncdb works, and they are two distinct asyncdbs (their
// classes have different linker names), not two different definitions of one class.
#include <chrono>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>

std::string run_standalone_asio(const std::filesystem::path& file);
std::string run_boost_asio(const std::filesystem::path& file);

int main() {
  namespace fs = std::filesystem;
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  const fs::path dir = fs::temp_directory_path() / ("asyncdb-mixed-" + std::to_string(stamp));
  fs::create_directories(dir);
  int status = 1;
  try {
    const std::string standalone = run_standalone_asio(dir / "standalone.db");
    const std::string boost = run_boost_asio(dir / "boost.db");
    std::cout << "standalone Asio: " << standalone << "\nBoost.Asio:      " << boost << '\n';
    const bool answered = standalone.starts_with("42 ") && boost.starts_with("42 ");
    if (!answered) std::cout << "mixed: a flavour did not answer 42\n";
    if (standalone == boost) std::cout << "mixed: both flavours define the same asyncdb::database\n";
    status = answered && standalone != boost ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "mixed: " << e.what() << '\n';
  }
  fs::remove_all(dir);
  return status;
}
