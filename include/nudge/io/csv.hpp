// nudge/io/csv.hpp: CSV fields as RFC 4180 writes them, for every CSV nudge writes (the actions of
// `nudge replay`, `nudge run --out`, `nudge outbox`, Python's ReplayResult.write_csv), and the
// one splitter of CSV records that every CSV nudge reads goes through (the event and contact
// readers, `nudge sort`).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nudge {

/// True if `field` must be quoted in CSV (RFC 4180): it holds a comma, a double quote, a CR or
/// an LF. Unquoted, such a field would shift the columns of every tool that reads the file.
constexpr bool csv_needs_quotes(std::string_view field) noexcept {
  // One pass, two comparisons for most characters: the four that matter are ',' and three at
  // or below '"' (std::string_view::find_first_of called memchr over the four for each
  // character of the field, 9 % of writing a W1 replay's actions).
  for (const char c : field) {
    if (static_cast<unsigned char>(c) <= '"' || c == ',') [[unlikely]] {
      if (c == ',' || c == '"' || c == '\r' || c == '\n') {
        return true;
      }
    }
  }
  return false;
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

/// Splits one CSV record (one line, without its line break) into `fields` (RFC 4180: a field in
/// double quotes may hold commas and doubled quotes). A record without quotes (the common case)
/// yields views into `line`; quoted fields are unescaped into `storage`, which the views then
/// point into. Returns false with `reason` set on a malformed quote: "unterminated quoted
/// field", "unexpected character after a quoted field", "quote inside an unquoted field".
bool split_csv(std::string_view line, std::vector<std::string_view>& fields,
               std::vector<std::string>& storage, std::string& reason);

}  // namespace nudge
