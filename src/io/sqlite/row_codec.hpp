// The payloads of the store's rows: little-endian fields as in the snapshot format, state
// records with their zero runs coded (row_codec.cpp), and a bounds-checked reader.
// Private: not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nudge/contact_state.hpp>

namespace nudge::sqlite_detail {

// ---- Row payloads: little-endian, as the snapshot format -----------------------------------

inline void put_u32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 24)};
  out.append(b, 4);
}
inline void put_u64(std::string& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v));
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
}
inline void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// Appends `bytes` to `out` with each run of zeros coded as 0x00 and its length (row_codec.cpp).
void put_zero_runs(std::string& out, std::string_view bytes);

// The bytes put_zero_runs coded, appended to `out`; false if the coding is broken.
bool get_zero_runs(std::string_view coded, std::string& out);

// The contacts a damaged row names, read as far as its structure holds, for the error message:
// " (its records name contacts c1, c2 and 3 more, as far as they can be read)", or empty.
std::string contacts_named(bool outbox, std::string_view blob);

// Appends one state record (snapshot codec, zero runs coded), prefixed by its coded length.
// `record` is scratch space.
void put_state(std::string& out, const contact_state& s, std::string& record);

// Bounds-checked reading of a row payload; `fail` gets the byte offset and what was expected.
class payload {
 public:
  explicit payload(std::string_view bytes) : bytes_(bytes) {}
  bool done() const noexcept { return pos_ == bytes_.size(); }
  std::size_t pos() const noexcept { return pos_; }
  // nullptr if fewer than n bytes are left.
  const char* take(std::size_t n) {
    if (bytes_.size() - pos_ < n) {
      return nullptr;
    }
    const char* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  bool u32(std::uint32_t& v) {
    const char* p = take(4);
    if (p == nullptr) {
      return false;
    }
    v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    }
    return true;
  }
  bool u64(std::uint64_t& v) {
    std::uint32_t lo = 0, hi = 0;
    if (!u32(lo) || !u32(hi)) {
      return false;
    }
    v = lo | (static_cast<std::uint64_t>(hi) << 32);
    return true;
  }
  bool str(std::string_view& s) {
    std::uint32_t n = 0;
    if (!u32(n)) {
      return false;
    }
    const char* p = take(n);
    if (p == nullptr) {
      return false;
    }
    s = {p, n};
    return true;
  }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

}  // namespace nudge::sqlite_detail
