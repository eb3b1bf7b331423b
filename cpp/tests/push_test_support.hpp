#pragma once
// Shared by the FCM and APNs adapter tests: test keys, crafted answers, a request's headers, a
// JWT split into its parts and its signature verified with OpenSSL, and a send's context.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"
#include "herald/errors.hpp"
#include "herald/provider.hpp"

#include "adapter_test_support.hpp"

namespace herald::push_test {

using adapter_test::answer;
using adapter_test::config_error_of;

inline constexpr std::int64_t minute = 60'000;

inline const std::string& rsa_pem() {
  static const std::string pem = crypto::generate_private_key_pem("rsa");
  return pem;
}
inline const std::string& ec_pem() {
  static const std::string pem = crypto::generate_private_key_pem("ec");
  return pem;
}

inline std::string header_of(const http::Request& req, std::string_view name) {
  for (const auto& h : req.headers) {
    const auto colon = h.find(':');
    if (colon == std::string::npos) continue;
    std::string k = h.substr(0, colon);
    for (char& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (k == name) return h.substr(colon + 2);
  }
  return "<absent>";
}

struct Jwt {
  nlohmann::json header;
  nlohmann::json claims;
  std::string signing_input;
  std::string signature;
};

inline Jwt split_jwt(const std::string& token) {
  const auto d1 = token.find('.');
  const auto d2 = token.find('.', d1 + 1);
  EXPECT_NE(d1, std::string::npos);
  EXPECT_NE(d2, std::string::npos);
  EXPECT_EQ(token.find('.', d2 + 1), std::string::npos);
  Jwt j;
  j.header = nlohmann::json::parse(crypto::base64_decode(token.substr(0, d1)));
  j.claims = nlohmann::json::parse(crypto::base64_decode(token.substr(d1 + 1, d2 - d1 - 1)));
  j.signing_input = token.substr(0, d2);
  j.signature = crypto::base64_decode(token.substr(d2 + 1));
  return j;
}

/// Verifies `sig` over `data` with the public half of `pem` (RS256: PKCS#1 v1.5 SHA-256; ES256:
/// DER ECDSA). The public key goes through its DER SubjectPublicKeyInfo form, as a verifier gets it.
inline bool verify_with_public_key(const std::string& pem, const std::string& data, const std::string& sig) {
  const std::string der = crypto::base64_decode(crypto::PrivateKey(pem).public_key_base64());
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* pub = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (pub == nullptr) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pub) == 1 &&
                  EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                   reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pub);
  return ok;
}

struct Send {
  Notification n;
  PlanStep plan;
  std::string text = "Your code is 1234";
  SendContext ctx(std::int64_t now) const { return SendContext{n, plan, text, 1, false, now, ""}; }
};

}  // namespace herald::push_test
