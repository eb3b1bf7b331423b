#include "herald/intake_journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "herald/errors.hpp"

namespace herald {

namespace {

constexpr char magic_rows[4] = {'H', 'J', 'R', '1'};   ///< a record of new rows only (written before HJR2)
constexpr char magic_fnv[4] = {'H', 'J', 'R', '2'};    ///< new rows, then sending marks; FNV-1a (written before HJR3)
constexpr char magic[4] = {'H', 'J', 'R', '3'};        ///< as HJR2, with word_sum
constexpr std::size_t header_bytes = 4 + 4 + 8;

/// The checksum of HJR1 and HJR2 records: FNV-1a, 64 bits, one multiply per byte.
std::uint64_t fnv1a(std::string_view bytes) noexcept {
  std::uint64_t h = 14695981039346656037ULL;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

/// The checksum of HJR3 records: one multiply and rotate per 8 bytes (little-endian words, the
/// last one zero-padded), then the length. FNV-1a's byte at a time was most of what a journal
/// write cost (~2,000 instructions for one record of sending marks). The rotate carries a changed
/// bit into every later round, so that no two changed bits of different words cancel out.
std::uint64_t word_sum(std::string_view bytes) noexcept {
  constexpr std::uint64_t p1 = 11400714785074694791ULL;
  constexpr std::uint64_t p2 = 14029467366897019727ULL;
  const auto word_at = [&](std::size_t at, std::size_t n) {
    std::uint64_t w = 0;
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(&w, bytes.data() + at, n);  // one load for a whole word
    } else {
      for (std::size_t i = 0; i < n; ++i) w |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
    }
    return w;
  };
  const auto round = [&](std::uint64_t h, std::uint64_t w) { return std::rotl(h ^ (w * p2), 31) * p1; };
  std::uint64_t h = 14695981039346656037ULL;
  std::size_t at = 0;
  for (; at + 8 <= bytes.size(); at += 8) h = round(h, word_at(at, 8));
  h = round(h, word_at(at, bytes.size() - at));
  h = round(h, bytes.size());
  return h ^ (h >> 29);
}

/// `value`'s bytes, little-endian, at `at`.
template <typename T>
void put_at(char* at, T value) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(at, &value, sizeof(T));
  } else {
    for (std::size_t i = 0; i < sizeof(T); ++i) at[i] = static_cast<char>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff);
  }
}

/// An encoding is made in two passes over the same field list (encode_rows, encode_update,
/// encode_events): a Sizer counts its bytes, then a Writer writes them into room made once. Appending
/// field by field to a string checked its capacity for each of the ~30 fields of a sending mark.
struct Sizer {
  std::size_t bytes = 0;
  template <typename T>
  void put(T) {
    bytes += sizeof(T);
  }
  void text(const std::string& s) { bytes += sizeof(std::uint32_t) + s.size(); }
};

/// Writes `value`s little-endian, and texts as their length then their bytes, into room a Sizer
/// measured.
struct Writer {
  char* at;
  template <typename T>
  void put(T value) {
    put_at(at, value);
    at += sizeof(T);
  }
  void text(const std::string& s) {
    put(static_cast<std::uint32_t>(s.size()));
    std::memcpy(at, s.data(), s.size());
    at += s.size();
  }
};

/// Reads from a payload; every read checks the bytes are there.
struct Reader {
  std::string_view in;
  bool ok = true;
  template <typename T>
  T get() {
    if (in.size() < sizeof(T)) {
      ok = false;
      return T{};
    }
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
    in.remove_prefix(sizeof(T));
    return static_cast<T>(v);
  }
  std::string text() {
    const auto n = get<std::uint32_t>();
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

std::uint64_t number_of(const std::filesystem::path& p) {
  const std::string name = p.filename().string();  // intake-<n>.bin
  if (name.rfind("intake-", 0) != 0 || name.size() < 12 || name.substr(name.size() - 4) != ".bin") return 0;
  try {
    return std::stoull(name.substr(7, name.size() - 11));
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

IntakeJournal::IntakeJournal(std::filesystem::path dir, std::int64_t segment_bytes)
    : dir_(std::move(dir)), segment_bytes_(segment_bytes) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw StoreError("cannot create the intake journal " + dir_.string() + ": " + ec.message());
  buffer_.reserve(4096);
}

IntakeJournal::~IntakeJournal() {
  std::lock_guard lock(mutex_);
  // Files with nothing left to commit go; any other stays for the next open to replay.
  for (auto& s : segments_) close_segment(s, s.open == 0);
}

namespace {

template <typename Sink>
void encode_rows(const std::vector<Notification>& rows, Sink& out) {
  out.template put<std::uint32_t>(static_cast<std::uint32_t>(rows.size()));
  for (const Notification& n : rows) {
    out.template put<std::int64_t>(n.id);
    out.template put<std::int64_t>(n.send_at_ms);
    out.template put<std::int64_t>(n.expires_at_ms);
    out.template put<std::int64_t>(n.created_at_ms);
    out.template put<std::int64_t>(n.parent_id);
    out.template put<std::int32_t>(static_cast<std::int32_t>(n.priority));
    out.template put<std::int32_t>(n.step);
    out.text(n.tenant);
    out.text(n.type);
    out.text(n.recipient_id);
    out.text(n.recipient_json);
    out.text(n.data_json);
    out.text(n.idempotency_key);
    out.text(n.ordering_key);
  }
}

bool valid_priority(std::int32_t p) { return p >= 0 && p <= static_cast<std::int32_t>(Priority::bulk); }

bool decode_rows(Reader& r, std::vector<Notification>& rows) {
  const auto count = r.get<std::uint32_t>();
  for (std::uint32_t i = 0; r.ok && i < count; ++i) {
    Notification n;
    n.id = r.get<std::int64_t>();
    n.send_at_ms = r.get<std::int64_t>();
    n.expires_at_ms = r.get<std::int64_t>();
    n.created_at_ms = r.get<std::int64_t>();
    n.parent_id = r.get<std::int64_t>();
    const auto priority = r.get<std::int32_t>();
    n.step = r.get<std::int32_t>();
    n.tenant = r.text();
    n.type = r.text();
    n.recipient_id = r.text();
    n.recipient_json = r.text();
    n.data_json = r.text();
    n.idempotency_key = r.text();
    n.ordering_key = r.text();
    if (!valid_priority(priority)) return false;
    n.priority = static_cast<Priority>(priority);
    rows.push_back(std::move(n));
  }
  return r.ok;
}

/// The columns a StateUpdate writes (the store's update statement), not the receipt's.
template <typename Sink>
void encode_update(const StateUpdate& u, Sink& out) {
  const DeliveryState& d = u.delivery;
  out.template put<std::int64_t>(u.id);
  out.template put<std::int32_t>(static_cast<std::int32_t>(d.state));
  out.template put<std::int32_t>(d.attempt);
  out.template put<std::int32_t>(d.provider_index);
  out.template put<std::int32_t>(d.provider_attempt);
  out.template put<std::int64_t>(d.next_at_ms);
  out.template put<std::int64_t>(d.accepted_at_ms);
  out.template put<std::uint64_t>(std::bit_cast<std::uint64_t>(d.cost));
  out.template put<std::uint8_t>(d.in_doubt ? 1 : 0);
  out.text(d.provider);
  out.text(d.provider_message_id);
  out.text(d.last_error);
  out.text(d.channel);
  out.text(d.address);
}

bool decode_update(Reader& r, StateUpdate& u) {
  DeliveryState& d = u.delivery;
  u.id = r.get<std::int64_t>();
  const auto state = r.get<std::int32_t>();
  d.attempt = r.get<std::int32_t>();
  d.provider_index = r.get<std::int32_t>();
  d.provider_attempt = r.get<std::int32_t>();
  d.next_at_ms = r.get<std::int64_t>();
  d.accepted_at_ms = r.get<std::int64_t>();
  d.cost = std::bit_cast<double>(r.get<std::uint64_t>());
  d.in_doubt = r.get<std::uint8_t>() != 0;
  d.provider = r.text();
  d.provider_message_id = r.text();
  d.last_error = r.text();
  d.channel = r.text();
  d.address = r.text();
  if (state < 0 || state > static_cast<std::int32_t>(State::skipped)) return false;
  d.state = static_cast<State>(state);
  return r.ok;
}

/// Every field of an event, the log's copies included: a replay writes its log line too.
template <typename Sink>
void encode_events(const std::vector<Event>& events, Sink& out) {
  out.template put<std::uint32_t>(static_cast<std::uint32_t>(events.size()));
  for (const Event& e : events) {
    out.template put<std::int64_t>(e.notification_id);
    out.template put<std::int64_t>(e.ts_us);
    out.template put<std::int32_t>(static_cast<std::int32_t>(e.kind));
    out.template put<std::int32_t>(e.attempt);
    out.template put<std::int64_t>(e.latency_us);
    out.template put<std::int32_t>(e.http_status);
    out.template put<std::int32_t>(static_cast<std::int32_t>(e.error_class));
    out.template put<std::uint64_t>(std::bit_cast<std::uint64_t>(e.cost));
    out.template put<std::int32_t>(e.step);
    out.template put<std::int32_t>(e.segments);
    out.template put<std::int32_t>(static_cast<std::int32_t>(e.priority));
    out.text(e.provider);
    out.text(e.detail);
    out.text(e.provider_code);
    out.text(e.alert);
    out.text(e.recipient_id);
    out.text(e.channel);
    out.text(e.type);
    out.text(e.tenant);
  }
}

bool decode_events(Reader& r, std::vector<Event>& events) {
  const auto count = r.get<std::uint32_t>();
  for (std::uint32_t i = 0; r.ok && i < count; ++i) {
    Event e;
    e.notification_id = r.get<std::int64_t>();
    e.ts_us = r.get<std::int64_t>();
    const auto kind = r.get<std::int32_t>();
    e.attempt = r.get<std::int32_t>();
    e.latency_us = r.get<std::int64_t>();
    e.http_status = r.get<std::int32_t>();
    const auto error_class = r.get<std::int32_t>();
    e.cost = std::bit_cast<double>(r.get<std::uint64_t>());
    e.step = r.get<std::int32_t>();
    e.segments = r.get<std::int32_t>();
    const auto priority = r.get<std::int32_t>();
    e.provider = r.text();
    e.detail = r.text();
    e.provider_code = r.text();
    e.alert = r.text();
    e.recipient_id = r.text();
    e.channel = r.text();
    e.type = r.text();
    e.tenant = r.text();
    if (kind < 0 || kind >= event_kind_count || error_class < 0 || error_class >= error_class_count ||
        !valid_priority(priority)) {
      return false;
    }
    e.kind = static_cast<EventKind>(kind);
    e.error_class = static_cast<ErrorClass>(error_class);
    e.priority = static_cast<Priority>(priority);
    events.push_back(std::move(e));
  }
  return r.ok;
}

}  // namespace

namespace {

template <typename Sink>
void encode_record(const std::vector<Notification>& rows, const std::vector<SendingMark>& marks, Sink& out) {
  encode_rows(rows, out);
  out.template put<std::uint32_t>(static_cast<std::uint32_t>(marks.size()));
  for (const SendingMark& m : marks) {
    encode_update(m.update, out);
    encode_events(m.events, out);
  }
}

}  // namespace

void IntakeJournal::encode(const std::vector<Notification>& rows, const std::vector<SendingMark>& marks,
                           std::string& out) {
  Sizer size;
  encode_record(rows, marks, size);
  const std::size_t start = out.size();
  out.resize(start + size.bytes);
  Writer w{out.data() + start};
  encode_record(rows, marks, w);
}

bool IntakeJournal::decode(std::string_view payload, JournalRecord& out, bool rows_only) {
  Reader r{payload};
  JournalRecord record;
  if (!decode_rows(r, record.rows)) return false;
  if (!rows_only) {
    const auto count = r.get<std::uint32_t>();
    for (std::uint32_t i = 0; r.ok && i < count; ++i) {
      SendingMark m;
      if (!decode_update(r, m.update) || !decode_events(r, m.events)) return false;
      record.marks.push_back(std::move(m));
    }
  }
  if (!r.ok || !r.in.empty()) return false;
  out = std::move(record);
  return true;
}

std::vector<JournalRecord> IntakeJournal::recover() {
  std::lock_guard lock(mutex_);
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (number_of(entry.path()) > 0) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return number_of(a) < number_of(b); });
  std::vector<JournalRecord> records;
  for (const auto& path : files) {
    next_number_ = std::max(next_number_, number_of(path) + 1);
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string_view rest(bytes);
    while (rest.size() >= header_bytes) {
      const bool rows_only = std::memcmp(rest.data(), magic_rows, 4) == 0;
      const bool by_fnv = rows_only || std::memcmp(rest.data(), magic_fnv, 4) == 0;
      if (!by_fnv && std::memcmp(rest.data(), magic, 4) != 0) break;
      Reader h{rest.substr(4, header_bytes - 4)};
      const auto length = h.get<std::uint32_t>();
      const auto sum = h.get<std::uint64_t>();
      if (rest.size() - header_bytes < length) break;  // torn: the writer died inside this write
      const std::string_view payload = rest.substr(header_bytes, length);
      JournalRecord record;
      if ((by_fnv ? fnv1a(payload) : word_sum(payload)) != sum || !decode(payload, record, rows_only)) break;
      records.push_back(std::move(record));
      rest.remove_prefix(header_bytes + length);
    }
    recovered_.push_back(path);
  }
  return records;
}

void IntakeJournal::discard_recovered() {
  std::lock_guard lock(mutex_);
  for (const auto& path : recovered_) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  recovered_.clear();
}

void IntakeJournal::open_segment(std::uint64_t number) {
  Segment s;
  s.number = number;
  s.path = dir_ / ("intake-" + std::to_string(number) + ".bin");
  s.fd = ::open(s.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (s.fd < 0) throw StoreError("cannot open the intake journal " + s.path.string() + ": " + std::strerror(errno));
  segments_.push_back(std::move(s));
}

void IntakeJournal::close_segment(Segment& s, bool remove) {
  if (s.fd >= 0) ::close(s.fd);
  s.fd = -1;
  if (remove) {
    std::error_code ec;
    std::filesystem::remove(s.path, ec);
  }
}

std::uint64_t IntakeJournal::append(const std::vector<Notification>& rows, const std::vector<SendingMark>& marks) {
  std::lock_guard lock(mutex_);
  if (segments_.empty() || segments_.back().bytes >= segment_bytes_) open_segment(next_number_++);
  Segment& s = segments_.back();
  buffer_.assign(header_bytes, '\0');
  encode(rows, marks, buffer_);
  const std::string_view payload(buffer_.data() + header_bytes, buffer_.size() - header_bytes);
  std::memcpy(buffer_.data(), magic, 4);
  put_at<std::uint32_t>(buffer_.data() + 4, static_cast<std::uint32_t>(payload.size()));
  put_at<std::uint64_t>(buffer_.data() + 8, word_sum(payload));
  const ssize_t wrote = ::write(s.fd, buffer_.data(), buffer_.size());
  if (wrote != static_cast<ssize_t>(buffer_.size())) {
    const std::string why = wrote < 0 ? std::strerror(errno) : "short write (disk full)";
    // A partial record would end the replay of this file: cut it off.
    if (wrote > 0 && ::ftruncate(s.fd, s.bytes) != 0) {
      close_segment(s, false);  // unusable: the next append opens a new file; replay stops at the tear
      s.bytes = segment_bytes_;
    }
    throw StoreError("cannot write to " + s.path.string() + ": " + why);
  }
  s.bytes += static_cast<std::int64_t>(buffer_.size());
  s.open += (rows.empty() ? 0 : 1) + marks.size();
  return s.number;
}

void IntakeJournal::committed(std::uint64_t ticket) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(segments_.begin(), segments_.end(), [&](const Segment& s) { return s.number == ticket; });
  if (it == segments_.end() || it->open == 0) return;
  if (--it->open > 0) return;
  const bool newest = std::next(it) == segments_.end();
  if (!newest) {
    close_segment(*it, true);
    segments_.erase(it);
  } else if (it->bytes > 0 && it->fd >= 0 && ::ftruncate(it->fd, 0) == 0) {
    // All committed: start the file over. Never leave committed records behind: a replay after
    // retention deleted their rows would insert them again.
    it->bytes = 0;
  }
}

std::size_t IntakeJournal::open_records() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& s : segments_) n += s.open;
  return n;
}

}  // namespace herald
