// The sandbox's shared state: records, counters, faults, settings and the callback scheduler.
#include "state.hpp"

#include <algorithm>
#include <atomic>
#include <iterator>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "herald/thread_name.hpp"

namespace herald::sandbox::detail {

namespace asio = boost::asio;
using json = nlohmann::json;

std::int64_t epoch_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

const Step* Record::step_at(std::int64_t now_ms) const {
  if (timeline.empty()) return nullptr;
  const Step* cur = &timeline.front();
  for (const Step& s : timeline) {
    if (s.at_ms <= now_ms) cur = &s;
  }
  return cur;
}

State::State(std::uint64_t seed, std::string signing_secret)
    : rng_(seed),
      signing_secret_(std::move(signing_secret)),
      sendgrid_key_(crypto::generate_private_key_pem("ec")),
      sendgrid_public_(sendgrid_key_.public_key_base64()) {
  sched_work_.emplace(sched_ioc_.get_executor());
  sched_thread_ = std::thread([this] {
    herald::detail::name_this_thread("herald-sbx-cb");
    sched_ioc_.run();
  });
  client_ = std::make_unique<http::Client>();
}

State::~State() { shutdown(); }

void State::shutdown() {
  {
    std::lock_guard lock(sched_mu_);
    if (down_) return;
    down_ = true;
  }
  sched_work_.reset();
  sched_ioc_.stop();
  if (sched_thread_.joinable()) sched_thread_.join();
  // Pending callback POSTs are answered "client stopped"; their continuations post to the
  // stopped io_context, where they are destroyed unrun.
  client_.reset();
}

Verdict State::draw(const std::string& service, std::int64_t now_ms) {
  Verdict v;
  std::lock_guard lock(mu_);
  if (!faults_.empty()) {
    auto it = faults_.find(service);
    if (it == faults_.end()) it = faults_.find("*");
    if (it != faults_.end()) {
      const Faults& f = it->second;
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      v.latency = f.latency;
      if (now_ms < f.outage_until_ms) {
        v.status = 503;
        v.error_code = "outage";
      } else if (f.rate_limit_rate > 0.0 && unit(rng_) < f.rate_limit_rate) {
        v.status = 429;
        v.error_code = "rate_limited";
        v.retry_after_s = f.retry_after_s;
      } else if (f.error_rate > 0.0 && unit(rng_) < f.error_rate) {
        v.status = static_cast<unsigned>(f.error_status);
        v.custom_code = !f.error_code.empty();
        v.error_code = v.custom_code ? f.error_code : std::string("injected");
      }
      v.accepted = v.error_code.empty();
    }
  }
  if (!v.accepted) {
    ++total_.rejected;
    ++by_service_[service].rejected;
  }
  return v;
}

void State::count_rejected(const std::string& service) {
  std::lock_guard lock(mu_);
  ++total_.rejected;
  ++by_service_[service].rejected;
}

std::uint64_t State::record(Record&& rec) {
  std::vector<Waiter> woken;
  std::uint64_t seq = 0;
  {
    std::lock_guard lock(mu_);
    ++total_.accepted;
    ++by_service_[rec.service].accepted;
    rec.seq = seq = next_seq_++;
    index_.insert_or_assign(rec.public_id(), records_.size());
    records_.push_back(std::move(rec));
    woken.swap(waiters_);
  }
  // Waiting long polls answer from the scheduler thread, not on the sender's path.
  for (Waiter& w : woken) after(std::chrono::milliseconds(0), std::move(w.fire));
  return seq;
}

std::uint64_t State::last_seq() const {
  std::lock_guard lock(mu_);
  return next_seq_ - 1;
}

void State::when_newer(std::uint64_t after_seq, std::chrono::milliseconds wait, std::function<void()> fire) {
  // Whichever comes first, a new record or the timeout, answers; the other finds `done` set.
  auto done = std::make_shared<std::atomic<bool>>(false);
  auto once = [done, fire = std::make_shared<std::function<void()>>(std::move(fire))] {
    if (done->exchange(true)) return;
    // Emptied once answered: the other copy (a pending timeout timer, or the waiter list) must
    // not keep the answer's connection, and through it the server, alive.
    auto answer = std::move(*fire);
    *fire = nullptr;
    answer();
  };
  {
    std::lock_guard lock(mu_);
    // A poll from before a restart (its seq unknown here) is answered at once too.
    const bool newer = (!records_.empty() && records_.back().seq > after_seq) || after_seq >= next_seq_;
    if (newer) {
      wait = std::chrono::milliseconds(0);
    } else {
      std::erase_if(waiters_, [](const Waiter& w) { return w.done->load(); });  // timed out already
      waiters_.push_back({done, once});
    }
  }
  after(wait, std::move(once));
}

std::optional<Record> State::find(const std::string& id) const {
  std::lock_guard lock(mu_);
  const auto it = index_.find(id);
  if (it == index_.end()) return std::nullopt;
  return records_[it->second];
}

std::vector<Record> State::select(const std::function<bool(const Record&)>& pred) const {
  std::lock_guard lock(mu_);
  std::vector<Record> out;
  for (const Record& r : records_) {
    if (pred(r)) out.push_back(r);
  }
  return out;
}

std::vector<Record> State::latest(std::size_t n) const {
  std::lock_guard lock(mu_);
  std::vector<Record> out;
  out.reserve(std::min(n, records_.size()));
  for (auto it = records_.rbegin(); it != records_.rend() && out.size() < n; ++it) out.push_back(*it);
  return out;
}

json State::messages_since(std::uint64_t after_seq, std::size_t limit) const {
  std::vector<Record> picked;
  {
    std::lock_guard lock(mu_);
    // Records are in seq order: find the first newer one from the end.
    auto it = records_.end();
    while (it != records_.begin() && std::prev(it)->seq > after_seq && limit > 0) {
      --it;
      --limit;
    }
    picked.assign(it, records_.end());
  }
  return to_json(std::move(picked));
}

json State::messages(const std::string& service) const {
  // Copy under the lock, parse bodies outside it: a large listing must not stall the senders.
  std::vector<Record> picked;
  {
    std::lock_guard lock(mu_);
    if (service.empty()) {
      picked = records_;
    } else {
      for (const Record& r : records_) {
        if (r.service == service) picked.push_back(r);
      }
    }
  }
  return to_json(std::move(picked));
}

json State::to_json(std::vector<Record> picked) {
  const std::int64_t now = epoch_ms();
  json out = json::array();
  for (Record& r : picked) {
    json headers = json::object();
    for (auto& [k, val] : r.headers) headers[k] = std::move(val);
    json body = json::parse(r.body, nullptr, false);
    if (body.is_discarded()) body = r.body;
    json m = {{"seq", r.seq},
              {"provider", r.service},
              {"service", r.service},
              {"id", r.public_id()},
              {"received_at_ms", r.received_at_ms},
              {"path", std::move(r.path)},
              {"headers", std::move(headers)},
              {"body", std::move(body)}};
    if (!r.query.empty()) m["query"] = std::move(r.query);
    if (!r.to.empty()) m["to"] = std::move(r.to);
    if (!r.subject.empty()) m["subject"] = std::move(r.subject);
    if (!r.text.empty()) m["text"] = std::move(r.text);
    if (const Step* s = r.step_at(now)) {
      m["status"] = s->status;
      if (!s->error_code.empty()) m["error_code"] = s->error_code;
    }
    if (!r.timeline.empty()) {
      // The whole timeline: the page works out the status in force without asking again.
      json steps = json::array();
      for (const Step& s : r.timeline) steps.push_back({{"at_ms", s.at_ms}, {"status", s.status}, {"error_code", s.error_code}});
      m["timeline"] = std::move(steps);
    }
    if (!r.method.empty()) m["method"] = std::move(r.method);
    if (!r.request_headers.empty()) {
      json all = json::object();
      for (auto& [k, val] : r.request_headers) all[k] = std::move(val);
      m["request_headers"] = std::move(all);
    }
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) m[it.key()] = it.value();
    out.push_back(std::move(m));
  }
  return out;
}

json State::stats() const {
  std::lock_guard lock(mu_);
  json per = json::object();
  for (const auto& [name, c] : by_service_) per[name] = {{"accepted", c.accepted}, {"rejected", c.rejected}};
  return {{"accepted", total_.accepted}, {"rejected", total_.rejected}, {"by_provider", std::move(per)}};
}

void State::clear() {
  std::lock_guard lock(mu_);
  records_.clear();
  index_.clear();
  total_ = {};
  by_service_.clear();
}

json State::faults_json() const {
  std::lock_guard lock(mu_);
  json out = json::object();
  for (const auto& [name, f] : faults_) out[name] = f.to_json();
  return out;
}

void State::set_faults(const std::string& service, const Faults& f) {
  std::lock_guard lock(mu_);
  faults_.insert_or_assign(service, f);
}

bool State::erase_faults(const std::string& service) {
  std::lock_guard lock(mu_);
  return faults_.erase(service) > 0;
}

void State::clear_faults() {
  std::lock_guard lock(mu_);
  faults_.clear();
}

CallbackSettings State::callbacks(const std::string& service) const {
  std::lock_guard lock(mu_);
  auto it = callbacks_.find(service);
  if (it == callbacks_.end()) it = callbacks_.find("*");
  return it == callbacks_.end() ? CallbackSettings{} : it->second;
}

void State::set_callbacks(const std::string& service, const CallbackSettings& s) {
  std::lock_guard lock(mu_);
  callbacks_.insert_or_assign(service, s);
}

json State::callbacks_json() const {
  std::lock_guard lock(mu_);
  json out = json::object();
  for (const auto& [name, s] : callbacks_) {
    out[name] = {{"enabled", s.enabled}, {"delay_ms", s.delay.count()}, {"url", s.url}};
  }
  return out;
}

void State::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  std::lock_guard lock(sched_mu_);
  if (down_) return;
  auto timer = std::make_shared<asio::steady_timer>(sched_ioc_, delay);
  timer->async_wait([timer, fn = std::move(fn)](const boost::system::error_code& ec) {
    if (!ec) fn();
  });
}

void State::post_in_order(std::chrono::milliseconds delay, std::vector<http::Request> requests, Signer sign) {
  if (requests.empty()) return;
  // Each step submits one request; its answer (on the client's thread) posts the next step back
  // to the scheduler thread, so the receiver sees the callbacks in order.
  struct Chain : std::enable_shared_from_this<Chain> {
    State* state = nullptr;
    std::vector<http::Request> requests;
    Signer sign;
    std::size_t next = 0;
    void step() {
      if (next >= requests.size()) return;
      http::Request req = std::move(requests[next++]);
      if (sign) sign(req);
      std::lock_guard lock(state->sched_mu_);
      if (state->down_ || !state->client_) return;
      state->client_->submit(std::move(req), [self = shared_from_this()](http::Response&&) {
        asio::post(self->state->sched_ioc_, [self] { self->step(); });
      });
    }
  };
  auto chain = std::make_shared<Chain>();
  chain->state = this;
  chain->requests = std::move(requests);
  chain->sign = std::move(sign);
  after(delay, [chain] { chain->step(); });
}

std::uint64_t State::next_number(const std::string& counter) {
  std::lock_guard lock(mu_);
  return ++numbers_[counter];
}

std::string State::random_bytes(std::size_t n) {
  std::lock_guard lock(mu_);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng_() & 0xff);
  return out;
}

std::pair<std::string, std::int64_t> State::issue_fcm_token() {
  std::lock_guard lock(mu_);
  const std::string token = "sbx-fcm-" + std::to_string(++numbers_["fcm-token"]);
  fcm_tokens_[token] = epoch_ms() + fcm_ttl_s_ * 1000;
  return {token, fcm_ttl_s_};
}

bool State::fcm_token_valid(const std::string& token) const {
  std::lock_guard lock(mu_);
  const auto it = fcm_tokens_.find(token);
  return it != fcm_tokens_.end() && epoch_ms() < it->second;
}

void State::set_fcm_token_ttl(std::int64_t seconds) {
  std::lock_guard lock(mu_);
  fcm_ttl_s_ = seconds;
}

bool State::slack_take(const std::string& hook) {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  auto [it, fresh] = slack_buckets_.try_emplace(hook);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = slack_burst_;
  } else {
    const double secs = std::chrono::duration<double>(now - b.at).count();
    b.tokens = std::min(slack_burst_, b.tokens + secs * slack_rate_);
  }
  b.at = now;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

void State::set_slack_rate(double rate_per_s, double burst) {
  std::lock_guard lock(mu_);
  slack_rate_ = rate_per_s;
  slack_burst_ = burst;
  slack_buckets_.clear();
}

json State::settings_json() const {
  std::lock_guard lock(mu_);
  return {{"fcm", {{"token_ttl_s", fcm_ttl_s_}}}, {"slack", {{"rate_per_s", slack_rate_}, {"burst", slack_burst_}}}};
}

}  // namespace herald::sandbox::detail
