/* HTTP/1.x socket hooks: set-up from the configuration (routes, captured headers, propagators). */
#ifndef TRACEAGENT_SOCKET_H
#define TRACEAGENT_SOCKET_H

#include "agent/config.h"

void socket_init(const struct config *c);
/* In a forked child: forget the exchanges in flight at the fork (the parent's spans). */
void socket_after_fork_child(void);

#endif
