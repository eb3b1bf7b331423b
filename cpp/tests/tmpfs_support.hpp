#pragma once
// A small real filesystem for tests of a full disk: a tmpfs mounted by the test (the test machines
// run as root), filled with a filler file, emptied again by removing it.
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace herald::testing {

class Tmpfs {
 public:
  explicit Tmpfs(std::size_t bytes) {
    char tmpl[] = "/tmp/herald-tmpfs-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
    const std::string opts = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      std::filesystem::remove(path_);
      throw std::runtime_error("cannot mount a tmpfs at " + path_.string() + " (the tests need root)");
    }
  }
  ~Tmpfs() {
    ::umount2(path_.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  /// Bytes a new file could still take.
  [[nodiscard]] std::size_t available() const {
    struct statvfs s {};
    ::statvfs(path_.c_str(), &s);
    return static_cast<std::size_t>(s.f_bavail) * s.f_frsize;
  }

  /// Writes a filler file until the filesystem refuses more (leaving `leave` bytes free).
  void fill(std::size_t leave = 0) {
    std::FILE* f = std::fopen((path_ / "filler").c_str(), "ab");
    if (f == nullptr) throw std::runtime_error("cannot create the filler");
    std::vector<char> block(4096, 'x');
    while (available() > leave) {
      const std::size_t n = std::min(block.size(), available() - leave);
      if (std::fwrite(block.data(), 1, n, f) != n || std::fflush(f) != 0) break;
    }
    std::fclose(f);
  }

  /// Gives `bytes` of what fill() took back to the filesystem: a disk all but full.
  void give_back(std::size_t bytes) {
    std::error_code ec;
    const auto filler = path_ / "filler";
    const auto size = std::filesystem::file_size(filler, ec);
    if (ec) throw std::runtime_error("no filler to give back from");
    std::filesystem::resize_file(filler, size > bytes ? size - bytes : 0);
  }

  /// Frees what fill() took.
  void free_space() {
    std::error_code ec;
    std::filesystem::remove(path_ / "filler", ec);
  }

 private:
  std::filesystem::path path_;
};

}  // namespace herald::testing
