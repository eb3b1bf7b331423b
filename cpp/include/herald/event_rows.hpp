#pragma once
/// How events are kept in SQLite: the events of one notification written by one commit share one
/// row. The row's columns are the last of them; `more` holds the ones before it as a JSON array of
/// [seq, ts_us, kind, attempt, provider, latency_us, http_status, detail, step] (NULL when the row
/// holds one event). Why: a notification's usual life is four events in two commits (routed and
/// sending, then accepted and completed), and each row is a B-tree insert that cost more than the
/// bytes it carries. The row is keyed by its last event's seq, so MAX(seq) still finds the newest.
/// SQL readers see one row per event through the view `all_events` (store_schema.cpp).
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "herald/event.hpp"

namespace herald {

/// Events grouped for writing: `events` is put in notification id order, each notification's
/// events kept in the order given (seq order: seqs are handed out in queue order and a commit takes
/// the queue in order), and each group is one notification's run of it. Ids grow with time, so the
/// rows go into the events table's key order. The groups point into `events`, which must outlive
/// them and not change meanwhile.
[[nodiscard]] std::vector<std::span<const Event* const>> group_for_rows(std::vector<const Event*>& events);

/// The `more` column of a row holding `group` (all but its last event); empty for a group of one.
[[nodiscard]] std::string pack_earlier_events(std::span<const Event* const> group);

/// The events packed in a row's `more` column, appended to `out` with `notification_id` set.
/// Throws Error when the text is not what pack_earlier_events writes.
void unpack_earlier_events(std::string_view more, Id notification_id, std::vector<Event>& out);

}  // namespace herald
