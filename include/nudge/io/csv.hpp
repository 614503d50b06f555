// nudge/io/csv.hpp: CSV fields as RFC 4180 writes them, for every CSV nudge writes (the actions of
// `nudge replay`, `nudge run --out`, `nudge outbox`, Python's ReplayResult.write_csv).
#pragma once

#include <string_view>

namespace nudge {

/// True if `field` must be quoted in CSV (RFC 4180): it holds a comma, a double quote, a CR or
/// an LF. Unquoted, such a field would shift the columns of every tool that reads the file.
constexpr bool csv_needs_quotes(std::string_view field) noexcept {
  return field.find_first_of(",\"\r\n") != std::string_view::npos;
}

/// Writes `field` to `out` as one CSV field: as it is, or if csv_needs_quotes(), between double
/// quotes with each double quote doubled (`Smith, "JJ"` becomes `"Smith, ""JJ"""`). The readers
/// (nudge/io/read_events.hpp) read it back. Returns the iterator past the field.
template <class OutputIt>
OutputIt write_csv_field(OutputIt out, std::string_view field) {
  if (!csv_needs_quotes(field)) {
    for (char c : field) {
      *out++ = c;
    }
    return out;
  }
  *out++ = '"';
  for (char c : field) {
    if (c == '"') {
      *out++ = '"';
    }
    *out++ = c;
  }
  *out++ = '"';
  return out;
}

}  // namespace nudge
