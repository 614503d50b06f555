// The CLI's error text with every nested cause (errors.hpp).
#include "errors.hpp"

#include <string_view>

namespace nudge_cli {
namespace {

void add_causes(const std::exception& e, std::string_view shown, std::string& out) {
  try {
    std::rethrow_if_nested(e);
  } catch (const std::exception& cause) {
    const std::string_view what = cause.what();
    if (shown.find(what) == std::string_view::npos) {
      out += "\n  caused by: ";
      out += what;
      shown = what;
    }
    add_causes(cause, shown, out);
  } catch (...) {
    out += "\n  caused by: an exception that is not a std::exception";
  }
}

}  // namespace

std::string describe_error(const std::exception& e) {
  std::string out = e.what();
  add_causes(e, e.what(), out);
  return out;
}

}  // namespace nudge_cli
