// nudge/explain.hpp: "why did contact X get message Y, or why not?" in words.
//
// The engine records what it did for each contact in the contact's timeline (timeline.hpp), as
// compact entries naming rules and actions by index. These functions resolve the indices
// against the program that produced the state and print each entry as a line of text or JSON.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/contact_state.hpp>
#include <nudge/program.hpp>
#include <nudge/timeline.hpp>

namespace nudge {

class engine;

/// One timeline entry in words.
struct explained_entry {
  time_point ts;
  std::string source;  ///< "rule abandoned_cart", "workflow #2", "segment #0"
  std::string what;    ///< "triggered", "condition_failed", "action_deferred", ... (as in JSON)
  std::string reason;  ///< "", "no_consent", "channel_cap", "quiet_hours", ...
  std::string text;    ///< the whole entry as a sentence, without the time
  friend bool operator==(const explained_entry&, const explained_entry&) = default;
};

/// The name used for `what` in text and JSON ("condition_failed", ...).
std::string_view timeline_what_name(timeline_what w) noexcept;
/// The name used for `reason` ("no_consent", ...); "" for timeline_reason::none.
std::string_view timeline_reason_name(timeline_reason r) noexcept;

/// One entry, resolved against `program` (the program that produced the state).
///
/// Example text: "rule cart_reminder: action 0 send_email cart_reminder deferred to
/// 2024-03-31T08:00:00Z (quiet_hours)", "rule winback: condition failed at /rules/1/if/all/0".
/// Indices the program does not know (a state from another program) print as "#<index>".
explained_entry explain_entry(const program& program, const timeline_entry& e);

/// Every kept entry of `state`'s timeline, oldest first.
std::vector<explained_entry> explain(const program& program, const contact_state& state);

/// The timeline as text: a header line naming the contact (and how many older entries were
/// dropped), then one line per entry "<ISO time>  <text>".
std::string format_explanation(const program& program, const contact_state& state);

/// The timeline as one JSON object: {"contact": ID, "recorded": N, "dropped": N, "entries":
/// [{"at": ISO, "source_kind": "rule", "source": ID, "step": N|null, "what": ..., "reason":
/// ...|null, "until": ISO|null, "detail": N|null, "text": ...}, ...]}.
std::string format_explanation_json(const program& program, const contact_state& state);

/// The contact's timeline as the engine's store holds it, explained; nullopt if the store has
/// no such contact. Reads the store (a callback), so not for use inside a batch.
std::optional<std::vector<explained_entry>> explain(engine& engine, std::string_view contact_id);

}  // namespace nudge
