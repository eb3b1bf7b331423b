#pragma once
/// Included first by every binding file, so that every translation unit sees the same pybind11
/// headers, type casters and helpers.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace py = pybind11;

namespace herald::bindings {

/// Serialises a Python value (dict, list, tuple, str, int, float, bool, None; datetime/date as ISO
/// text) as compact JSON. Throws herald::ValidationError naming `field` for anything else.
std::string to_json(py::handle value, std::string_view field);
/// Appends to `out`; same rules as to_json.
void append_json(std::string& out, py::handle value, std::string& path);
/// Parsed JSON to Python objects.
py::object from_json(const nlohmann::json& j);
/// JSON text to Python objects (invalid text gives None).
py::object from_json_text(const std::string& text);

/// Epoch milliseconds from None (0), int/float epoch seconds, an aware datetime, or a timedelta
/// (relative to now). Throws ValidationError naming `field`.
std::int64_t to_epoch_ms(py::handle value, std::string_view field);

void register_errors(py::module_& m);
void register_engine(py::module_& m);
void register_sandbox(py::module_& m);
void register_bench(py::module_& m);

}  // namespace herald::bindings
