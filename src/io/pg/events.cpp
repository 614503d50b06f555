// pg_read_events: the events table hosts insert into, read through the CSV reader so that a row
// is checked exactly as the same line of an events file would be.
#include <algorithm>
#include <iterator>

#include <fmt/format.h>

#include <nudge/io/csv.hpp>
#include <nudge/io/pg_store.hpp>

#include "io/pg/conn.hpp"
#include "io/pg/schema.hpp"

namespace nudge {

std::vector<event> pg_read_events(const std::string& url, const std::string& name,
                                  event_read_options options) {
  pg_detail::connection c{url};
  pg_detail::check_schema(c);
  auto r = c.exec("read nudge_events",
                  "SELECT seq, ts, contact, type, key, value FROM nudge_events ORDER BY seq");
  std::string text = "ts,contact,type,key,value\n";
  auto out = std::back_inserter(text);
  std::vector<std::size_t> first_line;  // of each row in `text` (a value may hold line breaks)
  std::size_t line = 2;
  for (int i = 0; i < r.rows(); ++i) {
    first_line.push_back(line);
    ++line;
    for (int col = 1; col <= 5; ++col) {
      const auto field = r.text(i, col);  // NULL reads as empty, as an empty CSV field
      line += static_cast<std::size_t>(std::count(field.begin(), field.end(), '\n'));
      out = write_csv_field(out, field);
      *out++ = col == 5 ? '\n' : ',';
    }
  }
  options.format = file_format::csv;
  options.one_line_records = false;  // a quoted line break inside a value is the value's
  try {
    event_reader reader{std::move(text), file_format::csv, name, std::move(options)};
    std::vector<event> events, batch;
    while (reader.read(batch, 65536)) {
      events.insert(events.end(), std::make_move_iterator(batch.begin()),
                    std::make_move_iterator(batch.end()));
    }
    return events;
  } catch (const read_error& e) {
    // The reader counts CSV lines; a row is named by its seq.
    const auto it = std::upper_bound(first_line.begin(), first_line.end(), e.line());
    if (e.line() < 2 || it == first_line.begin()) {
      throw;
    }
    throw pg_error(fmt::format("{}: row seq {}: {}", name,
                               r.text(static_cast<int>(it - first_line.begin() - 1), 0),
                               e.reason()));
  }
}

}  // namespace nudge
