#pragma once
/// The delivery state machine: what happens to one notification when something happens to it.
///
/// Sans I/O: events go in (taken from the scheduler, a plan from the rules, a provider slot, a
/// provider's answer, a status query's answer, a receipt, a cancel, a restart), a Step comes out
/// (what to record, whether the stored state changed, an address to suppress, and what the engine
/// must do next: route, queue for a provider, look up, send, schedule, finish). No socket, thread,
/// store or clock inside: time comes in as `now`, randomness from a seeded generator, so every
/// transition is tested by calling it (cpp/tests/test_delivery_machine_*.cpp). The engine's loop is
/// the shell that does the I/O (cpp/src/dispatcher.cpp). The states and their transitions are
/// drawn in docs/architecture.md.
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "herald/backoff.hpp"
#include "herald/event.hpp"
#include "herald/notification.hpp"
#include "herald/plan.hpp"
#include "herald/provider.hpp"
#include "herald/store.hpp"

namespace herald {

/// Where a notification is in the engine's hands. Only the loop knows it; the store keeps State.
enum class Phase : std::uint8_t {
  scheduled,         ///< in the scheduler: waiting for its time, its lane or its ordering key
  taken,             ///< taken from the scheduler: to be routed, then queued for its provider
  waiting_for_slot,  ///< routed, in its provider's queue
  looking_up,        ///< the provider is being asked whether an attempt in doubt arrived
  in_flight,         ///< an attempt is marked "sending" and unanswered
  finished,          ///< a final state is recorded; the engine forgets the notification
  coordinating,      ///< a plan with many steps: its steps send, it starts and ends them
};
[[nodiscard]] std::string_view to_string(Phase p) noexcept;

/// What is known of an attempt whose answer a crash lost.
enum class Doubt : std::uint8_t {
  none,     ///< nothing in doubt
  unasked,  ///< the provider may be asked (where it has a status API) before anything is resent
  resend,   ///< asked, or it cannot be: the next attempt is a resend, flagged as such
};

/// How one step of a plan with many steps is doing, as its parent sees it.
enum class StepStatus : std::uint8_t {
  not_started,
  running,    ///< started: its delivery is working (queued, sending, retrying)
  accepted,   ///< a provider accepted it; it waits for the receipt or read its success needs
  succeeded,  ///< it met its success condition: the plan is done
  failed,     ///< it ended without a provider accepting it (or its receipt said it failed)
  cancelled,  ///< it never started: an earlier step succeeded
};
[[nodiscard]] std::string_view to_string(StepStatus s) noexcept;

/// A plan with many steps, as its parent notification runs it. Steps run in groups (a step that
/// starts with_previous joins the group before it); each later group is the fallback for the one
/// before: it starts when every step of that group failed, or at `deadline_ms` when none of them
/// succeeded by then.
struct Cascade {
  Plan plan;
  std::vector<StepStatus> steps;  ///< one per plan step
  std::vector<Id> ids;            ///< the delivery of each started step (0 = not started)
  std::size_t next = 0;           ///< the first step of the next group (== steps.size(): none left)
  std::int64_t group_started_ms = 0;  ///< when the latest group started
  std::int64_t deadline_ms = 0;   ///< when the next group starts unless a step succeeded (0 = on failure only)
  bool succeeded = false;
  bool cancelled = false;         ///< the caller cancelled it: nothing more starts
  std::vector<bool> read;         ///< acknowledged before its acceptance was recorded
  State failed_as = State::dead_lettered;  ///< the final state when no step is accepted (the last failure's)
  ErrorClass failure = ErrorClass::none;
  std::string last_error;

  /// One past the last step of the group that starts at `first`.
  [[nodiscard]] std::size_t group_end(std::size_t first) const;
};

/// What a step's delivery left behind: its final state (or unfinished), and its latest receipt.
struct StepRecord {
  int step = 0;
  Id id = 0;
  bool finished = false;
  State state = State::queued;
  ReceiptState receipt = ReceiptState::none;
  ErrorClass failure = ErrorClass::none;
  std::string error;
  std::int64_t started_ms = 0;
};

/// One notification the engine is working on, with everything the machine decides from.
struct Delivery {
  Notification n;
  DeliveryState d;  ///< the part the store keeps
  StepRef plan = unrouted_step();  ///< the step of the rules' plan this delivery carries out, once routed
  Phase phase = Phase::scheduled;
  bool routed = false;
  Doubt doubt = Doubt::none;
  bool alone = false;      ///< its batch was refused (or could not be built): send it alone
  int lookups_failed = 0;  ///< status queries about the attempt in doubt that got no answer
  ErrorClass failure = ErrorClass::none;  ///< class of the last failure, for the final event
  std::int64_t attempt_started_ms = 0;    ///< when the attempt in doubt was marked "sending"
  std::shared_ptr<Cascade> cascade;       ///< a plan with many steps: their progress (phase coordinating)
  bool has_fallback = false;  ///< a plan's step with a later group after it: it fails rather than waits
  // What waits for the next write (the shell's held_events.cpp) lives apart from the delivery:
  // only the few deliveries about to be sent or in flight hold anything, and a queued delivery
  // is ~600 bytes smaller without the room (a backlog is held in memory, one delivery each).
  std::unique_ptr<Event> held_event;  ///< "routed", waiting to ride with the next write
  /// The attempt's "sending" mark, durable in the store's journal (`ticket`), waiting to ride with
  /// the next write, which usually supersedes its state.
  struct HeldMark {
    SendingMark mark;
    std::uint64_t ticket = 0;
  };
  std::unique_ptr<HeldMark> held_mark;

  /// Taken from the scheduler and not yet back in it or final: counts against the engine's window.
  [[nodiscard]] bool outstanding() const noexcept {
    return phase == Phase::taken || phase == Phase::waiting_for_slot || phase == Phase::looking_up ||
           phase == Phase::in_flight;
  }
  /// An attempt or a status query is on the wire: its answer is awaited.
  [[nodiscard]] bool awaiting_answer() const noexcept {
    return phase == Phase::looking_up || phase == Phase::in_flight;
  }
  /// The provider the plan's chain is at (the one to queue for).
  [[nodiscard]] const std::string& current_provider() const { return plan->providers.at(static_cast<std::size_t>(d.provider_index)); }
};

/// What the engine knows of a provider and tells the machine.
struct ProviderFacts {
  std::string name;
  int max_attempts = 3;          ///< attempts on this provider before failing over
  double cost_per_message = 0;
  bool has_receipts = false;     ///< it sends delivery receipts: an accepted message waits for one
  bool has_lookup = false;       ///< it can be asked about a message (a status API)
  bool batches = false;          ///< one request may carry many notifications
};

/// What came back with a provider's answer, for the record.
struct AnswerFacts {
  std::int64_t latency_us = -1;
  int http_status = 0;
  ErrorClass error_class = ErrorClass::none;  ///< of a failed attempt
  std::string address;  ///< the recipient's address, when one must be suppressed and none is recorded
  int segments = 0;     ///< an accepted SMS: the parts its text went in (herald/sms.hpp)
};

/// An address not to use again.
struct SuppressionRequest {
  std::string channel, address;
  SuppressionReason reason = SuppressionReason::unusable;
  std::string detail, provider;
};

/// What the engine must do after an event.
enum class Next : std::uint8_t {
  nothing,     ///< stay where it is (no transition)
  refuse,      ///< the event does not apply now (a cancel while an answer is awaited)
  route,       ///< ask the rules for a plan, then call routed()
  queue,       ///< put it in the queue of current_provider()
  look_up,     ///< build a status query about the attempt in doubt, then call lookup_started()
  send,        ///< build one request, then call sending() (or build_failed())
  send_batch,  ///< as send, and compatible ones queued behind it may ride in the same request
  schedule,    ///< back to the scheduler, ready at `at_ms`
  finish,      ///< final: d.state says which; forget it once the events are recorded
  coordinate,  ///< a plan with many steps: start the steps in start_steps, wake at wake_at_ms (if set)
};
[[nodiscard]] std::string_view to_string(Next n) noexcept;

struct Step {
  Next next = Next::nothing;
  std::int64_t at_ms = 0;     ///< schedule: when it is ready again
  std::vector<Event> events;  ///< to record, in order
  bool save = false;          ///< d changed: store it with the events
  std::optional<SuppressionRequest> suppress;
  ReceiptState receipt = ReceiptState::none;  ///< a status query found the message with this final receipt
  std::vector<std::size_t> start_steps;  ///< coordinate: the plan steps to start now
  std::int64_t wake_at_ms = 0;           ///< coordinate: call deadline() then (0 = no deadline)
  bool resume = false;  ///< coordinate: steps started before a restart: read them and call resume()
};

/// The transitions. Each takes the notification in the phase named and leaves it in the next; a
/// call in another phase is a bug in the shell and throws std::logic_error (tested).
class DeliveryMachine {
 public:
  explicit DeliveryMachine(RetryPolicy retry = {}, std::uint64_t seed = 1);

  /// Loaded from the store at start: an attempt marked "sending" is in doubt. The engine puts it
  /// in the scheduler (ready at send_at, or next_at for a scheduled retry).
  Step recovered(Delivery& x, std::int64_t updated_at_ms) const;
  /// A dead-lettered notification is put back (Engine::retry): a fresh provider chain.
  Step retried(Delivery& x) const;
  /// scheduled → taken: expired, or to route, or (already routed) to queue.
  Step take(Delivery& x, std::int64_t now_ms) const;
  /// taken → waiting_for_slot, or dead-lettered. A plan the configuration cannot serve comes as
  /// ok = false with the reason (the engine checks providers exist).
  Step routed(Delivery& x, RouteResult result, std::int64_t now_ms) const;
  /// waiting_for_slot, at the head of its provider's queue: expired or suppressed (finish), or
  /// nothing (go on: take a rate token, then call start()). `suppressed` is its address's entry.
  Step at_head(Delivery& x, const Suppression* suppressed, std::int64_t now_ms) const;
  /// waiting_for_slot, a slot granted: look up, send alone, or send in a batch.
  Step start(Delivery& x, const ProviderFacts& p) const;
  /// Whether `other` may ride in the batch request `first` starts.
  [[nodiscard]] static bool can_join(const Delivery& first, const Delivery& other);
  /// waiting_for_slot, after start() said look_up but no query could be built for this one:
  /// resend, flagged in doubt.
  Step cannot_look_up(Delivery& x) const;
  /// waiting_for_slot → looking_up: the status query is built and goes out with the marks.
  Step lookup_started(Delivery& x, const ProviderFacts& p) const;
  /// waiting_for_slot → in_flight: the request is built; "sending" is recorded before it leaves.
  Step sending(Delivery& x, const ProviderFacts& p, std::string address, std::string detail) const;
  /// waiting_for_slot → finished: the adapter could not build the request. A template fault's
  /// error is the reason as it is; any other is prefixed with the provider's name.
  Step build_failed(Delivery& x, const ProviderFacts& p, const std::string& error, bool template_fault = false) const;
  /// in_flight → finished, scheduled (a retry), or waiting_for_slot (failed over).
  Step answered(Delivery& x, const ProviderFacts& p, const Outcome& out, const AnswerFacts& facts, std::int64_t now_ms);
  /// in_flight → waiting_for_slot: a batch request was refused as a whole; it goes again alone and
  /// the attempt does not count against the provider.
  Step batch_refused(Delivery& x, const ProviderFacts& p, const Outcome& out, const AnswerFacts& facts) const;
  /// looking_up → finished (it arrived), waiting_for_slot (it did not, or no answer three times:
  /// resend), or scheduled (ask again soon).
  Step looked_up(Delivery& x, const ProviderFacts& p, const LookupResult& found, const AnswerFacts& facts,
                 std::int64_t now_ms) const;
  /// A receipt from `p` while an attempt of `p` is in doubt and no answer is awaited: it arrived.
  /// nothing when the receipt does not settle it.
  Step receipt_in_doubt(Delivery& x, const ProviderFacts& p, const Receipt& r, std::int64_t now_ms) const;
  /// finished (cancelled), or refuse while an answer is awaited.
  Step cancel(Delivery& x) const;
  /// An address or channel check before the request: `current_provider()` cannot serve this
  /// notification (`why`); the next provider of the chain, or the end of the step.
  Step provider_unusable(Delivery& x, const std::string& why) const;

  // ---- plans with many steps (cpp/src/cascade.cpp). `x` is the parent, coordinating. ----
  /// The steps started before a restart, read back: where the plan goes on from (routed() of a
  /// parent whose state is `routed` needs them; empty for a fresh plan).
  Step resume(Delivery& x, const std::vector<StepRecord>& earlier, std::int64_t now_ms) const;
  /// A step's delivery finished (any final state).
  Step step_finished(Delivery& x, const StepRecord& r, std::int64_t now_ms) const;
  /// A receipt arrived for a step's delivery.
  Step step_receipt(Delivery& x, int step, ReceiptState receipt, std::int64_t now_ms) const;
  /// The application says the user read it on `channel` (Engine::acknowledge). nothing when no
  /// started step is on that channel.
  Step acknowledged(Delivery& x, const std::string& channel, std::int64_t now_ms) const;
  /// The wake-up set by wake_at_ms: the next group starts if nothing succeeded by its deadline.
  Step deadline(Delivery& x, std::int64_t now_ms) const;
  /// waiting_for_slot, its provider's circuit is open: on to the next provider of the chain whose
  /// circuit is not open, without an attempt (failed_over); when every one from here is open, back
  /// to the scheduler until the first of them lets a probe through (or expired, if that is too
  /// late). `half_open_at[k]`: when plan.providers[k] lets a probe through, 0 = not open now.
  Step provider_unavailable(Delivery& x, const std::vector<std::int64_t>& half_open_at, std::int64_t now_ms) const;

 private:
  Step begin_cascade(Delivery& x, Plan plan, std::int64_t now_ms) const;
  Step cancel_cascade(Delivery& x) const;

  RetryPolicy retry_;
  std::mt19937_64 rng_;
};

}  // namespace herald
