// SMTP delivery by the smtp adapter through the HTTP client to tests/smtp_server.py (aiosmtpd) on
// loopback: headers, body and envelope as received, multipart, AUTH, refusals, STARTTLS, a batch.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/http_client.hpp"
#include "herald/provider.hpp"
#include "smtp_test_support.hpp"

using namespace herald;
using namespace herald::smtp_test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

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
