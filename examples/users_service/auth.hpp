#pragma once
// Bearer tokens: JWT HS256 (cpp-jwt on OpenSSL), `sub` = the user's id as a string, `exp` required and checked.

#include <jwt/jwt.hpp>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "http_error.hpp"

namespace users_service {

// Signs a token for `user_id` that expires `ttl` from now (a negative ttl makes an expired one, for tests).
inline std::string make_token(const std::string& secret, std::int64_t user_id, std::chrono::seconds ttl) {
  jwt::jwt_object token{jwt::params::algorithm("HS256"), jwt::params::secret(secret)};
  token.add_claim("sub", std::to_string(user_id));
  token.add_claim("exp", std::chrono::system_clock::now() + ttl);
  return token.signature();
}

// The guide's verify_token: the user id a valid token names; 401 for anything else.
inline std::int64_t verify_token(const std::string& secret, std::string_view token) {
  const http_error unauthorized{401, "could not validate credentials"};
  try {
    std::error_code ec;
    auto decoded = jwt::decode(jwt::string_view{token.data(), token.size()}, jwt::params::algorithms({"HS256"}), ec,
                               jwt::params::secret(secret), jwt::params::verify(true));
    if (ec) throw unauthorized;
    const auto& payload = decoded.payload();
    // cpp-jwt checks `exp` only when it is present; a token without one never expires, so it is refused here.
    if (!payload.has_claim("exp") || !payload.has_claim("sub")) throw unauthorized;
    const auto& claims = payload.create_json_obj();
    const auto sub_claim = claims.find("sub");
    if (sub_claim == claims.end() || !sub_claim->is_string()) throw unauthorized;
    const std::string sub = sub_claim->get<std::string>();
    std::int64_t id = 0;
    const auto [p, err] = std::from_chars(sub.data(), sub.data() + sub.size(), id);
    if (sub.empty() || err != std::errc{} || p != sub.data() + sub.size()) throw unauthorized;
    return id;
  } catch (const http_error&) {
    throw;
  } catch (const std::exception&) {  // cpp-jwt throws on some malformed input even with an error_code
    throw unauthorized;
  }
}

// The token of an `Authorization: Bearer <jwt>` header; 401 when the header is missing or another scheme.
inline std::string_view bearer_token(std::optional<std::string_view> header) {
  constexpr std::string_view scheme = "bearer ";
  if (!header || header->size() <= scheme.size()) throw http_error{401, "not authenticated"};
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>((*header)[i])) != scheme[i]) throw http_error{401, "not authenticated"};
  return header->substr(scheme.size());
}

}  // namespace users_service
