// Control calls from the application: cancel, retry a dead letter, lift a suppression, flush,
// wait until idle. They run on the caller's thread and change loop state only through on_loop.
#include <thread>

#include "engine_impl.hpp"
#include "herald/errors.hpp"

namespace herald {

void Engine::Impl::require_writable(const char* what) const {
  // Control calls change state only while the store takes writes: otherwise the caller would be
  // told of a change that status() cannot show and a crash could lose.
  const StoreHealth h = store->health();
  if (h.degraded) {
    throw StoreError(std::string(what) + " refused: the store cannot write (" + h.error +
                     "); accepted notifications are held until it can");
  }
}

void Engine::Impl::settle_intake() {
  // A send() that returned from the intake journal reaches the loop after its commit: commit it
  // now, so that a call made after send() returned finds the notification on the loop.
  if (!store->has_journaled()) return;
  try {
    store->flush();
  } catch (const StoreError&) {
    // Degraded: the rows are held and reach the loop when the disk takes them; the call goes on.
  }
}

bool Engine::Impl::cancel(Id id) {
  require_writable("cancel");
  const bool cancelled = on_loop([&] {
    auto it = active.find(id);
    if (it == active.end()) return false;
    Delivery& x = it->second;
    if (x.n.parent_id != 0) return false;  // a plan's step: cancel its parent
    if (x.phase == Phase::coordinating) {
      if (!cancel_steps(x)) return false;
      flush_writes();
      post_pump();
      return true;
    }
    const bool was_outstanding = x.outstanding();
    Step s = machine.cancel(x);
    if (s.next == Next::refuse) return false;
    apply(x, s, was_outstanding, pending_writes);
    flush_writes();
    post_pump();
    return true;
  });
  if (cancelled) store->flush();  // the caller may ask for the status next: let it see "cancelled"
  return cancelled;
}

void Engine::Impl::retry(Id id) {
  require_writable("retry");
  auto row = store->get(id);
  if (!row) {
    store->flush();  // it may be a final state still on its way to the store
    row = store->get(id);
  }
  if (!row) throw NotFound("notification " + std::to_string(id) + " not found");
  if (row->delivery.state != State::dead_lettered) {
    throw InvalidState("notification " + std::to_string(id) + " is " + std::string(to_string(row->delivery.state)) +
                       "; only dead-lettered notifications can be retried");
  }
  const bool ok = on_loop([&] {
    if (active.count(id) != 0) return false;
    Delivery x;
    x.n = std::move(row->notification);
    x.d = row->delivery;
    Step s = machine.retried(x);
    s.next = Next::nothing;  // it enters the scheduler here, not from a deferral
    apply(x, s, false, pending_writes);
    scheduler.add(id, x.n.priority, 0, x.n.ordering_key);
    active.emplace(id, std::move(x));
    count.active.fetch_add(1);
    flush_writes();
    post_pump();
    return true;
  });
  if (!ok) throw InvalidState("notification " + std::to_string(id) + " is already being retried");
  store->flush();
}

bool Engine::Impl::unsuppress(const std::string& channel, const std::string& address) {
  require_writable("unsuppress");
  const bool removed = on_loop([&] {
    if (suppressed.erase(suppression_key(channel, address)) == 0) return false;
    Suppression x;
    x.channel = channel;
    x.address = address;
    x.remove = true;
    pending_writes.suppressions.push_back(std::move(x));
    flush_writes();
    return true;
  });
  if (removed) store->flush();
  return removed;
}

bool Engine::Impl::wait_idle(std::chrono::milliseconds timeout) {
  // Real time: this waits for the engine's threads, whatever its clock says.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (count.active.load() > 0) {
    if (std::chrono::steady_clock::now() >= deadline || closing.load()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Final states are recorded by the loop; make sure they reached the store (which may be
  // holding them while the disk is full: then keep trying until the deadline).
  on_loop([this] { flush_writes(); });
  for (;;) {
    try {
      store->flush();
      return true;
    } catch (const StoreError&) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

void Engine::Impl::flush() {
  on_loop([this] {
    write_held(true);
    flush_writes();
  });
  store->flush();
}

}  // namespace herald
