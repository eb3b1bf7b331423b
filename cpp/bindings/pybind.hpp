#pragma once
/// Included first by every binding file, so that every translation unit sees the same pybind11
/// headers, type casters and helpers.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "herald/retention.hpp"
#include "herald/store.hpp"

namespace py = pybind11;

namespace herald {
class Engine;
}  // namespace herald

namespace herald::bindings {

/// Which herald error a failed conversion raises: ValidationError for what is sent, ConfigError for
/// how the engine is set up.
enum class ErrorKind { validation, config };

/// Throws the ValidationError or ConfigError (per `kind`) for `field` and `reason`.
[[noreturn]] void fail(ErrorKind kind, std::string field, const std::string& reason);

// -- text (text_convert.cpp) ---------------------------------------------------------------------
// Every Python str that carries user data into the core goes through these, never through an
// implicit std::string cast: a str with a lone surrogate has no UTF-8 form, and the error must name
// the field instead of surfacing as pybind11's "Unable to cast".

/// The UTF-8 text of a str (valid while `value` lives). Throws naming `field`: "must be a string"
/// for any other type, "must be valid UTF-8 text (lone surrogate at index N)" for a lone surrogate.
std::string_view text_view(py::handle value, std::string_view field, ErrorKind kind = ErrorKind::validation);
/// As text_view, copied.
std::string to_text(py::handle value, std::string_view field, ErrorKind kind = ErrorKind::validation);
/// Index of the first lone surrogate in a str, or -1 when it has none.
Py_ssize_t lone_surrogate_at(py::handle str);
/// The reason text_view gives for a lone surrogate at `index`.
std::string surrogate_reason(Py_ssize_t index);
/// str(value) for messages and field paths; never throws. A lone surrogate reads as \udcXX.
std::string display_text(py::handle value);
/// As display_text, cut to about `limit` bytes with "..." (for echoing values in messages).
std::string brief_text(py::handle value, std::size_t limit = 40);
/// C++ text as a Python str; bytes that are not UTF-8 read as \xNN, so this never throws.
py::str to_py_text(std::string_view text);

// -- numbers (number_convert.cpp) ----------------------------------------------------------------

/// An int (or an object with __index__; never a bool) from `min` to `max`. Throws naming `field`:
/// "must be an integer from <min> to <max>".
std::int64_t to_int(py::handle value, std::string_view field, std::int64_t min, std::int64_t max,
                    ErrorKind kind = ErrorKind::validation);
/// An int from 0 to 2**64-1 (never a bool).
std::uint64_t to_uint64(py::handle value, std::string_view field, ErrorKind kind = ErrorKind::validation);
/// A finite int or float (never a bool) from `min` to `max`; `max` may be infinity (no upper bound).
double to_number(py::handle value, std::string_view field, double min, double max,
                 ErrorKind kind = ErrorKind::validation);
/// Epoch milliseconds from None (0), int/float epoch seconds, an aware datetime, or a timedelta
/// (relative to now). The time must fall from 1970-01-01 to 9999-12-31 (max_epoch_s). Throws
/// ValidationError naming `field`.
/// A timedelta counts from `now` (ms since the epoch; 0 = the system clock).
std::int64_t to_epoch_ms(py::handle value, std::string_view field, std::int64_t now = 0);

// -- JSON (json_convert.cpp) ---------------------------------------------------------------------

/// Serialises a Python value (dict, list, tuple, str, int, float, bool, None; datetime/date as ISO
/// text) as compact JSON. Throws herald::ValidationError naming the field down to the item
/// (`data.a.b[3]`) for anything else, for an object that contains itself, for nesting deeper than
/// max_payload_depth (64) levels, and — as soon as the text passes it, before building the rest —
/// for output larger than max_payload_bytes (256 KiB; this error names `field`).
std::string to_json(py::handle value, std::string_view field);
/// Appends to `out`; same rules as to_json. `path` holds the field name on entry and on return.
void append_json(std::string& out, py::handle value, std::string& path);
/// Parsed JSON to Python objects.
py::object from_json(const nlohmann::json& j);
/// JSON text to Python objects (invalid text gives None).
py::object from_json_text(const std::string& text);

void register_errors(py::module_& m);
void register_engine(py::module_& m);
void register_sandbox(py::module_& m);
void register_bench(py::module_& m);
void register_retention(py::module_& m);
void register_reader(py::module_& m);
void register_serve(py::module_& m);
void register_clock(py::module_& m);
void register_kinds(py::module_& m);
void register_cascade(py::module_& m);

/// The C++ engine of a herald._core.Engine (register_engine.cpp), for the API server. Throws
/// EngineClosed once it is closed. The caller must stop using it before the engine is closed.
herald::Engine& core_engine(py::handle engine);

// -- rows as Python dicts (row_dicts.cpp), the same for the engine and the read-only store ------

/// Epoch seconds, or None for 0.
py::object ms_to_seconds(std::int64_t ms);
py::dict status_dict(const StoredNotification& s);
py::dict event_dict(const Event& e);
py::dict suppression_dict(const Suppression& x);

// -- retention and health (register_retention.cpp) ------------------------------------------------

/// Retention limits from the Engine's options (milliseconds and bytes), range-checked by name.
RetentionOptions to_retention(const py::object& max_age_ms, const py::object& max_db_bytes,
                              const py::object& log_max_age_ms, const py::object& log_max_bytes,
                              const py::object& interval_ms);
py::dict prune_report_dict(const PruneReport& r);
py::dict store_health_dict(const StoreHealth& h);

}  // namespace herald::bindings
