#pragma once
// The delivery log as the tests read it: every line of every segment, segments in name order
// (the order they were written).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace herald::testing {

inline std::vector<std::string> log_lines(const std::filesystem::path& log_dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(log_dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> lines;
  for (const auto& f : files) {
    std::ifstream in(f);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  return lines;
}

}  // namespace herald::testing
