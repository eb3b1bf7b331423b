#pragma once
/// One exception hierarchy for the core; the bindings map each class to a named Python exception.
#include <stdexcept>
#include <string>

namespace herald {

/// Base of every error the core raises on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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
class ConfigError : public Error {
 public:
  using Error::Error;
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
