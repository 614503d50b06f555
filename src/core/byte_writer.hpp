// Little-endian fixed-width fields written into a byte string (their checksum is nudge::fnv1a64,
// evaluate.hpp, the one FNV-1a of the library): the program fingerprint
// (core/compile/fingerprint.cpp) and the snapshot codec (io/snapshot/) write with the same writer,
// so that both keep one byte order. Private: not installed.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include <nudge/evaluate.hpp>
#include <nudge/time.hpp>
#include <nudge/value.hpp>

namespace nudge::byte_codec {

// ---- Writing: explicit little-endian fixed-width fields ----------------------------------------

class writer {
 public:
  // Appends to `out`. While the writer lives, `out` may hold slack past the written bytes:
  // use out() to see what was written; the destructor trims the slack.
  explicit writer(std::string& out) : out_(out), len_(out.size()) {}
  ~writer() { out_.resize(len_); }
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  void u8(std::uint8_t v) {
    const char b[1] = {static_cast<char>(v)};
    put(b);
  }
  // Whole fields at once into slack reserved ahead: byte-by-byte push_back, and then
  // std::string::append's memcpy call per field, were the SQLite store's main encoding cost.
  void u32(std::uint32_t v) {
    const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 24)};
    put(b);
  }
  void u64(std::uint64_t v) {
    const char b[8] = {static_cast<char>(v),       static_cast<char>(v >> 8),
                       static_cast<char>(v >> 16), static_cast<char>(v >> 24),
                       static_cast<char>(v >> 32), static_cast<char>(v >> 40),
                       static_cast<char>(v >> 48), static_cast<char>(v >> 56)};
    put(b);
  }
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void time(time_point t) { i64(to_epoch(t)); }
  void dur(duration d) { i64(d.count()); }
  void count(std::size_t n) { u32(static_cast<std::uint32_t>(n)); }
  void raw(std::string_view s) {
    reserve(s.size());
    std::memcpy(out_.data() + len_, s.data(), s.size());
    len_ += s.size();
  }
  void str(std::string_view s) {
    count(s.size());
    raw(s);
  }
  void val(const value& v) {
    u8(static_cast<std::uint8_t>(v.index()));
    std::visit(
        [this](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            str(x);
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            i64(x);
          } else if constexpr (std::is_same_v<T, double>) {
            f64(x);
          } else if constexpr (std::is_same_v<T, bool>) {
            u8(x ? 1 : 0);
          } else {
            time(x);
          }
        },
        v);
  }
  // The bytes written so far (and the ones before the writer), without slack.
  std::string& out() {
    out_.resize(len_);
    return out_;
  }

 private:
  template <std::size_t N>
  void put(const char (&b)[N]) {
    reserve(N);
    std::memcpy(out_.data() + len_, b, N);  // a constant size: a single store, no call
    len_ += N;
  }
  void reserve(std::size_t n) {
    if (out_.size() - len_ < n) {
      // A little slack at a time (std::string's capacity still grows geometrically): a writer
      // per record on a long buffer must not zero-fill the buffer's length each time.
      out_.resize(len_ + n + 1024);
    }
  }

  std::string& out_;
  std::size_t len_;
};

}  // namespace nudge::byte_codec
