#pragma once
// FastAPI's HTTPException: a handler throws it, the route layer turns it into {"detail": ...} with its status.

#include <stdexcept>
#include <string>

namespace users_service {

struct http_error : std::runtime_error {
  int status;
  http_error(int s, const std::string& detail) : std::runtime_error{detail}, status{s} {}
};

}  // namespace users_service
