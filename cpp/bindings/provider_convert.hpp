#pragma once
/// A provider's configuration dict from Python (Engine(providers=...)) as a herald::ProviderConfig
/// (provider_convert.cpp).
#include "pybind.hpp"

#include <cstddef>

#include "herald/provider.hpp"

namespace herald::bindings {

/// One provider's dict. Every key and text is checked (a lone surrogate is a ConfigError naming
/// the field); secrets are named in errors by key only, their values never reach a message.
ProviderConfig to_provider(py::handle entry, std::size_t index);

}  // namespace herald::bindings
