#pragma once
// The providers' answers on their way from the HTTP client's threads to the loop: kept here by
// the requests' callbacks, and handed to the loop in one post per round of answers (the client's
// after_answers hook calls wake()), not one post per answer.
//
// Why: with a post per answer, the HTTP thread took the loop's queue lock and woke the loop for
// each answer; the loop, woken, preempted the HTTP thread mid-round and then slept on that same
// lock. perf sched showed those two as the largest causes of both threads' context switches.
#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

#include <boost/asio/io_context.hpp>

namespace herald {

class AnswerInbox {
 public:
  using Task = std::function<void()>;

  explicit AnswerInbox(boost::asio::io_context& loop) : loop_(loop) {}
  AnswerInbox(const AnswerInbox&) = delete;
  AnswerInbox& operator=(const AnswerInbox&) = delete;

  /// Any thread: keeps `task` for the loop. It runs after the next wake().
  void put(Task task);
  /// Any thread, after a round of put(): one post to the loop when tasks wait and no earlier
  /// post is still to run. The loop then runs every task kept until then, in the order put.
  void wake();
  /// Tasks kept and not yet taken by the loop.
  [[nodiscard]] std::size_t waiting() const;

 private:
  void drain();

  boost::asio::io_context& loop_;
  mutable std::mutex mutex_;
  std::vector<Task> tasks_;    ///< under mutex_
  bool posted_ = false;        ///< under mutex_: a drain is queued on the loop
  std::vector<Task> running_;  ///< the loop's: the tasks of the drain now running (capacity kept)
};

}  // namespace herald
