#include "herald/delivery_log.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"

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
  nlohmann::json j = {
      {"ts_us", e.ts_us},         {"seq", e.seq},           {"id", e.notification_id},
      {"event", e.kind},          {"type", e.type},         {"tenant", e.tenant},
      {"priority", to_string(e.priority)}, {"attempt", e.attempt},
  };
  if (!e.provider.empty()) j["provider"] = e.provider;
  if (e.latency_us >= 0) j["latency_us"] = e.latency_us;
  if (e.http_status != 0) j["http_status"] = e.http_status;
  if (!e.detail.empty()) j["detail"] = e.detail;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
  buffer_ += to_json_line(e);
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
