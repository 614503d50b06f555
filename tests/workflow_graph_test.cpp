// nudge::workflow_graph (nudge/io/workflow_graph.hpp): a workflow built in C++ drawn in both
// languages, with and without statistics. tests/cli/graph.py checks rule files through the CLI.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <nudge/io/workflow_graph.hpp>
#include <nudge/rule.hpp>

namespace {

nudge::workflow cart() {
  return nudge::workflow_builder("cart")
      .enter_on(nudge::on("cart"))
      .exit_on(nudge::on("purchase"))
      .wait("w", nudge::hours(1))
      .send("mail", nudge::send_email("reminder"))
      .branch("vip", nudge::has_tag("vip"), "", "stop")
      .act("tag", nudge::add_tag("nudged"))
      .end("stop")
      .build();
}

}  // namespace

TEST_CASE("workflow_graph: DOT of a workflow built in C++", "[workflow_graph]") {
  const std::vector<nudge::workflow> ws{cart()};
  CHECK(nudge::workflow_graph(ws, nudge::graph_format::dot) ==
        "digraph workflows {\n"
        "  node [fontname=\"Helvetica\"];\n"
        "  edge [fontname=\"Helvetica\"];\n"
        "  subgraph cluster_w0 {\n"
        "    label=\"workflow cart\";\n"
        "    w0_entry [shape=oval, label=\"entry: on cart\"];\n"
        "    w0_s0 [shape=box, style=rounded, label=\"w\\nwait 1h\"];\n"
        "    w0_s1 [shape=box, label=\"mail\\nsend_email reminder\"];\n"
        "    w0_s2 [shape=diamond, label=\"vip\\nif has tag vip\"];\n"
        "    w0_s3 [shape=box, label=\"tag\\nadd_tag nudged\"];\n"
        "    w0_s4 [shape=oval, label=\"stop\\nend\"];\n"
        "    w0_done [shape=oval, label=\"completed\"];\n"
        "    w0_goal [shape=note, label=\"goal: ends the run at any step\\non purchase\"];\n"
        "    w0_entry -> w0_s0;\n"
        "    w0_s0 -> w0_s1;\n"
        "    w0_s1 -> w0_s2;\n"
        "    w0_s2 -> w0_s3 [label=\"yes\"];\n"
        "    w0_s2 -> w0_s4 [label=\"no\"];\n"
        "    w0_s3 -> w0_s4;\n"
        "    w0_s4 -> w0_done;\n"
        "    w0_entry -> w0_goal [label=\"any time\", style=dashed];\n"
        "  }\n"
        "}\n");
}

TEST_CASE("workflow_graph: statistics on the edges and in the boxes", "[workflow_graph]") {
  const std::vector<nudge::workflow> ws{cart()};
  nudge::workflow_stats s;
  s.workflow = "cart";
  s.entered = 10;
  s.completed = 4;
  s.exited = 6;
  for (const auto& [id, reached] :
       {std::pair{"w", 10}, {"mail", 7}, {"vip", 7}, {"tag", 2}, std::pair{"stop", 4}}) {
    nudge::workflow_step_stats st;
    st.step = id;
    st.reached = static_cast<std::uint64_t>(reached);
    st.sent = std::string{id} == "mail" ? 7 : 0;
    s.steps.push_back(st);
  }
  const std::vector<nudge::workflow_stats> stats{s};
  const std::string m = nudge::workflow_graph(ws, nudge::graph_format::mermaid, stats);
  CHECK(m.find("    w0_entry([\"entry: on cart<br/>entered 10\"])\n") != std::string::npos);
  CHECK(m.find("    w0_s1[\"mail<br/>send_email reminder<br/>reached 7, sent 7\"]\n") !=
        std::string::npos);
  // One way in: the edge carries the count; "stop" has two ways in, so its edges do not.
  CHECK(m.find("    w0_entry -->|\"10\"| w0_s0\n") != std::string::npos);
  CHECK(m.find("    w0_s2 -->|\"yes: 2\"| w0_s3\n") != std::string::npos);
  CHECK(m.find("    w0_s2 -->|\"no\"| w0_s4\n") != std::string::npos);
  CHECK(m.find("    w0_s3 --> w0_s4\n") != std::string::npos);
  CHECK(m.find("completed<br/>completed 4") != std::string::npos);
  CHECK(m.find("on purchase<br/>exited 6") != std::string::npos);
  // Statistics of another workflow change nothing.
  s.workflow = "other";
  const std::vector<nudge::workflow_stats> others{s};
  CHECK(nudge::workflow_graph(ws, nudge::graph_format::mermaid, others) ==
        nudge::workflow_graph(ws, nudge::graph_format::mermaid));
}
