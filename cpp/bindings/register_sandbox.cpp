#include "pybind.hpp"

#include "herald/errors.hpp"
#include "herald/sandbox.hpp"

#include <chrono>
#include <cstdint>

namespace herald::bindings {

namespace {

/// Owns the server; stopping joins its threads, which never need the GIL.
struct PySandbox {
  std::unique_ptr<sandbox::Server> server;

  sandbox::Server& get() {
    if (!server) throw EngineClosed("sandbox is stopped");
    return *server;
  }
  ~PySandbox() {
    if (!server) return;
    py::gil_scoped_release release;
    server.reset();
  }
};

nlohmann::json to_nlohmann(py::handle obj) {
  return nlohmann::json::parse(to_json(obj, "faults"));
}

}  // namespace

void register_sandbox(py::module_& m) {
  py::class_<PySandbox>(m, "Sandbox")
      .def(py::init([](const std::string& host, std::uint16_t port, unsigned threads, std::uint64_t seed,
                       const std::string& signing_secret, int h2c_port) {
             if (h2c_port < -1 || h2c_port > 65535) throw ValidationError("h2c_port", "must be -1 (off) or 0..65535");
             sandbox::Server::Options o;
             o.host = host;
             o.port = port;
             o.threads = threads;
             o.seed = seed;
             o.signing_secret = signing_secret;
             o.h2c_port = h2c_port;
             auto holder = std::make_unique<PySandbox>();
             py::gil_scoped_release release;
             holder->server = std::make_unique<sandbox::Server>(o);
             return holder;
           }),
           py::arg("host") = "127.0.0.1", py::arg("port") = 0, py::arg("threads") = 1, py::arg("seed") = 42,
           py::arg("signing_secret") = "sandbox-secret", py::arg("h2c_port") = -1)
      .def_property_readonly("port", [](PySandbox& s) { return s.get().port(); })
      .def_property_readonly("url", [](PySandbox& s) { return s.get().url(); })
      .def_property_readonly("h2c_port", [](PySandbox& s) { return s.get().h2c_port(); })
      .def_property_readonly("h2c_url", [](PySandbox& s) { return s.get().h2c_url(); })
      .def("keys", [](PySandbox& s) { return from_json(s.get().keys()); })
      .def(
          "set_callbacks",
          [](PySandbox& s, const std::string& service, bool enabled, std::int64_t delay_ms, const std::string& url) {
            if (delay_ms < 0 || delay_ms > 86'400'000) throw ValidationError("delay_ms", "must be between 0 and 86400000");
            sandbox::Server::Callbacks c;
            c.enabled = enabled;
            c.delay = std::chrono::milliseconds(delay_ms);
            c.url = url;
            s.get().set_callbacks(service, c);
          },
          py::arg("service"), py::arg("enabled") = true, py::arg("delay_ms") = 50, py::arg("url") = "")
      .def("set_faults",
           [](PySandbox& s, const std::string& provider, const py::dict& faults) {
             sandbox::Faults f;
             try {
               f = sandbox::Faults::from_json(to_nlohmann(faults));
             } catch (const std::invalid_argument& e) {
               const std::string what = e.what();
               const auto colon = what.find(':');
               throw ValidationError(colon == std::string::npos ? "faults" : what.substr(0, colon),
                                     colon == std::string::npos ? what : what.substr(colon + 2));
             }
             s.get().set_faults(provider, f);
           },
           py::arg("provider"), py::arg("faults"))
      .def("clear_faults", [](PySandbox& s) { s.get().clear_faults(); })
      .def("messages",
           [](PySandbox& s, const std::string& provider) { return from_json(s.get().messages(provider)); },
           py::arg("provider") = "")
      .def("stats", [](PySandbox& s) { return from_json(s.get().stats()); })
      .def("clear", [](PySandbox& s) { s.get().clear(); })
      .def("stop", [](PySandbox& s) {
        if (!s.server) return;
        py::gil_scoped_release release;
        s.server.reset();
      });
}

}  // namespace herald::bindings
