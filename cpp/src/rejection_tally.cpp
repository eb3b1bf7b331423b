#include "herald/rejection_tally.hpp"

namespace herald {

namespace {

std::string cut(const std::string& s) {
  if (s.size() <= RejectionTally::max_text) return s;
  std::size_t n = RejectionTally::max_text;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // not inside a UTF-8 sequence
  return s.substr(0, n) + "...";
}

}  // namespace

void RejectionTally::add(const std::string& provider, int status, const std::string& reason, const std::string& remote,
                         std::int64_t now_ms) {
  ++total_;
  auto key = std::make_tuple(cut(provider), status, cut(reason));
  auto it = kinds_.find(key);
  if (it == kinds_.end()) {
    if (kinds_.size() >= max_kinds) key = std::make_tuple(std::string("*"), status, std::string("other reasons"));
    it = kinds_.try_emplace(std::move(key)).first;
  }
  Kind& k = it->second;
  if (k.count++ == 0) k.first_ms = now_ms;
  k.last_ms = now_ms;
  k.last_remote = cut(remote);
}

std::vector<Event> RejectionTally::drain() {
  std::vector<Event> out;
  out.reserve(kinds_.size());
  for (auto& [key, k] : kinds_) {
    const auto& [provider, status, reason] = key;
    Event e;
    e.kind = EventKind::receipt_rejected;
    e.provider = provider;
    e.http_status = status;
    e.ts_us = k.last_ms * 1000;
    e.detail = std::to_string(k.count) + (k.count == 1 ? " receipt" : " receipts") + " refused: " + reason +
               " (last from " + k.last_remote + "; between " + std::to_string(k.first_ms) + " and " +
               std::to_string(k.last_ms) + " ms)";
    out.push_back(std::move(e));
  }
  kinds_.clear();
  return out;
}

}  // namespace herald
