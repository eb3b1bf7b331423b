// An easy handle set up for one transfer (curl_client.hpp): the options every transfer sets,
// those of an HTTP request, a handle kept between POSTs of the same profile; and the libcurl
// callbacks that read an HTTP answer into the Response.
#include "curl_client.hpp"

#include "http_request_checks.hpp"
#include "http_text.hpp"

#include <climits>
#include <new>

namespace herald::http {

using namespace curl_detail;

namespace {

using text::ascii_lower;
using text::iequals;
using text::is_space;
using text::kMaxBodyBytes;
using text::starts_with_icase;

/// Idle easy handles kept for reuse at most (each holds a few KiB of buffers).
constexpr std::size_t kMaxFreeHandles = 4096;
/// Response headers reserved for at the first one (an API's answer carries about a dozen).
constexpr std::size_t kReservedHeaders = 12;

long clamp_to_long(std::chrono::milliseconds value) {
  const auto count = value.count();
  if (count <= 0) return 0;  // curl: 0 = no timeout
  return count > LONG_MAX ? LONG_MAX : static_cast<long>(count);
}

// libcurl callbacks. They must not let an exception escape into C code.

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) noexcept {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  if (bytes > kMaxBodyBytes - transfer->response.body.size()) {
    transfer->body_too_large = true;
    return 0;
  }
  try {
    transfer->response.body.append(data, bytes);
  } catch (...) {
    return 0;  // makes curl fail the transfer with CURLE_WRITE_ERROR
  }
  return bytes;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) noexcept {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  const std::string_view raw(data, bytes);
  auto& headers = transfer->response.headers;
  try {
    if (raw.size() >= 5 && (raw[0] == 'H' || raw[0] == 'h') && starts_with_icase(raw, "HTTP/")) {
      headers.clear();  // a new response begins (after 1xx or an auth round): drop the old one's
      return bytes;
    }
    // Index loops rather than three trim() calls per line: this runs for every header of every
    // answer. Blanks are those trim() drops.
    std::size_t end = raw.size();
    while (end > 0 && is_space(raw[end - 1])) --end;
    std::size_t begin = 0;
    while (begin < end && is_space(raw[begin])) ++begin;
    if (begin == end) return bytes;  // end of the header block
    const std::string_view line = raw.substr(begin, end - begin);
    if (begin > 0 && !headers.empty()) {
      headers.back().second.append(" ").append(line);  // obsolete line folding
      return bytes;
    }
    const auto colon = line.find(':');
    if (colon == line.npos) return bytes;
    std::size_t name_end = colon;
    while (name_end > 0 && is_space(line[name_end - 1])) --name_end;
    std::size_t value_begin = colon + 1;
    while (value_begin < line.size() && is_space(line[value_begin])) ++value_begin;
    // Room for a typical answer's headers at once rather than growing 1, 2, 4, 8...
    if (headers.capacity() == 0) headers.reserve(kReservedHeaders);
    auto& name = headers.emplace_back(line.substr(0, name_end), line.substr(value_begin)).first;
    for (char& c : name) c = ascii_lower(c);
  } catch (...) {
    return 0;
  }
  return bytes;
}

}  // namespace

/// What every transfer sets, HTTP or SMTP: the URL and allowed protocols, error buffer, socket
/// options, timeouts, and where the body and the header (or SMTP reply) lines go. With `kept`
/// (the handle's last transfer was of the same profile) only what differs per request.
CURLcode Client::Impl::configure_transport(Transfer& t, const char* protocols, curl_write_callback on_line, bool kept) {
  CURL* easy = t.easy.get();
  CURLcode rc = CURLE_OK;
  auto set = [&](CURLoption option, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, option, value);
  };
  set(CURLOPT_URL, t.request.url.c_str());
  set(CURLOPT_ERRORBUFFER, t.error_buffer.data());
  set(CURLOPT_TIMEOUT_MS, clamp_to_long(t.request.timeout));
  set(CURLOPT_WRITEDATA, static_cast<void*>(&t));
  set(CURLOPT_HEADERDATA, static_cast<void*>(&t));
  if (kept) return rc;
  set(CURLOPT_PROTOCOLS_STR, protocols);
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_TCP_NODELAY, 1L);
  set(CURLOPT_TCP_KEEPALIVE, 1L);
  set(CURLOPT_CONNECTTIMEOUT_MS, clamp_to_long(options_.connect_timeout));
  set(CURLOPT_WRITEFUNCTION, &on_body);
  set(CURLOPT_HEADERFUNCTION, on_line);
  return rc;
}

/// Whether an HTTP request waits for a connection to multiplex on (CURLOPT_PIPEWAIT).
bool Client::Impl::wants_pipewait(const Request& req) const {
  // h2c: wait for the one connection rather than open one per transfer of a first burst.
  if (req.version == Request::Version::http2_prior_knowledge) return true;
  // Only https can be multiplexed under 2TLS; waiting on a plain-http connection would just
  // serialise the first burst behind one HTTP/1.1 response.
  return req.version == Request::Version::any && options_.http2 && starts_with_icase(req.url, "https://");
}

/// Configures the transfer's easy handle; returns the first setopt failure.
///
/// A handle keeps its options from one transfer to the next (curl reinitialises its per-transfer
/// state itself when a transfer starts). The next transfer sets again whatever differs per
/// request; the rest stays when both transfers have the same profile: HTTP POSTs alike in
/// PIPEWAIT and basic auth. Anything else (another method, SMTP, a failed setup) may leave an
/// option the next would not overwrite (CUSTOMREQUEST, NOBODY, UPLOAD, USERPWD, FRESH_CONNECT...),
/// so such a handle is reset, here or in release_handle.
CURLcode Client::Impl::configure(Transfer& t) {
  const Request& req = t.request;
  const bool smtp = is_smtp_url(req.url);
  const bool post = iequals(req.method, "POST");
  const bool pipewait = !smtp && wants_pipewait(req);
  std::uint8_t profile = kDirtyHandle;
  if (!smtp && post) {
    profile = kHttpPostHandle | (pipewait ? kPipewaitFlag : 0) | (req.basic_auth.empty() ? 0 : kBasicAuthFlag);
  }
  const bool kept = profile != kDirtyHandle && profile == t.handle_profile;
  if (!kept && t.handle_profile != kFreshHandle) curl_easy_reset(t.easy.get());
  t.handle_profile = kDirtyHandle;  // until every option below is set
  const CURLcode rc = smtp ? configure_smtp(t) : configure_http(t, post, pipewait, kept);
  if (rc == CURLE_OK) t.handle_profile = profile;
  return rc;
}

/// configure() for an HTTP request; `kept`: the handle is set up for this request's profile.
CURLcode Client::Impl::configure_http(Transfer& t, bool post, bool pipewait, bool kept) {
  CURL* easy = t.easy.get();
  const Request& req = t.request;
  CURLcode rc = configure_transport(t, "http,https", &on_header, kept);
  auto set = [&](CURLoption option, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(easy, option, value);
  };
  if (req.version == Request::Version::http1_1) {
    set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  } else if (req.version == Request::Version::http2_prior_knowledge) {
    // libcurl 7.88 bug (curl#10634, fixed in 8.0): a PRIOR_KNOWLEDGE transfer that reuses an
    // h2c connection stacks a second HTTP/2 layer on it and fails with "Error in the HTTP2
    // framing layer". So only the transfer that opens an origin's connection asks for prior
    // knowledge; the rest ask for 2TLS, which on http:// reuses that h2c connection as is.
    // start() decided which this is, and holds the others back while the opener connects.
    set(CURLOPT_HTTP_VERSION, static_cast<long>(t.h2c_reuse ? CURL_HTTP_VERSION_2TLS
                                                           : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE));
  } else if (options_.http2) {
    set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  } else {
    set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  }
  if (pipewait) {
    if (!kept) set(CURLOPT_PIPEWAIT, 1L);
    t.pipewait = true;
  }

  const std::string& method = req.method;
  if (!post && iequals(method, "GET")) {
    set(CURLOPT_HTTPGET, 1L);
  } else if (!post && iequals(method, "HEAD")) {
    set(CURLOPT_NOBODY, 1L);
  } else {
    if (!post) set(CURLOPT_CUSTOMREQUEST, method.c_str());
    if (post || !req.body.empty()) {
      // Size first: without it curl would strlen() the body.
      set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      set(CURLOPT_POSTFIELDS, req.body.data());
    }
  }

  if (!req.basic_auth.empty()) {
    if (!kept) set(CURLOPT_HTTPAUTH, static_cast<unsigned long>(CURLAUTH_BASIC));
    set(CURLOPT_USERPWD, req.basic_auth.c_str());
  }

  // The list's nodes point at the request's own lines, which live as long as the Transfer:
  // curl_slist_append would allocate a node and a copy per line. curl only reads this list.
  std::vector<std::string>& lines = t.request.headers;
  const std::size_t count = lines.size() + 1;
  curl_slist* nodes = t.header_nodes.data();
  if (count > t.header_nodes.size()) {
    try {
      t.more_header_nodes.resize(count);
    } catch (const std::bad_alloc&) {
      return CURLE_OUT_OF_MEMORY;
    }
    nodes = t.more_header_nodes.data();
  }
  for (std::size_t i = 0; i < lines.size(); ++i) nodes[i] = curl_slist{lines[i].data(), &nodes[i + 1]};
  // An empty "Expect:" stops curl from waiting for 100-continue before large bodies.
  nodes[count - 1] = curl_slist{t.no_expect.data(), nullptr};
  set(CURLOPT_HTTPHEADER, nodes);
  return rc;
}

/// Gives the transfer an idle handle, with the profile its last transfer left, or a new one.
bool Client::Impl::acquire_handle(Transfer& t) {
  if (!free_handles_.empty()) {
    t.easy = std::move(free_handles_.back().easy);
    t.handle_profile = free_handles_.back().profile;
    free_handles_.pop_back();
    return true;
  }
  t.easy.reset(curl_easy_init());
  t.handle_profile = kFreshHandle;
  return t.easy != nullptr;
}

/// Takes the transfer's handle back for reuse. Whatever it keeps, the idle handle holds no
/// pointer into the finished Transfer.
void Client::Impl::release_handle(Transfer& t) {
  EasyPtr easy = std::move(t.easy);
  if (!easy) return;
  if (free_handles_.size() >= kMaxFreeHandles) return;  // cleaned up here, while `t` lives
  CURL* handle = easy.get();
  std::uint8_t profile = t.handle_profile;
  if ((profile & kHttpPostHandle) != 0) {
    // Kept for the next POST of this profile, which sets these again (configure_transport, and
    // configure_http: POSTFIELDS, HTTPHEADER). Pointer options only: curl copies strings.
    curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));
    curl_easy_setopt(handle, CURLOPT_WRITEDATA, static_cast<void*>(nullptr));
    curl_easy_setopt(handle, CURLOPT_HEADERDATA, static_cast<void*>(nullptr));
    curl_easy_setopt(handle, CURLOPT_POSTFIELDS, static_cast<const char*>(nullptr));
    curl_easy_setopt(handle, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
    // curl's copy of the credentials, likewise set again by the next POST of this profile: an
    // idle handle should not hold a secret.
    if ((profile & kBasicAuthFlag) != 0) curl_easy_setopt(handle, CURLOPT_USERPWD, static_cast<const char*>(nullptr));
  } else if (profile != kFreshHandle) {
    curl_easy_reset(handle);
    profile = kFreshHandle;
  }
  free_handles_.push_back(IdleHandle{std::move(easy), profile});
}

}  // namespace herald::http
