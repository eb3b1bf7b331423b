// The store's frame: opening the folder (its lock, the disk reserve, the two connections), the
// checkpoint thread, the queue and the writer thread that drains it (or a waiting submitter, on
// its own thread), and health while the disk refuses writes. What a commit does is
// store_apply.cpp; the schema store_schema.cpp; the journal's side store_journal.cpp; reads
// store_reads.cpp.
#include "herald/thread_name.hpp"
#include "herald/store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <future>
#include <iterator>

#include <sqlite3.h>

#include "herald/clock.hpp"
#include "herald/delivery_log.hpp"
#include "herald/errors.hpp"
#include "store_db.hpp"

namespace herald {

namespace {

constexpr const char* reserve_name = ".reserve";

/// Sets `bytes` of real disk blocks aside in `path` (fallocate, so a full disk cannot take them).
/// False, and no file left behind, when the disk has no room.
bool make_reserve(const std::filesystem::path& path, std::int64_t bytes) {
  if (bytes <= 0) return true;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)) == 0;
  ::close(fd);
  if (!ok) ::unlink(path.c_str());
  return ok;
}

}  // namespace

Store::Store(const std::filesystem::path& dir, Durability durability, std::int64_t log_segment_bytes)
    : Store(dir, [&] {
        StoreOptions o;
        o.durability = durability;
        o.log_segment_bytes = log_segment_bytes;
        return o;
      }()) {}

Store::Store(const std::filesystem::path& dir, StoreOptions options)
    : dir_(dir), options_(options), durability_(options.durability) {
  open(dir);
  if (options_.read_only) return;  // no threads: reads happen on the caller's
  start_seq();
  if (durability_ == Durability::process) {
    try {
      journal_ = std::make_unique<IntakeJournal>(dir / "journal");
      replay_journal();
    } catch (const StoreError&) {
      // A full disk: intake commits each row as before, and what a previous process journaled
      // stays on disk until an open that can insert it.
      journal_.reset();
    }
  }
  checkpointer_ = std::thread([this] {
    detail::name_this_thread("herald-ckpt");
    checkpoint_loop();
  });
  writer_ = std::thread([this] {
    detail::name_this_thread("herald-store");
    writer_loop();
  });
}

namespace {
/// How far a raised ceiling lies above the highest seq of its commit: one write of the ceiling per
/// ~a million events, and an open starts at most that far ahead of the last seq used.
constexpr std::int64_t seq_ceiling_step = 1 << 20;
}  // namespace

void Store::start_seq() {
  Db& db = *write_db_;
  seq_ceiling_ = Db::read_integer(db.seq_ceiling.get());
  // A file from before the ceiling was kept has none: one scan, the last.
  const std::int64_t floor = seq_ceiling_ > 0 ? seq_ceiling_ : Db::read_integer(db.max_event_seq.get()) + 1;
  // Also above the clock, so that numbers rise with time across restarts as they always did.
  next_seq_ = std::max(floor, now_us());
  try {
    seq_ceiling_ = raise_seq_ceiling(next_seq_);  // next_seq_ >= seq_ceiling_: always raised
  } catch (const store_detail::SqliteError&) {
    // A full disk: the first commit that succeeds raises it instead.
  }
}

std::int64_t Store::raise_seq_ceiling(std::int64_t highest) {
  if (highest < seq_ceiling_) return 0;
  const std::int64_t raised = highest + 1 + seq_ceiling_step;
  sqlite3_stmt* s = write_db_->raise_seq_ceiling.get();
  sqlite3_bind_int64(s, 1, raised);
  write_db_->step_done(s, "raise the seq ceiling");
  return raised;
}

bool Store::turn_off_sqlite_memory_stats() {
  static const bool off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  return off;
}

void Store::open(const std::filesystem::path& dir) {
  turn_off_sqlite_memory_stats();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw StoreError("cannot create data directory " + dir.string() + ": " + ec.message());
  db_path_ = dir / "herald.db";
  if (options_.read_only) {
    if (!std::filesystem::exists(db_path_, ec)) throw StoreError("no herald data in " + dir.string());
    read_db_ = std::make_unique<Db>(db_path_, durability_, false, true);
    return;
  }
  lock_folder(dir);  // before anything is written: a second engine must not touch the files
  const auto reserve = dir / reserve_name;
  auto connect = [this] {
    write_db_ = std::make_unique<Db>(db_path_, durability_, true);
    read_db_ = std::make_unique<Db>(db_path_, durability_, false);
    // The first read maps the WAL index (<db>-shm), which needs disk blocks: fail here, not later.
    sqlite3_stmt* s = read_db_->max_id.get();
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) read_db_->fail("read " + db_path_.string());
  };
  try {
    connect();
  } catch (const StoreError&) {
    // A full disk cannot hold the WAL index: give up the reserve and try once more, so an engine
    // can always open its folder and resume (its writes wait until space returns).
    write_db_.reset();
    read_db_.reset();
    if (!std::filesystem::exists(reserve, ec)) throw;
    std::filesystem::remove(reserve, ec);
    connect();
  }
  log_ = std::make_unique<DeliveryLog>(dir / "log", options_.log_segment_bytes);
  restore_reserve();
}

void Store::lock_folder(const std::filesystem::path& dir) {
  const auto path = dir / "herald.lock";
  // O_CLOEXEC: a child process must not inherit (and so keep) the lock.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw StoreError("cannot open " + path.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("unknown");
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    if (err != EWOULDBLOCK) throw StoreError("cannot lock " + path.string() + ": " + std::strerror(err));
    throw StoreError("data folder " + dir.string() + " is in use by another engine (pid " + pid +
                     "): one folder has one engine; share it through one herald serve, or read it with "
                     "herald.open_readonly");
  }
  // The pid is for the message above; on a full disk it may not be written, the lock still holds.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // nothing to do: see above
  }
  lock_fd_ = fd;
}

bool Store::room_to_recover(std::string& why) const {
  if (options_.reserve_bytes <= 0) return true;
  std::error_code ec;
  const auto space = std::filesystem::space(dir_, ec);
  if (ec) return true;  // cannot tell: the probe's write is the evidence
  if (space.available >= static_cast<std::uintmax_t>(options_.reserve_bytes)) return true;
  why = "disk full: " + std::to_string(space.available) + " bytes free, fewer than the " +
        std::to_string(options_.reserve_bytes) + " the store waits for before it takes writes again";
  return false;
}

void Store::restore_reserve() {
  std::error_code ec;
  const auto reserve = dir_ / reserve_name;
  if (options_.reserve_bytes <= 0 || std::filesystem::exists(reserve, ec)) return;
  make_reserve(reserve, options_.reserve_bytes);  // no room now: tried again after the next recovery
}

Store::~Store() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  wake_checkpointer_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (checkpointer_.joinable()) checkpointer_.join();
  std::lock_guard applying(apply_mutex_);  // a submitter's own commit, if one is still running, ends first
  journal_.reset();  // keeps the files of records never committed, for the next open
  log_.reset();
  write_db_.reset();
  read_db_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // last: the folder is free once every file is closed
}

void Store::checkpoint_loop() {
  // PASSIVE never blocks the writer or readers; it copies what it can from the WAL into the file.
  std::unique_ptr<Db> db;
  try {
    db = std::make_unique<Db>(db_path_, durability_, false);
  } catch (const StoreError&) {
    return;  // without a checkpoint connection the WAL only grows; the store still works
  }
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_checkpointer_.wait_for(lock, std::chrono::milliseconds(200));
    if (stopping_) break;
    lock.unlock();
    sqlite3_wal_checkpoint_v2(db->db.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    lock.lock();
  }
  lock.unlock();
  sqlite3_wal_checkpoint_v2(db->db.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
}

std::filesystem::path Store::log_dir() const { return dir_ / "log"; }

void Store::enqueue(Pending p, bool wake_writer) {
  const std::int64_t ts = now_us();
  {
    std::lock_guard lock(mutex_);
    if (options_.read_only) throw StoreError("the store is open read-only");
    if (stopping_) throw StoreError("store is closed");
    queue_locked(std::move(p), ts);
  }
  if (wake_writer) wake_.notify_one();
}

void Store::queue_locked(Pending p, std::int64_t ts) {
  // Intake events go to the JSON Lines log only; the row itself records them in SQLite.
  p.intake_seq = next_seq_;
  next_seq_ += static_cast<std::int64_t>(2 * p.batch.inserts.size());
  for (auto& e : p.batch.events) {
    e.seq = next_seq_++;
    if (e.ts_us == 0) e.ts_us = ts;
  }
  if (next_seq_ > p.intake_seq) p.last_seq = next_seq_ - 1;
  if (p.on_fault == OnFault::fail) ++fail_fast_queued_;
  queue_.push_back(std::move(p));
}

void Store::submit_and_wait_here(WriteBatch batch, Done done) {
  Pending p;
  p.batch = std::move(batch);
  p.done = std::move(done);
  p.on_fault = OnFault::fail;
  enqueue(std::move(p), false);
  if (!commit_on_this_thread()) wake_.notify_one();
}

bool Store::commit_on_this_thread() {
  std::unique_lock applying(apply_mutex_, std::try_to_lock);
  if (!applying.owns_lock() || faulted_.load()) return false;  // the running commit, or the writer, takes it
  std::vector<Pending> work;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    work.swap(queue_);
    fail_fast_queued_ = 0;
  }
  if (!work.empty() && !apply(work)) {
    // Refused: what is held goes back to the front of the queue for the writer, which retries it
    // with backoff and records the recovery.
    faulted_.store(true);
    std::lock_guard lock(mutex_);
    queue_.insert(queue_.begin(), std::make_move_iterator(work.begin()), std::make_move_iterator(work.end()));
    return false;
  }
  std::lock_guard lock(mutex_);
  return queue_.empty();  // what arrived during the commit goes to the writer
}

void Store::submit(WriteBatch batch, Done done, OnFault on_fault) {
  Pending p;
  p.batch = std::move(batch);
  p.done = std::move(done);
  p.on_fault = on_fault;
  enqueue(std::move(p));
}

void Store::commit(WriteBatch batch) {
  std::promise<void> promise;
  auto future = promise.get_future();
  submit(
      std::move(batch),
      [&promise](std::exception_ptr err, WriteBatch&) {
        if (err) {
          promise.set_exception(err);
        } else {
          promise.set_value();
        }
      },
      OnFault::fail);
  future.get();
}

void Store::flush() { commit({}); }

StoreHealth Store::health() const {
  std::lock_guard lock(mutex_);
  return health_;
}

void Store::note_fault(const std::string& error, std::size_t held) {
  StoreHealth now;
  bool began = false;
  {
    std::lock_guard lock(mutex_);
    if (!health_.degraded) {
      health_.degraded = true;
      health_.since_ms = now_ms();
      began = true;
    }
    health_.error = error;
    health_.held_batches = held;
    ++health_.write_faults;
    now = health_;
  }
  if (began && options_.on_health_change) options_.on_health_change(now);
}

void Store::note_recovered() {
  StoreHealth was;
  {
    std::lock_guard lock(mutex_);
    was = health_;
  }
  // The fault and its end go into the log once the disk takes writes again, with their own times.
  WriteBatch b;
  Event down;
  down.kind = EventKind::store_degraded;
  down.ts_us = was.since_ms * 1000;
  down.detail = "writes refused: " + was.error + "; the engine's records were held in memory";
  Event up;
  up.kind = EventKind::store_recovered;
  up.detail = "writes accepted again after " + std::to_string(now_ms() - was.since_ms) + " ms and " +
              std::to_string(was.write_faults) + " refused commits in all; held records committed in order";
  b.events.push_back(std::move(down));
  b.events.push_back(std::move(up));
  restore_reserve();
  Pending p;
  p.batch = std::move(b);
  try {
    enqueue(std::move(p));
  } catch (const StoreError&) {
    // closing: the next open will not know of this episode; the rows themselves are complete
  }
  // Health turns only once the episode's records are queued: whoever sees it recovered and then
  // flushes finds them in the log.
  {
    std::lock_guard lock(mutex_);
    health_.degraded = false;
    health_.error.clear();
    health_.since_ms = 0;
    health_.held_batches = 0;
  }
  if (options_.on_health_change) {
    StoreHealth after;
    after.write_faults = was.write_faults;
    options_.on_health_change(after);
  }
}

void Store::writer_loop() {
  using steady = std::chrono::steady_clock;
  std::vector<Pending> work;  // batches held by a refused commit, then what arrived since
  std::chrono::milliseconds backoff{50};
  steady::time_point retry_at{};
  steady::time_point give_up_at{};
  bool stop_seen = false;
  for (;;) {
    std::unique_lock applying(apply_mutex_, std::defer_lock);
    {
      std::unique_lock lock(mutex_);
      if (work.empty() && faulted_.load() && !stopping_) {
        // Degraded with nothing held (only intake was refused): probe the disk with a one-row
        // write at each retry, so health recovers by itself when space returns, traffic or not.
        if (!wake_.wait_until(lock, retry_at, [this] { return stopping_ || !queue_.empty(); })) {
          Pending probe;
          probe.probe = true;
          work.push_back(std::move(probe));
        }
      }
      if (work.empty()) {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping and drained
      } else {
        // Held writes: wait for the next retry, unless a submitter is waiting to hear the outcome
        // (intake must fail fast) or the store is closing.
        wake_.wait_until(lock, retry_at, [&] { return fail_fast_queued_ > 0 || (stopping_ && !stop_seen); });
        if (stopping_ && !stop_seen) {
          stop_seen = true;
          give_up_at = steady::now() + options_.stop_timeout;
        }
        if (stop_seen && steady::now() >= give_up_at) {
          for (auto& p : queue_) work.push_back(std::move(p));
          queue_.clear();
          lock.unlock();
          // Closing while the disk refuses writes: what was held is lost to this process. The rows
          // keep their last committed state, so a restart resumes from there (in doubt where an
          // attempt was marked "sending").
          const auto err = std::make_exception_ptr(
              StoreError("store closed while the disk refused writes (" + health().error + ")"));
          for (auto& p : work) {
            if (p.done) p.done(err, p.batch);
          }
          return;
        }
      }
      // Commits take apply_mutex_ before mutex_: a submitter may be committing on its own thread.
      if (!applying.try_lock()) {
        lock.unlock();
        applying.lock();
        lock.lock();
      }
      for (auto& p : queue_) work.push_back(std::move(p));
      queue_.clear();
      fail_fast_queued_ = 0;
    }
    if (work.empty()) continue;  // a submitter committed it meanwhile
    const bool only_probe = std::all_of(work.begin(), work.end(), [](const Pending& p) { return p.probe; });
    bool taken = apply(work);
    if (taken) work.clear();
    std::string short_of_room;
    if (taken && only_probe && faulted_.load() && !room_to_recover(short_of_room)) {
      // The probe's one small row fitted, but a disk this close to full would refuse the next
      // real batch: the episode goes on (no flapping at the edge), and this counts as a refusal.
      note_fault(short_of_room, 0);
      taken = false;
    }
    if (taken) {
      backoff = std::chrono::milliseconds(50);
      if (faulted_.exchange(false)) note_recovered();
    } else {
      faulted_.store(true);
      retry_at = steady::now() + backoff;
      backoff = std::min(backoff * 2, options_.retry_max);
    }
  }
}

}  // namespace herald
