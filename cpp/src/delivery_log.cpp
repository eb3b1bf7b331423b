#include "herald/delivery_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "herald/errors.hpp"
#include "herald/json_text.hpp"

namespace herald {


DeliveryLog::DeliveryLog(std::filesystem::path dir, std::int64_t segment_bytes)
    : dir_(std::move(dir)), segment_bytes_(segment_bytes) {
  std::filesystem::create_directories(dir_);
  buffer_.resize((1 << 16) + (8 << 10));  // a flush comes at 64 KiB: room for the line that crosses it
}

DeliveryLog::~DeliveryLog() {
  flush();
  if (fd_ >= 0) ::close(fd_);
}

std::string DeliveryLog::to_json_line(const Event& e) {
  std::string line;
  line.reserve(160 + e.detail.size());
  append_line(line, e);
  return line;
}

void DeliveryLog::append_line(std::string& out, const Event& e) {
  const std::size_t start = out.size();
  out.resize(start + line_bound(e));
  char* end = write_line(out.data() + start, e);
  out.resize(static_cast<std::size_t>(end - out.data()));
}

std::size_t DeliveryLog::line_bound(const Event& e) {
  using detail::JsonWriter;
  // Sized once for the longest this line can be, then written without a capacity check per
  // field: the log costs a line per event, on the store's thread (about half the time it took
  // with std::string appends).
  const std::string_view texts[] = {to_string(e.kind), e.type, e.tenant, to_string(e.priority), e.recipient_id,
                                    e.channel, to_string(e.error_class), e.provider, e.provider_code, e.alert,
                                    e.detail};
  std::size_t bound = 1024;  // the keys and punctuation (~330), nine integers and the cost
  for (const auto t : texts) bound += JsonWriter::string_bound(t);
  return bound;
}

char* DeliveryLog::write_line(char* at, const Event& e) {
  using detail::JsonWriter;
  JsonWriter w(at);
  w.raw("{\"v\":");
  w.integer(log_schema_version);
  w.raw(",\"ts_us\":");
  w.integer(e.ts_us);
  w.raw(",\"seq\":");
  w.integer(e.seq);
  w.raw(",\"id\":\"");  // a string: ids exceed 2^53, where JSON readers lose digits
  w.integer(e.notification_id);
  w.raw("\",\"event\":");
  w.plain_string(to_string(e.kind));
  w.raw(",\"type\":");
  w.string(e.type);
  w.raw(",\"tenant\":");
  w.string(e.tenant);
  w.raw(",\"priority\":");
  w.plain_string(to_string(e.priority));
  w.raw(",\"attempt\":");
  w.integer(e.attempt);
  if (!e.recipient_id.empty()) {
    w.raw(",\"recipient\":");
    w.string(e.recipient_id);
  }
  if (!e.channel.empty()) {
    w.raw(",\"channel\":");
    w.string(e.channel);
  }
  if (e.step >= 0) {
    w.raw(",\"step\":");
    w.integer(e.step);
  }
  if (e.error_class != ErrorClass::none) {
    w.raw(",\"error_class\":");
    w.plain_string(to_string(e.error_class));
  }
  if (e.cost >= 0) {
    w.raw(",\"cost\":");
    if (e.cost < 1e10 && e.cost == static_cast<double>(static_cast<std::int64_t>(e.cost))) {
      w.integer(static_cast<std::int64_t>(e.cost));  // what %.10g writes for these, at a tenth of its cost
    } else {
      char cost[32];
      const int n = std::snprintf(cost, sizeof cost, "%.10g", e.cost);
      for (int i = 0; i < n && i < static_cast<int>(sizeof cost) - 1; ++i) w.raw(cost[i]);
    }
  }
  if (!e.provider.empty()) {
    w.raw(",\"provider\":");
    w.string(e.provider);
  }
  if (e.latency_us >= 0) {
    w.raw(",\"latency_us\":");
    w.integer(e.latency_us);
  }
  if (e.http_status != 0) {
    w.raw(",\"http_status\":");
    w.integer(e.http_status);
  }
  if (!e.provider_code.empty()) {
    w.raw(",\"provider_code\":");
    w.string(e.provider_code);
  }
  if (e.segments > 0) {
    w.raw(",\"segments\":");
    w.integer(e.segments);
  }
  if (!e.alert.empty()) {
    w.raw(",\"alert\":");
    w.string(e.alert);
  }
  if (!e.detail.empty()) {
    w.raw(",\"detail\":");
    w.string(e.detail);
  }
  w.raw('}');
  return w.end();
}

void DeliveryLog::open_segment(std::int64_t first_seq) {
  char name[64];
  std::snprintf(name, sizeof name, "events-%020lld.jsonl", static_cast<long long>(first_seq));
  const int fd = ::open((dir_ / name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;  // no room for a new segment: keep writing to the current one
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  written_ = 0;
  struct stat st {};
  on_disk_ = ::fstat(fd, &st) == 0 ? st.st_size : 0;  // a segment reopened after a restart
}

void DeliveryLog::append(const Event& e) {
  if (fd_ < 0 || written_ >= segment_bytes_) {
    if (flush()) open_segment(e.seq);  // rotate only once the old segment holds every line
  }
  const std::size_t room = line_bound(e) + 1;
  if (buffer_.size() < used_ + room) buffer_.resize(std::max(used_ + room, 2 * buffer_.size()));
  char* end = write_line(buffer_.data() + used_, e);
  *end++ = '\n';
  const auto line_bytes = static_cast<std::size_t>(end - (buffer_.data() + used_));
  used_ += line_bytes;
  written_ += static_cast<std::int64_t>(line_bytes);
  if (used_ >= (1u << 16)) flush();
}

bool DeliveryLog::flush() {
  if (used_ == 0) return true;
  if (fd_ >= 0) {
    std::size_t done = 0;
    while (done < used_) {
      const ssize_t n = ::write(fd_, buffer_.data() + done, used_ - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    if (done == used_) {
      on_disk_ += static_cast<std::int64_t>(done);
      used_ = 0;
      return true;
    }
    // A full disk took part of a line: cut the segment back so every line in it stays whole.
    if (done > 0 && ::ftruncate(fd_, static_cast<off_t>(on_disk_)) != 0) {
      on_disk_ += static_cast<std::int64_t>(done);  // could not cut back: keep what did land, resend the rest
      drop_front(done);
    }
  }
  if (used_ > max_held_bytes) {
    // Too much held for too long: drop the oldest whole lines.
    const std::string_view held(buffer_.data(), used_);
    std::size_t cut = used_ - max_held_bytes;
    const auto nl = held.find('\n', cut);
    cut = nl == std::string_view::npos ? used_ : nl + 1;
    dropped_lines_ += static_cast<std::uint64_t>(std::count(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(cut), '\n'));
    drop_front(cut);
  }
  return false;
}

void DeliveryLog::drop_front(std::size_t bytes) {
  std::memmove(buffer_.data(), buffer_.data() + bytes, used_ - bytes);
  used_ -= bytes;
}

}  // namespace herald
