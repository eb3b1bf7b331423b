#include "pybind.hpp"

#include "herald/api_server.hpp"
#include "herald/engine.hpp"
#include "herald/errors.hpp"

/// herald._core.ApiServer: `herald serve`'s HTTP API over a running herald._core.Engine. Requests are
/// answered in C++ (api.cpp) on the server's threads and a worker pool: no Python, no GIL on that path.
namespace herald::bindings {

namespace {

/// Owns the server. Why a holder: stopping joins the workers, which may wait for the engine, whose
/// loop may wait for the GIL inside the router; so the GIL is released around stop and destruction.
struct PyApiServer {
  std::unique_ptr<api::ApiServer> server;

  void stop() {
    if (!server) return;
    py::gil_scoped_release release;
    server->stop();
  }
  ~PyApiServer() {
    if (!server) return;
    py::gil_scoped_release release;
    server.reset();
  }
};

}  // namespace

void register_serve(py::module_& m) {
  py::class_<PyApiServer>(m, "ApiServer",
                          "The HTTP API of herald serve over an engine. Drain or stop it before closing the engine.")
      .def(py::init([](const py::object& engine, const py::object& host, const py::object& port,
                       const py::list& key_sha256_hex, const py::object& max_body_bytes, const py::object& workers,
                       const py::object& openapi_json) {
             constexpr auto config = ErrorKind::config;
             api::ApiServerOptions o;
             o.http.host = to_text(host, "serve.listen", config);
             o.http.port = static_cast<std::uint16_t>(to_int(port, "serve.listen", 0, 65'535, config));
             o.http.max_body_bytes = static_cast<std::size_t>(to_int(max_body_bytes, "serve.max_body_bytes", 1, std::int64_t{1} << 30, config));
             o.workers = static_cast<unsigned>(to_int(workers, "serve.workers", 1, 256, config));
             std::size_t i = 0;
             for (py::handle h : key_sha256_hex) {
               // Checked in place: GCC 12's LTO pass reports a false -Wstringop-overread when a string
               // whose size it knows (64) is moved into the vector after the check.
               const std::string& hex =
                   o.key_sha256_hex.emplace_back(to_text(h, "serve.api_keys[" + std::to_string(i++) + "]", config));
               if (hex.size() != 64) throw ConfigError("serve.api_keys", "must be SHA-256 hashes in hex");
             }
             if (o.key_sha256_hex.empty()) throw ConfigError("serve.api_keys", "must name at least one key");
             if (!openapi_json.is_none()) o.openapi_json = to_text(openapi_json, "openapi_json", config);
             Engine& e = core_engine(engine);
             auto holder = std::make_unique<PyApiServer>();
             py::gil_scoped_release release;  // binding and starting threads need no Python
             try {
               holder->server = std::make_unique<api::ApiServer>(e, std::move(o));
             } catch (const Error&) {
               throw;
             } catch (const std::runtime_error& err) {
               throw Error(std::string("the API server could not start: ") + err.what());
             }
             return holder;
           }),
           py::arg("engine"), py::arg("host"), py::arg("port"), py::arg("key_sha256_hex"),
           py::arg("max_body_bytes") = 1 << 20, py::arg("workers") = 8,
           py::arg("openapi_json") = py::none(), py::keep_alive<1, 2>())
      .def_property_readonly("url", [](PyApiServer& self) { return self.server ? self.server->url() : std::string(); })
      .def_property_readonly("port", [](PyApiServer& self) { return self.server ? self.server->port() : 0; })
      .def("drain",
           [](PyApiServer& self) {
             if (!self.server) return;
             py::gil_scoped_release release;  // waits for engine calls in progress
             self.server->drain();
           })
      .def("stop", [](PyApiServer& self) { self.stop(); });
}

}  // namespace herald::bindings
