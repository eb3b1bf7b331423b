#pragma once
/// The notification model: what a caller hands the engine, its priority and lifecycle states.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace herald {

/// Notification ids are time-ordered 64-bit integers (see IdGenerator).
using Id = std::int64_t;

/// Largest recipient or data object, as compact JSON text (256 KiB).
inline constexpr std::size_t max_payload_bytes = 256 * 1024;
/// Deepest nesting of a recipient or data object: the object itself is level 1.
inline constexpr int max_payload_depth = 64;
/// Latest time a notification may name: 9999-12-31T23:59:59Z, in epoch seconds.
inline constexpr std::int64_t max_epoch_s = 253'402'300'799;

/// Scheduling lane. Lower value = more urgent.
enum class Priority : std::uint8_t { critical = 0, high = 1, normal = 2, bulk = 3 };
inline constexpr int priority_count = 4;

/// Lifecycle state of a notification as stored. Values are persisted: append, never renumber.
enum class State : std::uint8_t {
  queued = 0,           ///< accepted and durable, waiting for its time, lane or ordering key
  routed = 1,           ///< a rule produced a plan; waiting for a provider slot
  sending = 2,          ///< an attempt is in flight (after a crash: in doubt)
  retry_scheduled = 3,  ///< the last attempt failed retryably; waiting for the backoff
  completed = 4,        ///< a provider accepted it
  expired = 5,          ///< expires_at passed before it could be sent
  dead_lettered = 6,    ///< failed for good; kept visible in the dead-letter set
  cancelled = 7,        ///< cancelled by the caller before it was sent
  suppressed = 8,       ///< not sent: the address is unusable (hard bounce, unregistered) or opted out
  skipped = 9,          ///< not sent: the rule decided so (Plan.skip), with its reason
};

[[nodiscard]] bool is_terminal(State s) noexcept;
[[nodiscard]] std::string_view to_string(State s) noexcept;
[[nodiscard]] std::string_view to_string(Priority p) noexcept;
/// Throws ValidationError("priority", ...) for an unknown name.
[[nodiscard]] Priority parse_priority(std::string_view name);

/// One request to tell one recipient something.
struct Notification {
  Id id = 0;
  std::string tenant = "default";
  std::string type;
  std::string recipient_id;
  std::string recipient_json = "{}";  ///< the recipient object (id, addresses, locale, ...) as JSON
  std::string data_json = "{}";       ///< template variables as a JSON object
  Priority priority = Priority::normal;
  std::string idempotency_key;  ///< empty = none
  std::string ordering_key;     ///< empty = none
  std::int64_t send_at_ms = 0;     ///< 0 = now
  std::int64_t expires_at_ms = 0;  ///< 0 = never
  std::int64_t created_at_ms = 0;  ///< set by the engine
  /// A step of a multi-step plan is delivered as a notification of its own, inside the engine:
  /// a copy of its parent with the parent's id here and the step's index. 0 = a notification
  /// a caller sent. Its events are recorded under the parent's id, with the step.
  Id parent_id = 0;
  int step = 0;
  /// content_hash() of this notification once intake computed it for its idempotency key; 0 =
  /// not computed (the store computes it then). Not part of what the caller chose.
  std::uint64_t hash_of_content = 0;
};

/// Throws ValidationError naming the field and the reason. `now_ms` is for expiry checks.
/// `prefix` is prepended to field names (e.g. "notifications[3].").
void validate(const Notification& n, std::int64_t now_ms, std::string_view prefix = {});

/// Hash of everything the caller chose (not id/created_at): tells a true repeat from a conflicting one.
[[nodiscard]] std::uint64_t content_hash(const Notification& n) noexcept;

}  // namespace herald
