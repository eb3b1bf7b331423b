// Known-answer and round-trip tests for herald::crypto (digests, MACs, encodings, signatures).
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "herald/crypto.hpp"

namespace hc = herald::crypto;

namespace {

const std::string& rsa_pem() {
  static const std::string pem = hc::generate_private_key_pem("rsa");
  return pem;
}
const std::string& ec_pem() {
  static const std::string pem = hc::generate_private_key_pem("ec");
  return pem;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

/// The PEM "BEGIN PUBLIC KEY" text of a private key's public half, through OpenSSL directly.
std::string public_pem_of(const std::string& private_pem) {
  BioPtr in(BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  if (!key) throw std::runtime_error("test: cannot parse private key");
  BioPtr out(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PUBKEY(out.get(), key.get()) != 1) throw std::runtime_error("test: cannot write public key");
  char* data = nullptr;
  const long len = BIO_get_mem_data(out.get(), &data);
  return {data, static_cast<std::size_t>(len)};
}

/// EVP_DigestVerify with SHA-256 on a PEM public key, independent of the code under test.
bool evp_verify(const std::string& public_pem, const std::string& data, const std::string& sig) {
  BioPtr in(BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size())));
  PkeyPtr key(PEM_read_bio_PUBKEY(in.get(), nullptr, nullptr, nullptr));
  if (!key) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
                  EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                   reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

/// 64-byte r||s back to DER, the way a JWS verifier would.
std::string jose_to_der(const std::string& jose) {
  ECDSA_SIG* sig = ECDSA_SIG_new();
  const auto* p = reinterpret_cast<const unsigned char*>(jose.data());
  ECDSA_SIG_set0(sig, BN_bin2bn(p, 32, nullptr), BN_bin2bn(p + 32, 32, nullptr));
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return out;
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const auto dot = s.find('.', start);
    parts.push_back(s.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

}  // namespace

TEST(CryptoDigest, HmacSha256Rfc4231Case2) {
  EXPECT_EQ(hc::hex(hc::hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(CryptoDigest, HmacSha1Rfc2202Case2) {
  EXPECT_EQ(hc::hex(hc::hmac_sha1("Jefe", "what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

TEST(CryptoDigest, HmacEmptyKey) {
  // RFC 2104 with an empty key; value from `openssl dgst -sha256 -hmac ''`.
  EXPECT_EQ(hc::hex(hc::hmac_sha256("", "")), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(CryptoDigest, Sha256Abc) {
  EXPECT_EQ(hc::hex(hc::sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hc::sha256("").size(), 32U);
}

TEST(CryptoEncoding, Base64Rfc4648Vectors) {
  const std::map<std::string, std::string> vectors = {{"", ""},         {"f", "Zg=="},     {"fo", "Zm8="},
                                                      {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                      {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(hc::base64(plain), encoded) << plain;
    EXPECT_EQ(hc::base64_decode(encoded), plain) << encoded;
  }
}

TEST(CryptoEncoding, Base64UrlNoPaddingAndBothAlphabetsDecode) {
  const std::string bytes = "\xfb\xff\xbf\xfe";  // exercises 62 and 63 in both alphabets
  EXPECT_EQ(hc::base64(bytes), "+/+//g==");
  EXPECT_EQ(hc::base64url(bytes), "-_-__g");
  EXPECT_EQ(hc::base64url("f"), "Zg");
  EXPECT_EQ(hc::base64_decode("-_-__g"), bytes);
  EXPECT_EQ(hc::base64_decode("-_-__g=="), bytes);
  EXPECT_EQ(hc::base64_decode("+/+//g"), bytes);
  EXPECT_EQ(hc::base64_decode("+/+//g=="), bytes);
  EXPECT_EQ(hc::base64_decode("Zm9vYg"), "foob");
}

TEST(CryptoEncoding, BadBase64Throws) {
  EXPECT_THROW((void)hc::base64_decode("Zm9v!"), std::invalid_argument);
  EXPECT_THROW((void)hc::base64_decode("Zm 9v"), std::invalid_argument);
  EXPECT_THROW((void)hc::base64_decode("Zm9v\n"), std::invalid_argument);
  EXPECT_THROW((void)hc::base64_decode("Z"), std::invalid_argument);       // impossible length
  EXPECT_THROW((void)hc::base64_decode("Zg="), std::invalid_argument);     // padded but not a multiple of 4
  EXPECT_THROW((void)hc::base64_decode("Z==="), std::invalid_argument);    // three pads
  EXPECT_THROW((void)hc::base64_decode("Zg==Zg=="), std::invalid_argument);  // pad in the middle
}

TEST(CryptoEncoding, HexLowerCase) { EXPECT_EQ(hc::hex(std::string("\x00\xab\xFF\x10", 4)), "00abff10"); }

TEST(CryptoEncoding, ConstantTimeEqual) {
  EXPECT_TRUE(hc::constant_time_equal("", ""));
  EXPECT_TRUE(hc::constant_time_equal("secret", "secret"));
  EXPECT_FALSE(hc::constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(hc::constant_time_equal("secret", "secret2"));
  EXPECT_FALSE(hc::constant_time_equal("", "a"));
}

TEST(CryptoForm, EncodeKnownValues) {
  EXPECT_EQ(hc::form_encode("a b+c&d=e"), "a+b%2Bc%26d%3De");
  EXPECT_EQ(hc::form_encode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(hc::form_encode("\xc3\xa9/?"), "%C3%A9%2F%3F");  // é, then reserved characters
}

TEST(CryptoForm, RoundTrip) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"Body", "Hi + bye & a=b"}, {"To", "+15551234567"}, {"name", "Zo\xc3\xab \xe2\x9c\x93"}, {"empty", ""}};
  std::string body;
  for (const auto& [k, v] : pairs) {
    if (!body.empty()) body += '&';
    body += hc::form_encode(k) + "=" + hc::form_encode(v);
  }
  EXPECT_EQ(hc::form_decode(body), pairs);
}

TEST(CryptoForm, DecodeEdgeCases) {
  using P = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(hc::form_decode(""), P{});
  EXPECT_EQ(hc::form_decode("flag&a=1"), (P{{"flag", ""}, {"a", "1"}}));
  EXPECT_EQ(hc::form_decode("a=1&&b=x=y"), (P{{"a", "1"}, {"b", "x=y"}}));
  EXPECT_EQ(hc::form_decode("k%20=%2b+%e2%9C%93"), (P{{"k ", "+ \xe2\x9c\x93"}}));
  EXPECT_EQ(hc::form_decode("a=100%&b=%zz"), (P{{"a", "100%"}, {"b", "%zz"}}));  // stray '%' kept
}

TEST(CryptoTwilio, RequestSignature) {
  // Twilio: base64(HMAC-SHA1(auth token, URL + each POST param name+value, sorted by name)).
  // Expected value computed with:
  //   printf '%s' 'https://example.com/hooks/status?x=1AccountSidAC123MessageSidSM456MessageStatusdeliveredTo+15551234567'
  //     | openssl dgst -sha1 -hmac 'tw1l10-t0ken' -binary | base64
  auto params = hc::form_decode("To=%2B15551234567&MessageStatus=delivered&AccountSid=AC123&MessageSid=SM456");
  std::sort(params.begin(), params.end());
  std::string payload = "https://example.com/hooks/status?x=1";
  for (const auto& [k, v] : params) payload += k + v;
  const std::string sig = hc::base64(hc::hmac_sha1("tw1l10-t0ken", payload));
  EXPECT_EQ(sig, "NeZOLGf0U6n8TCvr3q7EN8vKfeQ=");
  EXPECT_TRUE(hc::constant_time_equal(sig, "NeZOLGf0U6n8TCvr3q7EN8vKfeQ="));
}

TEST(CryptoKey, GeneratedKeysAreTheRightKind) {
  EXPECT_NE(rsa_pem().find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(ec_pem().find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  const hc::PrivateKey rsa(rsa_pem());
  const hc::PrivateKey ec(ec_pem());
  EXPECT_TRUE(rsa.is_rsa());
  EXPECT_FALSE(rsa.is_ec_p256());
  EXPECT_TRUE(ec.is_ec_p256());
  EXPECT_FALSE(ec.is_rsa());
  EXPECT_THROW((void)hc::generate_private_key_pem("dsa"), std::invalid_argument);
}

TEST(CryptoKey, TraditionalPemFormsParse) {
  // "BEGIN RSA PRIVATE KEY" / "BEGIN EC PRIVATE KEY", written by OpenSSL from the PKCS#8 keys.
  for (const std::string* pem : {&rsa_pem(), &ec_pem()}) {
    BioPtr in(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
    PkeyPtr key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
    ASSERT_TRUE(key);
    BioPtr out(BIO_new(BIO_s_mem()));
    ASSERT_EQ(PEM_write_bio_PrivateKey_traditional(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr), 1);
    char* data = nullptr;
    const long len = BIO_get_mem_data(out.get(), &data);
    const std::string traditional(data, static_cast<std::size_t>(len));
    const bool rsa = pem == &rsa_pem();
    EXPECT_NE(traditional.find(rsa ? "BEGIN RSA PRIVATE KEY" : "BEGIN EC PRIVATE KEY"), std::string::npos);
    const hc::PrivateKey parsed(traditional);
    EXPECT_EQ(parsed.is_rsa(), rsa);
    EXPECT_EQ(parsed.is_ec_p256(), !rsa);
    EXPECT_EQ(parsed.public_key_base64(), hc::PrivateKey(*pem).public_key_base64());
  }
}

TEST(CryptoKey, WrongKeyTypeThrows) {
  const hc::PrivateKey rsa(rsa_pem());
  const hc::PrivateKey ec(ec_pem());
  EXPECT_THROW((void)rsa.sign_es256("x", true), std::invalid_argument);
  EXPECT_THROW((void)ec.sign_rs256("x"), std::invalid_argument);
  EXPECT_THROW((void)hc::jwt_sign(ec, "HS256", "{}", "{}"), std::invalid_argument);
}

TEST(CryptoKey, GarbageDoesNotEchoInput) {
  const std::string secret = "not a key sk_live_SECRETVALUE";
  try {
    const hc::PrivateKey key(secret);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("SECRETVALUE"), std::string::npos);
    EXPECT_EQ(std::string(e.what()).find("not a key"), std::string::npos);
  }
  // A PEM frame around a broken body fails the same way, without prompting or echoing.
  const std::string broken = "-----BEGIN PRIVATE KEY-----\nU0VDUkVUVkFMVUU=\n-----END PRIVATE KEY-----\n";
  EXPECT_THROW(hc::PrivateKey{broken}, std::invalid_argument);
  EXPECT_EQ(ERR_peek_error(), 0UL);
}

TEST(CryptoKey, EncryptedPemFailsWithoutPrompting) {
  BioPtr in(BIO_new_mem_buf(ec_pem().data(), static_cast<int>(ec_pem().size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  ASSERT_TRUE(key);
  BioPtr out(BIO_new(BIO_s_mem()));
  char pass[] = "hunter2";
  ASSERT_EQ(PEM_write_bio_PrivateKey(out.get(), key.get(), EVP_aes_128_cbc(), nullptr, 0, nullptr, pass), 1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(out.get(), &data);
  const std::string encrypted(data, static_cast<std::size_t>(len));
  ASSERT_NE(encrypted.find("ENCRYPTED"), std::string::npos);
  EXPECT_THROW(hc::PrivateKey{encrypted}, std::invalid_argument);
}

TEST(CryptoKey, MoveTransfersOwnership) {
  hc::PrivateKey a(ec_pem());
  hc::PrivateKey b(std::move(a));
  EXPECT_TRUE(b.is_ec_p256());
  EXPECT_FALSE(a.is_ec_p256());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  hc::PrivateKey c(rsa_pem());
  c = std::move(b);
  EXPECT_TRUE(c.is_ec_p256());
}

TEST(CryptoJwt, Rs256VerifiesWithPublicKey) {
  const hc::PrivateKey key(rsa_pem());
  const std::string header = R"({"alg":"RS256","typ":"JWT"})";
  const std::string claims = R"({"iss":"herald","iat":1700000000})";
  const std::string jwt = hc::jwt_sign(key, "RS256", header, claims);
  const auto parts = split_dots(jwt);
  ASSERT_EQ(parts.size(), 3U);
  EXPECT_EQ(hc::base64_decode(parts[0]), header);
  EXPECT_EQ(hc::base64_decode(parts[1]), claims);
  EXPECT_EQ(jwt.find('='), std::string::npos);
  const std::string sig = hc::base64_decode(parts[2]);
  EXPECT_EQ(sig.size(), 256U);
  const std::string pub = public_pem_of(rsa_pem());
  EXPECT_TRUE(evp_verify(pub, parts[0] + "." + parts[1], sig));
  EXPECT_FALSE(evp_verify(pub, parts[0] + "." + parts[1] + "x", sig));
  // PKCS#1 v1.5 is deterministic.
  EXPECT_EQ(key.sign_rs256("abc"), key.sign_rs256("abc"));
}

TEST(CryptoJwt, Es256JoseSignatureIs64BytesAndVerifies) {
  const hc::PrivateKey key(ec_pem());
  const std::string jwt = hc::jwt_sign(key, "ES256", R"({"alg":"ES256","kid":"K1"})", R"({"iss":"TEAM"})");
  const auto parts = split_dots(jwt);
  ASSERT_EQ(parts.size(), 3U);
  const std::string jose = hc::base64_decode(parts[2]);
  ASSERT_EQ(jose.size(), 64U);
  const std::string der = jose_to_der(jose);
  const std::string pub = public_pem_of(ec_pem());
  EXPECT_TRUE(evp_verify(pub, parts[0] + "." + parts[1], der));
  EXPECT_TRUE(hc::verify_es256_der(pub, parts[0] + "." + parts[1], der));
  EXPECT_FALSE(hc::verify_es256_der(pub, parts[0] + "." + parts[1] + ".", der));
  // Many signatures: r or s with leading zero bytes must still come out as 32 bytes each.
  for (int i = 0; i < 50; ++i) {
    const std::string data = "msg" + std::to_string(i);
    const std::string s = key.sign_es256(data, true);
    ASSERT_EQ(s.size(), 64U);
    ASSERT_TRUE(hc::verify_es256_der(pub, data, jose_to_der(s)));
  }
}

TEST(CryptoVerify, DerSignatureWithBase64Spki) {
  const hc::PrivateKey key(ec_pem());
  const std::string spki = key.public_key_base64();
  const std::string data = "1700000000[{\"event\":\"delivered\"}]\r\n";
  const std::string der = key.sign_es256(data, false);
  EXPECT_EQ(static_cast<unsigned char>(der[0]), 0x30U);  // DER SEQUENCE
  EXPECT_TRUE(hc::verify_es256_der(spki, data, der));
  EXPECT_TRUE(hc::verify_es256_der(spki + "\n", data, der));
  EXPECT_TRUE(hc::verify_es256_der(public_pem_of(ec_pem()), data, der));
  EXPECT_FALSE(hc::verify_es256_der(spki, data + " ", der));  // wrong data
  std::string tampered = der;
  tampered[tampered.size() - 1] = static_cast<char>(tampered.back() ^ 1);
  EXPECT_FALSE(hc::verify_es256_der(spki, data, tampered));
  EXPECT_FALSE(hc::verify_es256_der(spki, data, ""));
  EXPECT_FALSE(hc::verify_es256_der(spki, data, "garbage"));
  // Another key's signature.
  const hc::PrivateKey other(hc::generate_private_key_pem("ec"));
  EXPECT_FALSE(hc::verify_es256_der(other.public_key_base64(), data, der));
  EXPECT_EQ(ERR_peek_error(), 0UL);
}

TEST(CryptoVerify, GarbageKeyIsFalse) {
  const hc::PrivateKey key(ec_pem());
  const std::string der = key.sign_es256("d", false);
  EXPECT_FALSE(hc::verify_es256_der("garbage!", "d", der));
  EXPECT_FALSE(hc::verify_es256_der("Zm9vYmFy", "d", der));  // valid base64, not a key
  EXPECT_FALSE(hc::verify_es256_der("", "d", der));
  EXPECT_FALSE(hc::verify_es256_der("-----BEGIN PUBLIC KEY-----\nZm9v\n-----END PUBLIC KEY-----\n", "d", der));
  // An RSA public key is not a P-256 key.
  EXPECT_FALSE(hc::verify_es256_der(hc::PrivateKey(rsa_pem()).public_key_base64(), "d", der));
  EXPECT_EQ(ERR_peek_error(), 0UL);
}
