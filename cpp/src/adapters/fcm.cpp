#include "adapters.hpp"

#include "herald/errors.hpp"

namespace herald::adapters {

// Placeholder until the fcm adapter lands: refuses the configuration with a clear error.
std::unique_ptr<Adapter> make_fcm(const ProviderConfig& c) {
  throw ConfigError(config_error(c, "kind", "the 'fcm' adapter is not built yet"));
}

}  // namespace herald::adapters
