#pragma once
/// A fast reader for the JSON the loop reads once per notification (a provider's answer, the
/// notification's data): the top level of an object, when the text is simple. Simple means ASCII
/// strings without escapes, integers of at most 18 digits (no fraction, no exponent), and at most
/// 64 levels of nesting. Every simple text is valid JSON that nlohmann reads the same way; for any
/// other text (or an invalid one) the reader says "not simple" and the caller parses it with
/// nlohmann as before, which decides. So the answers never differ, only their cost.
#include <cstddef>
#include <string_view>

namespace herald::detail {

class SimpleJson {
 public:
  /// Calls `member(key, value, is_string)` for each member of the top-level object, in order (a
  /// repeated key: once per occurrence); `value` is the text of a string value, or empty for any
  /// other value. False when the text is not a simple object: the members seen so far mean nothing.
  template <class Member>
  static bool object_members(std::string_view text, Member&& member) {
    SimpleJson r{text};
    r.ws();
    if (!r.take('{')) return false;
    r.ws();
    if (!r.take('}')) {
      for (;;) {
        std::string_view key;
        if (!r.string(key)) return false;
        r.ws();
        if (!r.take(':')) return false;
        r.ws();
        std::string_view value;
        bool is_string = false;
        if (r.peek() == '"') {
          if (!r.string(value)) return false;
          is_string = true;
        } else if (!r.value(1)) {
          return false;
        }
        member(key, value, is_string);
        r.ws();
        if (r.take('}')) break;
        if (!r.take(',')) return false;
        r.ws();
      }
    }
    r.ws();
    return r.at_ == r.text_.size();
  }

 private:
  explicit SimpleJson(std::string_view text) : text_(text) {}

  [[nodiscard]] char peek() const { return at_ < text_.size() ? text_[at_] : '\0'; }
  bool take(char c) {
    if (peek() != c || at_ >= text_.size()) return false;
    ++at_;
    return true;
  }
  void ws() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r')) {
      ++at_;
    }
  }
  bool literal(std::string_view word) {
    if (text_.substr(at_, word.size()) != word) return false;
    at_ += word.size();
    return true;
  }
  bool string(std::string_view& out) {
    if (!take('"')) return false;
    const std::size_t start = at_;
    for (; at_ < text_.size(); ++at_) {
      const auto c = static_cast<unsigned char>(text_[at_]);
      if (c == '"') {
        out = text_.substr(start, at_ - start);
        ++at_;
        return true;
      }
      if (c < 0x20 || c > 0x7e || c == '\\') return false;  // escapes, control bytes, UTF-8: not simple
    }
    return false;
  }
  bool number() {
    take('-');
    const std::size_t start = at_;
    while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
    const std::size_t digits = at_ - start;
    if (digits == 0 || digits > 18 || (digits > 1 && text_[start] == '0')) return false;
    const char next = peek();
    return next != '.' && next != 'e' && next != 'E';  // a fraction or an exponent: not simple
  }
  bool value(int depth) {
    if (depth > 64) return false;
    std::string_view ignored;
    switch (peek()) {
      case '"': return string(ignored);
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      case '{': {
        ++at_;
        ws();
        if (take('}')) return true;
        for (;;) {
          if (!string(ignored)) return false;
          ws();
          if (!take(':')) return false;
          ws();
          if (!value(depth + 1)) return false;
          ws();
          if (take('}')) return true;
          if (!take(',')) return false;
          ws();
        }
      }
      case '[': {
        ++at_;
        ws();
        if (take(']')) return true;
        for (;;) {
          if (!value(depth + 1)) return false;
          ws();
          if (take(']')) return true;
          if (!take(',')) return false;
          ws();
        }
      }
      default: return number();
    }
  }

  std::string_view text_;
  std::size_t at_ = 0;
};

}  // namespace herald::detail
