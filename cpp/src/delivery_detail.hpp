#pragma once
// What the delivery machine's transitions share (cpp/src/delivery.cpp for one provider chain,
// cpp/src/cascade.cpp for plans with many steps). Internal to the core.
#include <stdexcept>
#include <string>

#include "herald/delivery.hpp"

namespace herald::delivery_detail {

inline void expect(const Delivery& x, Phase phase, const char* transition) {
  if (x.phase != phase) {
    throw std::logic_error(std::string("delivery ") + transition + ": notification " + std::to_string(x.n.id) +
                           " is " + std::string(to_string(x.phase)) + ", not " + std::string(to_string(phase)));
  }
}

inline Event event_of(const Delivery& x, EventKind kind) {
  Event e = make_event(x.n, x.d.attempt, kind);
  e.channel = x.plan->channel;
  return e;
}

/// The answer's facts on an event about it.
inline Event answer_event(const Delivery& x, EventKind kind, const ProviderFacts& p, const AnswerFacts& facts) {
  Event e = event_of(x, kind);
  e.provider = p.name;
  e.latency_us = facts.latency_us;
  e.http_status = facts.http_status;
  return e;
}

/// Records a final state: the last event of the notification.
inline void finish(Delivery& x, Step& s, State state, EventKind kind, std::string detail) {
  x.d.state = state;
  if (state != State::completed) x.d.last_error = detail;
  Event e = event_of(x, kind);
  e.provider = x.d.provider;
  e.detail = std::move(detail);
  switch (state) {
    case State::expired: e.error_class = ErrorClass::expired; break;
    case State::cancelled: e.error_class = ErrorClass::cancelled; break;
    case State::suppressed:
      e.error_class = x.failure == ErrorClass::opted_out ? ErrorClass::opted_out : ErrorClass::suppressed;
      break;
    case State::dead_lettered: e.error_class = x.failure == ErrorClass::none ? ErrorClass::no_provider : x.failure; break;
    default: break;
  }
  s.events.push_back(std::move(e));
  s.save = true;
  s.next = Next::finish;
  x.phase = Phase::finished;
}

inline void expire(Delivery& x, Step& s) { finish(x, s, State::expired, EventKind::expired, "expires_at passed before it could be sent"); }

inline void dead_letter(Delivery& x, Step& s, std::string reason) {
  finish(x, s, State::dead_lettered, EventKind::dead_lettered, std::move(reason));
}


}  // namespace herald::delivery_detail
