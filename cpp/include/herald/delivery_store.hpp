#pragma once
/// What the engine keeps and the interface it keeps it through: the seam where a second store
/// goes. Today's implementation is the embedded SQLite Store (store.hpp); Redis (Streams and Lua)
/// will be the second, for many machines. The engine holds a DeliveryStore and nothing more
/// specific; retention, the read-only reader and the CLI's prune are SQLite's own.
///
/// The cut, and why here: everything that must be atomic with a notification's lifecycle
/// (insert with its idempotency key, state updates with their events, receipts, suppressions) is
/// one WriteBatch, committed together, in order, by whoever implements this. Scheduling state
/// (lanes, ordering keys, provider queues) stays in the engine's memory, rebuilt from
/// load_unfinished() at start: a second store only has to make the batch atomic and the reads
/// below answerable, not to schedule.
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "herald/event.hpp"
#include "herald/notification.hpp"

namespace herald {

/// The latest delivery receipt of a notification (a column beside its State, never a state).
/// Stored by name; the order may change, the names may not.
enum class ReceiptState : std::uint8_t {
  none,         ///< no receipt (yet)
  delivered,
  failed,       ///< the provider could not deliver it
  bounced,      ///< a hard bounce: the address is unusable
  opened,
  unconfirmed,  ///< the provider never gave a final answer (reconciliation gave up)
};
/// "" for none.
[[nodiscard]] std::string_view to_string(ReceiptState r) noexcept;
/// ReceiptState::none for "" and for a name this build does not know.
[[nodiscard]] ReceiptState parse_receipt_state(std::string_view name) noexcept;

/// Why an address is not to be used again.
enum class SuppressionReason : std::uint8_t {
  unusable,   ///< it bounced hard, or the token is unregistered, or the number invalid
  opted_out,  ///< its owner opted out on this channel
};
[[nodiscard]] std::string_view to_string(SuppressionReason r) noexcept;
/// SuppressionReason::unusable for a name this build does not know (the safe reading).
[[nodiscard]] SuppressionReason parse_suppression_reason(std::string_view name) noexcept;

/// What "durable" means when send() returns.
enum class Durability {
  process,  ///< survives a crash of this process (WAL, synchronous=NORMAL)
  fsync,    ///< survives power loss (synchronous=FULL: every commit is fsynced)
};

/// The delivery state of a notification, as stored.
struct DeliveryState {
  State state = State::queued;
  int attempt = 0;           ///< attempts made in total
  int provider_index = 0;    ///< position in the plan's provider chain
  int provider_attempt = 0;  ///< attempts made on that provider
  std::int64_t next_at_ms = 0;  ///< when a scheduled retry is due
  std::string provider;         ///< provider of the last attempt
  std::string provider_message_id;
  std::string last_error;
  bool in_doubt = false;        ///< an attempt's outcome was lost in a crash
  std::string channel;          ///< channel of the last attempt (the plan step's)
  std::string address;          ///< recipient address the last attempt went to ("" = none per recipient)
  std::int64_t accepted_at_ms = 0;  ///< when a provider that sends receipts accepted it (0 = none expected)
  ReceiptState receipt = ReceiptState::none;  ///< latest delivery receipt
  std::int64_t receipt_at_ms = 0;
  double cost = 0;                  ///< sum of cost_per_message over accepted attempts
};

struct StoredNotification {
  Notification notification;
  DeliveryState delivery;
  std::uint64_t content_hash = 0;
  std::int64_t updated_at_ms = 0;
};

struct StateUpdate {
  Id id = 0;
  DeliveryState delivery;
};

/// A delivery receipt recorded on a notification that may already be final.
struct ReceiptUpdate {
  Id id = 0;
  ReceiptState receipt = ReceiptState::none;
  std::int64_t at_ms = 0;
  bool only_if_none = false;  ///< leave a receipt already recorded alone (reconciliation giving up)
};

/// Why an address is not to be used: it bounced hard / is unregistered, or its owner opted out.
struct Suppression {
  std::string channel;
  std::string address;
  SuppressionReason reason = SuppressionReason::unusable;
  std::string detail;  ///< the provider's words ("twilio 21610", "bounce", "UNREGISTERED")
  std::string provider;
  Id notification_id = 0;  ///< the notification whose outcome or receipt revealed it
  std::int64_t at_ms = 0;
  bool remove = false;     ///< in a WriteBatch: delete this (channel, address) instead
};

/// A "sending" mark: the state update that starts an attempt, with the events that go with it.
struct SendingMark {
  StateUpdate update;
  std::vector<Event> events;
};

/// Everything one submitter wants committed together.
struct WriteBatch {
  std::vector<Notification> inserts;
  std::vector<StateUpdate> updates;
  std::vector<Event> events;
  std::vector<ReceiptUpdate> receipts;
  std::vector<Suppression> suppressions;
  /// Sending marks made durable by journal_marks() that this batch writes (or supersedes), one
  /// entry per mark: the store settles them once it commits.
  std::vector<std::uint64_t> settles = {};
  [[nodiscard]] bool empty() const {
    return inserts.empty() && updates.empty() && events.empty() && receipts.empty() && suppressions.empty() &&
           settles.empty();
  }
};

/// Moves the mark's events, and its state unless `with_state` is false (a later state of the
/// same attempt supersedes it), into `into`.
inline void write_mark(WriteBatch& into, SendingMark& m, bool with_state = true) {
  into.events.insert(into.events.end(), std::make_move_iterator(m.events.begin()),
                     std::make_move_iterator(m.events.end()));
  if (with_state) into.updates.push_back(std::move(m.update));
}

/// Identity of a notification found by its idempotency key.
struct IdempotencyHit {
  Id id = 0;
  std::uint64_t content_hash = 0;
  State state = State::queued;
};

/// What a batch's submitter wants when the disk refuses the write (full, I/O error).
enum class OnFault : std::uint8_t {
  hold,  ///< keep it, in order, and retry with backoff until it commits (the engine's own records)
  fail,  ///< fail it at once with StoreError (intake: the caller is told and nothing was accepted)
};

/// Whether writes are reaching the disk. While degraded, held batches wait in memory, in order.
struct StoreHealth {
  bool degraded = false;
  std::string error;             ///< the last write error while degraded
  std::int64_t since_ms = 0;     ///< when writes began to fail (0 = healthy)
  std::size_t held_batches = 0;  ///< batches waiting for the disk
  std::uint64_t write_faults = 0;  ///< failed commits since open
};

class DeliveryStore {
 public:
  /// Called once the batch is committed (nullptr) or failed (the error), on the store's thread.
  /// The batch is handed back so its contents can move on without a copy.
  using Done = std::function<void(std::exception_ptr, WriteBatch&)>;

  virtual ~DeliveryStore() = default;

  // Writes. Thread-safe; batches commit in the order submitted.
  /// Assigns event sequence numbers; `done` runs after the commit, or with the error when the
  /// batch itself is refused (a constraint) or, for OnFault::fail, when the disk refuses.
  virtual void submit(WriteBatch batch, Done done = {}, OnFault on_fault = OnFault::hold) = 0;
  /// submit() with OnFault::fail for a caller that waits for `done` and has nothing else to do:
  /// when no commit is running and the disk takes writes, the caller's thread commits it (with
  /// whatever else is queued) instead of handing it to the store's thread and being woken back.
  /// `done` may then run on the caller's thread.
  virtual void submit_and_wait_here(WriteBatch batch, Done done) { submit(std::move(batch), std::move(done), OnFault::fail); }
  /// For intake that must not wait for a commit: makes `batch`'s new rows durable another way (the
  /// embedded store's intake journal), queues the batch for the next commit, and returns true at
  /// once; `done` runs after that commit, on the store's thread. get() finds the rows meanwhile.
  /// False, with `batch` and `done` untouched, when this store cannot (none, degraded, another
  /// durability, too far behind): the caller then commits as usual.
  virtual bool submit_journaled(WriteBatch& /*batch*/, Done& /*done*/) { return false; }
  /// Makes the marks durable without a commit (the intake journal) and returns a ticket, or 0
  /// when this store cannot (the caller then commits them before sending). Nothing is queued:
  /// the caller writes each mark later in a batch of its own (superseded by a later state of the
  /// same attempt, or as it is) and lists the ticket in that batch's `settles`, once per mark. A
  /// replay after a crash applies the marks whose row does not show their attempt yet.
  [[nodiscard]] virtual std::uint64_t journal_marks(const std::vector<SendingMark>& /*marks*/) { return 0; }
  /// Rows journaled by submit_journaled and not yet committed (so not yet handed to the loop).
  [[nodiscard]] virtual bool has_journaled() { return false; }
  /// Blocks until everything submitted before this call is committed. Throws StoreError while
  /// writes are refused (what was held stays held).
  virtual void flush() = 0;
  [[nodiscard]] virtual StoreHealth health() const = 0;

  // Reads. Thread-safe, committed data only.
  [[nodiscard]] virtual std::optional<StoredNotification> get(Id id) = 0;
  [[nodiscard]] virtual std::optional<IdempotencyHit> find_idempotent(const std::string& tenant, const std::string& type,
                                                                      const std::string& recipient_id,
                                                                      const std::string& key) = 0;
  /// Every event of one notification, oldest first. Throws NotFound for an unknown id.
  [[nodiscard]] virtual std::vector<Event> trace(Id id) = 0;
  /// Calls `each` with every stored idempotency key: (tenant, type, recipient_id, key).
  using KeyVisitor = std::function<void(std::string_view, std::string_view, std::string_view, std::string_view)>;
  virtual void for_each_idempotency_key(const KeyVisitor& each) = 0;
  /// Every notification not in a final state, oldest first.
  [[nodiscard]] virtual std::vector<StoredNotification> load_unfinished() = 0;
  /// Notifications callers sent (not the steps of plans) in `state`, oldest first.
  [[nodiscard]] virtual std::vector<StoredNotification> list_by_state(State state, std::size_t limit) = 0;
  /// The steps of a plan with many steps started so far for `parent`, oldest first.
  [[nodiscard]] virtual std::vector<StoredNotification> steps_of(Id parent) = 0;
  /// One recipient's notifications, newest first (the dashboard's search; no index: it reads
  /// from the newest backwards and stops at `limit`).
  [[nodiscard]] virtual std::vector<StoredNotification> list_by_recipient(const std::string& recipient_id,
                                                                          std::size_t limit) = 0;
  /// The largest id stored (ids handed out later must be above it).
  [[nodiscard]] virtual Id max_id() = 0;
  [[nodiscard]] virtual std::vector<Suppression> suppressions(std::size_t limit = 1'000'000) = 0;
  /// Completed notifications accepted before `before_ms` by one of `providers` with no receipt
  /// yet, oldest first: candidates for reconciliation.
  [[nodiscard]] virtual std::vector<StoredNotification> awaiting_receipt(std::int64_t before_ms,
                                                                         const std::vector<std::string>& providers,
                                                                         std::size_t limit) = 0;
};

}  // namespace herald
