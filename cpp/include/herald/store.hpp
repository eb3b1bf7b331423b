#pragma once
/// The embedded store (the DeliveryStore the engine uses by default): one SQLite file in WAL mode behind a single writer thread with group commit.
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
#include <unordered_map>
#include <vector>

#include "herald/delivery_store.hpp"
#include "herald/event.hpp"
#include "herald/intake_journal.hpp"
#include "herald/notification.hpp"

namespace herald {

class DeliveryLog;

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
  /// Space set aside in <dir>/.reserve, given up to open on a full disk; also the free space a
  /// degraded store waits for before a probe alone ends the episode.
  std::int64_t reserve_bytes = 1 << 20;
  /// Reads only: no lock, no writer, no log; usable while an engine owns the folder (a WAL reader).
  bool read_only = false;
  /// Called when writes begin to be refused (degraded) and when they are taken again, on the
  /// writer thread, outside the store's locks.
  std::function<void(const StoreHealth&)> on_health_change;
};

class Store final : public DeliveryStore {
 public:
  /// Turns off SQLite's memory statistics (SQLITE_CONFIG_MEMSTATUS) for this process: with them
  /// on, every SQLite allocation and free takes one process-wide mutex, which the store's writer,
  /// the intake and the readers all share (about 6k instructions per notification, measured).
  /// SQLite takes this setting only before it is first initialised in the process; after that it
  /// refuses, and nothing changes. Called once when herald's Python module loads (before Python's
  /// sqlite3 module can initialise SQLite, when herald is imported first) and before a store
  /// opens. What it costs: sqlite3_memory_used() and the soft heap limit stop working for every
  /// SQLite user in the process. True when the statistics are off.
  static bool turn_off_sqlite_memory_stats();

  /// Opens or creates <dir>/herald.db and the delivery log under <dir>/log/. A writing store owns
  /// its folder: it holds an exclusive lock on <dir>/herald.lock (released by the OS when the
  /// process dies), and a second one on the same folder, in this process or another, fails with a
  /// StoreError naming the folder and the pid that holds it.
  Store(const std::filesystem::path& dir, Durability durability, std::int64_t log_segment_bytes = 64 << 20);
  Store(const std::filesystem::path& dir, StoreOptions options);
  /// Commits what is queued (retrying held writes up to stop_timeout), then stops the writer.
  ~Store() override;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// Thread-safe. Assigns event sequence numbers; `done` runs after the commit, or with the error
  /// when the batch itself is refused (a constraint) or, for OnFault::fail, when the disk refuses.
  void submit(WriteBatch batch, Done done = {}, OnFault on_fault = OnFault::hold) override;
  void submit_and_wait_here(WriteBatch batch, Done done) override;
  /// Appends the rows to the intake journal (intake_journal.hpp) and queues the batch (held, like
  /// the engine's own records, if a commit is refused). False (the caller commits them itself)
  /// with Durability::fsync, when read-only, while degraded, when the journal's disk is full, and
  /// when max_journaled_rows wait for their commit already.
  bool submit_journaled(WriteBatch& batch, Done& done) override;
  /// Appends the marks to the intake journal; 0 in the cases submit_journaled refuses, and when
  /// max_journaled_rows parts of records wait for their commit.
  [[nodiscard]] std::uint64_t journal_marks(const std::vector<SendingMark>& marks) override;
  [[nodiscard]] bool has_journaled() override;
  void for_each_idempotency_key(const KeyVisitor& each) override;
  /// Submits and blocks until committed; rethrows a store failure as StoreError (OnFault::fail).
  void commit(WriteBatch batch);
  /// Blocks until everything submitted before this call is committed. Throws StoreError while
  /// the disk refuses writes (what was held stays held).
  void flush() override;
  /// Thread-safe.
  [[nodiscard]] StoreHealth health() const override;
  /// Deletes final notifications (and their events) past the limits, oldest first, in chunks
  /// committed by the writer between other work; also system events (id 0) older than
  /// `older_than_ms`. Blocks until done. Throws StoreError while the disk refuses writes.
  PruneResult prune(const PruneLimits& limits);
  /// Live bytes of the database file (pages in use times page size).
  [[nodiscard]] std::int64_t db_bytes();

  // Reads: thread-safe, committed data only.
  [[nodiscard]] std::optional<StoredNotification> get(Id id) override;
  [[nodiscard]] std::optional<IdempotencyHit> find_idempotent(const std::string& tenant, const std::string& type,
                                                              const std::string& recipient_id,
                                                              const std::string& key) override;
  /// The events recorded after intake ("received"/"queued" are derived from the row by trace()).
  [[nodiscard]] std::vector<Event> events(Id id);
  /// Every event of one notification, oldest first: "received" and "queued" derived from its row,
  /// then the recorded ones. Throws NotFound for an unknown id.
  [[nodiscard]] std::vector<Event> trace(Id id) override;
  /// Every notification not in a final state, oldest first.
  [[nodiscard]] std::vector<StoredNotification> load_unfinished() override;
  [[nodiscard]] std::vector<StoredNotification> list_by_state(State state, std::size_t limit) override;
  [[nodiscard]] std::vector<StoredNotification> steps_of(Id parent) override;
  [[nodiscard]] std::vector<StoredNotification> list_by_recipient(const std::string& recipient_id,
                                                                  std::size_t limit) override;
  [[nodiscard]] Id max_id() override;
  [[nodiscard]] std::vector<Suppression> suppressions(std::size_t limit = 1'000'000) override;
  /// Completed notifications accepted before `before_ms` by one of `providers` with no receipt
  /// yet, oldest first: candidates for reconciliation.
  [[nodiscard]] std::vector<StoredNotification> awaiting_receipt(std::int64_t before_ms,
                                                                 const std::vector<std::string>& providers,
                                                                 std::size_t limit) override;
  [[nodiscard]] const std::filesystem::path& db_path() const { return db_path_; }
  [[nodiscard]] std::filesystem::path log_dir() const;

 private:
  struct PruneChunk;
  struct Pending {
    WriteBatch batch;
    Done done;
    std::int64_t intake_seq = 0;  ///< first of the 2 * inserts sequence numbers reserved for intake events
    std::int64_t last_seq = 0;    ///< the highest sequence number reserved for it (0: none)
    OnFault on_fault = OnFault::hold;
    std::shared_ptr<PruneChunk> prune;  ///< a retention chunk to run in this transaction
    bool probe = false;  ///< a one-row write that tells whether the disk takes writes again
    std::uint64_t journal_ticket = 0;  ///< its rows are in the intake journal's record (0 = not journaled)
  };
  struct Db;  // SQLite handles and prepared statements

  void open(const std::filesystem::path& dir);
  void lock_folder(const std::filesystem::path& dir);
  void writer_loop();
  void checkpoint_loop();
  /// One group commit. False when the disk refused it: `work` then keeps only the held batches.
  bool apply(std::vector<Pending>& work);
  void enqueue(Pending p, bool wake_writer = true);
  void queue_locked(Pending p, std::int64_t ts);  ///< mutex_ held: sequence numbers, then the queue
  /// Commits what is queued on the calling thread, unless a commit is running or the store is
  /// degraded or closing. False when the writer thread must look at the queue.
  bool commit_on_this_thread();
  void note_fault(const std::string& error, std::size_t held);
  void note_recovered();
  void restore_reserve();
  /// Whether a degraded store may end its episode on a probe alone: reserve_bytes free on the
  /// disk (a probe of one row fits long after a real batch no longer does). `why` says what is short.
  bool room_to_recover(std::string& why) const;
  /// At open: next_seq_ from the persisted ceiling (a scan of the events only in a file written
  /// before there was one), then a ceiling above it persisted at once.
  void start_seq();
  /// Inside a commit's transaction: raises the persisted ceiling when `highest` reaches it.
  /// Returns the new ceiling to keep once the commit succeeds, or 0 when it was high enough.
  std::int64_t raise_seq_ceiling(std::int64_t highest);
  /// Inserts what a previous process left in the intake journal and applies its sending marks
  /// that never committed, then deletes the journal's files.
  void replay_journal();
  void journal_done(const Pending& p);

  std::filesystem::path dir_;
  std::filesystem::path db_path_;
  StoreOptions options_;
  Durability durability_;
  std::unique_ptr<Db> write_db_;  // touched only by the thread holding apply_mutex_
  /// Held by whichever thread drains the queue and commits (the writer, or a waiting submitter):
  /// commits stay one at a time and in queue order. Taken before mutex_, never after.
  std::mutex apply_mutex_;
  /// The last commit was refused: only the writer thread commits until one succeeds (it holds,
  /// retries with backoff, and records the recovery).
  std::atomic<bool> faulted_{false};
  std::unique_ptr<Db> read_db_;
  std::mutex read_mutex_;         // one reader at a time on the read connection
  std::unique_ptr<DeliveryLog> log_;
  int lock_fd_ = -1;  ///< holds the folder's flock for the store's lifetime
  std::unique_ptr<IntakeJournal> journal_;  ///< none when read-only or with Durability::fsync
  std::mutex journaled_mutex_;
  std::unordered_map<Id, StoredNotification> journaled_;  ///< journaled rows not yet committed, for get()

  mutable std::mutex mutex_;  // guards queue_, stopping_, next_seq_, health_, fail_fast_queued_
  std::condition_variable wake_;
  std::vector<Pending> queue_;
  std::size_t fail_fast_queued_ = 0;  ///< batches in queue_ whose submitter waits to hear of a fault
  StoreHealth health_;
  bool stopping_ = false;
  std::int64_t next_seq_ = 1;
  /// The persisted seq ceiling (store_counters): every seq committed or logged lies below it, so
  /// an open starts above it without scanning the events. Read and raised by commits, under
  /// apply_mutex_.
  std::int64_t seq_ceiling_ = 0;
  std::condition_variable wake_checkpointer_;
  std::thread writer_;
  std::thread checkpointer_;
};

}  // namespace herald
