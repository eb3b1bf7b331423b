#pragma once
/// "Could this idempotency key be in the store?", answered from memory. A "no" is certain, so a
/// new key (the common case) is accepted without a store read; a "maybe" (every stored key, and
/// about 1 in 100 of the others) is looked up as before.
///
/// A scalable Bloom filter: layers of growing capacity, each with a tighter false-positive rate
/// so the total stays near 1%; keys go into the newest layer, a query asks every layer. Keys are
/// never removed (a pruned or forgotten key only costs a store read).
#include <cstdint>
#include <string_view>
#include <vector>

namespace herald {

class KeyFilter {
 public:
  /// `expected`: keys to size the first layer for (those already in the store).
  explicit KeyFilter(std::size_t expected = 0);

  /// The hash the filter works on: of a key's tenant, type, recipient and key.
  [[nodiscard]] static std::uint64_t hash(std::string_view tenant, std::string_view type, std::string_view recipient_id,
                                          std::string_view key) noexcept;

  void add(std::uint64_t h);
  [[nodiscard]] bool may_contain(std::uint64_t h) const noexcept;

  [[nodiscard]] std::size_t keys() const noexcept { return keys_; }
  [[nodiscard]] std::size_t layers() const noexcept { return layers_.size(); }
  [[nodiscard]] std::size_t bytes() const noexcept;

 private:
  struct Layer {
    std::vector<std::uint64_t> words;
    std::uint64_t bit_count = 0;
    std::size_t capacity = 0;
    std::size_t count = 0;
    int probes = 0;
  };
  static Layer make_layer(std::size_t capacity, int tightening);
  static bool test(const Layer& l, std::uint64_t h) noexcept;

  std::vector<Layer> layers_;
  std::size_t keys_ = 0;
};

}  // namespace herald
