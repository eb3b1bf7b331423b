#pragma once
/// The intake journal: where a send() becomes durable before its row is in SQLite.
///
/// Why: a one-row SQLite transaction costs ~36 µs of CPU here (WAL frames, locks, the WAL index),
/// an append to a file ~1.5 µs. send() appends the new rows here (one write(), the same
/// durability as SQLite's synchronous=NORMAL: the OS has the bytes, a process crash loses
/// nothing) and returns; the store's writer inserts them with its next group commit and then
/// marks the record done. On open the store inserts whatever a previous process left here
/// (INSERT OR IGNORE: a row committed before the crash stays as it is), then deletes the files.
///
/// Files: <data_dir>/journal/intake-<n>.bin, a new one every segment_bytes; a file whose records
/// are all committed is deleted (the newest is cut back to empty instead), so a replay only ever
/// sees records of the last moments (retention cannot have deleted their rows). A record is
/// "HJR1", its payload's length (u32), a 64-bit FNV-1a checksum of the payload, then the payload
/// (the rows' fields, little-endian). A torn or corrupt record ends a file's replay: it can only
/// be the last write of a process that died inside it, which was never acknowledged.
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "herald/delivery_store.hpp"

namespace herald {

class IntakeJournal {
 public:
  /// Opens <dir> (created if missing). Nothing is read until recover().
  explicit IntakeJournal(std::filesystem::path dir, std::int64_t segment_bytes = 4 << 20);
  ~IntakeJournal();
  IntakeJournal(const IntakeJournal&) = delete;
  IntakeJournal& operator=(const IntakeJournal&) = delete;

  /// The records a previous process left, oldest first (before any append of this one).
  [[nodiscard]] std::vector<WriteBatch> recover();
  /// Deletes the files recover() read: their rows are committed.
  void discard_recovered();

  /// Appends one record holding the batch's new rows, state updates and events with one write();
  /// returns its ticket for committed(). Throws StoreError naming the file and the reason (a full
  /// disk): then nothing was appended.
  std::uint64_t append(const WriteBatch& batch);
  /// The record's rows are in SQLite: a file with no record left open is deleted.
  void committed(std::uint64_t ticket);

  /// Records appended and not yet committed (tests, health).
  [[nodiscard]] std::size_t open_records() const;

  /// The payload format, exposed for tests.
  static void encode(const WriteBatch& batch, std::string& out);
  /// One payload into `out`; false when it is not a whole, well-formed payload. `rows_only`: a
  /// record of the first format (HJR1), new rows only.
  static bool decode(std::string_view payload, WriteBatch& out, bool rows_only = false);

 private:
  struct Segment {
    std::uint64_t number = 0;
    std::filesystem::path path;
    int fd = -1;
    std::int64_t bytes = 0;
    std::size_t open = 0;  ///< records not yet committed
  };
  void open_segment(std::uint64_t number);
  void close_segment(Segment& s, bool remove);

  std::filesystem::path dir_;
  std::int64_t segment_bytes_;
  mutable std::mutex mutex_;
  std::deque<Segment> segments_;  ///< oldest first; the last is written to
  std::vector<std::filesystem::path> recovered_;
  std::uint64_t next_number_ = 1;
  std::string buffer_;  ///< reused for each record, under mutex_
};

}  // namespace herald
