/* HTTP/1.x socket hooks: set-up from the configuration (routes, captured headers, propagators). */
#ifndef TRACEAGENT_SOCKET_H
#define TRACEAGENT_SOCKET_H

#include "agent/config.h"

void socket_init(const struct config *c);

#endif
