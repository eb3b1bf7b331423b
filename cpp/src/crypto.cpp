// Hashes, MACs, encodings and signatures over OpenSSL 3.0 libcrypto (EVP_* APIs only).
#include "herald/crypto.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <climits>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace herald::crypto {

namespace detail {
namespace {  // internal linkage: nothing here is part of the interface

struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* s) const noexcept { ECDSA_SIG_free(s); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;

const unsigned char* bytes(std::string_view s) noexcept {
  return reinterpret_cast<const unsigned char*>(s.data());
}

/// Drops OpenSSL's thread-local error queue and throws; the queue's text is never used, since
/// it can quote input (and some inputs are keys).
[[noreturn]] void fail(const char* what) {
  ERR_clear_error();
  throw std::runtime_error(what);
}

/// A read-only memory BIO over `s`; the BIO borrows `s`, which must outlive it.
BioPtr memory_bio(std::string_view s) {
  if (s.size() > static_cast<std::size_t>(INT_MAX)) throw std::invalid_argument("input too large");
  BioPtr bio(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
  if (!bio) fail("BIO_new_mem_buf failed");
  return bio;
}

/// Refuses a passphrase prompt: without it, an encrypted PEM would make OpenSSL read the terminal.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

std::string hmac(const char* digest, std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  std::size_t out_len = 0;
  // A zero-length key still needs a non-null pointer for the HMAC provider.
  static const unsigned char empty_key = 0;
  const unsigned char* key_ptr = key.empty() ? &empty_key : bytes(key);
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, digest, nullptr, key_ptr, key.size(), bytes(data), data.size(),
                out.data(), out.size(), &out_len) == nullptr) {
    fail("HMAC failed");
  }
  return {reinterpret_cast<const char*>(out.data()), out_len};
}

bool is_ec_p256(EVP_PKEY* pkey) noexcept {
  if (pkey == nullptr || EVP_PKEY_is_a(pkey, "EC") != 1) return false;
  std::array<char, 64> name{};
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(pkey, name.data(), name.size(), &len) != 1) {
    ERR_clear_error();
    return false;
  }
  const std::string_view group(name.data(), len);
  return group == "prime256v1" || group == "P-256" || group == "secp256r1";
}

std::string digest_sign(EVP_PKEY* pkey, std::string_view data) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) fail("EVP_MD_CTX_new failed");
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey) != 1) fail("signing setup failed");
  std::size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, bytes(data), data.size()) != 1) fail("signing failed");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, bytes(data), data.size()) != 1) {
    fail("signing failed");
  }
  sig.resize(len);
  return sig;
}

/// DER ECDSA-Sig-Value -> fixed 64-byte r||s (RFC 7518 section 3.4).
std::string der_to_jose(std::string_view der) {
  const unsigned char* p = bytes(der);
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) fail("malformed ECDSA signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string out(64, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (BN_bn2binpad(r, o, 32) != 32 || BN_bn2binpad(s, o + 32, 32) != 32) fail("ECDSA signature too long");
  return out;
}

std::string_view trim(std::string_view s) noexcept {
  constexpr std::string_view ws = " \t\r\n";
  const auto first = s.find_first_not_of(ws);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(ws);
  return s.substr(first, last - first + 1);
}

/// Parses a public key from PEM or base64 DER SubjectPublicKeyInfo; null on failure.
PkeyPtr parse_public_key(std::string_view text) {
  text = trim(text);
  if (text.starts_with("-----BEGIN")) {
    auto bio = memory_bio(text);
    return PkeyPtr(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
  }
  std::string der;
  try {
    der = base64_decode(text);
  } catch (const std::invalid_argument&) {
    return nullptr;
  }
  const unsigned char* p = bytes(der);
  PkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key && p != bytes(der) + der.size()) return nullptr;  // trailing bytes after the SPKI
  return key;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode64(std::string_view in, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  const std::size_t rest = in.size() - i;
  if (rest == 1) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    if (pad) out += '=';
  }
  return out;
}

int decode64_char(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

bool unreserved(unsigned char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// %XX becomes a byte (and '+' a space when asked); a '%' not followed by two hex digits stays literal.
std::string form_unescape(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '+' && plus_is_space) {
      out += ' ';
    } else if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace
}  // namespace detail

std::string sha256(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1) {
    detail::fail("SHA-256 failed");
  }
  return {reinterpret_cast<const char*>(out.data()), len};
}

std::string hmac_sha1(std::string_view key, std::string_view data) { return detail::hmac("SHA1", key, data); }

std::string hmac_sha256(std::string_view key, std::string_view data) { return detail::hmac("SHA256", key, data); }

std::string base64(std::string_view bytes) { return detail::encode64(bytes, detail::kB64, true); }

std::string base64url(std::string_view bytes) { return detail::encode64(bytes, detail::kB64Url, false); }

std::string base64_decode(std::string_view text) {
  std::size_t end = text.size();
  std::size_t padding = 0;
  while (end > 0 && text[end - 1] == '=') {
    --end;
    ++padding;
  }
  if (padding > 2 || (padding > 0 && text.size() % 4 != 0)) throw std::invalid_argument("bad base64 padding");
  if (end % 4 == 1) throw std::invalid_argument("bad base64 length");
  std::string out;
  out.reserve(end / 4 * 3 + 2);
  unsigned acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < end; ++i) {
    const int v = detail::decode64_char(text[i]);
    if (v < 0) throw std::invalid_argument("bad base64 character");
    acc = ((acc << 6) | static_cast<unsigned>(v)) & 0xFFFFFFu;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFFu);
    }
  }
  return out;
}

std::string hex(std::string_view bytes) {
  constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string form_encode(std::string_view s) {
  constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (detail::unreserved(c)) {
      out += ch;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::string percent_decode(std::string_view s, bool plus_is_space) { return detail::form_unescape(s, plus_is_space); }

std::vector<std::pair<std::string, std::string>> form_decode(std::string_view body) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!body.empty()) {
    const auto amp = body.find('&');
    const std::string_view part = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    if (part.empty()) continue;  // "a=1&&b=2"
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) {
      out.emplace_back(detail::form_unescape(part, true), std::string{});
    } else {
      out.emplace_back(detail::form_unescape(part.substr(0, eq), true), detail::form_unescape(part.substr(eq + 1), true));
    }
  }
  return out;
}

// --- PrivateKey ---------------------------------------------------------------

PrivateKey::PrivateKey(std::string_view pem) {
  auto bio = detail::memory_bio(pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, detail::no_passphrase, nullptr);
  // The error queue may hold fragments of the input; it is cleared, never reported.
  ERR_clear_error();
  if (key == nullptr) throw std::invalid_argument("not a PEM private key");
  pkey_ = key;
}

PrivateKey::~PrivateKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

PrivateKey::PrivateKey(PrivateKey&& other) noexcept : pkey_(std::exchange(other.pkey_, nullptr)) {}

PrivateKey& PrivateKey::operator=(PrivateKey&& other) noexcept {
  if (this != &other) {
    EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_));
    pkey_ = std::exchange(other.pkey_, nullptr);
  }
  return *this;
}

bool PrivateKey::is_rsa() const noexcept {
  return pkey_ != nullptr && EVP_PKEY_is_a(static_cast<EVP_PKEY*>(pkey_), "RSA") == 1;
}

bool PrivateKey::is_ec_p256() const noexcept { return detail::is_ec_p256(static_cast<EVP_PKEY*>(pkey_)); }

std::string PrivateKey::sign_rs256(std::string_view data) const {
  if (!is_rsa()) throw std::invalid_argument("RS256 needs an RSA key");
  return detail::digest_sign(static_cast<EVP_PKEY*>(pkey_), data);
}

std::string PrivateKey::sign_es256(std::string_view data, bool jose) const {
  if (!is_ec_p256()) throw std::invalid_argument("ES256 needs an EC P-256 key");
  std::string der = detail::digest_sign(static_cast<EVP_PKEY*>(pkey_), data);
  return jose ? detail::der_to_jose(der) : der;
}

std::string PrivateKey::public_key_base64() const {
  auto* pkey = static_cast<EVP_PKEY*>(pkey_);
  if (pkey == nullptr) throw std::logic_error("moved-from PrivateKey");
  const int len = i2d_PUBKEY(pkey, nullptr);
  if (len <= 0) detail::fail("i2d_PUBKEY failed");
  std::string der(static_cast<std::size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_PUBKEY(pkey, &p) != len) detail::fail("i2d_PUBKEY failed");
  return base64(der);
}

// --- verification, JWT, key generation ------------------------------------------

bool verify_es256_der(std::string_view public_key, std::string_view data, std::string_view der_signature) {
  const auto key = detail::parse_public_key(public_key);
  if (!key || !detail::is_ec_p256(key.get())) {
    ERR_clear_error();
    return false;
  }
  detail::MdCtxPtr ctx(EVP_MD_CTX_new());
  const bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
                  EVP_DigestVerify(ctx.get(), detail::bytes(der_signature), der_signature.size(),
                                   detail::bytes(data), data.size()) == 1;
  ERR_clear_error();
  return ok;
}

std::string jwt_sign(const PrivateKey& key, std::string_view alg, std::string_view header_json,
                     std::string_view claims_json) {
  std::string signing_input = base64url(header_json);
  signing_input += '.';
  signing_input += base64url(claims_json);
  std::string signature;
  if (alg == "RS256") {
    signature = key.sign_rs256(signing_input);
  } else if (alg == "ES256") {
    signature = key.sign_es256(signing_input, true);
  } else {
    throw std::invalid_argument("unsupported JWT alg");
  }
  signing_input += '.';
  signing_input += base64url(signature);
  return signing_input;
}

std::string generate_private_key_pem(std::string_view kind) {
  detail::PkeyPtr key;
  if (kind == "rsa") {
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(2048)));
  } else if (kind == "ec") {
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  } else {
    throw std::invalid_argument("key kind must be \"rsa\" or \"ec\"");
  }
  if (!key) detail::fail("key generation failed");
  detail::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) detail::fail("BIO_new failed");
  if (PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    detail::fail("PEM_write_bio_PrivateKey failed");
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) detail::fail("PEM output empty");
  return {data, static_cast<std::size_t>(len)};
}

}  // namespace herald::crypto
