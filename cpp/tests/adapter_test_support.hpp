#pragma once
// Shared by the provider adapter tests: a crafted provider answer, and the error text a
// configuration gets from make_adapter (or "<no error>" when it is accepted).
#include <string>
#include <utility>
#include <vector>

#include "herald/errors.hpp"
#include "herald/provider.hpp"

namespace herald::adapter_test {

inline http::Response answer(long status, std::string body = {},
                             std::vector<std::pair<std::string, std::string>> headers = {}) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

inline std::string config_error_of(const ProviderConfig& c) {
  try {
    (void)make_adapter(c);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace herald::adapter_test
