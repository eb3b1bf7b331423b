#include "herald/delivery_log.hpp"

#include <cstdio>

#include "herald/errors.hpp"
#include "herald/json_text.hpp"

namespace herald {

DeliveryLog::DeliveryLog(std::filesystem::path dir, std::int64_t segment_bytes)
    : dir_(std::move(dir)), segment_bytes_(segment_bytes) {
  std::filesystem::create_directories(dir_);
  buffer_.reserve(1 << 16);
}

DeliveryLog::~DeliveryLog() {
  flush();
  if (file_ != nullptr) std::fclose(file_);
}

std::string DeliveryLog::to_json_line(const Event& e) {
  std::string line;
  line.reserve(160 + e.detail.size());
  append_line(line, e);
  return line;
}

void DeliveryLog::append_line(std::string& out, const Event& e) {
  using detail::append_json_string;
  out += "{\"ts_us\":";
  out += std::to_string(e.ts_us);
  out += ",\"seq\":";
  out += std::to_string(e.seq);
  out += ",\"id\":";
  out += std::to_string(e.notification_id);
  out += ",\"event\":";
  append_json_string(out, e.kind);
  out += ",\"type\":";
  append_json_string(out, e.type);
  out += ",\"tenant\":";
  append_json_string(out, e.tenant);
  out += ",\"priority\":";
  append_json_string(out, to_string(e.priority));
  out += ",\"attempt\":";
  out += std::to_string(e.attempt);
  if (!e.provider.empty()) {
    out += ",\"provider\":";
    append_json_string(out, e.provider);
  }
  if (e.latency_us >= 0) {
    out += ",\"latency_us\":";
    out += std::to_string(e.latency_us);
  }
  if (e.http_status != 0) {
    out += ",\"http_status\":";
    out += std::to_string(e.http_status);
  }
  if (!e.detail.empty()) {
    out += ",\"detail\":";
    append_json_string(out, e.detail);
  }
  out += '}';
}

void DeliveryLog::open_segment(std::int64_t first_seq) {
  if (file_ != nullptr) std::fclose(file_);
  char name[64];
  std::snprintf(name, sizeof name, "events-%020lld.jsonl", static_cast<long long>(first_seq));
  file_ = std::fopen((dir_ / name).c_str(), "ab");
  if (file_ == nullptr) throw StoreError("cannot open delivery log segment " + (dir_ / name).string());
  written_ = 0;
}

void DeliveryLog::append(const Event& e) {
  if (file_ == nullptr || written_ >= segment_bytes_) {
    flush();
    open_segment(e.seq);
  }
  const auto before = buffer_.size();
  append_line(buffer_, e);
  buffer_ += '\n';
  written_ += static_cast<std::int64_t>(buffer_.size() - before);
  if (buffer_.size() >= (1u << 16)) flush();
}

void DeliveryLog::flush() {
  if (file_ == nullptr || buffer_.empty()) return;
  std::fwrite(buffer_.data(), 1, buffer_.size(), file_);
  std::fflush(file_);
  buffer_.clear();
}

}  // namespace herald
