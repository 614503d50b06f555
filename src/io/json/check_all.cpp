#include "check_all.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <string>
#include <string_view>

namespace nudge::detail {
namespace {

// "/rules/3/then/0" -> "/rules/3"; "/delivery/caps/0" -> "/delivery"; "" -> "".
std::string_view element_of(std::string_view pointer) {
  const auto first = pointer.find('/', 1);
  if (first == std::string_view::npos) {
    return pointer;
  }
  const auto second = pointer.find('/', first + 1);
  const auto index = pointer.substr(
      first + 1, second == std::string_view::npos ? std::string_view::npos : second - first - 1);
  const bool is_index = !index.empty() && std::all_of(index.begin(), index.end(),
                                                      [](char c) { return c >= '0' && c <= '9'; });
  return is_index ? pointer.substr(0, second) : pointer.substr(0, first);
}

constexpr std::array<std::string_view, 6> cross_references = {
    "unknown_segment", "unknown_threshold", "unknown_group",
    "duplicate_id",    "duplicate_name",    "segment_order"};

}  // namespace

std::vector<diagnostic> independent_problems(const std::vector<diagnostic>& parsed,
                                             const std::vector<diagnostic>& compiled) {
  std::set<std::string_view> touched;
  for (const auto& d : parsed) {
    touched.insert(element_of(d.json_pointer));
  }
  std::vector<diagnostic> out;
  for (const auto& d : compiled) {
    const bool cross = std::find(cross_references.begin(), cross_references.end(), d.code) !=
                       cross_references.end();
    if (!cross && touched.count(element_of(d.json_pointer)) == 0) {
      out.push_back(d);
    }
  }
  return out;
}

}  // namespace nudge::detail
