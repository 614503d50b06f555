// Fuzz target: any bytes as an events .csv file. Bad lines go to the reject handler; the reader
// must never crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nudge/io/read_events.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text{reinterpret_cast<const char*>(data), size};
  try {
    nudge::event_reader reader{std::move(text),
                               nudge::file_format::csv,
                               "fuzz.csv",
                               {.on_reject = [](const nudge::input_problem&) {}}};
    std::vector<nudge::event> batch;
    while (reader.read(batch, 64)) {
    }
  } catch (const nudge::read_error&) {
    // a bad header: a clear error is the right answer
  }
  return 0;
}
