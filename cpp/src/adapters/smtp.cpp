// The smtp adapter: one RFC 5322 message per notification, submitted through libcurl's SMTP.
#include "adapters.hpp"

#include <array>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"

namespace herald::adapters {

namespace {

/// What the HTTP client answers for a request with no envelope recipient (see build()).
constexpr std::string_view kNoRecipientError = "smtp request without mail_rcpt";
/// Encoded-words may be 75 characters at most, and a line holding them 76 (RFC 2047 section 2).
constexpr std::size_t kMaxEncodedWord = 75;
constexpr std::size_t kMaxEncodedLine = 76;
/// Quoted-printable lines may be 76 characters at most, the soft-break '=' included.
constexpr std::size_t kMaxQpLine = 76;

bool is_ascii_printable(std::string_view s) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/// CR and LF become spaces: a header value can never start a new header line.
std::string one_line(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return out;
}

/// An address with everything that could break out of a header or an SMTP command removed.
std::string clean_address(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c != '\r' && c != '\n' && c != '<' && c != '>' && c != ' ' && c != '\t' && c != ',') out += c;
  }
  return out;
}

/// Whether `s` looks like a single addr-spec: local@domain, nothing that needs quoting.
bool plausible_address(std::string_view s) {
  const auto at = s.rfind('@');
  return at != s.npos && at > 0 && at + 1 < s.size() && clean_address(s) == s &&
         s.find_first_of("\"()[];:\\") == s.npos;
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
                            (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
                            static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (const std::size_t rest = in.size() - i; rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

/// Length of the UTF-8 sequence that starts with byte `c` (1 for stray continuation bytes).
std::size_t utf8_length(unsigned char c) {
  if (c >= 0xf0 && c < 0xf8) return 4;
  if (c >= 0xe0) return c < 0xf0 ? 3 : 1;
  if (c >= 0xc0) return 2;
  return 1;
}

/// RFC 2047 B-encoding: "=?UTF-8?B?...?=" words, never splitting a UTF-8 sequence, joined by
/// folding whitespace (CRLF SP) so that no line exceeds 76 characters. `used` is how much of
/// the first line the header's name already takes ("Subject: " = 9).
std::string encode_words(std::string_view text, std::size_t used) {
  constexpr std::string_view kOpen = "=?UTF-8?B?";
  constexpr std::string_view kClose = "?=";
  constexpr std::size_t kOverhead = kOpen.size() + kClose.size();
  std::string out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    // 4 base64 characters per 3 bytes: the most raw bytes this word can hold.
    const std::size_t room = std::min(kMaxEncodedWord, kMaxEncodedLine - std::min(used, kMaxEncodedLine - 24));
    const std::size_t max_bytes = (room - kOverhead) / 4 * 3;
    std::size_t end = pos;
    while (end < text.size()) {
      const std::size_t next = std::min(text.size(), end + utf8_length(static_cast<unsigned char>(text[end])));
      if (next - pos > max_bytes) break;
      end = next;
    }
    if (end == pos) end = std::min(text.size(), pos + max_bytes);  // max_bytes >= 9: cannot happen
    out.append(kOpen).append(base64(text.substr(pos, end - pos))).append(kClose);
    pos = end;
    if (pos < text.size()) out += "\r\n ";
    used = 1;  // the next word's line starts with the folding space
  }
  return out;
}

/// Length of the last line of `s`.
std::size_t last_line_length(std::string_view s) {
  const auto nl = s.rfind('\n');
  return nl == s.npos ? s.size() : s.size() - nl - 1;
}

/// An unstructured header value (Subject): verbatim when short printable ASCII, else encoded.
std::string header_text(std::string_view text, std::size_t used) {
  if (is_ascii_printable(text) && text.size() <= 900) return std::string(text);
  return encode_words(text, used);
}

/// A display name as a quoted-string, or as encoded-words when it is not plain ASCII.
std::string display_name(std::string_view name, std::size_t used) {
  if (!is_ascii_printable(name)) return encode_words(name, used);
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

/// Quoted-printable (RFC 2045 section 6.7) with CRLF hard line breaks: any of CRLF, LF or CR in
/// the text ends a line; lines are soft-broken to stay within 76 characters.
std::string quoted_printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() + text.size() / 8 + 8);
  std::size_t column = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const char ch = text[i];
    if (ch == '\r' || ch == '\n') {
      out += "\r\n";
      column = 0;
      i += (ch == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ? std::size_t{2} : std::size_t{1};
      continue;
    }
    const auto c = static_cast<unsigned char>(ch);
    const bool line_end = i + 1 == text.size() || text[i + 1] == '\r' || text[i + 1] == '\n';
    // Spaces and tabs are literal except at a line's end, where transports may strip them.
    const bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !line_end);
    const std::size_t width = literal ? 1 : 3;
    // Room for this character and a soft break ('='), unless it is the line's last.
    const std::size_t limit = line_end ? kMaxQpLine : kMaxQpLine - 1;
    if (column + width > limit) {
      out += "=\r\n";
      column = 0;
    }
    if (literal) {
      out += ch;
    } else {
      out += '=';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
    column += width;
    ++i;
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
  return out;
}

/// RFC 5322 date-time in UTC: "Tue, 02 Jan 2024 03:04:05 +0000".
std::string rfc5322_date(std::int64_t now_ms) {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t seconds = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays.at(static_cast<std::size_t>(tm.tm_wday)),
                tm.tm_mday, kMonths.at(static_cast<std::size_t>(tm.tm_mon)), tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buffer;
}

/// The enhanced status code ("5.1.1") at the start of an SMTP reply's text, or "".
std::string enhanced_code(std::string_view reply) {
  // The reply is "550 5.1.1 text" or "550-5.1.1 text" (possibly several lines: take the last).
  if (const auto nl = reply.rfind('\n'); nl != reply.npos) reply.remove_prefix(nl + 1);
  if (reply.size() < 4) return {};
  reply.remove_prefix(4);
  const auto space = reply.find(' ');
  const std::string_view word = reply.substr(0, space);
  int dots = 0;
  for (const char c : word) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return {};
    }
  }
  return dots == 2 && word.size() >= 5 ? std::string(word) : std::string();
}

/// Whether a 550/551/553 refusal is about the recipient's mailbox (rather than the sender or a
/// policy): so unless an enhanced code says otherwise; 5.1.7 and 5.1.8 name the sender.
bool names_bad_recipient(std::string_view reply) {
  const std::string code = enhanced_code(reply);
  if (code.empty()) return true;
  if (code.rfind("5.1.", 0) != 0) return false;
  return code != "5.1.7" && code != "5.1.8";
}

class SmtpAdapter final : public Adapter {
 public:
  explicit SmtpAdapter(ProviderConfig c)
      : config_(std::move(c)),
        from_(require_setting(config_, "from")),
        from_name_(one_line(setting_or(config_, "from_name", ""))),
        subject_(setting_or(config_, "subject", "")),
        require_tls_(setting_or(config_, "tls", "try") == "required"),
        no_tls_(setting_or(config_, "tls", "try") == "none"),
        ca_file_(setting_or(config_, "ca_file", "")) {
    const std::string username = setting_or(config_, "username", "");
    if (!username.empty()) basic_auth_ = username + ":" + require_secret(config_, "password");
  }

  [[nodiscard]] http::Request build(const SendContext& ctx) const override {
    const Notification& n = ctx.notification;
    http::Request req;
    req.url = config_.url;
    req.timeout = std::chrono::milliseconds(config_.timeout_ms);
    req.mail_from = from_;
    req.require_tls = require_tls_;
    req.no_tls = no_tls_;
    req.ca_file = ca_file_;
    req.basic_auth = basic_auth_;
    const std::string to = clean_address(address(n));
    // No usable address: an empty envelope makes the client refuse the request at once, and
    // classify() reads that refusal as an invalid recipient.
    if (plausible_address(to)) req.mail_rcpt.push_back(to);

    const RenderedContent content = render_content(ctx);
    // The step's subject, else the data's "subject", else settings.subject, else the type.
    std::string subject = content.subject;
    if (subject.empty()) {
      const nlohmann::json data = nlohmann::json::parse(n.data_json, nullptr, false);
      if (const auto it = data.is_object() ? data.find("subject") : data.end();
          data.is_object() && it != data.end() && it->is_string()) {
        subject = it->get<std::string>();
      } else if (!subject_.empty()) {
        subject = render_template(subject_, n.data_json);
      } else {
        subject = n.type;
      }
    }
    subject = one_line(subject);

    const std::string message_id = "<herald-" + std::to_string(n.id) + "." + std::to_string(ctx.attempt) + "@herald>";
    std::string& m = req.body;
    m.reserve(512 + ctx.text.size() * 11 / 10);
    m += "Date: " + rfc5322_date(ctx.now_ms) + "\r\n";
    m += "From: ";
    if (!from_name_.empty()) {
      const std::string name = display_name(from_name_, 6);
      m += name;
      // Fold before the address rather than run past 78 characters.
      const std::size_t line = (name.find('\n') == std::string::npos ? 6 : 0) + last_line_length(name);
      m += line + from_.size() + 3 > 78 ? "\r\n " : " ";
    }
    m += "<" + from_ + ">\r\n";
    m += "To: <" + to + ">\r\n";
    m += "Subject: " + header_text(subject, 9) + "\r\n";
    m += "Message-ID: " + message_id + "\r\n";
    m += "MIME-Version: 1.0\r\n";
    if (content.html.empty()) {
      m += "Content-Type: text/plain; charset=utf-8\r\n";
      m += "Content-Transfer-Encoding: quoted-printable\r\n";
      m += "X-Herald-Id: " + std::to_string(n.id) + "\r\n";
      m += "\r\n";
      m += quoted_printable(ctx.text);
      return req;
    }
    // multipart/alternative (RFC 2046 section 5.1.4): the plain part first, the preferred html last.
    // The boundary holds "=_", which quoted-printable output never contains (a '=' there is always
    // followed by two hex digits or a line break), so it cannot occur inside a part.
    const std::string boundary = "=_herald_" + std::to_string(n.id) + "_" + std::to_string(ctx.attempt);
    m += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n";
    m += "X-Herald-Id: " + std::to_string(n.id) + "\r\n";
    m += "\r\n";
    m.reserve(m.size() + content.html.size() * 11 / 10 + 256);
    using Part = std::pair<const char*, const std::string*>;
    for (const auto& [type, part] : {Part{"text/plain", &ctx.text}, Part{"text/html", &content.html}}) {
      m += "--" + boundary + "\r\n";
      m += std::string("Content-Type: ") + type + "; charset=utf-8\r\n";
      m += "Content-Transfer-Encoding: quoted-printable\r\n";
      m += "\r\n";
      m += quoted_printable(*part);  // ends with a CRLF
      // The CRLF before a delimiter belongs to the delimiter (RFC 2046 section 5.1.1): a part whose
      // text ends with a line break needs one more to keep it.
      if (!part->empty() && (part->back() == '\n' || part->back() == '\r')) m += "\r\n";
    }
    m += "--" + boundary + "--\r\n";
    return req;
  }

  [[nodiscard]] Outcome classify(const http::Response& r) const override {
    Outcome out;
    const long s = r.status;
    if (s >= 200 && s < 300) {
      out.kind = OutcomeKind::accepted;
      out.provider_message_id = r.header("message-id");
      return out;
    }
    if (s == 0) {
      if (r.transport_error == kNoRecipientError) {
        out.kind = OutcomeKind::recipient_invalid;
        out.error = "no usable email address";
        return out;
      }
      out.kind = OutcomeKind::retryable;  // connection refused, timeout, TLS failure, dropped
      out.error = transport_error_text(r);
      return out;
    }
    out.error = "SMTP " + std::to_string(s) + (r.body.empty() ? std::string() : ": " + short_body(r.body));
    out.provider_code = enhanced_code(r.body);
    if (s >= 400 && s < 500) {
      out.kind = OutcomeKind::retryable;  // 421, 450, 451, 452: try again later
    } else if ((s == 550 || s == 551 || s == 553) && names_bad_recipient(r.body)) {
      out.kind = OutcomeKind::recipient_invalid;
    } else if (s >= 500) {
      out.kind = OutcomeKind::permanent;  // 530/535 authentication, 552/554 and other refusals
    } else {
      out.kind = OutcomeKind::retryable;  // an unexpected intermediate code
    }
    return out;
  }

  [[nodiscard]] std::string address(const Notification& n) const override { return recipient_field(n, "email"); }

  [[nodiscard]] bool serves(std::string_view channel) const override { return channel == "email"; }

  [[nodiscard]] bool needs_address() const override { return true; }

 private:
  ProviderConfig config_;
  std::string from_;
  std::string from_name_;
  std::string subject_;
  bool require_tls_ = false;
  bool no_tls_ = false;
  std::string ca_file_;
  std::string basic_auth_;  ///< "username:password" or empty (no AUTH); never logged
};

}  // namespace

std::unique_ptr<Adapter> make_smtp(const ProviderConfig& c) {
  if (c.url.rfind("smtp://", 0) != 0 && c.url.rfind("smtps://", 0) != 0) {
    throw ConfigError(config_error(c, "url", "is required: smtp://host[:port] or smtps://host[:port]"));
  }
  if (!plausible_address(require_setting(c, "from"))) {
    throw ConfigError(config_error(c, "settings.from", "must be a plain address (user@example.com)"));
  }
  const std::string tls = setting_or(c, "tls", "try");
  if (tls != "none" && tls != "try" && tls != "required") {
    throw ConfigError(config_error(c, "settings.tls", "must be none, try or required"));
  }
  if (tls == "none" && c.url.rfind("smtps://", 0) == 0) {
    throw ConfigError(config_error(c, "settings.tls", "cannot be none with an smtps:// url"));
  }
  const bool has_user = !setting_or(c, "username", "").empty();
  const bool has_password = c.secrets.count("password") != 0;
  if (has_password && !has_user) throw ConfigError(config_error(c, "settings.username", "is required with secrets.password"));
  if (has_user && !has_password) throw ConfigError(config_error(c, "secrets.password", "is required with settings.username"));
  if (setting_or(c, "username", "").find(':') != std::string::npos) {
    throw ConfigError(config_error(c, "settings.username", "may not contain ':'"));
  }
  if (has_password && c.secrets.at("password").find_first_of("\r\n") != std::string::npos) {
    throw ConfigError(config_error(c, "secrets.password", "contains a line break"));
  }
  for (const char* key : {"from_name", "subject", "username", "ca_file"}) {
    if (setting_or(c, key, "").find_first_of("\r\n") != std::string::npos) {
      throw ConfigError(config_error(c, std::string("settings.") + key, "contains a line break"));
    }
  }
  return std::make_unique<SmtpAdapter>(c);
}

}  // namespace herald::adapters
