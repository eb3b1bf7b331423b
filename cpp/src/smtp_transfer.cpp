// A mail submission on libcurl (smtp://, smtps://; curl_client.hpp): the envelope, the message
// uploaded as it is, STARTTLS and which connections may be reused; the server's replies read back.
#include "curl_client.hpp"

#include "http_text.hpp"

#include <algorithm>
#include <string>
#include <utility>

namespace herald::http {

using namespace curl_detail;

namespace {

using text::ascii_lower;
using text::starts_with_icase;
using text::trim;

/// The Message-ID field of an RFC 5322 message's header block (up to the first empty line), or "".
std::string message_id_of(std::string_view message) {
  constexpr std::string_view kName = "message-id:";
  std::size_t pos = 0;
  while (pos < message.size()) {
    auto end = message.find('\n', pos);
    if (end == message.npos) end = message.size();
    const auto line = message.substr(pos, end - pos);
    if (trim(line).empty()) break;  // end of the header block
    if (starts_with_icase(line, kName)) return std::string(trim(line.substr(kName.size())));
    pos = end + 1;
  }
  return {};
}

// libcurl callbacks. They must not let an exception escape into C code.

/// CURLOPT_READFUNCTION for SMTP: hands curl the message from where it stopped. curl itself
/// dot-stuffs lines that start with '.' and appends the terminating "<CRLF>.<CRLF>".
std::size_t on_upload(char* buffer, std::size_t size, std::size_t count, void* user) noexcept {
  auto* transfer = static_cast<Transfer*>(user);
  const std::string& body = transfer->request.body;
  const std::size_t left = body.size() - transfer->upload_offset;
  const std::size_t bytes = std::min(left, size * count);
  std::copy_n(body.data() + transfer->upload_offset, bytes, buffer);
  transfer->upload_offset += bytes;
  return bytes;
}

/// For SMTP, curl passes every server reply line to the header callback. The latest reply (all
/// its lines) is kept as the response body, so an error can quote the server's reason.
std::size_t on_smtp_reply(char* data, std::size_t size, std::size_t count, void* user) noexcept {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  std::string_view line = trim(std::string_view(data, bytes));
  try {
    std::string& body = transfer->response.body;
    if (transfer->reply_complete) {
      // A refusal (4xx/5xx) ends the transaction; what follows is QUIT's "221 Bye": keep the refusal.
      if (!body.empty() && (body.front() == '4' || body.front() == '5')) return bytes;
      body.clear();
    }
    // "250-..." continues a multi-line reply; "250 ..." (or a bare "250") ends it.
    transfer->reply_complete = !(line.size() > 3 && line[3] == '-');
    if (body.size() + line.size() < 4096) {
      if (!body.empty()) body += '\n';
      body.append(line);
    }
  } catch (...) {
    return 0;
  }
  return bytes;
}

/// "scheme://authority" of a URL, lower-cased: which server a cached connection goes to.
std::string smtp_endpoint(std::string_view url) {
  const auto scheme_end = url.find("://");
  const auto end = url.find_first_of("/?#", scheme_end == url.npos ? 0 : scheme_end + 3);
  std::string key(url.substr(0, end));
  std::transform(key.begin(), key.end(), key.begin(), ascii_lower);
  return key;
}

std::string smtp_tls_profile(const Request& req) {
  return (req.require_tls ? "required\n" : req.no_tls ? "none\n" : "try\n") + req.ca_file;
}

}  // namespace

/// Configures an easy handle for one mail submission (smtp:// or smtps://): the envelope from
/// the request, `body` uploaded as the message. No HTTP options apply.
CURLcode Client::Impl::configure_smtp(Transfer& t) {
  CURL* easy = t.easy.get();
  const Request& req = t.request;
  t.smtp = true;
  CURLcode rc = configure_transport(t, "smtp,smtps", &on_smtp_reply, false);
  auto set = [&](CURLoption option, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, option, value);
  };

  // An SMTP reply carries no message id: echo the message's own Message-ID as a response
  // header so that the adapter's classify() can record it.
  if (auto id = message_id_of(req.body); !id.empty()) t.response.headers.emplace_back("message-id", std::move(id));

  set(CURLOPT_MAIL_FROM, req.mail_from.c_str());
  for (const auto& rcpt : req.mail_rcpt) {
    curl_slist* head = curl_slist_append(t.rcpt_list.get(), rcpt.c_str());
    if (head == nullptr) return CURLE_OUT_OF_MEMORY;  // the list so far stays owned by rcpt_list
    if (!t.rcpt_list) t.rcpt_list.reset(head);
  }
  set(CURLOPT_MAIL_RCPT, t.rcpt_list.get());

  set(CURLOPT_UPLOAD, 1L);
  set(CURLOPT_READFUNCTION, &on_upload);
  set(CURLOPT_READDATA, static_cast<void*>(&t));
  set(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));

  if (!req.basic_auth.empty()) set(CURLOPT_USERPWD, req.basic_auth.c_str());
  // smtps:// is TLS from the first byte; for smtp:// this decides STARTTLS.
  set(CURLOPT_USE_SSL, static_cast<long>(req.require_tls ? CURLUSESSL_ALL
                                         : req.no_tls    ? CURLUSESSL_NONE
                                                         : CURLUSESSL_TRY));
  if (!req.ca_file.empty()) set(CURLOPT_CAINFO, req.ca_file.c_str());
  // libcurl 7.88 reuses a cached smtp:// connection without comparing TLS wishes: a cleartext
  // one (opened under "try" where no STARTTLS was offered) would carry a require_tls message in
  // clear, and a STARTTLS one verified against another CA file is taken as is. So only the
  // first TLS profile seen for a server reuses connections there; other profiles get their own.
  auto [owner, inserted] = smtp_tls_profiles_.try_emplace(smtp_endpoint(req.url), smtp_tls_profile(req));
  if (!inserted && owner->second != smtp_tls_profile(req)) {
    set(CURLOPT_FRESH_CONNECT, 1L);
    set(CURLOPT_FORBID_REUSE, 1L);
  }
  return rc;
}

/// A failed SMTP transfer's status: the server's last reply code when it was a refusal (4xx or
/// 5xx: 550 for a rejected recipient, 535 for bad credentials), else 0. A 2xx/3xx there is an
/// earlier step's answer (the greeting, EHLO, 354 before the data) followed by a transport
/// failure, and must not read as "taken".
long Client::Impl::smtp_error_reply(CURL* easy) {
  long code = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
  return code >= 400 ? code : 0;
}

}  // namespace herald::http
