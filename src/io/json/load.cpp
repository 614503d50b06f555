// Rule files (JSON, docs/rules.md) to rule sets and programs, with every problem located by
// JSON pointer and line:column.
//
// Boost.JSON parses the text (and rejects bad syntax and hostile nesting); a walker then maps
// the DOM to the plain structs of rule.hpp, collecting every problem it meets instead of
// stopping at the first. Boost.JSON's DOM keeps no positions, so only when there is something
// to report does a second, tiny scanner walk the (already valid) text and record where each
// value and key starts, keyed by JSON pointer. A file without problems pays for that scan only
// once, to catch duplicate keys, which the DOM silently merges.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <tuple>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <sys/stat.h>

#include <nudge/io/load_rules.hpp>

#include "check_all.hpp"
#include "locator.hpp"
#include "walker.hpp"

namespace nudge {
namespace {

using namespace json_rules;  // NOLINT(google-build-using-namespace): the loader's own private parts

// Everything one load produced: the rules, or the located problems.
struct parsed {
  rule_set rules;
  std::vector<diagnostic> diagnostics;
  bool walked = false;  // `rules` holds what the walker could read (also with problems)
};

std::string syntax_message(const json::error_code& ec, std::size_t max_depth, std::string_view text,
                           std::size_t at) {
  if (ec == json::error::too_deep) {
    return fmt::format("JSON nested deeper than {} levels", max_depth);
  }
  if (ec == json::error::incomplete) {
    return "JSON syntax error: the text ends before the JSON value does";
  }
  if (ec == json::error::extra_data) {
    return "JSON syntax error: unexpected text after the JSON value";
  }
  if (ec == json::error::exponent_overflow) {
    return "JSON syntax error: number out of range";
  }
  if (ec == json::error::syntax && at < text.size()) {
    const auto c = static_cast<unsigned char>(text[at]);
    if (c >= 0x20 && c < 0x7F) {
      return fmt::format("JSON syntax error: unexpected {}", quoted(text.substr(at, 1)));
    }
    return fmt::format("JSON syntax error: unexpected byte 0x{:02X}", c);
  }
  return fmt::format("JSON syntax error: {}", ec.message());
}

// The nesting Boost.JSON allows: rule file structure around the deepest allowed condition
// (each condition level takes an object and an array).
std::size_t max_json_depth(const program_limits& limits) {
  return 2 * limits.max_condition_depth + 16;
}

// Strings and field names longer than the limit. A long field name is reported at its object:
// a pointer holding the name would be as long as the name.
void check_lengths(const json::value& v, const path& at, std::size_t max,
                   std::vector<problem>& out) {
  auto too_long = [&](std::string_view what, std::size_t size) {
    out.push_back({at.str(), false, "too_long",
                   fmt::format("{} of {} bytes; at most {} are allowed (max_string_bytes)", what,
                               size, max)});
  };
  switch (v.kind()) {
    case json::kind::string:
      if (v.get_string().size() > max) {
        too_long("a string", v.get_string().size());
      }
      return;
    case json::kind::array: {
      const auto& a = v.get_array();
      for (std::size_t i = 0; i < a.size(); ++i) {
        check_lengths(a[i], child(at, i), max, out);
      }
      return;
    }
    case json::kind::object:
      for (const auto& m : v.get_object()) {
        if (m.key().size() > max) {
          too_long("a field name", m.key().size());
          continue;
        }
        check_lengths(m.value(), child(at, m.key()), max, out);
      }
      return;
    default:
      return;
  }
}

diagnostic too_large(const std::string& file, std::size_t size, std::size_t max) {
  diagnostic d;
  d.file = file;
  d.code = "too_large";
  d.message =
      fmt::format("the rule file has {} bytes; at most {} are allowed (max_text_bytes)", size, max);
  return d;
}

parsed parse_impl(std::string_view text, const load_options& options) {
  parsed out;
  if (text.size() > options.limits.max_text_bytes) {
    out.diagnostics.push_back(
        too_large(options.file_name, text.size(), options.limits.max_text_bytes));
    return out;
  }
  const std::size_t start = bom_length(text);
  json::parse_options opts;
  opts.max_depth = max_json_depth(options.limits);
  // The DOM lives in an arena (the parser's constructor argument is only its scratch space): one
  // allocation per block instead of one per value, and no walk to free it.
  json::monotonic_resource arena;
  json::parser p({}, opts);
  p.reset(&arena);
  json::error_code ec;
  const std::size_t used = p.write(text.data() + start, text.size() - start, ec);
  if (ec) {
    const line_index lines(text);
    const std::size_t at = ec == json::error::incomplete ? text.size() : start + used;
    out.diagnostics.push_back(make(options.file_name, lines, at, "",
                                   ec == json::error::too_deep ? "too_deep" : "syntax",
                                   syntax_message(ec, opts.max_depth, text, at)));
    return out;
  }
  const json::value root = p.release();
  {
    // Before the walker, which would quote the long strings in its own messages.
    std::vector<problem> long_strings;
    check_lengths(root, path{}, options.limits.max_string_bytes, long_strings);
    if (!long_strings.empty()) {
      out.diagnostics = locate(text, options.file_name, std::move(long_strings), false);
      return out;
    }
  }
  walker w{options.limits};
  out.rules = w.run(root);
  out.walked = true;
  locator scan{text, start, nullptr, false};
  scan.run();
  if (!w.problems.empty() || !scan.duplicates.empty()) {
    out.diagnostics =
        locate(text, options.file_name, std::move(w.problems), !scan.duplicates.empty());
  }
  return out;
}

load_result load_impl(std::string_view text, const load_options& options) {
  load_result r;
  parsed p = parse_impl(text, options);
  if (!p.diagnostics.empty()) {
    r.diagnostics = std::move(p.diagnostics);
    if (p.walked) {
      // Every problem at once: the compiler's too, where the parser's cannot have caused them.
      try {
        program::compile(std::move(p.rules), options.limits, options.zones);
      } catch (const rule_error& e) {
        std::vector<problem> more;
        for (const auto& d : detail::independent_problems(r.diagnostics, e.diagnostics())) {
          more.push_back({d.json_pointer, false, d.code, d.message});
        }
        for (auto& d : locate(text, options.file_name, std::move(more), false)) {
          r.diagnostics.push_back(std::move(d));
        }
        std::stable_sort(r.diagnostics.begin(), r.diagnostics.end(),
                         [](const auto& x, const auto& y) {
                           return std::tie(x.line, x.column) < std::tie(y.line, y.column);
                         });
      }
    }
    return r;
  }
  try {
    r.program = program::compile(std::move(p.rules), options.limits, options.zones);
  } catch (const rule_error& e) {
    // The compiler knows pointers, not positions: locate them in the text.
    std::vector<problem> problems;
    for (const auto& d : e.diagnostics()) {
      problems.push_back({d.json_pointer, false, d.code, d.message});
    }
    r.diagnostics = locate(text, options.file_name, std::move(problems), false);
  }
  return r;
}

}  // namespace

rule_set parse_rules(std::string_view json_text, const load_options& options) {
  parsed p = parse_impl(json_text, options);
  if (!p.diagnostics.empty()) {
    throw rule_error(std::move(p.diagnostics));
  }
  return std::move(p.rules);
}

std::shared_ptr<const program> load_rules(std::string_view json_text, const load_options& options) {
  load_result r = load_impl(json_text, options);
  if (!r) {
    throw rule_error(std::move(r.diagnostics));
  }
  return std::move(r.program);
}

load_result try_load_rules(std::string_view json_text, const load_options& options) {
  return load_impl(json_text, options);
}

std::shared_ptr<const program> load_rules_file(const std::string& path, program_limits limits,
                                               std::shared_ptr<const zone_provider> zones) {
  {
    // Refuse an oversized file before reading it (a pipe is bounded while reading, below).
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<std::uint64_t>(st.st_size) > limits.max_text_bytes) {
      throw rule_error(
          {too_large(path, static_cast<std::size_t>(st.st_size), limits.max_text_bytes)});
    }
  }
  std::string text;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  int error = f == nullptr ? errno : 0;
  if (f != nullptr) {
    std::array<char, 65536> buffer{};
    std::size_t n = 0;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), f)) > 0) {
      text.append(buffer.data(), n);
      if (text.size() > limits.max_text_bytes) {
        break;  // load_rules reports it; no need to read the rest
      }
    }
    if (std::ferror(f) != 0) {
      error = errno != 0 ? errno : EIO;
    }
    std::fclose(f);
  }
  if (error != 0) {
    diagnostic d;
    d.file = path;
    d.code = "io";
    d.message = fmt::format("cannot read the file: {}", std::strerror(error));
    throw rule_error({std::move(d)});
  }
  return load_rules(text, {.file_name = path, .limits = limits, .zones = std::move(zones)});
}

}  // namespace nudge
