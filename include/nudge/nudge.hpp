// nudge/nudge.hpp: the whole public API in one include.
#pragma once

#include <nudge/action.hpp>
#include <nudge/condition.hpp>
#include <nudge/contact.hpp>
#include <nudge/contact_state.hpp>
#include <nudge/due_action.hpp>
#include <nudge/engine.hpp>
#include <nudge/error.hpp>
#include <nudge/evaluate.hpp>
#include <nudge/event.hpp>
#include <nudge/explain.hpp>
#include <nudge/identity.hpp>
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
#include <nudge/workflow.hpp>
