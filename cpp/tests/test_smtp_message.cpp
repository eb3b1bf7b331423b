// The smtp adapter without a server: its config checks, the message it builds (envelope, headers,
// encodings) and how it classifies SMTP replies. Delivery is in test_smtp_delivery.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"
#include "herald/http_client.hpp"
#include "herald/provider.hpp"
#include "smtp_test_support.hpp"

using namespace herald;
using namespace herald::smtp_test;
using json = nlohmann::json;

namespace {

std::string body_of(const std::string& message) { return message.substr(message.find("\r\n\r\n") + 4); }

http::Response reply(long status, std::string text = {}) {
  http::Response r;
  r.status = status;
  r.body = std::move(text);
  return r;
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
