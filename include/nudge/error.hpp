// nudge/error.hpp: the exceptions nudge throws, each naming where the problem is.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace nudge {

/// One problem in a rule file or rule set.
struct diagnostic {
  std::string file;          ///< empty for rules built in C++
  std::size_t line = 0;      ///< 1-based; 0 when unknown (C++ builder)
  std::size_t column = 0;    ///< 1-based; 0 when unknown
  std::string json_pointer;  ///< RFC 6901 path to the offending value, e.g. "/rules/2/delay"
  std::string code;          ///< stable machine-readable code, e.g. "unknown_field"
  std::string message;       ///< what is wrong, in words

  /// "file:line:column: pointer: message", leaving out the parts that are unknown.
  std::string to_string() const;
  friend bool operator==(const diagnostic&, const diagnostic&) = default;
};

/// A rule set that cannot be compiled. Holds every problem found, in document order; what()
/// lists them one per line. No program is produced: a bad rule set is never half-loaded.
class rule_error : public std::runtime_error {
 public:
  explicit rule_error(std::vector<diagnostic> diagnostics);
  const std::vector<diagnostic>& diagnostics() const noexcept { return diagnostics_; }
  // The first problem's location, for hosts that show one.
  const std::string& file() const noexcept { return diagnostics_.front().file; }
  std::size_t line() const noexcept { return diagnostics_.front().line; }
  std::size_t column() const noexcept { return diagnostics_.front().column; }
  const std::string& json_pointer() const noexcept { return diagnostics_.front().json_pointer; }
  const std::string& code() const noexcept { return diagnostics_.front().code; }

 private:
  std::vector<diagnostic> diagnostics_;
};

/// An event the engine refuses (out of order, in the future of `now`, unknown type, wrong
/// contact). The batch it came in changed nothing.
class input_error : public std::runtime_error {
 public:
  input_error(std::string contact, std::size_t event_index, const std::string& reason);
  const std::string& contact() const noexcept { return contact_; }
  /// Index of the offending event in the batch handed to the engine (or to evaluate).
  std::size_t event_index() const noexcept { return event_index_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string contact_;
  std::size_t event_index_;
  std::string reason_;
};

/// Internal actions that keep triggering each other past the depth limit. Names the chain of
/// rules, e.g. "tag_a -> tag_b -> tag_a -> ...". The batch changed nothing.
///
/// Also thrown when rules that re-trigger themselves through a delay pile up more pending timers
/// for one contact than program_limits::max_pending_timers allows (each run leaving two timers
/// doubles them every round, and no cascade is deep enough for the depth limit to notice); then
/// chain() lists the rules holding the pending timers, most first.
class rule_cycle_error : public std::runtime_error {
 public:
  rule_cycle_error(std::string contact, std::vector<std::string> chain);
  /// The pending-timer form: `rules` holding pending timers, with `counts` of them, most first.
  static rule_cycle_error pending_timers(std::string contact, std::vector<std::string> rules,
                                         const std::vector<std::size_t>& counts, std::size_t limit);
  /// The cascade-width form: `rules` raising the queued events, with `counts`, most first.
  static rule_cycle_error cascade_events(std::string contact, std::vector<std::string> rules,
                                         const std::vector<std::size_t>& counts, std::size_t limit);
  const std::string& contact() const noexcept { return contact_; }
  const std::vector<std::string>& chain() const noexcept { return chain_; }

 private:
  rule_cycle_error(const std::string& what, std::string contact, std::vector<std::string> chain);
  std::string contact_;
  std::vector<std::string> chain_;
};

/// A host callback (store or sink) threw. The original exception is nested
/// (std::rethrow_if_nested). Unless message() says otherwise, the batch changed nothing.
class callback_error : public std::runtime_error {
 public:
  callback_error(std::string callback, std::string contact, const std::string& message);
  /// "store.load", "store.save", "store.due" or "sink.deliver".
  const std::string& callback() const noexcept { return callback_; }
  /// The contact being handled, or empty for a call that covers the whole batch.
  const std::string& contact() const noexcept { return contact_; }

 private:
  std::string callback_;
  std::string contact_;
};

}  // namespace nudge
