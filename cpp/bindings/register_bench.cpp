#include "pybind.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <curl/curl.h>
#include <sys/resource.h>

#include "herald/delivery.hpp"
#include "herald/errors.hpp"
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

/// CPU seconds (user and system) this thread has spent so far.
double thread_cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_THREAD, &r);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return tv(r.ru_utime) + tv(r.ru_stime);
}

/// What a ceiling measurement returns to bench/wire_bench.py.
py::dict ceiling_figures(double seconds, std::size_t ok, std::size_t failed, double cpu_s) {
  py::dict out;
  out["seconds"] = seconds;
  out["ok"] = ok;
  out["failed"] = failed;
  out["per_s"] = static_cast<double>(ok + failed) / seconds;
  out["cpu_s"] = cpu_s;
  return out;
}

/// The physical ceiling for the wire benchmark (bench/wire_bench.py): plain libcurl multi on the
/// calling thread, `in_flight` reused easy handles POSTing `body` to `url` with keep-alive, no
/// wrapper of ours around it. Returns the rate and the CPU this thread spent (RUSAGE_THREAD).
py::dict raw_curl_rate(const std::string& url, const std::string& body, std::size_t total, std::size_t in_flight) {
  auto discard = +[](char*, size_t size, size_t n, void*) -> size_t { return size * n; };
  std::size_t ok = 0, failed = 0, started = 0, done = 0;
  double seconds = 0, cpu_s = 0;
  {
    py::gil_scoped_release release;
    CURLM* multi = curl_multi_init();
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    std::vector<CURL*> handles(std::max<std::size_t>(1, std::min(in_flight, total)));
    auto start = [&](CURL* easy) {
      curl_multi_add_handle(multi, easy);
      ++started;
    };
    for (CURL*& easy : handles) {
      easy = curl_easy_init();
      curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
      curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
      curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
      curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    }
    const double cpu0 = thread_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    for (CURL* easy : handles) start(easy);
    while (done < total) {
      int running = 0;
      curl_multi_perform(multi, &running);
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL* easy = msg->easy_handle;
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        (msg->data.result == CURLE_OK && status >= 200 && status < 300) ? ++ok : ++failed;
        ++done;
        curl_multi_remove_handle(multi, easy);
        if (started < total) start(easy);
      }
      if (done < total) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu_s = thread_cpu_seconds() - cpu0;
    for (CURL* easy : handles) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
  }
  return ceiling_figures(seconds, ok, failed, cpu_s);
}

/// A second ceiling for the wire benchmark: the same POSTs as herald's webhook (its four header
/// lines, a fresh id per request) written and read by Boost.Beast over Asio on the calling
/// thread, `in_flight` keep-alive connections to `host`:`port`. It measures what an HTTP/1.1
/// client without libcurl costs per request on this machine (bench/wire_bench.py reports it
/// beside the libcurl ceiling).
py::dict raw_beast_rate(const std::string& host, int port, const std::string& target, const std::string& body,
                        std::size_t total, std::size_t in_flight) {
  namespace beast = boost::beast;
  namespace bhttp = beast::http;
  using tcp = boost::asio::ip::tcp;
  std::size_t ok = 0, failed = 0, started = 0;
  double seconds = 0, cpu_s = 0;
  std::string error;
  {
    py::gil_scoped_release release;
    boost::asio::io_context io(1);
    const std::string host_header = host + ":" + std::to_string(port);
    struct Connection {
      explicit Connection(boost::asio::io_context& io) : socket(io) {}
      tcp::socket socket;
      beast::flat_buffer buffer;
      bhttp::request<bhttp::string_body> request;
      bhttp::response<bhttp::string_body> response;
    };
    std::vector<std::unique_ptr<Connection>> connections;
    std::function<void(Connection&)> next = [&](Connection& c) {
      if (started >= total || !error.empty()) return;
      const std::string id = std::to_string(117'701'635'973'316'608LL + static_cast<long long>(++started));
      c.request = {};
      c.request.method(bhttp::verb::post);
      c.request.target(target);
      c.request.version(11);
      c.request.set(bhttp::field::host, host_header);
      c.request.set(bhttp::field::content_type, "application/json");
      c.request.set("X-Herald-Id", id);
      c.request.set("X-Herald-Attempt", "1");
      c.request.set("Idempotency-Key", "herald-" + id);
      c.request.body() = body;
      c.request.prepare_payload();
      bhttp::async_write(c.socket, c.request, [&, conn = &c](beast::error_code ec, std::size_t) {
        if (ec) {
          error = "write: " + ec.message();
          return;
        }
        conn->response = {};
        bhttp::async_read(conn->socket, conn->buffer, conn->response, [&, conn](beast::error_code ec2, std::size_t) {
          if (ec2) {
            error = "read: " + ec2.message();
            return;
          }
          const unsigned status = conn->response.result_int();
          (status >= 200 && status < 300) ? ++ok : ++failed;
          next(*conn);
        });
      });
    };
    try {
      const tcp::endpoint at(boost::asio::ip::make_address(host), static_cast<unsigned short>(port));
      for (std::size_t i = 0; i < std::max<std::size_t>(1, std::min(in_flight, total)); ++i) {
        auto c = std::make_unique<Connection>(io);
        c->socket.connect(at);
        c->socket.set_option(tcp::no_delay(true));
        connections.push_back(std::move(c));
      }
    } catch (const std::exception& e) {
      error = std::string("connect: ") + e.what();
    }
    const double cpu0 = thread_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    if (error.empty()) {
      for (auto& c : connections) next(*c);
      io.run();
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    cpu_s = thread_cpu_seconds() - cpu0;
  }
  if (!error.empty()) throw Error("raw Beast client: " + error);
  return ceiling_figures(seconds, ok, failed, cpu_s);
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
  m.def("_raw_curl_rate", &raw_curl_rate, py::arg("url"), py::arg("body"), py::arg("total"), py::arg("in_flight"),
        "Benchmark ceiling: POSTs/s of plain libcurl multi on the calling thread (bench/wire_bench.py).");
  m.def("_raw_beast_rate", &raw_beast_rate, py::arg("host"), py::arg("port"), py::arg("target"), py::arg("body"),
        py::arg("total"), py::arg("in_flight"),
        "Benchmark probe: the webhook's POSTs/s written and read by Boost.Beast on the calling thread (bench/wire_bench.py).");
}

}  // namespace herald::bindings
