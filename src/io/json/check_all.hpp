// Internal: what `nudge check` adds to the parser's problems so that one run reports every
// problem of a rule file (issue 14).
#pragma once

#include <vector>

#include <nudge/error.hpp>

namespace nudge::detail {

/// The compiler's problems of a rule set the parser already found problems in, keeping only
/// those the parser's problems cannot have caused: none inside a top-level element (a rule, a
/// workflow, a segment, "delivery", ...) the parser reported on, whose parsed form may be
/// incomplete, and none of the cross-references (an unknown segment, threshold, group; a
/// duplicate id or name; segment order), which a definition the parser could not read breaks.
std::vector<diagnostic> independent_problems(const std::vector<diagnostic>& parsed,
                                             const std::vector<diagnostic>& compiled);

}  // namespace nudge::detail
