#pragma once
/// The intake journal: where a send(), and the loop's "sending" marks, become durable before
/// they are in SQLite.
///
/// Why: a one-row SQLite transaction costs ~36 µs of CPU here (WAL frames, locks, the WAL index),
/// an append to a file ~1.5 µs. send() appends the new rows here (one write(), the same
/// durability as SQLite's synchronous=NORMAL: the OS has the bytes, a process crash loses
/// nothing) and returns; the store's writer inserts them with its next group commit and then
/// marks that part of the record done. The loop appends the sending marks of a dispatch step and
/// lets the requests go at once; each mark is written later with its notification's next write,
/// usually superseded by the attempt's answer (one row update instead of two). On open the store
/// inserts the rows a previous process left here (INSERT OR IGNORE: a row committed before the
/// crash stays as it is), applies the marks whose row does not show their attempt yet, then
/// deletes the files.
///
/// Files: <data_dir>/journal/intake-<n>.bin, a new one every segment_bytes; a file whose records
/// are all committed is deleted (the newest is cut back to empty instead), so a replay only ever
/// sees records of the last moments (retention cannot have deleted their rows). A record is
/// "HJR2" ("HJR1": rows only, still read), its payload's length (u32), a 64-bit FNV-1a checksum
/// of the payload, then the payload (the rows' fields, then the marks': little-endian). A torn or
/// corrupt record ends a file's replay: it can only be the last write of a process that died
/// inside it, which was never acknowledged.
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "herald/delivery_store.hpp"

namespace herald {

/// What one append holds: new rows (committed together), or the sending marks of one dispatch
/// step (each committed on its own, with its notification's next write).
struct JournalRecord {
  std::vector<Notification> rows;
  std::vector<SendingMark> marks;
};

class IntakeJournal {
 public:
  /// Opens <dir> (created if missing). Nothing is read until recover().
  explicit IntakeJournal(std::filesystem::path dir, std::int64_t segment_bytes = 4 << 20);
  ~IntakeJournal();
  IntakeJournal(const IntakeJournal&) = delete;
  IntakeJournal& operator=(const IntakeJournal&) = delete;

  /// The records a previous process left, oldest first (before any append of this one).
  [[nodiscard]] std::vector<JournalRecord> recover();
  /// Deletes the files recover() read: their rows are committed.
  void discard_recovered();

  /// Appends one record with one write(); returns its ticket for committed(). Throws StoreError
  /// naming the file and the reason (a full disk): then nothing was appended.
  std::uint64_t append(const std::vector<Notification>& rows, const std::vector<SendingMark>& marks = {});
  /// One part of a record with this ticket is in SQLite: its rows (all at once), or one of its
  /// marks. A file with no part left open is deleted.
  void committed(std::uint64_t ticket);

  /// Parts of records appended and not yet committed (tests, health).
  [[nodiscard]] std::size_t open_records() const;

  /// The payload format, exposed for tests.
  static void encode(const std::vector<Notification>& rows, const std::vector<SendingMark>& marks, std::string& out);
  /// One payload into `out`; false when it is not a whole, well-formed payload. `rows_only`: a
  /// record of the first format (HJR1), new rows only.
  static bool decode(std::string_view payload, JournalRecord& out, bool rows_only = false);

 private:
  struct Segment {
    std::uint64_t number = 0;
    std::filesystem::path path;
    int fd = -1;
    std::int64_t bytes = 0;
    std::size_t open = 0;  ///< parts of records not yet committed (rows, marks)
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
