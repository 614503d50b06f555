// nudge outbox: the undelivered actions of a database written by nudge run, as CSV.
#include <iterator>
#include <string>

#include <fmt/format.h>

#include <nudge/io/csv.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/sqlite_store.hpp>

#include "commands.hpp"
#include "common.hpp"

namespace nudge_cli {

int run_outbox(const std::string& path) {
  const auto rules_text = nudge::sqlite_store::read_meta(path, meta_rules);
  if (!rules_text) {
    fmt::print(stderr, "{}: no rules stored (not written by nudge run)\n", path);
    return exit_input;
  }
  auto program = load_rules_text(*rules_text, path + " (stored rules)");
  if (!program) {
    return exit_input;
  }
  nudge::sqlite_store db{path, *program, {.read_only = true}};
  std::string out = "ts,contact,rule,action,arg,idempotency_key\n";
  // Entries nudge deliver marked delivered stay until the next nudge run trims them: not listed.
  const auto delivered = db.delivery_mark();
  for (const auto& e : db.outbox()) {
    if (e.sequence <= delivered) {
      continue;
    }
    auto it = std::back_inserter(out);
    it = fmt::format_to(it, "{},", nudge::to_epoch(e.ts));
    it = nudge::write_csv_field(it, e.contact);
    *it++ = ',';
    // A workflow step's action names "workflow/step", as nudge run's --out does (its rule index
    // is the workflow's).
    it = nudge::write_csv_field(
        it,
        e.workflow
            ? fmt::format("{}/{}", program->rules().workflows[e.rule_index].id,
                          program->compiled().workflows[e.rule_index].steps[e.action_index].def->id)
            : program->rules().rules[e.rule_index].id);
    *it++ = ',';
    it = nudge::write_csv_field(it, nudge::action_name(e.kind));
    *it++ = ',';
    it = nudge::write_csv_field(it, e.arg);
    fmt::format_to(it, ",{}\n", e.idempotency_key);
  }
  fmt::print("{}", out);
  return exit_ok;
}

}  // namespace nudge_cli
