/* Business-logic spans: INTERNAL spans for the functions TRACEAGENT_FUNCTIONS names, patched at load. */
#ifndef TRACEAGENT_FUNCS_H
#define TRACEAGENT_FUNCS_H

#include "agent/config.h"

/* Patches the functions the specs name in the objects loaded now (the
 * constructor's start, before the app's main); @OBJECT specs are also applied
 * to objects dlopen()ed later. With TRACEAGENT_FUNCTIONS_CHECK set it only
 * prints, for each spec, the functions found and whether each can be
 * patched, and ends the process (traceagent --check). */
void funcs_init(const struct config *c);

#endif
