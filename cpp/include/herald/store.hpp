#pragma once
/// The embedded store: one SQLite file in WAL mode behind a single writer thread with group commit.
///
/// Writers hand in batches from any thread; the writer thread applies everything queued since its
/// last commit in one transaction, then tells each submitter its batch is durable. Readers use a
/// separate connection (WAL lets them read while the writer writes) and see committed data only.
#include <atomic>
#include <chrono>
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

/// How much the store keeps of notifications that are final (see Store::prune).
struct PruneLimits {
  std::int64_t older_than_ms = 0;     ///< delete final notifications created and last updated before this (0 = no age limit)
  std::int64_t max_db_bytes = 0;      ///< then the oldest final ones until the file's live pages fit (0 = no size limit)
  std::size_t chunk = 2000;           ///< notifications per transaction: keeps each pause of the writer short
  const std::atomic<bool>* stop = nullptr;  ///< when set, the pass ends between two chunks
};

struct PruneResult {
  std::uint64_t notifications = 0;  ///< rows deleted, with their events
  std::uint64_t events = 0;         ///< event rows deleted
  std::int64_t db_bytes = 0;        ///< live bytes in the file afterwards (page count minus free pages)
};

/// Store tuning that tests and the engine set; defaults suit production.
struct StoreOptions {
  Durability durability = Durability::process;
  std::int64_t log_segment_bytes = 64 << 20;
  std::chrono::milliseconds retry_max{5'000};    ///< longest pause between retries of held writes
  std::chrono::milliseconds stop_timeout{5'000};  ///< how long closing keeps retrying held writes
  std::int64_t reserve_bytes = 1 << 20;  ///< space set aside in <dir>/.reserve, given up to open on a full disk
  /// Reads only: no lock, no writer, no log; usable while an engine owns the folder (a WAL reader).
  bool read_only = false;
  /// Called when writes begin to be refused (degraded) and when they are taken again, on the
  /// writer thread, outside the store's locks.
  std::function<void(const StoreHealth&)> on_health_change;
};

class Store {
 public:
  /// Called on the writer thread once the batch is committed (nullptr) or failed (the error).
  /// The batch is handed back so its contents can move on without a copy.
  using Done = std::function<void(std::exception_ptr, WriteBatch&)>;

  /// Opens or creates <dir>/herald.db and the delivery log under <dir>/log/. A writing store owns
  /// its folder: it holds an exclusive lock on <dir>/herald.lock (released by the OS when the
  /// process dies), and a second one on the same folder, in this process or another, fails with a
  /// StoreError naming the folder and the pid that holds it.
  Store(const std::filesystem::path& dir, Durability durability, std::int64_t log_segment_bytes = 64 << 20);
  Store(const std::filesystem::path& dir, StoreOptions options);
  /// Commits what is queued (retrying held writes up to stop_timeout), then stops the writer.
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// Thread-safe. Assigns event sequence numbers; `done` runs after the commit, or with the error
  /// when the batch itself is refused (a constraint) or, for OnFault::fail, when the disk refuses.
  void submit(WriteBatch batch, Done done = {}, OnFault on_fault = OnFault::hold);
  /// Submits and blocks until committed; rethrows a store failure as StoreError (OnFault::fail).
  void commit(WriteBatch batch);
  /// Blocks until everything submitted before this call is committed. Throws StoreError while
  /// the disk refuses writes (what was held stays held).
  void flush();
  /// Thread-safe.
  [[nodiscard]] StoreHealth health() const;
  /// Deletes final notifications (and their events) past the limits, oldest first, in chunks
  /// committed by the writer between other work; also system events (id 0) older than
  /// `older_than_ms`. Blocks until done. Throws StoreError while the disk refuses writes.
  PruneResult prune(const PruneLimits& limits);
  /// Live bytes of the database file (pages in use times page size).
  [[nodiscard]] std::int64_t db_bytes();

  // Reads: thread-safe, committed data only.
  [[nodiscard]] std::optional<StoredNotification> get(Id id);
  [[nodiscard]] std::optional<IdempotencyHit> find_idempotent(const std::string& tenant, const std::string& type,
                                                              const std::string& recipient_id,
                                                              const std::string& key);
  /// The events recorded after intake ("received"/"queued" are derived from the row by trace()).
  [[nodiscard]] std::vector<Event> events(Id id);
  /// Every event of one notification, oldest first: "received" and "queued" derived from its row,
  /// then the recorded ones. Throws NotFound for an unknown id.
  [[nodiscard]] std::vector<Event> trace(Id id);
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
  struct PruneChunk;
  struct Pending {
    WriteBatch batch;
    Done done;
    std::int64_t intake_seq = 0;  ///< first of the 2 * inserts sequence numbers reserved for intake events
    OnFault on_fault = OnFault::hold;
    std::shared_ptr<PruneChunk> prune;  ///< a retention chunk to run in this transaction
    bool probe = false;  ///< a one-row write that tells whether the disk takes writes again
  };
  struct Db;  // SQLite handles and prepared statements

  void open(const std::filesystem::path& dir);
  void lock_folder(const std::filesystem::path& dir);
  void writer_loop();
  void checkpoint_loop();
  /// One group commit. False when the disk refused it: `work` then keeps only the held batches.
  bool apply(std::vector<Pending>& work);
  void enqueue(Pending p);
  void note_fault(const std::string& error, std::size_t held);
  void note_recovered();
  void restore_reserve();

  std::filesystem::path dir_;
  std::filesystem::path db_path_;
  StoreOptions options_;
  Durability durability_;
  std::unique_ptr<Db> write_db_;  // touched only by the writer thread after construction
  std::unique_ptr<Db> read_db_;
  std::mutex read_mutex_;         // one reader at a time on the read connection
  std::unique_ptr<DeliveryLog> log_;
  int lock_fd_ = -1;  ///< holds the folder's flock for the store's lifetime

  mutable std::mutex mutex_;  // guards queue_, stopping_, next_seq_, health_, fail_fast_queued_
  std::condition_variable wake_;
  std::vector<Pending> queue_;
  std::size_t fail_fast_queued_ = 0;  ///< batches in queue_ whose submitter waits to hear of a fault
  StoreHealth health_;
  bool stopping_ = false;
  std::int64_t next_seq_ = 1;
  std::condition_variable wake_checkpointer_;
  std::thread writer_;
  std::thread checkpointer_;
};

}  // namespace herald
