#include "herald/key_filter.hpp"

#include <algorithm>

namespace herald {

namespace {

constexpr std::size_t kMinCapacity = 1 << 16;

/// 64-bit FNV-1a over one field, with the field's length mixed in so ("ab","c") differs from ("a","bc").
std::uint64_t mix_field(std::uint64_t h, std::string_view s) noexcept {
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  h ^= s.size() + 0x9e3779b97f4a7c15ULL;
  h *= 0x100000001b3ULL;
  return h;
}

/// A finaliser (splitmix64's) so that both halves of the hash are well spread.
std::uint64_t finish(std::uint64_t h) noexcept {
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

}  // namespace

KeyFilter::KeyFilter(std::size_t expected) { layers_.push_back(make_layer(std::max(kMinCapacity, expected * 2), 0)); }

std::uint64_t KeyFilter::hash(std::string_view tenant, std::string_view type, std::string_view recipient_id,
                              std::string_view key) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  h = mix_field(h, tenant);
  h = mix_field(h, type);
  h = mix_field(h, recipient_id);
  h = mix_field(h, key);
  return finish(h);
}

KeyFilter::Layer KeyFilter::make_layer(std::size_t capacity, int tightening) {
  // Layer i aims at 0.5% × 0.5^i false positives, so all layers together stay under 1%: about
  // 11 + 1.44·i bits per key and 8 + i probes.
  Layer l;
  l.capacity = capacity;
  const double bits_per_key = 11.0 + 1.44 * tightening;
  l.bit_count = std::max<std::uint64_t>(64, static_cast<std::uint64_t>(static_cast<double>(capacity) * bits_per_key));
  l.words.assign((l.bit_count + 63) / 64, 0);
  l.bit_count = l.words.size() * 64;
  l.probes = 8 + tightening;
  return l;
}

void KeyFilter::add(std::uint64_t h) {
  if (layers_.back().count >= layers_.back().capacity) {
    const auto next = static_cast<int>(layers_.size());
    layers_.push_back(make_layer(layers_.back().capacity * 2, next));
  }
  Layer& l = layers_.back();
  const std::uint64_t a = h, b = (h >> 32) | (h << 32) | 1;  // double hashing: a + i·b
  for (int i = 0; i < l.probes; ++i) {
    const std::uint64_t bit = (a + static_cast<std::uint64_t>(i) * b) % l.bit_count;
    l.words[bit / 64] |= std::uint64_t{1} << (bit % 64);
  }
  ++l.count;
  ++keys_;
}

bool KeyFilter::test(const Layer& l, std::uint64_t h) noexcept {
  const std::uint64_t a = h, b = (h >> 32) | (h << 32) | 1;
  for (int i = 0; i < l.probes; ++i) {
    const std::uint64_t bit = (a + static_cast<std::uint64_t>(i) * b) % l.bit_count;
    if ((l.words[bit / 64] & (std::uint64_t{1} << (bit % 64))) == 0) return false;
  }
  return true;
}

bool KeyFilter::may_contain(std::uint64_t h) const noexcept {
  return std::any_of(layers_.begin(), layers_.end(), [h](const Layer& l) { return l.count > 0 && test(l, h); });
}

std::size_t KeyFilter::bytes() const noexcept {
  std::size_t out = 0;
  for (const auto& l : layers_) out += l.words.size() * sizeof(std::uint64_t);
  return out;
}

}  // namespace herald
