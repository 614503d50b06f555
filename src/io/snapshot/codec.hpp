// The snapshot codec's reader and its contact-state records, shared by the state codec
// (states.cpp) and the snapshot file (file.cpp). Private: not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <nudge/contact_state.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/program.hpp>

#include "core/byte_writer.hpp"

namespace nudge::snapshot_codec {

using byte_codec::writer;

// ---- Reading: every field bounds-checked, errors name the byte offset ---------------------------

class reader {
 public:
  reader(std::string_view bytes, const std::string& name, std::size_t base = 0)
      : bytes_(bytes), name_(name), base_(base) {}

  [[noreturn]] void corrupt(std::size_t at, const std::string& what) const {
    throw snapshot_error(fmt::format("{}: corrupt at byte {}: {}", name_, base_ + at, what));
  }
  const char* take(std::size_t n, std::string_view what) {
    if (bytes_.size() - pos_ < n) {
      throw snapshot_error(
          fmt::format("{}: truncated at byte {}: expected {} bytes of {}, found {}", name_,
                      base_ + pos_, n, what, bytes_.size() - pos_));
    }
    const char* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::uint8_t u8(std::string_view what) { return static_cast<std::uint8_t>(*take(1, what)); }
  std::uint32_t u32(std::string_view what) {
    const char* p = take(4, what);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    }
    return v;
  }
  std::uint64_t u64(std::string_view what) {
    const char* p = take(8, what);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    }
    return v;
  }
  std::int32_t i32(std::string_view what) { return static_cast<std::int32_t>(u32(what)); }
  std::int64_t i64(std::string_view what) { return static_cast<std::int64_t>(u64(what)); }
  double f64(std::string_view what) { return std::bit_cast<double>(u64(what)); }
  time_point time(std::string_view what) {
    const std::size_t at = pos_;
    const time_point t = from_epoch(i64(what));
    if (t < min_time || t > max_time) {
      corrupt(at, fmt::format("{} {} is outside the supported range ({} to {})", what, to_epoch(t),
                              format_time(min_time), format_time(max_time)));
    }
    return t;
  }
  bool boolean(std::string_view what) {
    const std::size_t at = pos_;
    const auto b = u8(what);
    if (b > 1) {
      corrupt(at, fmt::format("{} is {} (expected 0 or 1)", what, b));
    }
    return b == 1;
  }
  /// A count of items each at least `min_size` bytes long: never more than the bytes left.
  std::size_t count(std::string_view what, std::size_t min_size) {
    const std::size_t at = pos_;
    const std::size_t n = u32(what);
    if (n > (bytes_.size() - pos_) / std::max<std::size_t>(min_size, 1)) {
      throw snapshot_error(
          fmt::format("{}: truncated at byte {}: {} {} cannot fit in the {} bytes left", name_,
                      base_ + at, n, what, bytes_.size() - pos_));
    }
    return n;
  }
  std::string str(std::string_view what) {
    const std::size_t n = u32(what);
    return std::string(take(n, what), n);
  }
  value val(std::string_view what) {
    const std::size_t at = pos_;
    switch (u8(what)) {
      case 0:
        return str(what);
      case 1:
        return i64(what);
      case 2:
        return f64(what);
      case 3:
        return boolean(what);
      case 4:
        return time(what);
      default:
        corrupt(at, fmt::format("{} has value kind {} (expected 0 to 4)", what,
                                static_cast<unsigned>(bytes_[at])));
    }
  }
  std::size_t pos() const noexcept { return pos_; }
  std::size_t left() const noexcept { return bytes_.size() - pos_; }
  std::string_view rest() const noexcept { return bytes_.substr(pos_); }
  void skip(std::size_t n) { pos_ += n; }
  const std::string& name() const noexcept { return name_; }
  std::size_t base() const noexcept { return base_; }

 private:
  std::string_view bytes_;
  const std::string& name_;
  std::size_t base_;
  std::size_t pos_ = 0;
};

// One contact state, as a snapshot holds it (docs/snapshot.md).
void encode_state(writer& w, const contact_state& s);
// One contact state read back; with `expected`, checked against its rules and history slots.
contact_state decode_state(reader& r, const program* expected);

}  // namespace nudge::snapshot_codec
