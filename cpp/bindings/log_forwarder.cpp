#include "pybind.hpp"

#include "log_forwarder.hpp"

#include "herald/thread_name.hpp"

namespace herald::bindings {

namespace {

int python_level(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return 10;
    case LogLevel::info: return 20;
    case LogLevel::warning: return 30;
    case LogLevel::error: return 40;
  }
  return 20;
}

}  // namespace

LogForwarder::LogForwarder() : queue_(std::make_shared<Queue>()) {
  thread_ = std::thread([this] {
    detail::name_this_thread("herald-log");
    run();
  });
}

LogForwarder::~LogForwarder() { stop(); }

LogSink LogForwarder::sink() const {
  return [q = queue_](LogLevel level, const std::string& message, const LogFields& fields) {
    {
      std::lock_guard lock(q->mu);
      if (q->records.size() >= max_queued) {
        ++q->dropped;
        return;
      }
      q->records.push_back(Record{level, message, fields});
    }
    q->ready.notify_one();
  };
}

void LogForwarder::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(queue_->mu);
    queue_->stopping = true;
  }
  queue_->ready.notify_one();
  if (Py_IsInitialized() && PyGILState_Check()) {
    py::gil_scoped_release release;  // the thread needs the GIL to emit what is left
    thread_.join();
  } else {
    thread_.join();
  }
}

void LogForwarder::run() {
  for (;;) {
    std::deque<Record> batch;
    std::size_t dropped = 0;
    bool last = false;
    {
      std::unique_lock lock(queue_->mu);
      queue_->ready.wait(lock, [this] { return queue_->stopping || !queue_->records.empty(); });
      batch.swap(queue_->records);
      dropped = std::exchange(queue_->dropped, 0);
      last = queue_->stopping;
    }
    if (!batch.empty() || dropped != 0) emit(batch, dropped);
    if (last) return;
  }
}

void LogForwarder::emit(std::deque<Record>& records, std::size_t dropped) {
  if (!Py_IsInitialized() || _Py_IsFinalizing()) return;  // the interpreter is going: nowhere to log to
  py::gil_scoped_acquire gil;
  try {
    py::object logger = py::module_::import("logging").attr("getLogger")("herald");
    for (const Record& r : records) {
      const int level = python_level(r.level);
      if (!logger.attr("isEnabledFor")(level).cast<bool>()) continue;
      py::dict fields;
      for (const auto& [k, v] : r.fields) fields[to_py_text(k)] = to_py_text(v);
      py::dict extra;
      extra["herald"] = fields;
      logger.attr("log")(level, "%s", to_py_text(r.message), py::arg("extra") = extra);
    }
    if (dropped != 0) {
      logger.attr("warning")("%d log records were dropped: the logger could not keep up", dropped);
    }
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("herald log forwarding");
  }
}

}  // namespace herald::bindings
