// The parts of the connection-limit bookkeeping that touch the operating system: the open-file
// limit and the errors accept() reports when descriptors run out.
#include "connection_limits.hpp"

#include <poll.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>

namespace herald::http::detail {

ServerStats ConnectionCounters::snapshot(std::size_t open, std::size_t idle, std::size_t max_connections) const {
  ServerStats s;
  s.open = open;
  s.idle = idle;
  s.accepted = accepted.load(std::memory_order_relaxed);
  s.closed_idle = closed_idle.load(std::memory_order_relaxed);
  s.closed_timeout = closed_timeout.load(std::memory_order_relaxed);
  s.closed_evicted = closed_evicted.load(std::memory_order_relaxed);
  s.refused = refused.load(std::memory_order_relaxed);
  s.closed_too_large = closed_too_large.load(std::memory_order_relaxed);
  s.accept_errors = accept_errors.load(std::memory_order_relaxed);
  s.max_connections = max_connections;
  return s;
}

std::size_t cap_connections(std::size_t requested) {
  requested = std::max<std::size_t>(requested, 1);
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return requested;
  if (lim.rlim_cur != lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  if (lim.rlim_cur == RLIM_INFINITY) return requested;
  const auto allowed = static_cast<std::size_t>(lim.rlim_cur / 4 * 3);
  return std::max<std::size_t>(std::min(requested, allowed), 1);
}

bool out_of_descriptors(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category()) return false;
  const int e = ec.value();
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

bool connection_waiting(int listener_fd) {
  pollfd p{};
  p.fd = listener_fd;
  p.events = POLLIN;
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

}  // namespace herald::http::detail
