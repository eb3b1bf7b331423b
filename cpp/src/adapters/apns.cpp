#include "adapters.hpp"

#include "herald/errors.hpp"

namespace herald::adapters {

// Placeholder until the apns adapter lands: refuses the configuration with a clear error.
std::unique_ptr<Adapter> make_apns(const ProviderConfig& c) {
  throw ConfigError(config_error(c, "kind", "the 'apns' adapter is not built yet"));
}

}  // namespace herald::adapters
