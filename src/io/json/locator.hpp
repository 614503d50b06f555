// Private to the JSON rule-file loader: where JSON pointers start in the text (line:column),
// and duplicate keys, which the DOM merges without a word.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "walker.hpp"

namespace nudge::json_rules {

// ---- Locating pointers in the text ------------------------------------------------------------

// Walks text that Boost.JSON has already accepted (so it is well-formed and its nesting is
// bounded) and finds duplicate keys, which the DOM merges without a word. Given the pointers to
// report, it also records where each of them (and each of their ancestors) starts: the value,
// and the key for object members. Subtrees that hold no wanted pointer are skipped over without
// building their pointers, so locating a few problems in a large file stays cheap.
class locator {
 public:
  struct place {
    std::size_t key = npos;  // the member's key, for object members
    std::size_t value = 0;
  };
  struct duplicate {
    std::string pointer;  // empty unless the locator records
    std::string key;
    std::size_t first = 0, second = 0;  // key offsets
  };

  /// `wanted`: the pointers to record, with all their ancestors; null to record nothing.
  /// `all_paths`: build every pointer, so that duplicates anywhere are reported with theirs.
  locator(std::string_view text, std::size_t start, const std::unordered_set<std::string>* wanted,
          bool all_paths)
      : text_(text), pos_(start), wanted_(wanted), all_paths_(all_paths) {}

  void run();

  std::unordered_map<std::string, place> places;
  std::vector<duplicate> duplicates;

 private:
  struct key_entry {
    std::string_view key;  // unescaped: into the text, or into owned_
    std::size_t offset;
  };
  std::string_view text_;
  std::size_t pos_;
  const std::unordered_set<std::string>* wanted_;
  bool all_paths_;
  std::vector<key_entry> keys_;    // a stack: the keys of each open object
  std::deque<std::string> owned_;  // unescaped keys that had escapes (stable addresses)

  void skip_ws();
  std::string_view string_raw();
  std::string_view unescape(std::string_view raw, std::size_t begin_quote);
  void value(std::string& path, std::size_t key_at, bool recording);
  void find_duplicates(const std::string& path, std::size_t frame, bool recording);
};

// Offsets to 1-based line and column; columns count UTF-8 characters, not bytes.
class line_index {
 public:
  explicit line_index(std::string_view text) : text_(text) {
    starts_.push_back(0);
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\n') {
        starts_.push_back(i + 1);
      }
    }
  }
  std::pair<std::size_t, std::size_t> at(std::size_t offset) const {
    offset = std::min(offset, text_.size());
    const auto it = std::upper_bound(starts_.begin(), starts_.end(), offset) - 1;
    std::size_t column = 1;
    for (std::size_t i = *it; i < offset; ++i) {
      if ((static_cast<unsigned char>(text_[i]) & 0xC0U) != 0x80U) {
        ++column;
      }
    }
    return {static_cast<std::size_t>(it - starts_.begin()) + 1, column};
  }

 private:
  std::string_view text_;
  std::vector<std::size_t> starts_;
};

diagnostic make(const std::string& file, const line_index& lines, std::size_t offset,
                std::string pointer, std::string code, std::string message);

std::size_t bom_length(std::string_view text);

// Positions for `problems` (and duplicate keys, when asked), sorted by position in the text.
std::vector<diagnostic> locate(std::string_view text, const std::string& file,
                               std::vector<problem> problems, bool with_duplicates);

}  // namespace nudge::json_rules
