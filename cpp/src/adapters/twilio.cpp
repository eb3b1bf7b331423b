#include "adapters.hpp"

#include "herald/errors.hpp"

namespace herald::adapters {

// Placeholder until the twilio adapter lands: refuses the configuration with a clear error.
std::unique_ptr<Adapter> make_twilio(const ProviderConfig& c) {
  throw ConfigError(config_error(c, "kind", "the 'twilio' adapter is not built yet"));
}

}  // namespace herald::adapters
