// nudge/io/workflow_graph.hpp: workflows drawn as diagrams (Mermaid or Graphviz DOT), for
// `nudge graph` and for hosts that show their journeys.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include <nudge/stats.hpp>
#include <nudge/workflow.hpp>

namespace nudge {

/// The diagram languages workflow_graph writes.
enum class graph_format : std::uint8_t {
  mermaid,  ///< a Mermaid flowchart (GitHub and many editors render it in Markdown)
  dot,      ///< a Graphviz digraph (`dot -Tsvg`)
};

/// Draws each workflow of `workflows` (its current steps) as one subgraph of one diagram: its
/// entry (event or yearly date, and its condition), every step (what it sends or does, how long
/// it waits, its condition), the edges between them (a branch's yes / no, a wait for an event's
/// timeout, a split's percentages, an opened / clicked wait's timeout path), its goals (exit
/// events and condition, which end a run at any step) and its completion (and on_complete
/// group).
///
/// `stats` (optional; e.g. a replay's replay_result::workflow_stats) are matched to the
/// workflows by id: the entry edge shows the runs entered, an edge into a step its `reached`
/// count (when the step has no other way in; a step reached several ways shows it in its box),
/// each step's box reached / sent / opened / clicked / waiting, the completion and goal nodes
/// the runs completed and exited. Conditions are abbreviated past 60 characters.
///
/// The output depends only on the arguments (the same text for the same rules and stats), so
/// diagrams can be kept under version control and compared.
///
///     auto program = nudge::load_rules_file("rules.json");
///     std::cout << nudge::workflow_graph(program->rules().workflows, nudge::graph_format::dot);
std::string workflow_graph(std::span<const workflow> workflows, graph_format format,
                           std::span<const workflow_stats> stats = {});

}  // namespace nudge
