// Fuzz target: any bytes as a rule file. The loader must answer with a program or diagnostics,
// never crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nudge/io/load_rules.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text{reinterpret_cast<const char*>(data), size};
  auto result = nudge::try_load_rules(text);
  if (result.program != nullptr && !result.diagnostics.empty()) {
    __builtin_trap();  // a program and diagnostics at once
  }
  return 0;
}
