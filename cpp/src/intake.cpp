// Intake: send() and send_many() on the caller's thread. Validates, answers repeats of an
// idempotency key, and returns once the new notifications are durable; the loop takes them from
// there (admit, in dispatcher.cpp).
#include <charconv>
#include <cstring>
#include <future>

#include <boost/asio/post.hpp>

#include "engine_impl.hpp"
#include "herald/errors.hpp"

namespace herald {

namespace {

/// "notifications[<i>]." for an item of send_many(), nothing for send(): what error texts put
/// before a field's name. Kept on the stack: it is made for every notification taken in.
class ItemPrefix {
 public:
  ItemPrefix(bool many, std::size_t i) {
    if (!many) return;
    constexpr std::string_view head = "notifications[";
    std::memcpy(text_, head.data(), head.size());
    char* end = std::to_chars(text_ + head.size(), text_ + sizeof text_ - 2, i).ptr;
    *end++ = ']';
    *end++ = '.';
    size_ = static_cast<std::size_t>(end - text_);
  }
  operator std::string_view() const { return {text_, size_}; }  // NOLINT(google-explicit-constructor)
  [[nodiscard]] std::string str() const { return std::string(*this); }

 private:
  char text_[40];
  std::size_t size_ = 0;
};

/// The earlier notification of a repeated key, or nothing; throws on the same key with other content.
std::optional<SendResult> check_repeat(IdempotencyIndex& index, DeliveryStore& store, const Notification& n,
                                       const IdempotencyKey& key, std::uint64_t hash, std::string_view where) {
  const IdempotencyEntry* found = index.find(key);
  if (found == nullptr && index.may_be_stored(key)) {
    if (auto hit = store.find_idempotent(n.tenant, n.type, n.recipient_id, n.idempotency_key)) {
      found = &index.remember(key, IdempotencyEntry{hit->id, hit->content_hash});
    }
  }
  if (found == nullptr) return std::nullopt;
  if (found->hash != hash) {
    throw IdempotencyConflict(std::string(where) + "idempotency_key: '" + n.idempotency_key + "' was already used for notification " +
                              std::to_string(found->id) + " with different content");
  }
  return SendResult{found->id, State::queued, true};
}

}  // namespace

std::vector<SendResult> Engine::Impl::intake(std::vector<Notification> batch, bool many, Notification* give_back) {
  if (closing.load()) throw EngineClosed("engine is closed");
  const std::int64_t now = clock->now_ms();
  auto where = [many](std::size_t i) { return ItemPrefix(many, i); };
  for (std::size_t i = 0; i < batch.size(); ++i) validate(batch[i], now, where(i));
  std::vector<SendResult> results(batch.size());
  std::vector<Notification> fresh;
  std::vector<IdempotencyKey> reserved;  // keys this call added, forgotten again if the commit fails
  std::vector<std::size_t> duplicates;
  IdempotencyIndex::Map dropped;  // freed after the lock is released
  {
    std::lock_guard lock(idempotency.mutex());
    idempotency.rotate_if_due(now, dropped);
    // First pass: find conflicts before changing anything, so a rejected batch leaves no trace.
    // Each key is made (and hashed) once; the map of this batch's keys points at them.
    std::vector<IdempotencyKey> keys(batch.size());
    struct KeyAt {
      std::size_t operator()(const IdempotencyKey* k) const noexcept { return k->hash; }
      bool operator()(const IdempotencyKey* a, const IdempotencyKey* b) const noexcept { return *a == *b; }
    };
    std::unordered_map<const IdempotencyKey*, std::pair<std::uint64_t, std::size_t>, KeyAt, KeyAt> in_batch;
    std::vector<std::optional<SendResult>> repeats(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Notification& n = batch[i];
      if (n.idempotency_key.empty()) continue;
      keys[i] = IdempotencyKey::of(n);
      n.hash_of_content = content_hash(n);  // kept for the row: computed once
      repeats[i] = check_repeat(idempotency, *store, n, keys[i], n.hash_of_content, where(i));
      if (!repeats[i]) {
        auto [it, first] = in_batch.try_emplace(&keys[i], n.hash_of_content, i);
        if (!first && it->second.first != n.hash_of_content) {
          throw IdempotencyConflict(where(i).str() + "idempotency_key: '" + n.idempotency_key + "' repeats notifications[" +
                                    std::to_string(it->second.second) + "] with different content");
        }
      }
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Notification& n = batch[i];
      if (repeats[i]) {
        results[i] = *repeats[i];
        duplicates.push_back(i);
        continue;
      }
      if (!n.idempotency_key.empty()) {
        IdempotencyKey& key = keys[i];
        if (const IdempotencyEntry* earlier = idempotency.find(key)) {  // an earlier item of this same batch
          results[i] = SendResult{earlier->id, State::queued, true};
          duplicates.push_back(i);
          continue;
        }
        n.id = ids.next();
        idempotency.note_stored(key);  // kept if the commit fails: a needless store read at worst
        idempotency.remember(key, IdempotencyEntry{n.id, n.hash_of_content});
        reserved.push_back(std::move(key));
      } else {
        n.id = ids.next();
      }
      n.created_at_ms = now;
      results[i] = SendResult{n.id, State::queued, false};
    }
  }
  if (duplicates.empty()) {
    fresh = std::move(batch);  // the usual case: no second copy of every row
  } else {
    fresh.reserve(batch.size() - duplicates.size());
    for (std::size_t i = 0, d = 0; i < batch.size(); ++i) {
      if (d < duplicates.size() && duplicates[d] == i) {
        ++d;  // batch[i] is read again below
      } else {
        fresh.push_back(std::move(batch[i]));
      }
    }
  }
  if (!fresh.empty()) {
    const auto accepted = static_cast<std::int64_t>(fresh.size());
    count.active.fetch_add(accepted);
    WriteBatch wb;
    wb.inserts = std::move(fresh);
    std::promise<void> durable;
    auto future = durable.get_future();
    // The rows are durable: on to the loop, without a copy.
    auto to_loop = [this](WriteBatch& done) {
      asio::post(io, [this, rows = std::move(done.inserts)]() mutable { admit(std::move(rows)); });
    };
    auto not_accepted = [&] {  // nothing of this call was accepted: its reservations go
      count.active.fetch_sub(accepted);
      std::lock_guard lock(idempotency.mutex());
      for (const auto& key : reserved) idempotency.forget(key);
    };
    try {
      if (!many) {
        // One send(): durable once in the intake journal (a file append, not a transaction); the
        // store's writer commits the row with its next group and then hands it to the loop.
        DeliveryStore::Done admit_after_commit = [this, accepted, to_loop](std::exception_ptr err, WriteBatch& done) {
          if (!err) {
            to_loop(done);
            return;
          }
          // Refused for itself (intake's checks make that a bug), or the store closed while the
          // disk refused writes (its journal record stays for the next start).
          count.active.fetch_sub(accepted);
          std::string why;
          try {
            std::rethrow_exception(err);
          } catch (const std::exception& e) {
            why = e.what();
          }
          log(LogLevel::error, "a journaled notification was not committed", {{"error", why}});
        };
        if (store->submit_journaled(wb, admit_after_commit)) {
          count.received.fetch_add(static_cast<std::uint64_t>(accepted), std::memory_order_relaxed);
          return results;  // a single send() has no duplicate to record
        }
        if (give_back != nullptr) {  // the caller will send it again the way that waits
          not_accepted();
          *give_back = std::move(wb.inserts.front());
          return {};
        }
      }
      // Why admit from the committing thread: the notification is durable from here on, and the
      // loop can start on it while the caller is still being woken. The rows move on without a
      // copy. On a full disk the caller hears it at once and nothing is accepted. The commit runs
      // on this thread when the store's writer is idle (no hand-over and wake-up back).
      store->submit_and_wait_here(
          std::move(wb),
          [&durable, &to_loop](std::exception_ptr err, WriteBatch& done) {
            if (!err) {
              to_loop(done);
              durable.set_value();
            } else {
              durable.set_exception(err);
            }
          });
      future.get();
    } catch (...) {
      not_accepted();
      throw;
    }
    count.received.fetch_add(static_cast<std::uint64_t>(accepted), std::memory_order_relaxed);
  }
  if (!duplicates.empty()) {
    count.deduplicated.fetch_add(duplicates.size(), std::memory_order_relaxed);
    WriteBatch wb;
    for (std::size_t i : duplicates) {
      if (auto row = store->get(results[i].id)) results[i].state = row->delivery.state;
      Event e = make_event(batch[i], 0, EventKind::deduplicated);
      e.notification_id = results[i].id;  // the stored notification's, not the repeat's
      e.ts_us = clock->now_us();
      e.detail = "repeat of idempotency_key '" + batch[i].idempotency_key + "'";
      wb.events.push_back(std::move(e));
    }
    store->submit(std::move(wb));
  }
  return results;
}

}  // namespace herald
