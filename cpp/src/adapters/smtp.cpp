#include "adapters.hpp"

#include "herald/errors.hpp"

namespace herald::adapters {

// Placeholder until the smtp adapter lands: refuses the configuration with a clear error.
std::unique_ptr<Adapter> make_smtp(const ProviderConfig& c) {
  throw ConfigError(config_error(c, "kind", "the 'smtp' adapter is not built yet"));
}

}  // namespace herald::adapters
