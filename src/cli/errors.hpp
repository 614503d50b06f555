// How the nudge CLI prints an error.
#pragma once

#include <exception>
#include <string>

namespace nudge_cli {

/// The error's message, then each nested cause (std::nested_exception) on its own line as
/// "  caused by: ...", innermost last. A cause whose message the outer one already contains
/// (as callback_error repeats its cause's) is not repeated; its own causes still are.
std::string describe_error(const std::exception& e);

}  // namespace nudge_cli
