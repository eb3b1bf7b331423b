// What the loop holds back for a delivery's next write, so that fewer rows are written:
//
// - A "routed" event. A notification's "routed" and "sending" are usually a few milliseconds
//   apart but in different commits, so they took two rows of the events table; held, they share
//   one (event_rows.hpp). What a crash loses is only what it would lose a moment earlier: a
//   delivery not yet sending is routed again after a restart and records a new "routed".
// - An attempt's "sending" mark. It is durable in the store's journal before the request leaves
//   (the guarantee that makes "in doubt" knowable after a crash); its write to SQLite waits for
//   the attempt's answer, whose state supersedes it: one row update and one events row per
//   attempt instead of two each. After a crash the journal's replay applies it.
//
// Either is written on its own after held_event_ms at the latest, and on flush and close.
#include "engine_impl.hpp"

namespace herald {

namespace {

constexpr std::size_t max_spares = 1024;

template <typename T>
std::unique_ptr<T> take_spare(std::vector<std::unique_ptr<T>>& spares) {
  if (spares.empty()) return std::make_unique<T>();
  std::unique_ptr<T> p = std::move(spares.back());
  spares.pop_back();
  return p;
}

template <typename T>
void keep_spare(std::vector<std::unique_ptr<T>>& spares, std::unique_ptr<T>& p) {
  if (spares.size() < max_spares) {
    spares.push_back(std::move(p));
  } else {
    p.reset();
  }
}

}  // namespace

void Engine::Impl::note_held(Id id) {
  const std::int64_t now = clock->now_ms();
  held_since.emplace_back(id, now);
  if (held_timer.due_ms() == 0) held_timer.arm_at(now + held_event_ms);
}

void Engine::Impl::hold_routed(Delivery& x, Event&& e) {
  auto held = take_spare(spare_events);
  *held = std::move(e);
  x.held_event = std::move(held);
  note_held(x.n.id);
}

void Engine::Impl::record_sending(Delivery& x, Step& s, Sends& sends) {
  WriteBatch one;
  one.events.reserve(s.events.size() + 1);  // with the held "routed"
  apply(x, s, true, one);  // the held "routed", "sending", and the attempt's state
  SendingMark m;
  m.update = std::move(one.updates.front());  // a sending step always saves
  m.events = std::move(one.events);
  sends.marks.push_back(std::move(m));
}

void Engine::Impl::hold_mark(Delivery& x, SendingMark m, std::uint64_t ticket) {
  auto held = take_spare(spare_marks);
  held->mark = std::move(m);
  held->ticket = ticket;
  x.held_mark = std::move(held);
  note_held(x.n.id);
}

void Engine::Impl::release_mark(Delivery& x, bool superseded, WriteBatch& into) {
  auto& held = *x.held_mark;
  write_mark(into, held.mark, !superseded);
  into.settles.push_back(held.ticket);
  keep_spare(spare_marks, x.held_mark);
}

void Engine::Impl::release_event(Delivery& x, WriteBatch& into) {
  into.events.push_back(std::move(*x.held_event));
  keep_spare(spare_events, x.held_event);
}

void Engine::Impl::write_held(bool all) {
  const std::int64_t cut = clock->now_ms() - held_event_ms;
  while (!held_since.empty() && (all || held_since.front().second <= cut)) {
    // Gone, or carried by a write already: nothing left to do for this entry.
    if (auto it = active.find(held_since.front().first); it != active.end()) {
      Delivery& x = it->second;
      if (x.held_mark) release_mark(x, false, pending_writes);
      if (x.held_event) release_event(x, pending_writes);
    }
    held_since.pop_front();
  }
  if (!held_since.empty()) held_timer.arm_at(held_since.front().second + held_event_ms);
  flush_writes();
}

}  // namespace herald
