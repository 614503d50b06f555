// Fuzz target: any bytes as a contacts file, read as CSV and as JSON Lines.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nudge/io/read_events.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  for (auto format : {nudge::file_format::csv, nudge::file_format::jsonl}) {
    try {
      nudge::parse_contacts(text, format, "fuzz",
                            {.on_reject = [](const nudge::input_problem&) {}});
    } catch (const nudge::read_error&) {
      // a bad header
    }
  }
  return 0;
}
