#include "adapters.hpp"

#include "herald/errors.hpp"

namespace herald::adapters {

// Placeholder until the sendgrid adapter lands: refuses the configuration with a clear error.
std::unique_ptr<Adapter> make_sendgrid(const ProviderConfig& c) {
  throw ConfigError(config_error(c, "kind", "the 'sendgrid' adapter is not built yet"));
}

}  // namespace herald::adapters
