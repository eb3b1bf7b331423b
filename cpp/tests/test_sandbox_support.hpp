#pragma once
// Shared by the sandbox's per-service tests: a blocking call through herald's HTTP client and a
// tiny HTTP/1.1 listener (Beast, one thread per connection) that collects status callbacks.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "herald/http_client.hpp"
#include "herald/sandbox.hpp"

namespace sandbox_test {

using json = nlohmann::json;
using herald::http::Request;
using herald::http::Response;
using namespace std::chrono_literals;

inline herald::http::Client& client() {
  static herald::http::Client c;
  return c;
}

/// Sends one request and waits for its answer.
inline Response call(Request request) {
  auto promise = std::make_shared<std::promise<Response>>();
  auto future = promise->get_future();
  if (request.version == Request::Version::any) request.version = Request::Version::http1_1;
  client().submit(std::move(request), [promise](Response&& r) { promise->set_value(std::move(r)); });
  if (future.wait_for(20s) != std::future_status::ready) {
    ADD_FAILURE() << "no answer within 20 s";
    return {};
  }
  return future.get();
}

inline Response send(const std::string& method, const std::string& url, std::string body = {},
                     std::vector<std::string> headers = {}, std::string basic_auth = {}) {
  Request r;
  r.method = method;
  r.url = url;
  r.body = std::move(body);
  r.headers = std::move(headers);
  r.basic_auth = std::move(basic_auth);
  return call(std::move(r));
}

inline json body_json(const Response& r) {
  json j = json::parse(r.body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.body;
  return j;
}

inline herald::sandbox::Server::Options options() {
  herald::sandbox::Server::Options o;
  o.host = "127.0.0.1";
  return o;
}

/// One request the listener received.
struct Received {
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  ///< lower-case names
  std::string body;
  [[nodiscard]] std::string header(const std::string& lower) const {
    for (const auto& [k, v] : headers) {
      if (k == lower) return v;
    }
    return {};
  }
};

/// Answers 200 "ok" to every request and keeps them.
class Listener {
 public:
  Listener() : acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~Listener() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (auto& s : sockets_) {
        boost::system::error_code ec;
        s->shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
      }
    }
    // A blocking accept() is not woken by closing the acceptor from another thread: connect once.
    boost::system::error_code ec;
    {
      boost::asio::io_context wake_ioc;
      boost::asio::ip::tcp::socket wake(wake_ioc);
      wake.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
      if (accept_thread_.joinable()) accept_thread_.join();
    }
    acceptor_.close(ec);
    for (auto& t : conn_threads_) t.join();
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  [[nodiscard]] std::string url(const std::string& path = "/cb") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  /// Waits until `n` requests arrived (or `timeout`), then returns all received so far.
  std::vector<Received> wait_for(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return received_.size() >= n; });
    return received_;
  }

 private:
  void accept_loop() {
    for (;;) {
      auto socket = std::make_shared<boost::asio::ip::tcp::socket>(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(*socket, ec);
      std::lock_guard lock(mu_);
      if (ec || stopping_) return;
      sockets_.push_back(socket);
      conn_threads_.emplace_back([this, socket] { serve(*socket); });
    }
  }

  void serve(boost::asio::ip::tcp::socket& socket) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      boost::system::error_code ec;
      http::read(socket, buffer, req, ec);
      if (ec) return;
      Received r;
      r.target = std::string(req.target());
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        r.headers.emplace_back(std::move(name), std::string(f.value()));
      }
      r.body = req.body();
      {
        std::lock_guard lock(mu_);
        received_.push_back(std::move(r));
      }
      cv_.notify_all();
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.body() = "ok";
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      http::write(socket, res, ec);
      if (ec || !req.keep_alive()) return;
    }
  }

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread accept_thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::shared_ptr<boost::asio::ip::tcp::socket>> sockets_;
  std::vector<std::thread> conn_threads_;
  std::vector<Received> received_;
};

}  // namespace sandbox_test
