// The smtp adapter and SMTP transfers in the HTTP client. Message building and classification
// run without sockets; delivery runs against tests/smtp_server.py (aiosmtpd) on loopback.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"
#include "herald/http_client.hpp"
#include "herald/http_server.hpp"
#include "herald/provider.hpp"

extern char** environ;

using namespace herald;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// 2024-01-02T03:04:05Z, a Tuesday.
constexpr std::int64_t kNowMs = 1'704'164'645'000;

ProviderConfig smtp_config(std::string url = "smtp://127.0.0.1:2525") {
  ProviderConfig c;
  c.name = "mail";
  c.kind = "smtp";
  c.url = std::move(url);
  c.timeout_ms = 10'000;
  c.settings["from"] = "noreply@herald.test";
  return c;
}

Notification make_notification(Id id, std::string email, std::string data_json = "{}") {
  Notification n;
  n.id = id;
  n.type = "welcome";
  n.recipient_id = "u1";
  n.recipient_json = json{{"id", "u1"}, {"email", std::move(email)}}.dump();
  n.data_json = std::move(data_json);
  return n;
}

http::Request build(const Adapter& a, const Notification& n, const std::string& text, int attempt = 1,
                    const Content& content = {}) {
  PlanStep plan;
  plan.channel = "email";
  plan.providers = {"mail"};
  plan.content = content;
  SendContext ctx{n, plan, text, attempt, false, kNowMs, {}};
  return a.build(ctx);
}

/// The header block of a message, split into unfolded "Name: value" lines.
std::vector<std::string> header_lines(const std::string& message) {
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

std::string header(const std::string& message, const std::string& name) {
  for (const auto& line : header_lines(message)) {
    if (line.rfind(name + ": ", 0) == 0) return line.substr(name.size() + 2);
  }
  return "<absent>";
}

std::string body_of(const std::string& message) { return message.substr(message.find("\r\n\r\n") + 4); }

bool only_crlf_line_endings(const std::string& s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
    if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) return false;
  }
  return true;
}

http::Response reply(long status, std::string text = {}) {
  http::Response r;
  r.status = status;
  r.body = std::move(text);
  return r;
}

// ---------------------------------------------------------------------------------------------
// A child process running tests/smtp_server.py.

fs::path server_script() {
  // This file is cpp/tests/test_smtp.cpp; the script is tests/smtp_server.py from the root.
  // __FILE__ may be relative to the build directory (ccache's CCACHE_BASEDIR rewrites paths),
  // which is where the test binary lives.
  const fs::path relative = fs::path(__FILE__).parent_path().parent_path().parent_path() / "tests" / "smtp_server.py";
  if (relative.is_absolute() || fs::exists(relative)) return relative;
  return fs::read_symlink("/proc/self/exe").parent_path() / relative;
}

fs::path make_temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "herald-smtp-XXXXXX").string();
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
    fs::remove_all(dir_, ec);
  }
  SmtpServer(const SmtpServer&) = delete;
  SmtpServer& operator=(const SmtpServer&) = delete;

  [[nodiscard]] std::string url(std::string_view scheme = "smtp") const {
    return std::string(scheme) + "://127.0.0.1:" + std::to_string(port_);
  }
  [[nodiscard]] const fs::path& dir() const { return dir_; }

  /// The JSON sidecars of the stored messages, each with its .eml text under "eml"; waits up to
  /// 10 s for at least `count` of them. The server stores a message before it answers 250, so
  /// messages(0) is exact once the sends have been answered.
  [[nodiscard]] std::vector<json> messages(std::size_t count = 1) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::vector<json> out;
    for (;;) {
      out.clear();
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(maildir_, ec)) {
        if (entry.path().extension() != ".json") continue;
        std::ifstream in(entry.path());
        json j = json::parse(in);
        fs::path eml = entry.path();
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

  fs::path dir_;
  fs::path maildir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

http::Response send(http::Client& client, http::Request req) {
  std::promise<http::Response> done;
  auto answer = done.get_future();
  client.submit(std::move(req), [&done](http::Response&& r) { done.set_value(std::move(r)); });
  return answer.get();
}

/// A port on loopback that nothing listens on (bound, then closed).
int unused_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Configuration

TEST(SmtpConfig, RefusesBadSettingsWithoutQuotingSecrets) {
  auto expect_refused = [](ProviderConfig c, const std::string& field) {
    try {
      (void)make_adapter(c);
      ADD_FAILURE() << "accepted a config with a bad " << field;
    } catch (const ConfigError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("providers.mail." + field), std::string::npos) << what;
      EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
    }
  };
  expect_refused(smtp_config(""), "url");
  expect_refused(smtp_config("http://127.0.0.1:25"), "url");
  auto c = smtp_config();
  c.settings.erase("from");
  expect_refused(c, "settings.from");
  c = smtp_config();
  c.settings["from"] = "a@b.test\r\nRCPT TO:<x@y>";
  expect_refused(c, "settings.from");
  c = smtp_config();
  c.settings["tls"] = "maybe";
  expect_refused(c, "settings.tls");
  c = smtp_config();
  c.secrets["password"] = "hunter2";
  expect_refused(c, "settings.username");
  c = smtp_config();
  c.settings["username"] = "mailer";
  expect_refused(c, "secrets.password");
  c = smtp_config("smtps://127.0.0.1:465");
  c.settings["tls"] = "none";
  expect_refused(c, "settings.tls");

  c = smtp_config("smtps://127.0.0.1:465");
  c.settings["username"] = "mailer";
  c.secrets["password"] = "hunter2";
  EXPECT_NO_THROW((void)make_adapter(c));
}

// ---------------------------------------------------------------------------------------------
// The message (no sockets)

TEST(SmtpMessage, EnvelopeHeadersAndCrlfBody) {
  auto c = smtp_config();
  c.settings["from_name"] = "Herald Bot";
  c.settings["tls"] = "required";
  c.settings["ca_file"] = "/etc/ssl/test-ca.pem";
  c.settings["username"] = "mailer";
  c.secrets["password"] = "hunter2";
  const auto adapter = make_adapter(c);
  const auto n = make_notification(42, "ada@example.test");
  const auto req = build(*adapter, n, "Hello Ada\nline two\n", 3);

  EXPECT_EQ(req.url, "smtp://127.0.0.1:2525");
  EXPECT_EQ(req.mail_from, "noreply@herald.test");
  EXPECT_EQ(req.mail_rcpt, std::vector<std::string>{"ada@example.test"});
  EXPECT_TRUE(req.require_tls);
  EXPECT_EQ(req.ca_file, "/etc/ssl/test-ca.pem");
  EXPECT_EQ(req.basic_auth, "mailer:hunter2");
  EXPECT_TRUE(req.headers.empty());

  const std::string& m = req.body;
  EXPECT_TRUE(only_crlf_line_endings(m));
  EXPECT_EQ(header(m, "Date"), "Tue, 02 Jan 2024 03:04:05 +0000");
  EXPECT_EQ(header(m, "From"), "\"Herald Bot\" <noreply@herald.test>");
  EXPECT_EQ(header(m, "To"), "<ada@example.test>");
  EXPECT_EQ(header(m, "Subject"), "welcome");  // no data.subject, no settings.subject: the type
  EXPECT_EQ(header(m, "Message-ID"), "<herald-42.3@herald>");
  EXPECT_EQ(header(m, "MIME-Version"), "1.0");
  EXPECT_EQ(header(m, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(header(m, "Content-Transfer-Encoding"), "quoted-printable");
  EXPECT_EQ(header(m, "X-Herald-Id"), "42");
  EXPECT_EQ(body_of(m), "Hello Ada\r\nline two\r\n");
  EXPECT_EQ(adapter->address(n), "ada@example.test");
}

TEST(SmtpMessage, SubjectComesFromDataThenSettingsThenType) {
  auto c = smtp_config();
  c.settings["subject"] = "Hi {name|there}";
  const auto adapter = make_adapter(c);
  EXPECT_EQ(header(build(*adapter, make_notification(1, "a@b.test", R"({"subject":"From data","name":"Ada"})"), "x").body,
                   "Subject"),
            "From data");
  EXPECT_EQ(header(build(*adapter, make_notification(1, "a@b.test", R"({"name":"Ada","subject":7})"), "x").body, "Subject"),
            "Hi Ada");
  EXPECT_EQ(header(build(*adapter, make_notification(1, "a@b.test"), "x").body, "Subject"), "Hi there");
}

TEST(SmtpMessage, TheStepsSubjectComesFirstAndAMissingVariableBuildsNothing) {
  auto c = smtp_config();
  c.settings["subject"] = "Hi {name|there}";
  const auto adapter = make_adapter(c);
  Content content;
  content.subject = "Step {name}";
  const auto n = make_notification(1, "a@b.test", R"({"subject":"From data","name":"Ada"})");
  EXPECT_EQ(header(build(*adapter, n, "x", 1, content).body, "Subject"), "Step Ada");
  EXPECT_EQ(header(build(*adapter, n, "x", 1, content).body, "Content-Type"), "text/plain; charset=utf-8");
  content.subject = "Code {code}";
  try {
    (void)build(*adapter, n, "x", 1, content);
    ADD_FAILURE() << "built a message with a missing variable";
  } catch (const TemplateError& e) {
    EXPECT_STREQ(e.what(), "template: missing variable 'code'");
  }
  c.settings["subject"] = "Hi {name}";  // settings.subject is a template too: no blank there either
  EXPECT_THROW((void)build(*make_adapter(c), make_notification(1, "a@b.test"), "x"), TemplateError);
}

TEST(SmtpMessage, NonAsciiHeadersAreRfc2047Encoded) {
  auto c = smtp_config();
  c.settings["from_name"] = "Zoë Ünïcode";
  const auto adapter = make_adapter(c);
  const std::string subject = "Grüße — ваш код готов, and a long tail to force several encoded words 😀😀😀";
  const auto req = build(*adapter, make_notification(1, "a@b.test", json{{"subject", subject}}.dump()), "x");
  const std::string& m = req.body;
  // Every header line is 7-bit and within 78 characters, folded where needed.
  const std::string head = m.substr(0, m.find("\r\n\r\n"));
  std::size_t pos = 0;
  while (pos < head.size()) {
    auto nl = head.find("\r\n", pos);
    if (nl == std::string::npos) nl = head.size();
    const std::string line = head.substr(pos, nl - pos);
    EXPECT_LE(line.size(), 78u) << line;
    for (const char ch : line) EXPECT_LT(static_cast<unsigned char>(ch), 0x80) << line;
    pos = nl + 2;
  }
  const std::string subj = header(m, "Subject");
  EXPECT_EQ(subj.rfind("=?UTF-8?B?", 0), 0u) << subj;
  EXPECT_NE(subj.find("?= =?UTF-8?B?"), std::string::npos) << "expected several words: " << subj;
  const std::string from = header(m, "From");
  EXPECT_EQ(from.rfind("=?UTF-8?B?", 0), 0u) << from;
  EXPECT_NE(from.find("?= <noreply@herald.test>"), std::string::npos) << from;
}

TEST(SmtpMessage, QuotedPrintableEncodesTheText) {
  const auto adapter = make_adapter(smtp_config());
  const std::string text = "Grüße = 100%\r\ntrailing space \n" + std::string(100, 'x') + "\n.dot\rend";
  const std::string body = body_of(build(*adapter, make_notification(1, "a@b.test"), text).body);
  EXPECT_TRUE(only_crlf_line_endings(body));
  EXPECT_EQ(body.substr(0, body.find("\r\n")), "Gr=C3=BC=C3=9Fe =3D 100%");
  EXPECT_NE(body.find("\r\ntrailing space=20\r\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\r\n.dot\r\nend\r\n"), std::string::npos) << body;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const auto nl = body.find("\r\n", pos);
    EXPECT_LE(nl - pos, 76u);
    pos = nl + 2;
  }
  EXPECT_NE(body.find(std::string(75, 'x') + "=\r\n" + std::string(25, 'x') + "\r\n"), std::string::npos) << body;
}

TEST(SmtpMessage, LineBreaksCannotInjectHeadersOrEnvelope) {
  const auto adapter = make_adapter(smtp_config());
  const auto n = make_notification(1, "victim@b.test\r\nBcc: <spy@evil.test>",
                                   json{{"subject", "Hi\r\nBcc: spy@evil.test"}}.dump());
  const auto req = build(*adapter, n, "body");
  for (const auto& line : header_lines(req.body)) EXPECT_NE(line.rfind("Bcc", 0), 0u) << line;
  EXPECT_EQ(header(req.body, "Subject"), "Hi  Bcc: spy@evil.test");
  // The mangled address is no longer plausible, so nothing reaches RCPT TO.
  EXPECT_TRUE(req.mail_rcpt.empty());
  EXPECT_EQ(header(req.body, "To").find_first_of("\r\n "), std::string::npos);
}

TEST(SmtpMessage, NoUsableAddressIsARecipientErrorNotAnException) {
  const auto adapter = make_adapter(smtp_config());
  for (const std::string email : {"", "not-an-address", "@nowhere"}) {
    http::Request req;
    EXPECT_NO_THROW(req = build(*adapter, make_notification(1, email), "x"));
    EXPECT_TRUE(req.mail_rcpt.empty()) << email;
  }
  // The client refuses an SMTP request without recipients at once, and that reads as invalid.
  http::Client client;
  const auto r = send(client, build(*adapter, make_notification(1, ""), "x"));
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(adapter->classify(r).kind, OutcomeKind::recipient_invalid);
}

// ---------------------------------------------------------------------------------------------
// Classification (no sockets)

TEST(SmtpClassify, ReplyCodesMapToOutcomes) {
  const auto adapter = make_adapter(smtp_config());
  auto ok = reply(250, "250 2.0.0 OK queued as 7");
  ok.headers.emplace_back("message-id", "<herald-1.1@herald>");
  const auto accepted = adapter->classify(ok);
  EXPECT_EQ(accepted.kind, OutcomeKind::accepted);
  EXPECT_EQ(accepted.provider_message_id, "<herald-1.1@herald>");

  EXPECT_EQ(adapter->classify(reply(550, "550 5.1.1 <x@y>: mailbox unavailable")).kind, OutcomeKind::recipient_invalid);
  EXPECT_EQ(adapter->classify(reply(550, "550 no such user")).kind, OutcomeKind::recipient_invalid);
  EXPECT_EQ(adapter->classify(reply(551)).kind, OutcomeKind::recipient_invalid);
  EXPECT_EQ(adapter->classify(reply(550, "550 5.1.1 <x@y>: mailbox unavailable")).provider_code, "5.1.1");
  EXPECT_EQ(adapter->classify(reply(550, "550 no such user")).provider_code, "");
  EXPECT_EQ(adapter->classify(reply(553, "553 5.1.3 bad address syntax")).kind, OutcomeKind::recipient_invalid);
  // A policy refusal or a refused sender says nothing about the recipient's address.
  EXPECT_EQ(adapter->classify(reply(550, "550 5.7.1 message refused as spam")).kind, OutcomeKind::permanent);
  EXPECT_EQ(adapter->classify(reply(553, "553 5.1.8 sender domain does not exist")).kind, OutcomeKind::permanent);
  for (const long code : {552L, 554L, 535L, 530L, 500L, 501L}) {
    EXPECT_EQ(adapter->classify(reply(code)).kind, OutcomeKind::permanent) << code;
  }
  for (const long code : {421L, 450L, 451L, 452L}) {
    EXPECT_EQ(adapter->classify(reply(code)).kind, OutcomeKind::retryable) << code;
  }
  http::Response refused;
  refused.transport_error = "Couldn't connect to server";
  const auto o = adapter->classify(refused);
  EXPECT_EQ(o.kind, OutcomeKind::retryable);
  EXPECT_NE(o.error.find("Couldn't connect"), std::string::npos);
  const auto e = adapter->classify(reply(550, "550 5.1.1 <x@y>: mailbox unavailable"));
  EXPECT_EQ(e.error, "SMTP 550: 550 5.1.1 <x@y>: mailbox unavailable");
}

// ---------------------------------------------------------------------------------------------
// Delivery through the HTTP client to a real SMTP server on loopback

TEST(SmtpDelivery, MessageArrivesWithHeadersBodyAndEnvelope) {
  SmtpServer server;
  auto c = smtp_config(server.url());
  c.settings["from_name"] = "Zoë from Herald";
  const auto adapter = make_adapter(c);
  const std::string subject = "Ваш код: 123 — ok";
  const std::string text =
      "Hello Zoë,\n.a line starting with a dot\n..two dots\n.\nend = 100% 😀 " + std::string(90, 'y') + "\n";
  const auto n = make_notification(77, "zoe@example.test", json{{"subject", subject}}.dump());
  http::Client client;
  const auto r = send(client, build(*adapter, n, text, 2));
  ASSERT_EQ(r.status, 250) << r.transport_error;
  EXPECT_TRUE(r.transport_error.empty());
  const auto out = adapter->classify(r);
  EXPECT_EQ(out.kind, OutcomeKind::accepted);
  EXPECT_EQ(out.provider_message_id, "<herald-77.2@herald>");

  const auto msgs = server.messages(1);
  ASSERT_EQ(msgs.size(), 1u);
  const json& m = msgs[0];
  EXPECT_EQ(m["mail_from"], "noreply@herald.test");
  EXPECT_EQ(m["rcpt_tos"], json::array({"zoe@example.test"}));
  EXPECT_EQ(m["subject"], subject);  // RFC 2047 round trip through Python's email package
  EXPECT_EQ(m["from"], "Zoë from Herald <noreply@herald.test>");
  EXPECT_EQ(m["to"], "zoe@example.test");
  EXPECT_EQ(m["body"], text);  // quoted-printable round trip; dot-led lines intact
  const std::string eml = m["eml"];
  EXPECT_TRUE(only_crlf_line_endings(eml));
  EXPECT_NE(eml.find("\r\n.a line starting with a dot\r\n..two dots\r\n.\r\n"), std::string::npos) << eml;
  EXPECT_EQ(header(eml, "Message-ID"), "<herald-77.2@herald>");
  EXPECT_EQ(header(eml, "X-Herald-Id"), "77");
}

// With html, multipart/alternative (RFC 2046 5.1.4): text/plain first, text/html last, each
// quoted-printable UTF-8; Python's email parser reads the parts back whole and finds no defect.
TEST(SmtpDelivery, HtmlGoesAsMultipartAlternative) {
  SmtpServer server;
  const auto adapter = make_adapter(smtp_config(server.url()));
  Content content;
  content.subject = "Your order {order} — shipped";
  content.html = "<p>Hello <b>{name}</b>, long line " + std::string(120, 'h') + " 😀</p>\n<p>=_ and -- too</p>";
  const std::string text = "Hello Zoë\n.dot line\n" + std::string(100, 't') + "\n";
  const auto n = make_notification(78, "zoe@example.test", R"({"name":"Zoë","order":"A-1"})");
  http::Client client;
  const auto r = send(client, build(*adapter, n, text, 1, content));
  ASSERT_EQ(r.status, 250) << r.transport_error;
  const auto msgs = server.messages(1);
  ASSERT_EQ(msgs.size(), 1u);
  const json& m = msgs[0];
  EXPECT_EQ(m["subject"], "Your order A-1 — shipped");
  EXPECT_EQ(m["content_type"], "multipart/alternative");
  EXPECT_EQ(m["defects"], json::array());
  ASSERT_EQ(m["parts"].size(), 2u);
  EXPECT_EQ(m["parts"][0]["type"], "text/plain");
  EXPECT_EQ(m["parts"][0]["charset"], "utf-8");
  EXPECT_EQ(m["parts"][0]["encoding"], "quoted-printable");
  EXPECT_EQ(m["parts"][0]["body"], text);
  EXPECT_EQ(m["parts"][1]["type"], "text/html");
  EXPECT_EQ(m["parts"][1]["charset"], "utf-8");
  EXPECT_EQ(m["parts"][1]["body"],
            "<p>Hello <b>Zoë</b>, long line " + std::string(120, 'h') + " 😀</p>\n<p>=_ and -- too</p>");
  const std::string eml = m["eml"];
  EXPECT_TRUE(only_crlf_line_endings(eml));
  for (std::size_t at = 0, next = 0; at < eml.size(); at = next + 2) {  // no line past 78 (RFC 5322 2.1.1)
    next = eml.find("\r\n", at);
    if (next == std::string::npos) break;
    EXPECT_LE(next - at, 78u) << eml.substr(at, next - at);
  }
}

TEST(SmtpDelivery, AuthSucceedsAndAWrongPasswordIsPermanent) {
  SmtpServer server({"--user", "mailer", "--password", "s3cret-pass"});
  http::Client client;
  auto c = smtp_config(server.url());
  c.settings["username"] = "mailer";
  c.secrets["password"] = "s3cret-pass";
  const auto good = make_adapter(c);
  const auto r = send(client, build(*good, make_notification(1, "a@b.test"), "hi"));
  ASSERT_EQ(r.status, 250) << r.transport_error;
  const auto msgs = server.messages(1);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0]["authenticated"], true);
  EXPECT_EQ(msgs[0]["login"], "mailer");

  c.secrets["password"] = "wrong-pass";
  const auto bad = make_adapter(c);
  const auto denied = send(client, build(*bad, make_notification(2, "a@b.test"), "hi"));
  EXPECT_EQ(denied.status, 535) << denied.transport_error;
  EXPECT_FALSE(denied.transport_error.empty());
  EXPECT_EQ(denied.transport_error.find("wrong-pass"), std::string::npos) << denied.transport_error;
  const auto out = bad->classify(denied);
  EXPECT_EQ(out.kind, OutcomeKind::permanent);
  EXPECT_EQ(out.error.find("wrong-pass"), std::string::npos) << out.error;

  // Without credentials the server refuses MAIL with 530.
  const auto anonymous = make_adapter(smtp_config(server.url()));
  const auto refused = send(client, build(*anonymous, make_notification(3, "a@b.test"), "hi"));
  EXPECT_EQ(refused.status, 530) << refused.transport_error;
  EXPECT_EQ(anonymous->classify(refused).kind, OutcomeKind::permanent);
  EXPECT_EQ(server.messages(0).size(), 1u);
}

TEST(SmtpDelivery, RejectedRecipientIsInvalid) {
  SmtpServer server({"--reject", "gone@example.test"});
  const auto adapter = make_adapter(smtp_config(server.url()));
  http::Client client;
  const auto r = send(client, build(*adapter, make_notification(1, "gone@example.test"), "hi"));
  EXPECT_EQ(r.status, 550);
  EXPECT_FALSE(r.transport_error.empty());
  EXPECT_NE(r.body.find("mailbox unavailable"), std::string::npos) << r.body;
  const auto out = adapter->classify(r);
  EXPECT_EQ(out.kind, OutcomeKind::recipient_invalid);
  EXPECT_NE(out.error.find("550"), std::string::npos);
  // The connection stays usable for the next message.
  const auto ok = send(client, build(*adapter, make_notification(2, "here@example.test"), "hi"));
  EXPECT_EQ(ok.status, 250) << ok.transport_error;
  const auto msgs = server.messages(1);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0]["rcpt_tos"], json::array({"here@example.test"}));
}

TEST(SmtpDelivery, ConnectionRefusedIsRetryable) {
  const auto adapter = make_adapter(smtp_config("smtp://127.0.0.1:" + std::to_string(unused_port())));
  http::Client client;
  const auto r = send(client, build(*adapter, make_notification(1, "a@b.test"), "hi"));
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.transport_error.empty());
  EXPECT_EQ(adapter->classify(r).kind, OutcomeKind::retryable);
}

TEST(SmtpDelivery, StartTlsWithAPrivateCa) {
  const fs::path dir = make_temp_dir();
  const fs::path cert = dir / "cert.pem";
  const fs::path key = dir / "key.pem";
  const std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
                          " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
                          " -keyout '" + key.string() + "' -out '" + cert.string() + "' >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  {
    SmtpServer server({"--tls-cert", cert.string(), "--tls-key", key.string(), "--user", "mailer", "--password", "pw"});
    http::Client client;
    auto c = smtp_config(server.url());
    c.settings["tls"] = "required";
    c.settings["ca_file"] = cert.string();
    c.settings["username"] = "mailer";
    c.secrets["password"] = "pw";
    const auto adapter = make_adapter(c);
    const auto r = send(client, build(*adapter, make_notification(1, "a@b.test"), "over TLS"));
    ASSERT_EQ(r.status, 250) << r.transport_error;
    const auto msgs = server.messages(1);
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0]["tls"], true);
    EXPECT_EQ(msgs[0]["body"], "over TLS\n");

    // Without the CA the certificate does not verify: nothing is sent, and it is retryable.
    // The same client: the connection verified with the CA file above must not be reused.
    c.settings.erase("ca_file");
    const auto untrusted = make_adapter(c);
    const auto u = send(client, build(*untrusted, make_notification(2, "a@b.test"), "x"));
    EXPECT_EQ(u.status, 0);
    EXPECT_FALSE(u.transport_error.empty());
    EXPECT_EQ(untrusted->classify(u).kind, OutcomeKind::retryable);
    EXPECT_EQ(server.messages(0).size(), 1u);

    // tls = none: the server offers STARTTLS, and the message still goes in clear.
    auto clear_config = smtp_config(server.url());
    clear_config.settings["tls"] = "none";
    clear_config.settings["username"] = "mailer";
    clear_config.secrets["password"] = "pw";
    const auto clear = make_adapter(clear_config);
    const auto n = send(client, build(*clear, make_notification(5, "a@b.test"), "in clear on purpose"));
    ASSERT_EQ(n.status, 250) << n.transport_error;
    const auto all = server.messages(2);
    ASSERT_EQ(all.size(), 2u);
    for (const auto& m : all) {
      EXPECT_EQ(m["tls"], m["body"] == "over TLS\n") << m.dump();
    }
  }
  {
    // tls = required against a server without STARTTLS: refused rather than sent in clear.
    SmtpServer plain;
    auto c = smtp_config(plain.url());
    c.settings["tls"] = "required";
    const auto adapter = make_adapter(c);
    const auto opportunistic = make_adapter(smtp_config(plain.url()));
    http::Client client;
    // A cleartext connection left open by a "try" send must not be reused for a "required" one.
    const auto clear = send(client, build(*opportunistic, make_notification(3, "a@b.test"), "in clear"));
    ASSERT_EQ(clear.status, 250) << clear.transport_error;
    const auto r = send(client, build(*adapter, make_notification(4, "a@b.test"), "x"));
    EXPECT_EQ(r.status, 0);
    EXPECT_FALSE(r.transport_error.empty());
    EXPECT_EQ(adapter->classify(r).kind, OutcomeKind::retryable);
    const auto msgs = plain.messages(0);
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0]["body"], "in clear\n");
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(SmtpDelivery, TwoHundredMessagesInFlightAllArrive) {
  SmtpServer server;
  const auto adapter = make_adapter(smtp_config(server.url()));
  http::Client client;
  constexpr int kCount = 200;
  std::mutex mutex;
  std::vector<long> statuses;
  std::promise<void> all_done;
  std::vector<std::pair<http::Request, http::Callback>> batch;
  for (int i = 1; i <= kCount; ++i) {
    const auto n = make_notification(i, "user" + std::to_string(i) + "@example.test");
    batch.emplace_back(build(*adapter, n, "message " + std::to_string(i)), [&](http::Response&& r) {
      std::lock_guard lock(mutex);
      statuses.push_back(r.status);
      if (statuses.size() == kCount) all_done.set_value();
    });
  }
  client.submit_many(std::move(batch));
  ASSERT_EQ(all_done.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  for (const long s : statuses) EXPECT_EQ(s, 250);
  const auto msgs = server.messages(kCount);
  ASSERT_EQ(msgs.size(), static_cast<std::size_t>(kCount));
  std::vector<bool> seen(kCount + 1, false);
  for (const auto& m : msgs) {
    const std::string to = m["rcpt_tos"][0];
    const int i = std::atoi(to.c_str() + 4);
    ASSERT_GE(i, 1);
    ASSERT_LE(i, kCount);
    EXPECT_FALSE(seen[static_cast<std::size_t>(i)]) << to;
    seen[static_cast<std::size_t>(i)] = true;
    EXPECT_EQ(m["body"], "message " + std::to_string(i) + "\n");
  }
}

// ---------------------------------------------------------------------------------------------
// One easy handle for every kind of transfer. The client keeps a handle's options from one
// transfer to the next and resets it only when the next would not overwrite them all, so each
// kind of transfer runs here after each kind (on the client's one idle handle: the requests go
// one at a time) and must reach its server exactly as from a fresh handle.

namespace {

enum class Kind { post, post_auth, many_headers, head, get, put, del, h2c, smtp };
constexpr std::array kKinds = {Kind::post, Kind::post_auth, Kind::many_headers, Kind::head, Kind::get,
                               Kind::put,  Kind::del,       Kind::h2c,          Kind::smtp};
/// Extra request headers of Kind::many_headers: more than the client's inline header list holds.
constexpr int kManyHeaders = 20;

/// Answers every request with its own body and path, and keeps what arrived, by path.
class Recorder {
 public:
  http::Handler handler() {
    return [this](http::ServerRequest&& request, http::Respond respond) {
      http::ServerResponse response;
      response.content_type = "text/plain";
      response.headers = {{"X-Path", request.path}, {"X-Long-Header-Name", "a value longer than sixteen bytes"}};
      response.body = request.body;
      {
        // Why the lock: the servers' threads write while the test thread reads.
        std::lock_guard lock(mutex_);
        seen_[request.path] = std::move(request);
      }
      respond(std::move(response));
    };
  }
  [[nodiscard]] std::optional<http::ServerRequest> seen(const std::string& path) {
    std::lock_guard lock(mutex_);
    const auto it = seen_.find(path);
    if (it == seen_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, http::ServerRequest> seen_;
};

std::size_t count_headers(const http::Response& r, std::string_view name) {
  return static_cast<std::size_t>(
      std::count_if(r.headers.begin(), r.headers.end(), [&](const auto& h) { return h.first == name; }));
}

}  // namespace

/// `on_beast`: plain http:// goes by the HTTP/1.1 client on Beast (the default), else by libcurl
/// like everything else; both must put the same request on the wire.
void every_kind_after_every_kind(bool on_beast) {
  Recorder recorder;
  http::Server http1({}, recorder.handler());
  http::H2cServer h2c({}, recorder.handler());
  SmtpServer smtp({"--user", "mailer", "--password", "s3cret-pass"});
  auto config = smtp_config(smtp.url());
  config.settings["username"] = "mailer";
  config.secrets["password"] = "s3cret-pass";
  const auto mailer = make_adapter(config);
  http::Client::Options options;
  options.http1_on_beast = on_beast;
  http::Client client(options);

  int step = 0;
  int mails = 0;
  auto run = [&](Kind kind) {
    const int i = ++step;
    SCOPED_TRACE("step " + std::to_string(i) + ", kind " + std::to_string(static_cast<int>(kind)));
    if (kind == Kind::smtp) {
      ++mails;
      const auto n = make_notification(i, "user" + std::to_string(i) + "@example.test");
      const auto r = send(client, build(*mailer, n, "message " + std::to_string(i)));
      EXPECT_EQ(r.status, 250) << r.transport_error;
      EXPECT_EQ(r.header("message-id"), "<herald-" + std::to_string(i) + ".1@herald>");
      EXPECT_EQ(r.headers.size(), 1u);
      return;
    }
    const std::string path = "/step-" + std::to_string(i);
    http::Request req;
    req.url = (kind == Kind::h2c ? h2c.url() : http1.url()) + path;
    std::string body;
    switch (kind) {
      case Kind::post:
      case Kind::post_auth:
      case Kind::many_headers:
      case Kind::h2c:
        req.method = "POST";
        body = "post-" + std::to_string(i);
        req.headers = {"Content-Type: application/json", "X-Custom: c" + std::to_string(i)};
        if (kind == Kind::many_headers) {
          for (int h = 0; h < kManyHeaders; ++h) req.headers.push_back("X-Many-" + std::to_string(h) + ": " + std::to_string(i));
        }
        break;
      case Kind::head:
        req.method = "HEAD";
        req.headers = {"X-Custom: c" + std::to_string(i)};
        break;
      case Kind::get: req.method = "GET"; break;
      case Kind::put:
        req.method = "PUT";
        body = "put-" + std::to_string(i);
        break;
      case Kind::del: req.method = "DELETE"; break;
      case Kind::smtp: break;
    }
    req.body = body;
    if (kind == Kind::post_auth) req.basic_auth = "alice:s3cr3t-value";
    if (kind == Kind::h2c) req.version = http::Request::Version::http2_prior_knowledge;

    const auto r = send(client, std::move(req));
    EXPECT_EQ(r.status, 200) << r.transport_error;
    EXPECT_EQ(r.body, body);
    EXPECT_EQ(r.header("x-path"), path);
    EXPECT_EQ(r.header("X-Long-Header-Name"), "a value longer than sixteen bytes");
    EXPECT_EQ(count_headers(r, "x-path"), 1u);  // none left over from an earlier response

    const auto seen = recorder.seen(path);
    ASSERT_TRUE(seen.has_value());
    const char* method = kind == Kind::head ? "HEAD" : kind == Kind::get ? "GET" : kind == Kind::put ? "PUT"
                         : kind == Kind::del ? "DELETE" : "POST";
    EXPECT_EQ(seen->method, method);
    EXPECT_EQ(seen->body, body);
    EXPECT_EQ(seen->http2, kind == Kind::h2c);
    EXPECT_EQ(seen->header("authorization"), kind == Kind::post_auth ? "Basic YWxpY2U6czNjcjN0LXZhbHVl" : "");
    const bool custom = kind == Kind::post || kind == Kind::post_auth || kind == Kind::many_headers || kind == Kind::h2c ||
                        kind == Kind::head;
    EXPECT_EQ(seen->header("x-custom"), custom ? "c" + std::to_string(i) : "");
    EXPECT_EQ(seen->header("expect"), "");
    for (int h = 0; h < kManyHeaders; ++h) {
      EXPECT_EQ(seen->header("x-many-" + std::to_string(h)), kind == Kind::many_headers ? std::to_string(i) : "");
    }
    const bool has_body = !body.empty();
    EXPECT_EQ(seen->header("content-length"), has_body ? std::to_string(body.size()) : "");
    if (custom && kind != Kind::head) {
      EXPECT_EQ(seen->header("content-type"), "application/json");
    }
  };
  for (const Kind first : kKinds) {
    for (const Kind second : kKinds) {
      run(first);
      run(second);
    }
  }

  const auto msgs = smtp.messages(static_cast<std::size_t>(mails));
  ASSERT_EQ(msgs.size(), static_cast<std::size_t>(mails));
  for (const auto& m : msgs) {
    EXPECT_EQ(m["authenticated"], true);
    EXPECT_EQ(m["login"], "mailer");
    const std::string to = m["rcpt_tos"][0];
    EXPECT_EQ(m["body"], "message " + std::to_string(std::atoi(to.c_str() + 4)) + "\n");
  }
}

TEST(HttpClientHandleReuse, EveryKindAfterEveryKindBehavesAsOnAFreshHandle) { every_kind_after_every_kind(false); }

TEST(HttpClientHandleReuse, PlainHttpOnBeastPutsTheSameRequestsOnTheWire) { every_kind_after_every_kind(true); }
