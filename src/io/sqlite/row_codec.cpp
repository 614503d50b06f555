// The store's row payloads: zero-run coding of state records, and reading the contacts a
// damaged row names.
#include "io/sqlite/row_codec.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <nudge/io/snapshot.hpp>

namespace nudge::sqlite_detail {

// Zero runs: the snapshot codec writes fixed-width little-endian fields, so about half of a
// state record's bytes are zeros, most of them in runs. Coding each run as 0x00 and its length
// (1 to 255) halves the journal, and with it the WAL and the checkpoints (measured on W1
// medium: 46 % of the bytes). A non-zero byte stands for itself.
void put_zero_runs(std::string& out, std::string_view bytes) {
  const char* p = bytes.data();
  const char* const end = p + bytes.size();
  while (p != end) {
    const auto* zero =
        static_cast<const char*>(std::memchr(p, 0, static_cast<std::size_t>(end - p)));
    if (zero == nullptr) {
      out.append(p, end);
      return;
    }
    out.append(p, zero);
    p = zero;
    while (p != end && *p == 0) {
      const char* run_end = p;
      while (run_end != end && *run_end == 0 && run_end - p < 255) {
        ++run_end;
      }
      const char run[2] = {0, static_cast<char>(run_end - p)};
      out.append(run, 2);
      p = run_end;
    }
  }
}

// The bytes put_zero_runs coded, appended to `out`; false if the coding is broken.
bool get_zero_runs(std::string_view coded, std::string& out) {
  const char* p = coded.data();
  const char* const end = p + coded.size();
  while (p != end) {
    const auto* zero =
        static_cast<const char*>(std::memchr(p, 0, static_cast<std::size_t>(end - p)));
    if (zero == nullptr) {
      out.append(p, end);
      return true;
    }
    out.append(p, zero);
    if (end - zero < 2 || zero[1] == 0) {
      return false;
    }
    out.append(static_cast<std::size_t>(static_cast<unsigned char>(zero[1])), '\0');
    p = zero + 2;
  }
  return true;
}

// The contacts a damaged row names, read as far as its structure holds, for the error message:
// " (its records name contacts c1, c2 and 3 more, as far as they can be read)", or empty.
// State records start with the contact id (snapshot codec: u32 length, bytes); outbox entries
// hold it after 28 bytes of key, due time, rule, action and kind.
std::string contacts_named(bool outbox, std::string_view blob) {
  std::vector<std::string> ids;
  std::size_t more = 0;
  std::size_t pos = 0;
  std::string record;
  const auto u32_at = [](std::string_view b, std::size_t at, std::uint32_t& v) {
    if (b.size() < 4 || at > b.size() - 4) {
      return false;
    }
    v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + i])) << (8 * i);
    }
    return true;
  };
  const auto add = [&](std::string_view id) {
    const bool printable =
        !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
          return static_cast<unsigned char>(c) > 32 && static_cast<unsigned char>(c) < 127;
        });
    if (!printable) {
      return false;
    }
    if (std::find(ids.begin(), ids.end(), id) != ids.end()) {
      return true;  // (a contact saved twice in one batch: lent, then saved)
    }
    if (ids.size() < 5) {
      ids.emplace_back(id);
    } else {
      ++more;
    }
    return true;
  };
  while (pos < blob.size()) {
    std::uint32_t n = 0, id_len = 0;
    if (outbox) {
      if (!u32_at(blob, pos + 28, id_len) || id_len > blob.size() - pos - 32 ||
          !add(blob.substr(pos + 32, id_len))) {
        break;
      }
      std::uint32_t arg_len = 0;
      pos += 32 + id_len;
      if (!u32_at(blob, pos, arg_len) || arg_len > blob.size() - pos - 4) {
        break;
      }
      pos += 4 + arg_len;
      continue;
    }
    if (!u32_at(blob, pos, n) || n > blob.size() - pos - 4) {
      break;
    }
    record.clear();
    if (!get_zero_runs(blob.substr(pos + 4, n), record) || !u32_at(record, 0, id_len) ||
        id_len > record.size() - 4 || !add(std::string_view{record}.substr(4, id_len))) {
      break;
    }
    pos += 4 + n;
  }
  if (ids.empty()) {
    return {};
  }
  std::string list = ids.front();
  for (std::size_t i = 1; i < ids.size(); ++i) {
    list += (i + 1 == ids.size() && more == 0 ? " and " : ", ") + ids[i];
  }
  if (more > 0) {
    list += fmt::format(" and {} more", more);
  }
  return fmt::format(" (its {} name{} {}, as far as they can be read)",
                     outbox ? "entries" : "records",
                     ids.size() + more == 1 ? "s contact" : " contacts", list);
}

// Appends one state record (snapshot codec, zero runs coded), prefixed by its coded length.
// `record` is scratch space.
void put_state(std::string& out, const contact_state& s, std::string& record) {
  record.clear();
  encode_contact_state(s, record);
  const auto at = out.size();
  put_u32(out, 0);
  put_zero_runs(out, record);
  const auto n = static_cast<std::uint32_t>(out.size() - at - 4);
  for (int i = 0; i < 4; ++i) {
    out[at + static_cast<std::size_t>(i)] = static_cast<char>(n >> (8 * i));
  }
}

}  // namespace nudge::sqlite_detail
