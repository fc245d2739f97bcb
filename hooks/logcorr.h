/* Log correlation: the current span's ids on each line the app writes to stdout and stderr. */
#ifndef TRACEAGENT_LOGCORR_H
#define TRACEAGENT_LOGCORR_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "agent/config.h"

/* TRACEAGENT_LOG_CORRELATION, set by logcorr_init at agent init (false before:
 * no span can be current then). The only thing the off path reads. */
extern bool logcorr_enabled;

void logcorr_init(const struct config *c);

/* True when a write() or writev() on fd is the app writing to its stdout or
 * stderr and the feature is on: one predictable branch when it is off. */
static inline bool logcorr_fd(int fd)
{
	return __builtin_expect(logcorr_enabled, 0) && (unsigned)fd - 1u < 2u;
}

/* fd 1 or 2 now leads somewhere else (closed, dup2()ed over, accepted or
 * connected): what it is gets looked at again before the next line. */
void logcorr_fd_forget(int fd);
static inline void logcorr_fd_changed(int fd)
{
	if (logcorr_fd(fd))
		logcorr_fd_forget(fd);
}

/* write() and writev() on fd 1 or 2 (socket.c has checked that the fd is not
 * a connection it follows). Return values count the app's bytes only. */
ssize_t logcorr_write(int fd, const void *buf, size_t n);
ssize_t logcorr_writev(int fd, const struct iovec *iov, int cnt);

#endif
