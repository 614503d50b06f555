// Locating JSON pointers in the text: the locator's scan, line:column, and the located and
// sorted diagnostics.
#include "locator.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace nudge::json_rules {

void locator::run() {
  skip_ws();
  std::string path;
  value(path, npos, wanted_ != nullptr);
}

void locator::skip_ws() {
  while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
                                 text_[pos_] == '\r')) {
    ++pos_;
  }
}

// Skips a string starting at pos_ (the opening quote); returns its raw contents.
std::string_view locator::string_raw() {
  const std::size_t begin = ++pos_;
  while (pos_ < text_.size() && text_[pos_] != '"') {
    pos_ += text_[pos_] == '\\' ? 2 : 1;
  }
  const std::string_view raw = text_.substr(begin, pos_ - begin);
  ++pos_;
  return raw;
}

std::string_view locator::unescape(std::string_view raw, std::size_t begin_quote) {
  if (raw.find('\\') == std::string_view::npos) {
    return raw;
  }
  json::error_code ec;
  auto v = json::parse(text_.substr(begin_quote, raw.size() + 2), ec);
  owned_.push_back(ec ? std::string{raw} : std::string{v.as_string()});
  return owned_.back();
}

void locator::value(std::string& path, std::size_t key_at, bool recording) {
  // `recording`: `path` is being built for this value.
  if (recording) {
    const bool is_wanted = wanted_->count(path) > 0;
    if (is_wanted) {
      places[path] = place{key_at, pos_};
    }
    recording = is_wanted || all_paths_;
  }
  if (pos_ >= text_.size()) {
    return;
  }
  const char c = text_[pos_];
  if (c == '{') {
    ++pos_;
    skip_ws();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return;
    }
    const std::size_t frame = keys_.size();
    while (pos_ < text_.size()) {
      const std::size_t kat = pos_;
      const std::string_view key = unescape(string_raw(), kat);
      skip_ws();
      ++pos_;  // ':'
      skip_ws();
      const std::size_t len = path.size();
      if (recording) {
        path += '/';
        path += token(key);
      }
      value(path, kat, recording);
      path.resize(len);
      keys_.push_back({key, kat});
      skip_ws();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        skip_ws();
        continue;
      }
      ++pos_;  // '}'
      break;
    }
    find_duplicates(path, frame, recording);
    keys_.resize(frame);
    return;
  }
  if (c == '[') {
    ++pos_;
    skip_ws();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return;
    }
    for (std::size_t i = 0; pos_ < text_.size(); ++i) {
      const std::size_t len = path.size();
      if (recording) {
        path += '/';
        path += std::to_string(i);
      }
      value(path, npos, recording);
      path.resize(len);
      skip_ws();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        skip_ws();
        continue;
      }
      ++pos_;  // ']'
      break;
    }
    return;
  }
  if (c == '"') {
    string_raw();
    return;
  }
  while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != ']' && text_[pos_] != '}' &&
         text_[pos_] != ' ' && text_[pos_] != '\t' && text_[pos_] != '\n' && text_[pos_] != '\r') {
    ++pos_;
  }
}

// Reports each later occurrence of a key in the object whose keys are keys_[frame...].
void locator::find_duplicates(const std::string& path, std::size_t frame, bool recording) {
  const std::size_t n = keys_.size() - frame;
  if (n < 2) {
    return;
  }
  auto report = [&](const key_entry& first, const key_entry& later) {
    duplicates.push_back({recording ? path + "/" + token(later.key) : std::string{},
                          std::string{later.key}, first.offset, later.offset});
  };
  if (n <= 32) {  // rule objects are small: pairwise, without allocating
    for (std::size_t i = frame + 1; i < keys_.size(); ++i) {
      for (std::size_t j = frame; j < i; ++j) {
        if (keys_[j].key == keys_[i].key) {
          report(keys_[j], keys_[i]);
          break;
        }
      }
    }
    return;
  }
  std::vector<key_entry> sorted(keys_.begin() + static_cast<std::ptrdiff_t>(frame), keys_.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const key_entry& a, const key_entry& b) { return a.key < b.key; });
  for (std::size_t i = 1, first = 0; i < sorted.size(); ++i) {
    if (sorted[i].key != sorted[first].key) {
      first = i;
    } else {
      report(sorted[first], sorted[i]);
    }
  }
}

namespace {

// The pointers to locate and all their ancestors ("/a/b" -> "/a/b", "/a", "").
std::unordered_set<std::string> with_ancestors(const std::vector<std::string>& pointers) {
  std::unordered_set<std::string> out;
  for (std::string p : pointers) {
    for (;;) {
      if (!out.insert(p).second) {
        break;  // its ancestors are in already
      }
      if (p.empty()) {
        break;
      }
      p.resize(p.rfind('/'));
    }
  }
  return out;
}

// Where `pointer` starts in the text, falling back to its nearest ancestor that is there (the
// compiler names parts like "/rules/0/on/event" that a shorthand does not spell out).
std::size_t offset_of(const locator& loc, std::string pointer, bool at_key) {
  for (;;) {
    if (auto it = loc.places.find(pointer); it != loc.places.end()) {
      if (at_key && it->second.key != npos) {
        return it->second.key;
      }
      return it->second.value;
    }
    if (pointer.empty()) {
      return 0;
    }
    pointer.resize(pointer.rfind('/'));
    at_key = false;
  }
}

}  // namespace

diagnostic make(const std::string& file, const line_index& lines, std::size_t offset,
                std::string pointer, std::string code, std::string message) {
  diagnostic d;
  d.file = file;
  std::tie(d.line, d.column) = lines.at(offset);
  d.json_pointer = std::move(pointer);
  d.code = std::move(code);
  d.message = std::move(message);
  return d;
}

std::size_t bom_length(std::string_view text) {
  return text.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;  // as some editors write
}

// Positions for `problems` (and duplicate keys, when asked), sorted by position in the text.
std::vector<diagnostic> locate(std::string_view text, const std::string& file,
                               std::vector<problem> problems, bool with_duplicates) {
  std::vector<std::string> pointers;
  pointers.reserve(problems.size());
  for (const auto& pr : problems) {
    pointers.push_back(pr.pointer);
  }
  const auto wanted = with_ancestors(pointers);
  locator loc{text, bom_length(text), &wanted, with_duplicates};
  loc.run();
  const line_index lines(text);
  std::vector<std::pair<std::size_t, diagnostic>> found;
  for (const auto& d : loc.duplicates) {
    const auto [line, column] = lines.at(d.first);
    found.emplace_back(d.second, make(file, lines, d.second, d.pointer, "duplicate_key",
                                      fmt::format("duplicate field {} (first at {}:{})",
                                                  quoted(d.key), line, column)));
  }
  for (auto& pr : problems) {
    const std::size_t at = offset_of(loc, pr.pointer, pr.at_key);
    found.emplace_back(at, make(file, lines, at, std::move(pr.pointer), std::move(pr.code),
                                std::move(pr.message)));
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<diagnostic> out;
  out.reserve(found.size());
  for (auto& [at, d] : found) {
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace nudge::json_rules
