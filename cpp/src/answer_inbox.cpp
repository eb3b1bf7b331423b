#include "answer_inbox.hpp"

#include <iterator>

#include <boost/asio/post.hpp>

namespace herald {

void AnswerInbox::put(Task task) {
  std::lock_guard lock(mutex_);
  tasks_.push_back(std::move(task));
}

void AnswerInbox::wake() {
  {
    std::lock_guard lock(mutex_);
    if (tasks_.empty() || posted_) return;
    posted_ = true;
  }
  boost::asio::post(loop_, [this] { drain(); });
}

std::size_t AnswerInbox::waiting() const {
  std::lock_guard lock(mutex_);
  return tasks_.size();
}

void AnswerInbox::drain() {
  {
    std::lock_guard lock(mutex_);
    running_.swap(tasks_);  // tasks_ gets the last drain's emptied vector, capacity and all
    posted_ = false;
  }
  std::size_t i = 0;
  try {
    for (; i < running_.size(); ++i) running_[i]();
  } catch (...) {
    // The loop hears the exception as it would have from the task's own post; the tasks after
    // it go back to the front of the inbox, in their order, for the next drain.
    {
      std::lock_guard lock(mutex_);
      tasks_.insert(tasks_.begin(), std::make_move_iterator(running_.begin() + static_cast<std::ptrdiff_t>(i) + 1),
                    std::make_move_iterator(running_.end()));
    }
    running_.clear();
    wake();
    throw;
  }
  running_.clear();
}

}  // namespace herald
