// nudge/nudge.hpp: the whole public API in one include: every header of include/nudge/
// (tests/headers_test.cpp checks that none is missing). Each header also compiles on its own
// (tests/headers), so a host may include only what it uses:
//   rules in C++:       rule.hpp (builders), condition.hpp, action.hpp, workflow.hpp,
//                       segment.hpp, scoring.hpp, delivery.hpp, geo.hpp (locations, areas)
//                       -> program.hpp (compile)
//   rule files (JSON):  io/load_rules.hpp (load_rules, load_rules_file, try_load_rules,
//                       parse_rules)
//   running:            engine.hpp (engine), store.hpp / memory_store.hpp / io/sqlite_store.hpp /
//                       io/pg_store.hpp (declared always; defined when built with libpq)
//                       (stores, durable_engine), sink.hpp, due_action.hpp, stats.hpp,
//                       evaluate.hpp (one contact, no store), identity.hpp, lifecycle.hpp
//   files and backtests: io/read_events.hpp (read_events, event_reader, read_contacts),
//                       io/replay.hpp (replay, write_actions_csv), io/csv.hpp (RFC 4180 fields),
//                       io/snapshot.hpp (save_snapshot, load_snapshot and the codec)
//   why:                timeline.hpp, explain.hpp
//   basics:             contact.hpp, contact_state.hpp, event.hpp, value.hpp, time.hpp,
//                       error.hpp, fwd.hpp
#pragma once

#include <nudge/action.hpp>
#include <nudge/condition.hpp>
#include <nudge/contact.hpp>
#include <nudge/contact_state.hpp>
#include <nudge/delivery.hpp>
#include <nudge/due_action.hpp>
#include <nudge/engine.hpp>
#include <nudge/error.hpp>
#include <nudge/evaluate.hpp>
#include <nudge/event.hpp>
#include <nudge/explain.hpp>
#include <nudge/fwd.hpp>
#include <nudge/geo.hpp>
#include <nudge/identity.hpp>
#include <nudge/io/csv.hpp>
#include <nudge/io/delivery_log.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/pg_store.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/io/sqlite_store.hpp>
#include <nudge/io/workflow_graph.hpp>
#include <nudge/io/zones.hpp>
#include <nudge/lifecycle.hpp>
#include <nudge/memory_store.hpp>
#include <nudge/program.hpp>
#include <nudge/rule.hpp>
#include <nudge/scoring.hpp>
#include <nudge/segment.hpp>
#include <nudge/sink.hpp>
#include <nudge/stats.hpp>
#include <nudge/store.hpp>
#include <nudge/time.hpp>
#include <nudge/timeline.hpp>
#include <nudge/value.hpp>
#include <nudge/version.hpp>
#include <nudge/workflow.hpp>
#include <nudge/zones.hpp>
