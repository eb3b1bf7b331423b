#include <gtest/gtest.h>

#include <limits>

#include "herald/errors.hpp"
#include "herald/event_rows.hpp"

namespace herald {
namespace {

Event ev(Id nid, std::int64_t seq, EventKind kind, std::string detail = {}) {
  Event e;
  e.notification_id = nid;
  e.seq = seq;
  e.ts_us = 1'700'000'000'000'000 + seq;
  e.kind = kind;
  e.attempt = 1;
  e.provider = "hook";
  e.latency_us = seq * 10;
  e.http_status = 202;
  e.detail = std::move(detail);
  e.step = seq % 2 == 0 ? -1 : 1;
  return e;
}

TEST(EventRows, GroupsEachNotificationsEventsInSeqOrderAndTheGroupsInIdOrder) {
  const std::vector<Event> events = {ev(9, 10, EventKind::routed), ev(7, 11, EventKind::routed),
                                     ev(9, 13, EventKind::sending), ev(7, 12, EventKind::sending),
                                     ev(0, 14, EventKind::store_recovered), ev(9, 15, EventKind::accepted),
                                     ev(8, 16, EventKind::routed)};
  std::vector<const Event*> ptrs;
  for (const auto& e : events) ptrs.push_back(&e);
  const auto groups = group_for_rows(ptrs);
  ASSERT_EQ(groups.size(), 4u);
  ASSERT_EQ(groups[0].size(), 1u);
  EXPECT_EQ(groups[0][0]->notification_id, 0);
  ASSERT_EQ(groups[1].size(), 2u);
  EXPECT_EQ(groups[1][0]->seq, 11);
  EXPECT_EQ(groups[1][1]->seq, 12);
  ASSERT_EQ(groups[2].size(), 1u);
  EXPECT_EQ(groups[2][0]->seq, 16);
  ASSERT_EQ(groups[3].size(), 3u);
  EXPECT_EQ(groups[3][0]->seq, 10);
  EXPECT_EQ(groups[3][1]->seq, 13);
  EXPECT_EQ(groups[3][2]->seq, 15);
}

TEST(EventRows, ManyNotificationsInterleavedKeepEachOnesOrder) {
  // A commit's events come as runs (every routed, then every sending, then the answers in the
  // order they came): each notification's events must stay in seq order whatever the interleaving.
  std::vector<Event> events;
  std::int64_t seq = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 50; ++i) events.push_back(ev(100 + (round == 2 ? 49 - i : i), seq++, EventKind::routed));
  }
  std::vector<const Event*> ptrs;
  for (const auto& e : events) ptrs.push_back(&e);
  const auto groups = group_for_rows(ptrs);
  ASSERT_EQ(groups.size(), 50u);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    ASSERT_EQ(groups[g].size(), 3u);
    EXPECT_EQ(groups[g][0]->notification_id, static_cast<Id>(100 + g));
    EXPECT_LT(groups[g][0]->seq, groups[g][1]->seq);
    EXPECT_LT(groups[g][1]->seq, groups[g][2]->seq);
  }
}

TEST(EventRows, EarlierEventsAtTheirLongestRoundTrip) {
  // The packed text is written into room sized once: every field at its longest must fit.
  std::vector<Event> events;
  for (int i = 0; i < 3; ++i) {
    Event e = ev(7, i, EventKind::failed_over, std::string(300, '\x01'));
    e.seq = std::numeric_limits<std::int64_t>::min() + i;
    e.ts_us = std::numeric_limits<std::int64_t>::min();
    e.latency_us = std::numeric_limits<std::int64_t>::min();
    e.attempt = std::numeric_limits<int>::min();
    e.http_status = std::numeric_limits<int>::min();
    e.step = std::numeric_limits<int>::min();
    e.provider = std::string(200, '"');
    events.push_back(std::move(e));
  }
  std::vector<const Event*> ptrs;
  for (const auto& e : events) ptrs.push_back(&e);
  const std::string more = pack_earlier_events(ptrs);
  std::vector<Event> out;
  unpack_earlier_events(more, 7, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].seq, std::numeric_limits<std::int64_t>::min() + 1);
  EXPECT_EQ(out[1].ts_us, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(out[1].attempt, std::numeric_limits<int>::min());
  EXPECT_EQ(out[1].step, std::numeric_limits<int>::min());
  EXPECT_EQ(out[1].provider, events[1].provider);
  EXPECT_EQ(out[1].detail, events[1].detail);
}

TEST(EventRows, ARowOfOneEventPacksNothing) {
  const Event e = ev(7, 10, EventKind::accepted);
  const Event* one[] = {&e};
  EXPECT_EQ(pack_earlier_events(one), "");
}

TEST(EventRows, EarlierEventsRoundTripWithEveryField) {
  // Quotes, a backslash, a control character and non-ASCII text in the free-text fields.
  const std::vector<Event> events = {ev(7, 10, EventKind::routed, "plan \"email\" via \\hook\n\x01 caf\xc3\xa9"),
                                     ev(7, 11, EventKind::sending), ev(7, 12, EventKind::accepted, "msg-1")};
  std::vector<const Event*> ptrs;
  for (const auto& e : events) ptrs.push_back(&e);
  const std::string more = pack_earlier_events(ptrs);
  std::vector<Event> out;
  unpack_earlier_events(more, 7, out);
  ASSERT_EQ(out.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(out[i].notification_id, 7);
    EXPECT_EQ(out[i].seq, events[i].seq);
    EXPECT_EQ(out[i].ts_us, events[i].ts_us);
    EXPECT_EQ(out[i].kind, events[i].kind);
    EXPECT_EQ(out[i].attempt, events[i].attempt);
    EXPECT_EQ(out[i].provider, events[i].provider);
    EXPECT_EQ(out[i].latency_us, events[i].latency_us);
    EXPECT_EQ(out[i].http_status, events[i].http_status);
    EXPECT_EQ(out[i].detail, events[i].detail);
    EXPECT_EQ(out[i].step, events[i].step);
  }
}

TEST(EventRows, AMalformedPackIsRefusedWithTheNotification) {
  std::vector<Event> out;
  EXPECT_THROW(unpack_earlier_events("not json", 7, out), Error);
  try {
    unpack_earlier_events(R"([[1,2,"routed",1,"hook",-1,0,"x"]])", 7, out);
    FAIL() << "eight fields accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("notification 7"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace herald
