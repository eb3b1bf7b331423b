#pragma once
/// The embedded store: one SQLite file in WAL mode behind a single writer thread with group commit.
///
/// Writers hand in batches from any thread; the writer thread applies everything queued since its
/// last commit in one transaction, then tells each submitter its batch is durable. Readers use a
/// separate connection (WAL lets them read while the writer writes) and see committed data only.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "herald/event.hpp"
#include "herald/notification.hpp"

namespace herald {

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
  std::string receipt;              ///< latest delivery receipt: delivered | failed | bounced | opened ("" = none)
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
  std::string receipt;
  std::int64_t at_ms = 0;
  bool only_if_none = false;  ///< leave a receipt already recorded alone (reconciliation giving up)
};

/// Why an address is not to be used: it bounced hard / is unregistered, or its owner opted out.
struct Suppression {
  std::string channel;
  std::string address;
  std::string reason;  ///< "unusable" | "opted_out"
  std::string detail;  ///< the provider's words ("twilio 21610", "bounce", "UNREGISTERED")
  std::string provider;
  Id notification_id = 0;  ///< the notification whose outcome or receipt revealed it
  std::int64_t at_ms = 0;
  bool remove = false;     ///< in a WriteBatch: delete this (channel, address) instead
};

/// Everything one submitter wants committed together.
struct WriteBatch {
  std::vector<Notification> inserts;
  std::vector<StateUpdate> updates;
  std::vector<Event> events;
  std::vector<ReceiptUpdate> receipts;
  std::vector<Suppression> suppressions;
  [[nodiscard]] bool empty() const {
    return inserts.empty() && updates.empty() && events.empty() && receipts.empty() && suppressions.empty();
  }
};

/// Identity of a notification found by its idempotency key.
struct IdempotencyHit {
  Id id = 0;
  std::uint64_t content_hash = 0;
  State state = State::queued;
};

class DeliveryLog;

class Store {
 public:
  /// Called on the writer thread once the batch is committed (nullptr) or failed (the error).
  /// The batch is handed back so its contents can move on without a copy.
  using Done = std::function<void(std::exception_ptr, WriteBatch&)>;

  /// Opens or creates <dir>/herald.db and the delivery log under <dir>/log/.
  Store(const std::filesystem::path& dir, Durability durability, std::int64_t log_segment_bytes = 64 << 20);
  ~Store();  ///< commits what is queued, then stops the writer
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// Thread-safe. Assigns event sequence numbers; `done` runs after the commit.
  void submit(WriteBatch batch, Done done = {});
  /// Submits and blocks until committed; rethrows a store failure as StoreError.
  void commit(WriteBatch batch);
  /// Blocks until everything submitted before this call is committed.
  void flush();

  // Reads: thread-safe, committed data only.
  [[nodiscard]] std::optional<StoredNotification> get(Id id);
  [[nodiscard]] std::optional<IdempotencyHit> find_idempotent(const std::string& tenant, const std::string& type,
                                                              const std::string& recipient_id,
                                                              const std::string& key);
  /// The events recorded after intake ("received"/"queued" are derived from the row by the engine).
  [[nodiscard]] std::vector<Event> events(Id id);
  /// Every notification not in a final state, oldest first.
  [[nodiscard]] std::vector<StoredNotification> load_unfinished();
  [[nodiscard]] std::vector<StoredNotification> list_by_state(State state, std::size_t limit);
  [[nodiscard]] Id max_id();
  [[nodiscard]] std::vector<Suppression> suppressions(std::size_t limit = 1'000'000);
  /// Completed notifications accepted before `before_ms` by one of `providers` with no receipt
  /// yet, oldest first: candidates for reconciliation.
  [[nodiscard]] std::vector<StoredNotification> awaiting_receipt(std::int64_t before_ms,
                                                                 const std::vector<std::string>& providers,
                                                                 std::size_t limit);
  [[nodiscard]] const std::filesystem::path& db_path() const { return db_path_; }
  [[nodiscard]] std::filesystem::path log_dir() const;

 private:
  struct Pending {
    WriteBatch batch;
    Done done;
    std::int64_t intake_seq = 0;  ///< first of the 2 * inserts sequence numbers reserved for intake events
  };
  struct Db;  // SQLite handles and prepared statements

  void writer_loop();
  void checkpoint_loop();
  void apply(std::vector<Pending>& work);

  std::filesystem::path db_path_;
  Durability durability_;
  std::unique_ptr<Db> write_db_;  // touched only by the writer thread after construction
  std::unique_ptr<Db> read_db_;
  std::mutex read_mutex_;         // one reader at a time on the read connection
  std::unique_ptr<DeliveryLog> log_;

  std::mutex mutex_;  // guards queue_, stopping_, next_seq_
  std::condition_variable wake_;
  std::vector<Pending> queue_;
  bool stopping_ = false;
  std::int64_t next_seq_ = 1;
  std::condition_variable wake_checkpointer_;
  std::thread writer_;
  std::thread checkpointer_;
};

}  // namespace herald
