#pragma once
/// One exception hierarchy for the core; the bindings map each class to a named Python exception.
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace herald {

namespace detail {
/// `text` with every NUL byte written as the four characters `\x00`. Why: what() is a C string, so
/// a NUL taken from user input would otherwise cut the message short wherever it is read.
[[nodiscard]] inline std::string escape_nul(std::string text) {
  for (std::size_t at = text.find('\0'); at != std::string::npos; at = text.find('\0', at + 4)) {
    text.replace(at, 1, "\\x00");
  }
  return text;
}
}  // namespace detail

/// Base of every error the core raises on purpose. The message is kept whole: a NUL byte in it
/// reads as `\x00`.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(detail::escape_nul(what)) {}
  explicit Error(const char* what) : Error(std::string(what)) {}
};

/// Bad input. what() is "<field>: <reason>"; field() names the offending field.
class ValidationError : public Error {
 public:
  ValidationError(std::string field, const std::string& reason)
      : Error(field + ": " + reason), field_(std::move(field)) {}
  [[nodiscard]] const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

/// A repeat of an idempotency key with different content.
class IdempotencyConflict : public Error {
 public:
  using Error::Error;
};

/// An id the engine does not know.
class NotFound : public Error {
 public:
  using Error::Error;
};

/// An operation that the notification's current state does not allow (e.g. retry of a completed one).
class InvalidState : public Error {
 public:
  using Error::Error;
};

/// A bad engine or provider configuration, found at start. what() names the provider and field.
/// Built from (field, reason), what() is "<field>: <reason>" and field() names the field; built
/// from one text, field() is empty.
class ConfigError : public Error {
 public:
  using Error::Error;
  ConfigError(std::string field, const std::string& reason)
      : Error(field + ": " + reason), field_(std::move(field)) {}
  [[nodiscard]] const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

/// The durable store failed (disk full, corrupt file, ...).
class StoreError : public Error {
 public:
  using Error::Error;
};

/// The engine is closed or closing.
class EngineClosed : public Error {
 public:
  using Error::Error;
};

}  // namespace herald
