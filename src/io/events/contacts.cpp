// Contact lists (read_contacts): CSV and JSON Lines, checked as docs/rules.md says.
#include <algorithm>
#include <cstring>
#include <optional>
#include <tuple>
#include <utility>
#include <variant>

#include <fmt/format.h>
#include <simdjson.h>

#include <nudge/detail/compiled.hpp>
#include <nudge/geo.hpp>
#include <nudge/io/read_events.hpp>

#include "../../core/contact_checks.hpp"
#include "common.hpp"

namespace nudge {

using namespace event_io;

// ---- contacts ----------------------------------------------------------------------------------

namespace {

class contact_parser {
 public:
  contact_parser(const text_buffer& buf, file_format format, std::string file,
                 const contact_read_options& options)
      : buf_(buf),
        format_(format),
        file_(std::move(file)),
        options_(options),
        cursor_{buf.data(), buf.data(), buf.data() + buf.size} {
    cursor_.csv = format == file_format::csv;
    cursor_.max_record = options.limits.max_line_bytes;
    // The whole file is valid UTF-8 (nearly always): checked once here, not line by line.
    utf8_valid_ = simdjson::validate_utf8(buf.data(), buf.size);
  }

  std::vector<contact> run() {
    const bool csv = format_ == file_format::csv;
    if (csv) {
      read_header();
    }
    // Room for a contact per line left: the vector never moves its contacts to grow, and holds
    // no more than the file's lines (a doubling vector held up to twice as many).
    const std::size_t most = lines_from(cursor_.pos);
    out_.reserve(most);
    first_line_.reserve(most);
    std::string_view line;
    std::span<const std::string_view> row;
    while (csv ? next_csv_record(line, row) : cursor_.next(line)) {
      if (line.empty()) {
        continue;
      }
      // Parsed in place: the vector's new last contact, dropped again if refused.
      contact& c = out_.emplace_back();
      const bool ok = !line_too_long(line, options_.limits, reason_) &&
                      (csv ? parse_csv(line, row, c) : parse_jsonl(line, c));
      if (ok && c.id.empty()) {
        reason_ = "empty contact id";
      } else if (ok && options_.program != nullptr && !c.time_zone.empty() &&
                 !options_.program->knows_time_zone(c.time_zone)) {
        reason_ = detail::unknown_zone(c);
      } else if (ok && !name_too_long(c.id, options_.limits, "contact id", reason_)) {
        auto [it, fresh] = first_line_.emplace(c.id, cursor_.line);
        if (fresh) {
          continue;
        }
        reason_ = fmt::format("duplicate contact {} (first on line {})", quote(c.id), it->second);
      }
      out_.pop_back();
      input_problem p{file_, cursor_.line, std::move(reason_), problem_text(line, options_.limits)};
      reason_.clear();
      if (!options_.on_reject) {
        throw read_error(std::move(p));
      }
      options_.on_reject(p);
    }
    return std::move(out_);
  }

 private:
  enum class column : std::uint8_t {
    id,
    status,
    owner,
    stage,
    time_zone,
    score,
    consent,
    detail,
    lat,
    lon
  };

  // The location from "lat" and "lon" (docs/rules.md, "Location"): both or neither, in range.
  bool set_location(std::optional<double> lat, std::optional<double> lon, contact& c) {
    if (!lat && !lon) {
      return true;
    }
    if (!lat || !lon) {
      reason_ = fmt::format("{} without {} (a location needs both)", lat ? "lat" : "lon",
                            lat ? "lon" : "lat");
      return false;
    }
    if (auto why = geo_problem(*lat, *lon)) {
      reason_ = *why;
      return false;
    }
    c.location = geo_point{*lat, *lon};
    return true;
  }

  // The lines from `p` to the end of the buffer.
  std::size_t lines_from(const char* p) const {
    std::size_t n = 1;
    const char* end = buf_.data() + buf_.size;
    while ((p = static_cast<const char*>(
                std::memchr(p, '\n', static_cast<std::size_t>(end - p)))) != nullptr) {
      ++n;
      ++p;
    }
    return n;
  }

  // The next CSV record: a line without quotes is split at once (`row` then holds its fields);
  // any other goes through the cursor (quotes, quoted line breaks; `row` empty).
  bool next_csv_record(std::string_view& line, std::span<const std::string_view>& row) {
    const char* line_end = nullptr;
    const char* next = nullptr;
    const std::size_t n = splitter_.split(cursor_.pos, cursor_.end, options_.limits.max_line_bytes,
                                          columns_.size(), cells_, line_end, next);
    if (n == 0) {
      row = {};
      return cursor_.next(line);
    }
    line = std::string_view{cursor_.pos, static_cast<std::size_t>(line_end - cursor_.pos)};
    cursor_.line = ++cursor_.lines_done;
    cursor_.pos = next;
    row = {cells_.data(), n};
    return true;
  }

  const text_buffer& buf_;
  file_format format_;
  std::string file_;
  const contact_read_options& options_;
  line_cursor cursor_;
  std::vector<contact> out_;
  detail::string_map<std::size_t> first_line_;
  std::vector<std::pair<column, std::string>> columns_;
  std::vector<std::string_view> fields_;
  std::vector<std::string> storage_;
  plain_splitter splitter_;
  std::vector<std::string_view> cells_;       // the fast path's fields
  std::vector<std::size_t> details_by_name_;  // the detail columns, by name
  od::parser parser_;
  std::string reason_;
  bool utf8_valid_ = false;

  [[noreturn]] void bad_header(std::string why, std::string_view text) {
    throw read_error(
        {file_, cursor_.line, "bad header: " + why, problem_text(text, options_.limits)});
  }

  void read_header() {
    std::string_view line;
    if (!cursor_.next(line)) {
      bad_header("the file is empty (expected a header row with a \"contact\" column)", {});
    }
    if (line_too_long(line, options_.limits, reason_) || !valid_utf8(line, reason_)) {
      bad_header(reason_, line);
    }
    if (!split_csv(line, fields_, storage_, reason_)) {
      bad_header(reason_, line);
    }
    bool has_id = false;
    detail::string_map<bool> seen;
    for (std::string_view name : fields_) {
      if (name.empty()) {
        bad_header("a column has no name", line);
      }
      if (name_too_long(name, options_.limits, "a column name", reason_)) {
        bad_header(reason_, line);
      }
      if (!seen.emplace(std::string{name}, true).second) {
        bad_header(fmt::format("column {} appears twice", quote(name)), line);
      }
      column c = column::detail;
      if (name == "contact" || name == "id") {
        if (has_id) {
          bad_header("both \"contact\" and \"id\" columns given", line);
        }
        has_id = true;
        c = column::id;
      } else if (name == "status") {
        c = column::status;
      } else if (name == "owner") {
        c = column::owner;
      } else if (name == "stage") {
        c = column::stage;
      } else if (name == "time_zone") {
        c = column::time_zone;
      } else if (name == "score") {
        c = column::score;
      } else if (name == "consent") {
        c = column::consent;
      } else if (name == "lat") {
        c = column::lat;
      } else if (name == "lon") {
        c = column::lon;
      }
      columns_.emplace_back(c, std::string{name});
    }
    if (!has_id) {
      bad_header("missing column \"contact\" (or \"id\")", line);
    }
    cells_.resize(plain_splitter::cells_for(columns_.size()));
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (columns_[i].first == column::detail) {
        details_by_name_.push_back(i);
      }
    }
    std::sort(details_by_name_.begin(), details_by_name_.end(), [&](std::size_t a, std::size_t b) {
      return columns_[a].second < columns_[b].second;
    });
  }

  // `row`: the line's fields if next_csv_record split it, else empty (split here).
  bool parse_csv(std::string_view line, std::span<const std::string_view> row, contact& c) {
    if (!utf8_valid_ && !valid_utf8(line, reason_)) {
      return false;
    }
    if (row.empty()) {
      if (!split_csv(line, fields_, storage_, reason_)) {
        return false;
      }
      row = fields_;
    }
    if (row.size() != columns_.size()) {
      reason_ = fmt::format("expected {} fields, got {}", columns_.size(), row.size());
      return false;
    }
    const input_limits& limits = options_.limits;
    std::optional<double> lat, lon;
    for (std::size_t i = 0; i < row.size(); ++i) {
      const std::string_view f = row[i];
      if (columns_[i].first != column::id && columns_[i].first != column::score &&
          string_too_long(f, limits, columns_[i].second, reason_)) {
        return false;
      }
      switch (columns_[i].first) {
        case column::id:
          set_text(c.id, f);
          break;
        case column::status:
          if (!f.empty()) {
            set_text(c.status, f);
          }
          break;
        case column::owner:
          set_text(c.owner, f);
          break;
        case column::stage:
          set_text(c.stage, f);
          break;
        case column::time_zone:
          set_text(c.time_zone, f);
          break;
        case column::score:
          if (!f.empty() && !parse_decimal(f, c.score, "score", reason_)) {
            return false;
          }
          break;
        case column::consent:  // the consented channels, ';'-separated: "email;sms"
          for (std::size_t from = 0; from <= f.size();) {
            const auto end = std::min(f.find(';', from), f.size());
            if (end > from) {
              if (!detail::known_channel(f.substr(from, end - from), reason_)) {
                return false;
              }
              c.consent.insert_or_assign(std::string{f.substr(from, end - from)}, true);
            }
            from = end + 1;
          }
          break;
        case column::detail:  // after the loop
          break;
        case column::lat:
        case column::lon:
          if (!f.empty()) {
            double d = 0;
            if (!parse_decimal(f, d, columns_[i].second, reason_)) {
              return false;
            }
            (columns_[i].first == column::lat ? lat : lon) = d;
          }
          break;
      }
    }
    set_details(row, c);
    return set_location(lat, lon, c);
  }

  // The non-empty detail cells, as the flat map's sequence built in the order of the names, in
  // room made once, each value's string made in place (inserted in the file's order, each
  // detail was made, moved in, shifted by the next ones, and the map grew one by one: 460
  // instructions a contact of two details).
  void set_details(std::span<const std::string_view> row, contact& c) {
    std::size_t n = 0;
    for (const std::size_t i : details_by_name_) {
      n += row[i].empty() ? 0 : 1;
    }
    if (n == 0) {
      return;
    }
    auto details = c.details.extract_sequence();
    details.reserve(n);
    for (const std::size_t i : details_by_name_) {
      if (!row[i].empty()) {
        details.emplace_back(std::piecewise_construct, std::forward_as_tuple(columns_[i].second),
                             std::forward_as_tuple(std::in_place_index<0>, row[i]));
      }
    }
    c.details.adopt_sequence(boost::container::ordered_unique_range, std::move(details));
  }

  bool parse_jsonl(std::string_view line, contact& c) {
    const input_limits& limits = options_.limits;
    bool has_id = false;
    std::optional<double> lat, lon;
    bool ok = for_each_member(
        parser_, buf_, cursor_.offset_of(line), line, options_.limits, reason_,
        [&](std::string_view k, od::value v) {
          if (k == "id" || k == "contact") {
            if (has_id) {
              reason_ = "both \"id\" and \"contact\" given";
              return false;
            }
            has_id = true;
            return json_name(v, c.id, reason_, k, limits);
          }
          if (k == "status") {
            return json_text(v, c.status, reason_, k, limits);
          }
          if (k == "owner") {
            return json_text(v, c.owner, reason_, k, limits);
          }
          if (k == "stage") {
            return json_text(v, c.stage, reason_, k, limits);
          }
          if (k == "time_zone") {
            return json_text(v, c.time_zone, reason_, k, limits);
          }
          if (k == "lat" || k == "lon") {
            double d = 0;
            if (v.get_double().get(d) || !std::isfinite(d)) {
              reason_ = fmt::format("{} must be a finite number", k);
              return false;
            }
            (k == "lat" ? lat : lon) = d;
            return true;
          }
          if (k == "score") {
            if (v.get_double().get(c.score) || !std::isfinite(c.score)) {
              reason_ = "score must be a finite number";
              return false;
            }
            return true;
          }
          if (k == "details") {
            return json_value_map(v, c.details, reason_, "details", limits);
          }
          if (k == "tags") {
            od::object o;
            if (v.get_object().get(o)) {
              reason_ = "tags must be an object (tag -> time added)";
              return false;
            }
            for (auto f : o) {
              std::string_view tag;
              if (f.unescaped_key().get(tag)) {
                reason_ = "not valid JSON";
                return false;
              }
              if (name_too_long(tag, limits, "a tag", reason_)) {
                return false;
              }
              std::string name{tag};
              time_point at;
              if (!json_time(f.value(), at, reason_, fmt::format("tags/{}", name))) {
                return false;
              }
              c.tags.insert_or_assign(std::move(name), at);
            }
            return true;
          }
          if (k == "consent") {
            od::object o;
            if (v.get_object().get(o)) {
              reason_ = "consent must be an object (channel -> bool)";
              return false;
            }
            for (auto f : o) {
              std::string_view channel;
              bool granted;
              if (f.unescaped_key().get(channel)) {
                reason_ = "not valid JSON";
                return false;
              }
              if (name_too_long(channel, limits, "a consent channel", reason_) ||
                  !detail::known_channel(channel, reason_)) {
                return false;
              }
              if (f.value().get_bool().get(granted)) {
                reason_ = fmt::format("consent/{} must be a bool", channel);
                return false;
              }
              c.consent.insert_or_assign(std::string{channel}, granted);
            }
            return true;
          }
          if (k == "groups") {
            od::array a;
            if (v.get_array().get(a)) {
              reason_ = "groups must be an array of strings";
              return false;
            }
            for (auto g : a) {
              std::string_view name;
              if (g.get_string().get(name)) {
                reason_ = "groups must be an array of strings";
                return false;
              }
              if (name_too_long(name, limits, "a group", reason_)) {
                return false;
              }
              c.groups.insert(std::string{name});
            }
            return true;
          }
          reason_ = fmt::format(
              "unknown field {} (expected id, status, details, tags, owner, stage, score, consent, "
              "time_zone, groups, lat, lon)",
              quote(k));
          return false;
        });
    if (ok && !has_id) {
      reason_ = "missing field \"id\"";
      return false;
    }
    return ok && set_location(lat, lon, c);
  }
};

}  // namespace

std::vector<contact> parse_contacts(std::string_view text, file_format format,
                                    const std::string& file_name,
                                    const contact_read_options& options) {
  const text_buffer buf = padded(std::string{text});
  return contact_parser{buf, format, file_name, options}.run();
}

std::vector<contact> read_contacts(const std::string& path, const contact_read_options& options) {
  if (!options.format && path != "-") {
    format_of(path);  // a bad extension is refused before the file is read
  }
  const text_buffer buf = read_whole_file(path);
  return contact_parser{buf, format_for(path, options.format, buf), path, options}.run();
}

}  // namespace nudge