#pragma once
/// The engine's counters, read by Engine::stats() and rendered by Metrics (`GET /metrics`).
#include <cstdint>

namespace herald {

/// Counters since the engine started (not persisted).
struct EngineStats {
  std::uint64_t received = 0;
  std::uint64_t deduplicated = 0;
  std::uint64_t attempts = 0;
  std::uint64_t accepted = 0;
  std::uint64_t retries = 0;
  std::uint64_t failovers = 0;
  std::uint64_t expired = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t in_doubt = 0;
  std::uint64_t recovered = 0;  ///< unfinished notifications resumed at start
  std::uint64_t active = 0;     ///< accepted and not yet final
  std::uint64_t in_flight = 0;  ///< attempts awaiting a provider's answer
  std::uint64_t suppressed = 0;          ///< not sent: unusable or opted-out address
  std::uint64_t receipts = 0;            ///< genuine receipts applied
  std::uint64_t receipts_rejected = 0;   ///< forged, stale or unreadable receipts answered 4xx
  std::uint64_t lookups = 0;             ///< status queries made (reconciliation)
  std::uint64_t reconciled = 0;          ///< deliveries or in-doubt attempts settled by a lookup
  std::uint64_t batched_requests = 0;    ///< requests that carried more than one notification
  std::uint64_t pruned = 0;              ///< final notifications deleted by retention
};

}  // namespace herald
