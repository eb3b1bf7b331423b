#pragma once
// The connection-limit bookkeeping shared by http::Server and http::H2cServer: which connections
// are open and which are idle (oldest first), the admission decision at max_connections, the
// counters behind ServerStats, and the cap that the open-file limit puts on max_connections.
// No sockets here: the servers drive it, the tests call it directly.
#include "herald/http_server.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <utility>
#include <vector>

#include <boost/system/error_code.hpp>

namespace herald::http::detail {

/// A server's open connections, split into idle ones (oldest idle first) and busy ones, so that a
/// full server finds the connection to close in O(1). Moving a connection between idle and busy
/// splices a list node: no allocation on the per-request path. Not thread-safe: the owner locks.
template <class T>
class ConnectionTable {
  struct Entry {
    T value;
    bool idle;
  };
  using List = std::list<Entry>;

 public:
  /// Names one connection in the table; stays valid until remove() (splices keep it valid).
  using Handle = typename List::iterator;

  /// What admit() decided for a new connection.
  struct Admission {
    bool accept = true;       ///< false: close the new connection (full and nothing idle)
    std::optional<T> evicted; ///< the oldest idle connection, already removed: close it
  };

  /// Adds a new connection as the newest idle one (it waits for its first request).
  Handle add(T value) {
    idle_.push_back(Entry{std::move(value), true});
    return std::prev(idle_.end());
  }

  /// The connection waits for a request again: it becomes the newest idle one.
  void mark_idle(Handle h) {
    idle_.splice(idle_.end(), h->idle ? idle_ : busy_, h);
    h->idle = true;
  }

  /// The connection works on a request (reads its body, runs the handler, writes the answer).
  void mark_busy(Handle h) {
    if (!h->idle) return;
    busy_.splice(busy_.end(), idle_, h);
    h->idle = false;
  }

  [[nodiscard]] bool is_idle(Handle h) const { return h->idle; }

  /// Removes the connection and hands back its value.
  T remove(Handle h) {
    T value = std::move(h->value);
    (h->idle ? idle_ : busy_).erase(h);
    return value;
  }

  /// Makes room for one more connection under `limit`: below it, accept; at it, remove and hand
  /// back the oldest idle connection and accept; with none idle, refuse.
  Admission admit(std::size_t limit) {
    Admission a;
    if (size() < limit) return a;
    if (idle_.empty()) {
      a.accept = false;
      return a;
    }
    a.evicted = remove(idle_.begin());
    return a;
  }

  /// Removes and hands back the oldest idle connection, if any.
  std::optional<T> evict_oldest_idle() {
    if (idle_.empty()) return std::nullopt;
    return remove(idle_.begin());
  }

  /// Empties the table, handing back every value (idle ones first, oldest first).
  std::vector<T> take_all() {
    std::vector<T> out;
    out.reserve(size());
    for (auto* list : {&idle_, &busy_}) {
      for (Entry& e : *list) out.push_back(std::move(e.value));
      list->clear();
    }
    return out;
  }

  [[nodiscard]] std::size_t size() const { return idle_.size() + busy_.size(); }
  [[nodiscard]] std::size_t idle_count() const { return idle_.size(); }

 private:
  List idle_;  ///< front: idle longest
  List busy_;
};

/// The counters behind ServerStats. Relaxed atomics: each is a statistic, read without a lock.
struct ConnectionCounters {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> closed_idle{0};
  std::atomic<std::uint64_t> closed_timeout{0};
  std::atomic<std::uint64_t> closed_evicted{0};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> closed_too_large{0};
  std::atomic<std::uint64_t> accept_errors{0};

  static void bump(std::atomic<std::uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

  /// The counters plus the current figures the caller knows (read under its lock).
  [[nodiscard]] ServerStats snapshot(std::size_t open, std::size_t idle, std::size_t max_connections) const;
};

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (once per call; harmless when
/// already there) and returns `requested` capped at three quarters of the resulting soft limit,
/// and at least 1. The rest stays for everything else the process opens (files, clients, the
/// other servers).
[[nodiscard]] std::size_t cap_connections(std::size_t requested);

/// Whether an accept() failed for want of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
/// server then closes its oldest idle connection and retries shortly, rather than spinning.
[[nodiscard]] bool out_of_descriptors(const boost::system::error_code& ec);

/// Whether a connection waits to be accepted on this listening socket. Linux fails accept() with
/// EMFILE before it looks for one (asio also tries an accept before waiting), so an EMFILE alone
/// does not mean that someone is kept waiting; closing an idle connection then would be for
/// nothing.
[[nodiscard]] bool connection_waiting(int listener_fd);

}  // namespace herald::http::detail
