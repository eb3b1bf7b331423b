#pragma once
// Shared by the smtp tests and the HTTP client's handle reuse test: an smtp provider's config,
// a notification and its message, a blocking send, and tests/smtp_server.py (aiosmtpd) run as a
// child process on loopback.
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/http_client.hpp"
#include "herald/provider.hpp"

extern char** environ;

namespace herald::smtp_test {

// 2024-01-02T03:04:05Z, a Tuesday.
inline constexpr std::int64_t kNowMs = 1'704'164'645'000;

inline ProviderConfig smtp_config(std::string url = "smtp://127.0.0.1:2525") {
  ProviderConfig c;
  c.name = "mail";
  c.kind = "smtp";
  c.url = std::move(url);
  c.timeout_ms = 10'000;
  c.settings["from"] = "noreply@herald.test";
  return c;
}

inline Notification make_notification(Id id, std::string email, std::string data_json = "{}") {
  Notification n;
  n.id = id;
  n.type = "welcome";
  n.recipient_id = "u1";
  n.recipient_json = nlohmann::json{{"id", "u1"}, {"email", std::move(email)}}.dump();
  n.data_json = std::move(data_json);
  return n;
}

inline http::Request build(const Adapter& a, const Notification& n, const std::string& text, int attempt = 1,
                           const Content& content = {}) {
  PlanStep plan;
  plan.channel = "email";
  plan.providers = {"mail"};
  plan.content = content;
  SendContext ctx{n, plan, text, attempt, false, kNowMs, {}};
  return a.build(ctx);
}

/// The header block of a message, split into unfolded "Name: value" lines.
inline std::vector<std::string> header_lines(const std::string& message) {
  std::vector<std::string> out;
  const auto end = message.find("\r\n\r\n");
  std::string block = message.substr(0, end);
  std::size_t pos = 0;
  while (pos <= block.size()) {
    auto nl = block.find("\r\n", pos);
    if (nl == std::string::npos) nl = block.size();
    std::string line = block.substr(pos, nl - pos);
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back() += line;
    } else {
      out.push_back(line);
    }
    pos = nl + 2;
  }
  return out;
}

inline std::string header(const std::string& message, const std::string& name) {
  for (const auto& line : header_lines(message)) {
    if (line.rfind(name + ": ", 0) == 0) return line.substr(name.size() + 2);
  }
  return "<absent>";
}

inline bool only_crlf_line_endings(const std::string& s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
    if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) return false;
  }
  return true;
}

inline http::Response send(http::Client& client, http::Request req) {
  std::promise<http::Response> done;
  auto answer = done.get_future();
  client.submit(std::move(req), [&done](http::Response&& r) { done.set_value(std::move(r)); });
  return answer.get();
}

// ---------------------------------------------------------------------------------------------
// A child process running tests/smtp_server.py.

inline std::filesystem::path server_script() {
  // This file is cpp/tests/smtp_test_support.hpp; the script is tests/smtp_server.py from the
  // root. __FILE__ may be relative to the build directory (ccache's CCACHE_BASEDIR rewrites
  // paths), which is where the test binary lives.
  const std::filesystem::path relative =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "tests" / "smtp_server.py";
  if (relative.is_absolute() || std::filesystem::exists(relative)) return relative;
  return std::filesystem::read_symlink("/proc/self/exe").parent_path() / relative;
}

inline std::filesystem::path make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "herald-smtp-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

class SmtpServer {
 public:
  explicit SmtpServer(std::vector<std::string> extra = {}) : dir_(make_temp_dir()) {
    maildir_ = dir_ / "mail";
    std::vector<std::string> args = {"python3", server_script().string(), "--port", "0", "--maildir",
                                     maildir_.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    const int rc = posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      throw std::runtime_error("cannot start python3");
    }
    // The first line of the server's stdout is its port.
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      char buf[64];
      const ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    close(fds[0]);
    port_ = std::atoi(line.c_str());
    if (port_ <= 0) {
      stop();
      throw std::runtime_error("smtp_server.py did not report a port");
    }
  }
  ~SmtpServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  SmtpServer(const SmtpServer&) = delete;
  SmtpServer& operator=(const SmtpServer&) = delete;

  [[nodiscard]] std::string url(std::string_view scheme = "smtp") const {
    return std::string(scheme) + "://127.0.0.1:" + std::to_string(port_);
  }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

  /// The JSON sidecars of the stored messages, each with its .eml text under "eml"; waits up to
  /// 10 s for at least `count` of them. The server stores a message before it answers 250, so
  /// messages(0) is exact once the sends have been answered.
  [[nodiscard]] std::vector<nlohmann::json> messages(std::size_t count = 1) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::vector<nlohmann::json> out;
    for (;;) {
      out.clear();
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(maildir_, ec)) {
        if (entry.path().extension() != ".json") continue;
        std::ifstream in(entry.path());
        nlohmann::json j = nlohmann::json::parse(in);
        std::filesystem::path eml = entry.path();
        eml.replace_extension(".eml");
        std::ifstream raw(eml, std::ios::binary);
        std::stringstream ss;
        ss << raw.rdbuf();
        j["eml"] = ss.str();
        out.push_back(std::move(j));
      }
      if (out.size() >= count || std::chrono::steady_clock::now() > deadline) return out;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  std::filesystem::path dir_;
  std::filesystem::path maildir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace herald::smtp_test
