#pragma once
// A fresh directory under the system's temporary folder, removed with everything in it.
#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

namespace herald::testing {

struct TempDir {
  std::filesystem::path path;
  /// Named by mkdtemp: unique across the test processes ctest runs side by side (a name from the
  /// clock alone was once given to two of them in the same microsecond).
  explicit TempDir(const std::string& prefix = "herald-test-") {
    std::string name = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
    if (::mkdtemp(name.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + name);
    path = name;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace herald::testing
