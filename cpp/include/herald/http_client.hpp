#pragma once
/// HTTP client for provider I/O: libcurl's multi interface on one dedicated thread, and plain
/// http:// requests on an HTTP/1.1 client of Boost.Beast with a thread of its own (h1_client.hpp).
///
/// Why a thread running curl_multi_poll instead of curl_multi_socket_action on Asio: on these
/// 2-core machines the poll loop was measured at ~57k POST/s (17 CPU-us each) against ~39k/s
/// (26 CPU-us) for socket_action + epoll; see docs/architecture.md. The interface hides the choice.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::http {

/// One request. `basic_auth` ("user:password") and header values are secrets-bearing: never logged.
struct Request {
  std::string method = "POST";
  std::string url;
  std::vector<std::string> headers;  ///< "Name: value"
  std::string body;
  std::string basic_auth;            ///< optional "user:password" (HTTP Basic, or SMTP AUTH)
  std::chrono::milliseconds timeout{10000};

  /// HTTP version wish. `any` follows Client::Options::http2 (HTTP/2 over TLS where offered);
  /// `http2_prior_knowledge` speaks HTTP/2 without TLS (h2c), for a loopback server known to do so.
  enum class Version { any, http1_1, http2_prior_knowledge } version = Version::any;

  // SMTP (url "smtp://host:port" or "smtps://host:port"): `body` is the whole RFC 5322 message,
  // sent with the envelope below. Response::status is then the last SMTP reply code (250 = taken).
  std::string mail_from;               ///< envelope sender
  std::vector<std::string> mail_rcpt;  ///< envelope recipients
  bool require_tls = false;            ///< smtp://: insist on STARTTLS (fail rather than send in clear)
  bool no_tls = false;                 ///< smtp://: never STARTTLS (a relay on loopback); require_tls wins
  /// Optional PEM file of CA certificates to verify the server with instead of the system's
  /// (CURLOPT_CAINFO): for a server with a private or self-signed certificate.
  std::string ca_file;
};

/// One answer. status == 0 means the transport failed (see transport_error).
/// For SMTP, status is the last reply code and `headers` carries one entry, "message-id", copied
/// from the message sent (the SMTP reply has no id of its own).
struct Response {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
  std::string transport_error;     ///< empty on success: curl's error text otherwise
  bool timed_out = false;
  std::chrono::microseconds latency{0};

  /// Value of the first header with this (case-insensitive) name, or empty.
  [[nodiscard]] std::string header(std::string_view name) const;
};

/// Called once per submitted request, on one of the client's own threads (libcurl's, or the
/// HTTP/1.1 client's for plain http://). Must not block. Options::after_answers follows each
/// round of them.
using Callback = std::function<void(Response&&)>;

class H1Client;  // h1_client.hpp (internal)

class Client {
 public:
  struct Options {
    std::size_t max_total_connections = 512;  ///< CURLMOPT_MAX_TOTAL_CONNECTIONS
    std::size_t max_host_connections = 0;     ///< 0 = unlimited per host
    bool http2 = true;                        ///< negotiate HTTP/2 over TLS where offered
    std::chrono::milliseconds connect_timeout{3000};
    /// Plain http:// requests go by an HTTP/1.1 client on Boost.Beast with a thread of its own
    /// (h1_client.hpp: about a third of libcurl's CPU per request); everything else, and every
    /// request while a proxy is set in the environment (http_proxy, all_proxy) or
    /// HERALD_HTTP_CLIENT=curl, by libcurl.
    bool http1_on_beast = true;
    /// Called on the client's thread after it has run a round of callbacks (one or more), before
    /// it waits again; and once more after the callbacks a stopping client answers. A caller that
    /// gathers answers in its callbacks hands them on here: one hand-over (and one wake-up of
    /// whoever takes them) per round, rather than one per answer. Must not block.
    std::function<void()> after_answers;
  };

  explicit Client(Options options);
  Client() : Client(Options{}) {}
  ~Client();  ///< stops the thread; requests still pending get a transport_error "client stopped"
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Thread-safe. The callback fires exactly once, on one of the client's threads.
  void submit(Request request, Callback callback);
  /// Thread-safe batch form: one wake-up of the I/O thread for many requests.
  void submit_many(std::vector<std::pair<Request, Callback>> batch);
  /// Requests submitted and not yet answered.
  [[nodiscard]] std::size_t in_flight() const;

  /// How the I/O thread's waits ended, counted since construction. An expiry is a wait in
  /// curl_multi_poll that ran to the client's own bound (no socket ready, no curl timer due, no
  /// submit waking it) while transfers were in flight: curl had parked them and forgotten them,
  /// and only the bound got them going again.
  struct Stats {
    std::uint64_t idle_poll_expiries = 0;     ///< of the long wait (no transfer thought parked)
    std::uint64_t pending_poll_expiries = 0;  ///< of the short backstop wait (some may be parked)
  };
  /// Thread-safe.
  [[nodiscard]] Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<H1Client> h1_;  ///< null when plain http:// goes by libcurl too
};

/// `text` (an error message) with the request's secrets replaced by "[redacted]": URL userinfo
/// (also percent-decoded), basic_auth and the values of credential headers (Authorization,
/// *-Key, *Token*, *Signature*...), each whole and as its parts. Only values of 8 characters or
/// more, and only where they stand as whole tokens, so short values never mangle addresses.
[[nodiscard]] std::string redact(std::string text, const Request& request);

}  // namespace herald::http
