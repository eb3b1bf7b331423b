// Routed events held for their delivery's next write. Why: a notification's "routed" and
// "sending" are usually a few milliseconds apart but in different commits, so they took two rows
// of the events table; held, they share one (event_rows.hpp), one B-tree insert fewer per
// notification. What a crash loses is only what it would lose a moment earlier: a delivery not
// yet sending is routed again after a restart and records a new "routed". Readers see the event
// within held_event_ms, like any other, once it is committed.
#include "engine_impl.hpp"

namespace herald {

void Engine::Impl::hold_routed(Delivery& x, Event e) {
  x.held_event = std::move(e);
  const std::int64_t now = clock->now_ms();
  held_since.emplace_back(x.n.id, now);
  if (held_timer.due_ms() == 0) held_timer.arm_at(now + held_event_ms);
}

void Engine::Impl::write_held(bool all) {
  const std::int64_t cut = clock->now_ms() - held_event_ms;
  while (!held_since.empty() && (all || held_since.front().second <= cut)) {
    // Gone, or carried by a write already: nothing left to do for this entry.
    if (auto it = active.find(held_since.front().first); it != active.end() && it->second.held_event) {
      pending_writes.events.push_back(std::move(*it->second.held_event));
      it->second.held_event.reset();
    }
    held_since.pop_front();
  }
  if (!held_since.empty()) held_timer.arm_at(held_since.front().second + held_event_ms);
  flush_writes();
}

}  // namespace herald
