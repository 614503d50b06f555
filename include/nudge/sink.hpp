// nudge/sink.hpp: where due actions go: the host's delivery.
#pragma once

#include <functional>
#include <span>
#include <utility>

#include <nudge/due_action.hpp>

namespace nudge {

/// Receives each batch's due actions, sorted by (ts, contact), in one call. If deliver
/// throws, the engine keeps none of the batch's state changes (see engine::process).
class sink {
 public:
  virtual ~sink() = default;
  virtual void deliver(std::span<const due_action> actions) = 0;
};

/// A sink that calls a function: nudge::function_sink s{[](auto actions) { ... }};
class function_sink final : public sink {
 public:
  explicit function_sink(std::function<void(std::span<const due_action>)> f) : f_(std::move(f)) {}
  void deliver(std::span<const due_action> actions) override { f_(actions); }

 private:
  std::function<void(std::span<const due_action>)> f_;
};

}  // namespace nudge
