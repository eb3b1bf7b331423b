#include "pybind.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "herald/delivery.hpp"
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

/// Transitions of the delivery machine per second, without I/O: `total` one-step deliveries (take,
/// routed, at_head, start, sending, answered: 6 transitions each) and `total` two-step cascades
/// whose first step fails (routed, the first step's end, the second's: 3 on the parent).
py::dict machine_rate(std::size_t total) {
  using clock = std::chrono::steady_clock;
  DeliveryMachine m;
  ProviderFacts p;
  p.name = "sms";
  Outcome ok;
  ok.kind = OutcomeKind::accepted;
  ok.provider_message_id = "m1";
  PlanStep sms{"sms", {"sms"}, "code {code}", {}};
  PlanStep email{"email", {"email"}, "code {code}", {}};
  email.after_ms = 30'000;
  const Plan one = Plan::one(sms);
  Plan two;
  two.steps = {sms, email};
  std::size_t events = 0;
  const auto t0 = clock::now();
  for (std::size_t i = 0; i < total; ++i) {
    Delivery x;
    x.n.id = static_cast<Id>(i + 1);
    m.take(x, 1);
    m.routed(x, RouteResult::of(one), 1);
    m.at_head(x, nullptr, 1);
    m.start(x, p);
    m.sending(x, p, "", "");
    events += m.answered(x, p, ok, AnswerFacts{}, 2).events.size();
  }
  const auto t1 = clock::now();
  StepRecord failed;
  failed.finished = true;
  failed.state = State::dead_lettered;
  failed.error = "every provider failed";
  StepRecord accepted;
  accepted.step = 1;
  accepted.finished = true;
  accepted.state = State::completed;
  for (std::size_t i = 0; i < total; ++i) {
    Delivery x;
    x.n.id = static_cast<Id>(i + 1);
    m.take(x, 1);
    m.routed(x, RouteResult::of(two), 1);
    m.step_finished(x, failed, 2);
    events += m.step_finished(x, accepted, 3).events.size();
  }
  const auto t2 = clock::now();
  const double one_s = std::chrono::duration<double>(t1 - t0).count();
  const double two_s = std::chrono::duration<double>(t2 - t1).count();
  py::dict out;
  out["one_step_transitions_per_s"] = static_cast<double>(total * 6) / one_s;
  out["cascade_transitions_per_s"] = static_cast<double>(total * 4) / two_s;  // take, routed, two step ends
  out["events"] = events;
  return out;
}

void register_bench(py::module_& m) {
  m.def("_machine_rate", &machine_rate, py::arg("total"),
        "Delivery machine transitions per second, without I/O (bench/run.py).");
  m.def("_raw_http_rate", &raw_http_rate, py::arg("url"), py::arg("total"), py::arg("in_flight"),
        "Benchmark baseline: POSTs/s of the bare HTTP client against one URL.");
}

}  // namespace herald::bindings
