#include "pybind.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "herald/http_client.hpp"

namespace herald::bindings {

namespace {

/// The raw baseline for the end-to-end benchmark: the engine's own HTTP client posting the same
/// kind of JSON body to the same sandbox, `in_flight` at a time, with no engine around it.
py::dict raw_http_rate(const std::string& url, std::size_t total, std::size_t in_flight) {
  http::Client client;
  std::mutex m;
  std::condition_variable cv;
  std::size_t started = 0, done = 0, ok = 0;
  const std::string body = R"({"id":1,"type":"bench","channel":"email","to":{"id":"u1"},"text":"hello","data":{}})";
  auto make = [&]() {
    http::Request r;
    r.url = url;
    r.body = body;
    r.headers = {"Content-Type: application/json", "X-Herald-Id: 1"};
    return r;
  };
  std::function<void(http::Response&&)> on_done;
  on_done = [&](http::Response&& resp) {
    bool more = false;
    {
      std::lock_guard lock(m);
      ++done;
      if (resp.status >= 200 && resp.status < 300) ++ok;
      if (started < total) {
        ++started;
        more = true;
      }
    }
    if (more) {
      client.submit(make(), on_done);
    } else {
      cv.notify_all();
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  {
    py::gil_scoped_release release;  // nothing below touches Python
    std::vector<std::pair<http::Request, http::Callback>> first;
    {
      std::lock_guard lock(m);
      for (; started < std::min(total, in_flight); ++started) first.emplace_back(make(), on_done);
    }
    client.submit_many(std::move(first));
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return done >= total; });
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  py::dict out;
  out["seconds"] = seconds;
  out["ok"] = ok;
  out["per_s"] = static_cast<double>(total) / seconds;
  return out;
}

}  // namespace

void register_bench(py::module_& m) {
  m.def("_raw_http_rate", &raw_http_rate, py::arg("url"), py::arg("total"), py::arg("in_flight"),
        "Benchmark baseline: POSTs/s of the bare HTTP client against one URL.");
}

}  // namespace herald::bindings
