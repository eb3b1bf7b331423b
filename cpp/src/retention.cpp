#include "herald/retention.hpp"

#include <algorithm>

#include "herald/clock.hpp"
#include "herald/errors.hpp"
#include "herald/thread_name.hpp"

namespace herald {

std::vector<std::filesystem::path> segments_to_prune(const std::vector<LogSegment>& segments,
                                                     const RetentionOptions& limits, std::int64_t now_ms) {
  std::vector<std::filesystem::path> out;
  if (segments.size() < 2) return out;
  const std::size_t candidates = segments.size() - 1;  // the newest is being written
  std::int64_t total = 0;
  for (const auto& s : segments) total += s.bytes;
  const std::int64_t age_cut = limits.log_max_age.count() > 0 ? now_ms - limits.log_max_age.count() : 0;
  for (std::size_t i = 0; i < candidates; ++i) {
    const LogSegment& s = segments[i];
    const bool too_old = age_cut > 0 && s.modified_ms < age_cut;
    const bool too_big = limits.log_max_bytes > 0 && total > limits.log_max_bytes;
    if (!too_old && !too_big) break;  // oldest first: once one stays, the newer ones stay too
    out.push_back(s.path);
    total -= s.bytes;
  }
  return out;
}

PruneLimits store_limits(const RetentionOptions& limits, std::int64_t now_ms) {
  PruneLimits out;
  if (limits.max_age.count() > 0) out.older_than_ms = now_ms - limits.max_age.count();
  out.max_db_bytes = limits.max_db_bytes;
  return out;
}

std::vector<LogSegment> list_segments(const std::filesystem::path& log_dir) {
  namespace fs = std::filesystem;
  std::vector<LogSegment> out;
  std::error_code ec;
  for (fs::directory_iterator it(log_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& p = it->path();
    const std::string name = p.filename().string();
    if (name.rfind("events-", 0) != 0 || p.extension() != ".jsonl") continue;
    LogSegment s;
    s.path = p;
    std::error_code e2;
    s.bytes = static_cast<std::int64_t>(fs::file_size(p, e2));
    if (e2) continue;  // deleted meanwhile
    const auto t = fs::last_write_time(p, e2);
    if (e2) continue;
    const auto sys = std::chrono::file_clock::to_sys(t);
    s.modified_ms = std::chrono::duration_cast<std::chrono::milliseconds>(sys.time_since_epoch()).count();
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const LogSegment& a, const LogSegment& b) { return a.path < b.path; });
  return out;
}

PruneReport prune_once(Store& store, const std::filesystem::path& log_dir, const RetentionOptions& limits,
                       std::int64_t now, const std::atomic<bool>* stop) {
  PruneReport r;
  PruneLimits store_cut = store_limits(limits, now);
  store_cut.stop = stop;
  r.store = store.prune(store_cut);
  auto segments = list_segments(log_dir);
  std::int64_t total = 0;
  for (const auto& s : segments) total += s.bytes;
  for (const auto& path : segments_to_prune(segments, limits, now)) {
    std::error_code ec;
    const auto size = static_cast<std::int64_t>(std::filesystem::file_size(path, ec));
    if (!ec && std::filesystem::remove(path, ec)) {
      ++r.segments;
      r.segment_bytes += size;
      total -= size;
    }
  }
  r.log_bytes = total;
  return r;
}

Retention::Retention(Store& store, std::filesystem::path log_dir, RetentionOptions limits,
                     std::function<void(const PruneReport&)> after_pass)
    : store_(store), log_dir_(std::move(log_dir)), limits_(limits), after_pass_(std::move(after_pass)) {
  if (limits_.interval.count() > 0) {
    thread_ = std::thread([this] {
      detail::name_this_thread("herald-prune");
      loop();
    });
  }
}

Retention::~Retention() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_flag_.store(true);
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

PruneReport Retention::run_now() {
  std::lock_guard pass(pass_mutex_);
  PruneReport r = prune_once(store_, log_dir_, limits_, now_ms(), &stop_flag_);
  {
    std::lock_guard lock(mutex_);
    totals_.store.notifications += r.store.notifications;
    totals_.store.events += r.store.events;
    totals_.store.db_bytes = r.store.db_bytes;
    totals_.segments += r.segments;
    totals_.segment_bytes += r.segment_bytes;
    totals_.log_bytes = r.log_bytes;
  }
  if (after_pass_) after_pass_(r);
  return r;
}

PruneReport Retention::totals() const {
  std::lock_guard lock(mutex_);
  return totals_;
}

void Retention::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, limits_.interval, [this] { return stopping_; });
    if (stopping_) return;
    lock.unlock();
    try {
      run_now();
    } catch (const StoreError&) {
      // The disk refuses writes: the store reports it; pruning resumes with the next pass.
    }
    lock.lock();
  }
}

}  // namespace herald
