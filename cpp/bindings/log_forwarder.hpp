#pragma once
/// Hands the engine's log records (herald/log.hpp) to Python's `logging` (logger "herald").
///
/// Why a thread of its own: records come from the engine's threads (the loop, the store's writer),
/// which must never wait for the GIL while a Python thread holding it waits for them. They queue
/// here; one thread takes the GIL and calls the logger.
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "herald/log.hpp"

namespace herald::bindings {

class LogForwarder {
 public:
  LogForwarder();
  ~LogForwarder();  ///< stop()
  LogForwarder(const LogForwarder&) = delete;
  LogForwarder& operator=(const LogForwarder&) = delete;

  /// The sink to put in EngineOptions. It only queues (at most `max_queued`; beyond, records are
  /// counted and reported as dropped), so it never blocks an engine thread.
  [[nodiscard]] LogSink sink() const;
  /// Emits what is queued and stops the thread. Releases the GIL while it waits. Idempotent.
  void stop();

  static constexpr std::size_t max_queued = 10'000;

 private:
  struct Record {
    LogLevel level;
    std::string message;
    LogFields fields;
  };
  struct Queue {
    std::mutex mu;
    std::condition_variable ready;
    std::deque<Record> records;
    std::size_t dropped = 0;
    bool stopping = false;
  };
  void run();
  static void emit(std::deque<Record>& records, std::size_t dropped);

  std::shared_ptr<Queue> queue_;
  std::thread thread_;
};

}  // namespace herald::bindings
