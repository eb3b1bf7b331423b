#pragma once
/// Hashes, MACs, signatures and encodings the provider adapters and the receipt server need,
/// over OpenSSL's libcrypto. Key material passed in is never copied into error messages.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::crypto {

/// Raw digests and MACs (binary strings).
[[nodiscard]] std::string sha256(std::string_view data);
[[nodiscard]] std::string hmac_sha1(std::string_view key, std::string_view data);
[[nodiscard]] std::string hmac_sha256(std::string_view key, std::string_view data);

/// Encodings. Decoders throw std::invalid_argument on bad input.
[[nodiscard]] std::string base64(std::string_view bytes);
[[nodiscard]] std::string base64url(std::string_view bytes);  ///< no padding (JWT form)
[[nodiscard]] std::string base64_decode(std::string_view text);  ///< accepts standard and url alphabets, padding optional
[[nodiscard]] std::string hex(std::string_view bytes);  ///< lower-case

/// Compares in time independent of where the strings differ.
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

/// Percent-encoding for application/x-www-form-urlencoded (space as '+', unreserved kept).
[[nodiscard]] std::string form_encode(std::string_view s);
/// %XX decoded to a byte ('+' to a space when `plus_is_space`, as in forms and query strings; kept
/// in paths); a '%' not followed by two hex digits stays literal.
[[nodiscard]] std::string percent_decode(std::string_view s, bool plus_is_space);
/// Decodes a form body or query string into pairs, in order; '+' is a space.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> form_decode(std::string_view body);

/// A private key parsed once from PEM (PKCS#8 "BEGIN PRIVATE KEY", or "BEGIN RSA/EC PRIVATE KEY").
/// Throws std::invalid_argument("not a PEM private key") on bad input, without echoing the key.
class PrivateKey {
 public:
  explicit PrivateKey(std::string_view pem);
  ~PrivateKey();
  PrivateKey(PrivateKey&&) noexcept;
  PrivateKey& operator=(PrivateKey&&) noexcept;
  PrivateKey(const PrivateKey&) = delete;
  PrivateKey& operator=(const PrivateKey&) = delete;

  [[nodiscard]] bool is_rsa() const noexcept;
  [[nodiscard]] bool is_ec_p256() const noexcept;
  /// RSASSA-PKCS1-v1_5 with SHA-256 (JWT "RS256"). Throws std::invalid_argument if not RSA.
  [[nodiscard]] std::string sign_rs256(std::string_view data) const;
  /// ECDSA P-256 with SHA-256. `jose` = true gives the 64-byte r||s form JWT "ES256" wants;
  /// false gives DER (what SendGrid's signed event webhook sends, base64-encoded).
  [[nodiscard]] std::string sign_es256(std::string_view data, bool jose) const;
  /// The public half as base64 of DER SubjectPublicKeyInfo (SendGrid's "verification key" form).
  [[nodiscard]] std::string public_key_base64() const;

 private:
  void* pkey_ = nullptr;  // EVP_PKEY*
};

/// Verifies an ECDSA P-256/SHA-256 DER signature with a public key given as base64 DER
/// SubjectPublicKeyInfo or as PEM. False on any mismatch or malformed input.
[[nodiscard]] bool verify_es256_der(std::string_view public_key, std::string_view data, std::string_view der_signature);

/// A compact JWS: base64url(header).base64url(claims).base64url(signature), signed with `key`.
/// `alg` is "RS256" or "ES256"; header and claims are JSON texts.
[[nodiscard]] std::string jwt_sign(const PrivateKey& key, std::string_view alg, std::string_view header_json,
                                   std::string_view claims_json);

/// Fresh keys as PKCS#8 PEM, for the sandbox and the tests: "rsa" (2048 bits) or "ec" (P-256).
[[nodiscard]] std::string generate_private_key_pem(std::string_view kind);

}  // namespace herald::crypto
