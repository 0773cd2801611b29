#pragma once
// JSON <-> the DAO's types, and the validation of what clients send. No HTTP, no database here.

#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../user_oper.hpp"
#include "http_error.hpp"

namespace users_service {

inline constexpr std::size_t max_batch = 1000;
inline constexpr std::size_t max_name_bytes = 64;
inline constexpr std::int64_t default_limit = 100;
inline constexpr std::int64_t max_limit = 1000;

inline nlohmann::json to_json(const User& u) {
  return {{"id", u.id}, {"name", u.name}, {"email", u.email}, {"is_active", u.is_active}};
}

inline nlohmann::json to_json(const std::vector<User>& users) {
  nlohmann::json array = nlohmann::json::array();
  for (const User& u : users) array.push_back(to_json(u));
  return array;
}

// Serialises for the wire; invalid UTF-8 cannot come from a parsed body, but a stored row might hold it.
inline std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The body of POST /users/batch-async: 400 when it is not exactly one JSON document, 422 (naming the item where it
// can) when it is the wrong JSON or holds a string with a NUL character.
inline std::vector<UserCreate> parse_batch(std::string_view body) {
  // nlohmann's lexer takes a NUL byte for the end of the input, so "[...]\0anything" would parse as "[...]". A raw
  // NUL is never valid JSON (it is not whitespace, and inside a string it must be escaped), so it ends here.
  if (body.find('\0') != std::string_view::npos) throw http_error{400, "malformed JSON body: a NUL byte"};
  // The parse is strict (anything but whitespace after the document is an error) and iterative (deep nesting is no
  // danger); its lexer refuses invalid UTF-8 and unpaired \u surrogates, so every string it gives is valid UTF-8.
  // What it lets through is \u0000, in keys and values at any depth: the callback sees each once.
  bool nul = false;
  const nlohmann::json::parser_callback_t find_nul = [&nul](int, nlohmann::json::parse_event_t event,
                                                            nlohmann::json& parsed) {
    using event_t = nlohmann::json::parse_event_t;
    if ((event == event_t::key || event == event_t::value) && parsed.is_string() &&
        parsed.get_ref<const std::string&>().find('\0') != std::string::npos)
      nul = true;
    return true;
  };
  const nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), find_nul, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw http_error{400, "malformed JSON body"};
  if (nul) throw http_error{422, "strings must not contain NUL (\\u0000)"};
  if (!j.is_array()) throw http_error{422, "the body must be a JSON array of users"};
  if (j.empty() || j.size() > max_batch)
    throw http_error{422,
                     "a batch holds 1 to " + std::to_string(max_batch) + " users, not " + std::to_string(j.size())};

  std::vector<UserCreate> batch;
  batch.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& item = j[i];
    auto fail = [i](const std::string& why) { return http_error{422, "item " + std::to_string(i) + ": " + why}; };
    if (!item.is_object()) throw fail("must be an object");
    const auto name = item.find("name");
    const auto email = item.find("email");
    const auto active = item.find("is_active");
    if (name == item.end() || !name->is_string()) throw fail("\"name\" must be a string");
    if (email == item.end() || !email->is_string()) throw fail("\"email\" must be a string");
    if (active != item.end() && !active->is_boolean()) throw fail("\"is_active\" must be a boolean");
    UserCreate u{name->get<std::string>(), email->get<std::string>(), active == item.end() || active->get<bool>()};
    if (u.name.empty()) throw fail("\"name\" must not be empty");
    if (u.name.size() > max_name_bytes) throw fail("\"name\" is longer than 64 bytes");
    if (u.email.find('@') == std::string::npos) throw fail("\"email\" must contain '@'");
    batch.push_back(std::move(u));
  }
  return batch;
}

// A query parameter that must be a decimal integer in [lo, hi]; absent gives `fallback`, anything else is 422.
inline std::int64_t parse_bounded(std::optional<std::string_view> text, std::string_view what, std::int64_t fallback,
                                  std::int64_t lo, std::int64_t hi) {
  if (!text) return fallback;
  std::int64_t v = 0;
  const char* end = text->data() + text->size();
  const auto [p, ec] = std::from_chars(text->data(), end, v);
  if (text->empty() || ec != std::errc{} || p != end || v < lo || v > hi)
    throw http_error{
        422, std::string{what} + " must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi)};
  return v;
}

}  // namespace users_service
