#pragma once
// Shared by the tests of herald::http::Client: a small HTTP/1.1 server that runs inside the test
// process on 127.0.0.1 (Boost.Asio, one thread, keep-alive, counts accepted connections), a
// collector of answers the test thread waits on, and a few request helpers.
#include <boost/asio.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "herald/http_client.hpp"

namespace http_client_test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using herald::http::Client;
using herald::http::Request;
using herald::http::Response;
using namespace std::chrono_literals;

inline std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

inline std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == s.npos) return {};
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

/// A minimal keep-alive HTTP/1.1 server. Paths:
///   /echo      201, body = request body, echoes method and some request headers back
///   /fast      202, empty body
///   /hang      never answers (holds the connection until the client closes it)
///   /folded    200 with a folded header line, blanks around names and values, an empty value
///   /continue  an unsolicited "100 Continue" with a header, then 200 "ok"
///   /big       200 with a 17 MiB body
class TestServer {
 public:
  TestServer() : acceptor_(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
    accept_next();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestServer() {
    io_.stop();
    thread_.join();
    // Sessions still parked in handlers are destroyed with io_, closing their sockets.
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  [[nodiscard]] std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  [[nodiscard]] std::string url(std::string_view path) const {
    return "http://127.0.0.1:" + std::to_string(port()) + std::string(path);
  }
  [[nodiscard]] std::size_t connections() const { return connections_.load(); }
  [[nodiscard]] std::size_t requests() const { return requests_.load(); }

 private:
  struct Parsed {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
    std::string body;

    [[nodiscard]] std::string header(std::string_view name) const {
      for (const auto& [key, value] : headers) {
        if (key == name) return value;
      }
      return {};
    }
  };

  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(tcp::socket socket, TestServer& server) : socket_(std::move(socket)), server_(server) {}
    void start() { read_more(); }

   private:
    void read_more() {
      socket_.async_read_some(asio::buffer(chunk_),
                              [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                                if (ec) return;  // peer closed: the session ends with its last handler
                                self->input_.append(self->chunk_.data(), n);
                                self->try_handle();
                              });
    }

    /// Keeps the connection open without answering until the client hangs up.
    void hold() {
      socket_.async_read_some(asio::buffer(chunk_),
                              [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                                if (!ec) self->hold();
                              });
    }

    void try_handle() {
      const auto head_end = input_.find("\r\n\r\n");
      if (head_end == input_.npos) return read_more();
      Parsed request;
      std::string_view head(input_.data(), head_end);
      std::size_t line_end = head.find("\r\n");
      const std::string_view request_line = head.substr(0, line_end);
      const auto sp1 = request_line.find(' ');
      const auto sp2 = request_line.find(' ', sp1 + 1);
      request.method = std::string(request_line.substr(0, sp1));
      request.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
      while (line_end != head.npos) {
        const std::size_t next = head.find("\r\n", line_end + 2);
        const std::string_view line = head.substr(line_end + 2, next == head.npos ? head.npos : next - line_end - 2);
        if (const auto colon = line.find(':'); colon != line.npos) {
          request.headers.emplace_back(lower(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
        }
        line_end = next;
      }
      const std::string length_text = request.header("content-length");
      const std::size_t length = length_text.empty() ? 0 : std::stoul(length_text);
      if (input_.size() < head_end + 4 + length) return read_more();
      request.body = input_.substr(head_end + 4, length);
      input_.erase(0, head_end + 4 + length);
      server_.requests_.fetch_add(1);
      respond(request);
    }

    void respond(const Parsed& request) {
      std::string out;
      if (request.target == "/hang") return hold();
      if (request.target == "/echo") {
        out = "HTTP/1.1 201 Created\r\nX-Test-Header: Value\r\nContent-Type: text/plain\r\n";
        out += "X-Method: " + request.method + "\r\n";
        out += "X-Seen-Authorization: " + request.header("authorization") + "\r\n";
        out += "X-Seen-Custom: " + request.header("x-custom") + "\r\n";
        out += "X-Seen-Expect: " + request.header("expect") + "\r\n";
        out += "Content-Length: " + std::to_string(request.body.size()) + "\r\n\r\n" + request.body;
      } else if (request.target == "/chunked") {
        out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Chunked: yes\r\n\r\n"
              "7\r\nhello, \r\n5;ext=1\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n";
      } else if (request.target == "/fast") {
        out = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
      } else if (request.target == "/folded") {
        out = "HTTP/1.1 200 OK\r\nX-Folded: first\r\n \t second\r\nX-Padded \t:  \t padded value \t\r\n"
              "X-Empty:\r\nContent-Length: 0\r\n\r\n";
      } else if (request.target == "/folded-strict") {  // as /folded, without the blanks before a colon
        out = "HTTP/1.1 200 OK\r\nX-Folded: first\r\n \t second\r\nX-Padded:  \t padded value \t\r\n"
              "X-Empty:\r\nContent-Length: 0\r\n\r\n";
      } else if (request.target == "/continue") {
        out = "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
              "HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok";
      } else if (request.target == "/big") {
        const std::size_t size = std::size_t{17} << 20;
        out = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n";
        out.append(size, 'b');
      } else {
        out = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
      }
      // "/then-close": a keep-alive answer after which the server ends the connection anyway, as
      // one whose idle timeout ran out does (the client learns it only when it uses it again).
      const bool close_after = request.target == "/then-close";
      if (close_after) {
        out = "HTTP/1.1 202 Accepted\r\nContent-Length: " + std::to_string(request.body.size()) + "\r\n\r\n" +
              request.body;
      }
      auto buffer = std::make_shared<std::string>(std::move(out));
      asio::async_write(socket_, asio::buffer(*buffer),
                        [self = shared_from_this(), buffer, close_after](boost::system::error_code ec, std::size_t) {
                          if (ec) return;
                          if (close_after) {
                            self->socket_.close(ec);
                            return;
                          }
                          self->try_handle();  // next request on the same connection
                        });
    }

    tcp::socket socket_;
    TestServer& server_;  // outlives every session: sessions die with io_, inside the server
    std::array<char, 8192> chunk_{};
    std::string input_;
  };

  void accept_next() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        connections_.fetch_add(1);
        socket.set_option(tcp::no_delay(true));
        std::make_shared<Session>(std::move(socket), *this)->start();
      }
      accept_next();
    });
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<std::size_t> connections_{0};
  std::atomic<std::size_t> requests_{0};
  std::thread thread_;
};

/// Collects responses from the client thread; the test thread waits on it.
class Collector {
 public:
  herald::http::Callback callback() {
    return [this](Response&& response) {
      // Why the lock: the client thread appends while the test thread waits and reads.
      std::lock_guard lock(mutex_);
      responses_.push_back(std::move(response));
      changed_.notify_all();
    };
  }
  bool wait_for(std::size_t count, std::chrono::milliseconds timeout = 30s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return responses_.size() >= count; });
  }
  std::vector<Response> take() {
    std::lock_guard lock(mutex_);
    return std::move(responses_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Response> responses_;
};

/// A loopback port with nothing listening on it.
inline std::uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const auto port = acceptor.local_endpoint().port();
  acceptor.close();
  return port;
}

inline Request post(std::string url, std::string body = {}) {
  Request request;
  request.url = std::move(url);
  request.body = std::move(body);
  return request;
}

/// Options that send plain http:// by Beast (the default) or by libcurl: some tests run on both.
inline Client::Options plain_http_on(bool beast) {
  Client::Options options;
  options.http1_on_beast = beast;
  return options;
}
inline const char* client_name(bool beast) { return beast ? "plain http:// on Beast" : "plain http:// on libcurl"; }

}  // namespace http_client_test
