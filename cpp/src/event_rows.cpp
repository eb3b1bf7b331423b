#include "herald/event_rows.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"
#include "herald/json_text.hpp"

namespace herald {


std::vector<std::span<const Event* const>> group_for_rows(std::vector<const Event*>& events) {
  // A sort in place, where a map from id to group cost an allocation per notification. Stable:
  // one notification's events keep their order.
  std::stable_sort(events.begin(), events.end(),
                   [](const Event* a, const Event* b) { return a->notification_id < b->notification_id; });
  std::vector<std::span<const Event* const>> groups;
  for (std::size_t start = 0; start < events.size();) {
    std::size_t end = start + 1;
    while (end < events.size() && events[end]->notification_id == events[start]->notification_id) ++end;
    groups.emplace_back(events.data() + start, end - start);
    start = end;
  }
  return groups;
}

std::string pack_earlier_events(std::span<const Event* const> group) {
  std::string out;
  if (group.size() < 2) return out;
  using detail::JsonWriter;
  // Sized once for the longest the text can be, then written without a check per field (one
  // such text per notification and commit, on the store's thread).
  std::size_t bound = 2;
  for (std::size_t i = 0; i + 1 < group.size(); ++i) {
    const Event& e = *group[i];
    bound += 12 + 6 * JsonWriter::int_bound + JsonWriter::string_bound(to_string(e.kind)) +
             JsonWriter::string_bound(e.provider) + JsonWriter::string_bound(e.detail);
  }
  out.resize(bound);
  JsonWriter w(out.data());
  w.raw('[');
  for (std::size_t i = 0; i + 1 < group.size(); ++i) {
    const Event& e = *group[i];
    if (i > 0) w.raw(',');
    w.raw('[');
    w.integer(e.seq);
    w.raw(',');
    w.integer(e.ts_us);
    w.raw(',');
    w.plain_string(to_string(e.kind));
    w.raw(',');
    w.integer(e.attempt);
    w.raw(',');
    w.string(e.provider);
    w.raw(',');
    w.integer(e.latency_us);
    w.raw(',');
    w.integer(e.http_status);
    w.raw(',');
    w.string(e.detail);
    w.raw(',');
    w.integer(e.step);
    w.raw(']');
  }
  w.raw(']');
  out.resize(static_cast<std::size_t>(w.end() - out.data()));
  return out;
}

void unpack_earlier_events(std::string_view more, Id notification_id, std::vector<Event>& out) {
  const auto doc = nlohmann::json::parse(more, nullptr, false);
  if (!doc.is_array()) throw Error("events: a packed row's 'more' is not a JSON array");
  for (const auto& a : doc) {
    if (!a.is_array() || a.size() != 9 || !a[0].is_number_integer() || !a[1].is_number_integer() ||
        !a[2].is_string() || !a[3].is_number_integer() || !a[4].is_string() || !a[5].is_number_integer() ||
        !a[6].is_number_integer() || !a[7].is_string() || !a[8].is_number_integer()) {
      throw Error("events: a packed event of notification " + std::to_string(notification_id) + " is malformed");
    }
    Event e;
    e.notification_id = notification_id;
    e.seq = a[0].get<std::int64_t>();
    e.ts_us = a[1].get<std::int64_t>();
    e.kind = parse_event_kind(a[2].get_ref<const std::string&>());
    e.attempt = a[3].get<int>();
    e.provider = a[4].get<std::string>();
    e.latency_us = a[5].get<std::int64_t>();
    e.http_status = a[6].get<int>();
    e.detail = a[7].get<std::string>();
    e.step = a[8].get<int>();
    out.push_back(std::move(e));
  }
}

}  // namespace herald
