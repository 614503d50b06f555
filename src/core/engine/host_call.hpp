// Calls into the host's store and sink from the engine: what they throw becomes a
// callback_error naming the callback and the contact. Private to src/core/engine.
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include <nudge/error.hpp>

namespace nudge::detail {

/// The message of an exception held in `e` ("unknown exception" for a non-std one).
inline std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// Runs a host callback; anything it throws becomes a callback_error naming the callback and
/// contact, with the original nested.
template <class F>
decltype(auto) call_host(const char* callback, std::string_view contact, F&& f) {
  try {
    return f();
  } catch (...) {
    auto original = std::current_exception();
    std::throw_with_nested(callback_error(callback, std::string{contact}, what_of(original)));
  }
}

}  // namespace nudge::detail
