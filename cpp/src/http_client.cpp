// http::Client: each request to the HTTP/1.1 client on Boost.Beast (h1_client.hpp) when it can
// send it as libcurl would, else to the libcurl client (curl_client.hpp).
#include "herald/http_client.hpp"

#include "curl_client.hpp"
#include "h1_client.hpp"
#include "http_request_checks.hpp"
#include "http_text.hpp"

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace herald::http {

std::string Response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (text::iequals(key, name)) return value;
  }
  return {};
}

namespace {

/// Whether plain http:// may go by the HTTP/1.1 client: not when told otherwise, and not while
/// the environment names a proxy libcurl would send it through (read once, at construction).
bool beast_allowed(const Client::Options& options) {
  if (!options.http1_on_beast) return false;
  const char* choice = std::getenv("HERALD_HTTP_CLIENT");
  if (choice != nullptr && std::string_view(choice) == "curl") return false;
  for (const char* proxy : {"http_proxy", "all_proxy", "ALL_PROXY"}) {
    const char* value = std::getenv(proxy);
    if (value != nullptr && *value != '\0') return false;
  }
  return true;
}

/// The target of a request the HTTP/1.1 client can send as libcurl would: plain http://, no
/// basic auth (libcurl's), no h2c, and nothing validate() refuses (those go to libcurl, which
/// answers with the reason).
std::optional<H1Target> h1_target_of(const Request& r) {
  if (r.version == Request::Version::http2_prior_knowledge || !r.basic_auth.empty()) return std::nullopt;
  if (!validate(r).empty()) return std::nullopt;
  // A provider sends every request to the same URL: the last one parsed, per submitting thread.
  thread_local std::string last_url;
  thread_local std::optional<H1Target> last_target;
  if (r.url != last_url) {
    last_target = parse_h1_target(r.url);
    last_url = r.url;
  }
  return last_target;
}

}  // namespace

Client::Client(Options options) : impl_(std::make_unique<Impl>(options)) {
  if (beast_allowed(options)) {
    H1Client::Options o;
    o.max_total_connections = options.max_total_connections;
    o.max_host_connections = options.max_host_connections;
    o.connect_timeout = options.connect_timeout;
    o.after_answers = options.after_answers;
    h1_ = std::make_unique<H1Client>(o);
  }
}

Client::~Client() = default;

void Client::submit(Request request, Callback callback) {
  std::vector<std::pair<Request, Callback>> one;
  one.emplace_back(std::move(request), std::move(callback));
  submit_many(std::move(one));
}

void Client::submit_many(std::vector<std::pair<Request, Callback>> batch) {
  std::vector<Impl::Pending> pending;
  std::vector<H1Client::Job> jobs;
  pending.reserve(h1_ ? 0 : batch.size());
  for (auto& [request, callback] : batch) {
    if (h1_) {
      if (auto target = h1_target_of(request)) {
        jobs.push_back(H1Client::Job{std::move(request), std::move(*target), std::move(callback)});
        continue;
      }
    }
    pending.push_back(Impl::Pending{std::move(request), std::move(callback)});
  }
  if (!jobs.empty()) h1_->submit_many(std::move(jobs));
  if (!pending.empty()) impl_->enqueue(std::move(pending));
}

std::size_t Client::in_flight() const { return impl_->in_flight() + (h1_ ? h1_->in_flight() : 0); }

Client::Stats Client::stats() const { return impl_->stats(); }

}  // namespace herald::http
