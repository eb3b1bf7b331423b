#pragma once
// A fresh directory under the system's temporary folder, removed with everything in it.
#include <filesystem>
#include <string>

#include "herald/clock.hpp"

namespace herald::testing {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "herald-test-") {
    path = std::filesystem::temp_directory_path() / (prefix + std::to_string(now_us()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace herald::testing
