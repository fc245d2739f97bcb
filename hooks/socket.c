/* The fd I/O hooks: read/write/send/recv/close/dup* and accept/connect, each call handed to the HTTP exchange of a followed connection (agent/exchange.h) or to log correlation. */
#include "socket.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/context.h"
#include "agent/exchange.h"
#include "agent/log.h"
#include "agent/ownfd.h"
#include "hooks/kernel.h"
#include "hooks/logcorr.h"

/*
 * This file owns the app's fd I/O calls and routes each one to its consumer:
 * a connection accepted or connected over TCP is followed as HTTP (the
 * exchange, in the core, does the parsing and the spans; this file only
 * keeps the table of connections and makes the system calls), fds 1 and 2
 * go to log correlation (hooks/logcorr.c) unless they are such a
 * connection, and everything else passes straight through.
 *
 * Connections live in a two-level table indexed by fd: chunks of 64 states
 * mapped on first use and never freed, so a lookup is two loads and no lock,
 * and a regular file or pipe (an fd no accept/connect of ours marked) costs
 * only that lookup. Each connection has its own lock, held only while its
 * exchange parses or accounts, never across the app's I/O.
 */

enum fd_kind {
	FD_NONE = 0,
	FD_SERVER,    /* accepted: the exchange decides, then follows it */
	FD_CLIENT,    /* connected: same */
	FD_IGNORED,   /* not HTTP/1.x, or given up: pass through untouched */
};

/*
 * The per-connection lock: a futex word (0 free, 1 held, 2 held with
 * waiters). Taken twice per request and response on a busy connection, so
 * its uncontended path is one compare-and-swap and one exchange, where a
 * pthread mutex costs about 45 instructions a pair; it is zero when the
 * table is mapped (no init touching every page), and reset in a forked
 * child. Mutual exclusion is still needed: a server may read a pipelined
 * request on one thread while another writes a response, and both move the
 * same FIFO.
 */
static inline void fd_lock_slow(_Atomic int *l)
{
	int c = 1;
	if (!atomic_compare_exchange_strong_explicit(l, &c, 2, memory_order_acquire, memory_order_relaxed) &&
	    c == 0 && atomic_compare_exchange_strong_explicit(l, &c, 2, memory_order_acquire, memory_order_relaxed))
		return;
	while (atomic_exchange_explicit(l, 2, memory_order_acquire) != 0)
		syscall(SYS_futex, (int *)l, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

struct fd_state {
	_Atomic int lock;
	_Atomic uint8_t kind;
	struct exchange x;
};

static inline void fd_lock(struct fd_state *st)
{
	int c = 0;
	if (__builtin_expect(!atomic_compare_exchange_strong_explicit(&st->lock, &c, 1, memory_order_acquire,
								       memory_order_relaxed), 0))
		fd_lock_slow(&st->lock);
}

static inline void fd_unlock(struct fd_state *st)
{
	if (__builtin_expect(atomic_exchange_explicit(&st->lock, 0, memory_order_release) == 2, 0))
		syscall(SYS_futex, (int *)&st->lock, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#define CHUNK_BITS 6
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define MAX_FD (1u << 20)

static _Atomic(struct fd_state *) chunks[MAX_FD >> CHUNK_BITS];

/* The state of fd when it is a connection still followed, else NULL. */
static inline struct fd_state *fd_lookup(int fd)
{
	if ((unsigned)fd >= MAX_FD)
		return NULL;
	struct fd_state *c = atomic_load_explicit(&chunks[(unsigned)fd >> CHUNK_BITS], memory_order_acquire);
	if (!c)
		return NULL;
	struct fd_state *st = &c[(unsigned)fd & (CHUNK_SIZE - 1)];
	uint8_t k = atomic_load_explicit(&st->kind, memory_order_relaxed);
	return k == FD_SERVER || k == FD_CLIENT ? st : NULL;
}

/* Any state of fd, in use or not (NULL when its chunk was never mapped). */
static inline struct fd_state *fd_any(int fd)
{
	struct fd_state *c = (unsigned)fd < MAX_FD ?
		atomic_load_explicit(&chunks[(unsigned)fd >> CHUNK_BITS], memory_order_acquire) : NULL;
	return c ? &c[(unsigned)fd & (CHUNK_SIZE - 1)] : NULL;
}

static struct fd_state *fd_claim(int fd)
{
	if ((unsigned)fd >= MAX_FD)
		return NULL;
	_Atomic(struct fd_state *) *slot = &chunks[(unsigned)fd >> CHUNK_BITS];
	struct fd_state *c = atomic_load_explicit(slot, memory_order_acquire);
	if (!c) {
		size_t bytes = CHUNK_SIZE * sizeof(struct fd_state);
		void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		struct fd_state *expected = NULL;
		if (atomic_compare_exchange_strong(slot, &expected, (struct fd_state *)p)) {
			c = p;
		} else {
			munmap(p, bytes);
			c = expected;
		}
	}
	return &c[(unsigned)fd & (CHUNK_SIZE - 1)];
}

/* After an exchange call, with the lock held: a connection the exchange
 * stopped following is passed through from then on without a lock. */
static inline void fd_sync(struct fd_state *st)
{
	if (st->x.phase == EXCHANGE_IGNORED)
		atomic_store_explicit(&st->kind, FD_IGNORED, memory_order_relaxed);
}

/* --- following connections --- */

/* The process whose connections the table describes (set at init and in a
 * forked child). A vfork child shares the table until it execs. */
static pid_t table_pid;

/* Forgets a descriptor that is being reused or closed, ending its spans. */
static void untrack(int fd)
{
	struct fd_state *st = fd_any(fd);
	if (!st || atomic_load_explicit(&st->kind, memory_order_relaxed) == FD_NONE)
		return;
	fd_lock(st);
	exchange_close(&st->x);
	atomic_store_explicit(&st->kind, FD_NONE, memory_order_relaxed);
	fd_unlock(st);
}

static void track_accepted(int fd, const struct sockaddr *addr, socklen_t *alen)
{
	struct sockaddr_storage local, peer;
	socklen_t llen = sizeof local, plen = 0;
	if (getsockname(fd, (struct sockaddr *)&local, &llen) != 0 ||
	    (local.ss_family != AF_INET && local.ss_family != AF_INET6))
		return;   /* Unix sockets and the rest: not ours */
	if (addr && alen && *alen <= sizeof peer) {
		memcpy(&peer, addr, *alen);
		plen = *alen;
	} else {
		plen = sizeof peer;
		if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0)
			plen = 0;
	}
	struct fd_state *st = fd_claim(fd);
	if (!st)
		return;
	fd_lock(st);
	exchange_open(&st->x, EXCHANGE_SERVER, (struct sockaddr *)&local, llen, plen ? (struct sockaddr *)&peer : NULL,
		      plen);
	atomic_store_explicit(&st->kind, FD_SERVER, memory_order_relaxed);
	fd_unlock(st);
}

static bool track_connected(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) || len > sizeof(struct sockaddr_storage))
		return false;
	int type = 0;
	socklen_t tl = sizeof type;
	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
		return false;   /* UDP "connections" (DNS resolvers) */
	struct fd_state *st = fd_claim(fd);
	if (!st)
		return false;
	fd_lock(st);
	exchange_open(&st->x, EXCHANGE_CLIENT, NULL, 0, addr, len);
	atomic_store_explicit(&st->kind, FD_CLIENT, memory_order_relaxed);
	fd_unlock(st);
	return true;
}

/* A client connect's outcome: at once for a blocking one, or when the app
 * reads SO_ERROR (how curl and most event loops learn it). */
static void connect_outcome(struct fd_state *st, int err)
{
	fd_lock(st);
	exchange_connect_done(&st->x, err, err && strerrorname_np ? strerrorname_np(err) : NULL);
	fd_unlock(st);
}

/* --- routing: which consumer a call on fd goes to --- */

/* fd is closed, reused or redirected: neither consumer may go on with what
 * it knew about it. */
static void fd_changed(int fd)
{
	struct fd_state *st = fd_any(fd);
	/* A vfork child closing its copies before exec (CPython's subprocess
	 * does, with close_range) must leave the parent's connections alone. */
	if (st && atomic_load_explicit(&st->kind, memory_order_relaxed) != FD_NONE && context_guard_enter())
		KERNEL_LEAVE(if (getpid() == table_pid) untrack(fd));
	logcorr_fd_changed(fd);
}

/* A write on fd 1 or 2 is log output (log correlation decides what it
 * does with it) unless that fd is a connection of ours (a daemon that
 * closed its stdio got it back from accept or connect). */
static inline bool route_to_log(int fd)
{
	if (!logcorr_fd(fd))
		return false;
	struct fd_state *st = fd_any(fd);
	return !st || atomic_load_explicit(&st->kind, memory_order_relaxed) == FD_NONE;
}

/* --- the hooks: connections --- */

/* After accept/accept4 returned r: follow the new connection. */
static int after_accept(int r, struct sockaddr *addr, socklen_t *len)
{
	if (r < 0 || !context_guard_enter())
		return r;
	KERNEL_LEAVE(
		kernel_ensure_started();
		if (kernel_enabled) {
			untrack(r);
			track_accepted(r, addr, len);
		}
		logcorr_fd_changed(r));
	return r;
}

HOOK int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return after_accept(REAL(accept)(fd, addr, len), addr, len);
}

HOOK int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return after_accept(REAL(accept4)(fd, addr, len, flags), addr, len);
}

HOOK int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (!context_guard_enter())
		return REAL(connect)(fd, addr, len);
	kernel_ensure_started();
	bool tracked = false;
	if (kernel_enabled) {
		untrack(fd);
		tracked = track_connected(fd, addr, len);
	}
	logcorr_fd_changed(fd);
	context_guard_leave();
	int r = REAL(connect)(fd, addr, len);
	if (tracked && context_guard_enter())
		KERNEL_LEAVE(
			struct fd_state *st = fd_lookup(fd);
			if (st)
				connect_outcome(st, r == 0 ? 0 : app_errno));
	return r;
}

HOOK int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
{
	int r = REAL(getsockopt)(fd, level, optname, optval, optlen);
	if (r != 0 || level != SOL_SOCKET || optname != SO_ERROR || !optval || !optlen || *optlen < sizeof(int))
		return r;
	struct fd_state *st = fd_lookup(fd);
	if (__builtin_expect(st == NULL, 1) || !context_guard_enter())
		return r;
	KERNEL_LEAVE(connect_outcome(st, *(int *)optval));
	return r;
}

/* --- the hooks: reading --- */

/* Bytes the app received on a followed connection (the real call returned them). */
static ssize_t received(int fd, const void *buf, ssize_t r)
{
	if (r <= 0)
		return r;
	struct fd_state *st = fd_lookup(fd);
	if (__builtin_expect(st == NULL, 1) || !context_guard_enter())
		return r;
	KERNEL_LEAVE(fd_lock(st); exchange_received(&st->x, buf, (size_t)r); fd_sync(st); fd_unlock(st));
	return r;
}

static ssize_t received_iov(int fd, const struct iovec *iov, int cnt, ssize_t r)
{
	if (r <= 0)
		return r;
	struct fd_state *st = fd_lookup(fd);
	if (__builtin_expect(st == NULL, 1) || !context_guard_enter())
		return r;
	KERNEL_LEAVE(fd_lock(st); exchange_received_iov(&st->x, iov, cnt, (size_t)r); fd_sync(st); fd_unlock(st));
	return r;
}

HOOK ssize_t read(int fd, void *buf, size_t n)
{
	return received(fd, buf, REAL(read)(fd, buf, n));
}

HOOK ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	return received(fd, buf, REAL(__read_chk)(fd, buf, n, buflen));
}

/* MSG_PEEK leaves the bytes to be read again: they are seen then. */
HOOK ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	ssize_t r = REAL(recv)(fd, buf, n, flags);
	return flags & MSG_PEEK ? r : received(fd, buf, r);
}

HOOK ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	ssize_t r = REAL(__recv_chk)(fd, buf, n, buflen, flags);
	return flags & MSG_PEEK ? r : received(fd, buf, r);
}

HOOK ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
	ssize_t r = REAL(recvfrom)(fd, buf, n, flags, addr, alen);
	return flags & MSG_PEEK ? r : received(fd, buf, r);
}

HOOK ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
			    socklen_t *alen)
{
	ssize_t r = REAL(__recvfrom_chk)(fd, buf, n, buflen, flags, addr, alen);
	return flags & MSG_PEEK ? r : received(fd, buf, r);
}

HOOK ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	return received_iov(fd, iov, cnt, REAL(readv)(fd, iov, cnt));
}

HOOK ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	ssize_t r = REAL(recvmsg)(fd, m, flags);
	return flags & MSG_PEEK ? r : received_iov(fd, m->msg_iov, (int)m->msg_iovlen, r);
}

/* --- the hooks: writing --- */

/* The app's own call, as it made it. */
struct plain_args {
	int kind;  /* which libc call the app made */
	int fd, flags;
	const struct sockaddr *to;
	socklen_t tolen;
	struct fd_state *st;
};

enum { CALL_WRITE, CALL_SEND, CALL_SENDTO, CALL_SENDMSG, CALL_WRITEV };

static ssize_t plain_call(const struct plain_args *a, const struct iovec *iov, int cnt)
{
	switch (a->kind) {
	case CALL_WRITE:
		return REAL(write)(a->fd, iov[0].iov_base, iov[0].iov_len);
	case CALL_SEND:
		return REAL(send)(a->fd, iov[0].iov_base, iov[0].iov_len, a->flags);
	case CALL_SENDTO:
		return REAL(sendto)(a->fd, iov[0].iov_base, iov[0].iov_len, a->flags, a->to, a->tolen);
	case CALL_WRITEV:
		return REAL(writev)(a->fd, iov, cnt);
	default: {
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt };
		return REAL(sendmsg)(a->fd, &m, a->flags);
	}
	}
}

/* The one system call of a client's send (exchange_send): the connection's
 * lock is let go meanwhile, so a thread reading responses on the same
 * connection never waits for a blocking send, and a thread cancelled in the
 * call leaves nothing locked. */
static ssize_t client_send(void *arg, const struct iovec *v, int k, bool app_only)
{
	const struct plain_args *a = arg;
	fd_unlock(a->st);
	ssize_t r;
	if (app_only) {
		r = plain_call(a, v, k);
	} else {
		struct msghdr m = { .msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)k };
		r = REAL(sendmsg)(a->fd, &m, a->flags);
	}
	KERNEL_QUIET(fd_lock(a->st));
	return r;
}

/* A write on a followed connection: a client's requests go through its
 * exchange (which injects); a server's responses are seen after the call. */
static ssize_t outgoing(struct fd_state *st, const struct iovec *iov, int cnt, struct plain_args *a)
{
	a->st = st;
	if (atomic_load_explicit(&st->kind, memory_order_relaxed) == FD_CLIENT) {
		fd_lock(st);
		ssize_t r = exchange_send(&st->x, iov, cnt, client_send, a);
		KERNEL_QUIET(fd_sync(st); fd_unlock(st));
		return r;
	}
	ssize_t r = plain_call(a, iov, cnt);
	if (r > 0)
		KERNEL_QUIET(fd_lock(st); exchange_written_iov(&st->x, iov, cnt, (size_t)r); fd_sync(st); fd_unlock(st));
	return r;
}

static ssize_t outgoing_1(int fd, const void *buf, size_t n, struct plain_args *a)
{
	struct fd_state *st = fd_lookup(fd);
	struct iovec one = { (void *)buf, n };
	if (__builtin_expect(st == NULL, 1) || !context_guard_enter())
		return plain_call(a, &one, 1);
	ssize_t r = outgoing(st, &one, 1, a);
	context_guard_leave();
	return r;
}

HOOK ssize_t write(int fd, const void *buf, size_t n)
{
	if (route_to_log(fd))
		return logcorr_write(fd, buf, n);
	struct plain_args a = { .kind = CALL_WRITE, .fd = fd };
	return outgoing_1(fd, buf, n, &a);
}

HOOK ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct plain_args a = { .kind = CALL_SEND, .fd = fd, .flags = flags };
	return outgoing_1(fd, buf, n, &a);
}

HOOK ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen)
{
	struct plain_args a = { .kind = CALL_SENDTO, .fd = fd, .flags = flags, .to = to, .tolen = tolen };
	return outgoing_1(fd, buf, n, &a);
}

HOOK ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	if (route_to_log(fd))
		return logcorr_writev(fd, iov, cnt);
	struct fd_state *st = fd_lookup(fd);
	if (__builtin_expect(st == NULL, 1) || cnt <= 0 || cnt > EXCHANGE_APP_IOV_MAX || !context_guard_enter())
		return REAL(writev)(fd, iov, cnt);
	struct plain_args a = { .kind = CALL_WRITEV, .fd = fd };
	ssize_t r = outgoing(st, iov, cnt, &a);
	context_guard_leave();
	return r;
}

HOOK ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	struct fd_state *st = fd_lookup(fd);
	/* Ancillary data or a destination: pass through, never rebuild such a call. */
	if (__builtin_expect(st == NULL, 1) || m->msg_controllen || m->msg_name || m->msg_iovlen == 0 ||
	    m->msg_iovlen > EXCHANGE_APP_IOV_MAX || !context_guard_enter())
		return REAL(sendmsg)(fd, m, flags);
	struct plain_args a = { .kind = CALL_SENDMSG, .fd = fd, .flags = flags };
	ssize_t r = outgoing(st, m->msg_iov, (int)m->msg_iovlen, &a);
	context_guard_leave();
	return r;
}

/* Bytes the kernel copied from a file: a server's response body. */
static ssize_t after_sendfile(int out_fd, ssize_t r)
{
	if (r <= 0)
		return r;
	struct fd_state *st = fd_lookup(out_fd);
	if (__builtin_expect(st == NULL, 1) || !context_guard_enter())
		return r;
	KERNEL_LEAVE(fd_lock(st); exchange_written(&st->x, NULL, (size_t)r); fd_sync(st); fd_unlock(st));
	return r;
}

HOOK ssize_t sendfile(int out_fd, int in_fd, off_t *off, size_t count)
{
	return after_sendfile(out_fd, REAL(sendfile)(out_fd, in_fd, off, count));
}

HOOK ssize_t sendfile64(int out_fd, int in_fd, off64_t *off, size_t count)
{
	return after_sendfile(out_fd, REAL(sendfile64)(out_fd, in_fd, off, count));
}

HOOK int shutdown(int fd, int how)
{
	struct fd_state *st = fd_lookup(fd);
	if (st && (how == SHUT_WR || how == SHUT_RDWR) && context_guard_enter())
		KERNEL_LEAVE(fd_lock(st); exchange_write_closed(&st->x); fd_unlock(st));
	return REAL(shutdown)(fd, how);
}

/* --- the hooks: closing --- */

/* Each of the close family first has the agent let go of its own
 * descriptors in the range (a daemon closing every number): agent/ownfd.h. */
HOOK int close(int fd)
{
	struct ownfd_marks m;
	ownfd_app_closing((unsigned)fd, (unsigned)fd, &m);
	fd_changed(fd);
	return REAL(close)(fd);
}

/* dup2/dup3 close newfd silently: its connection (or the log stream it was)
 * is gone. Done after the call, which either failed and left newfd alone
 * or now holds newfd, so no other thread can have been given that number. */
HOOK int dup2(int oldfd, int newfd)
{
	struct ownfd_marks m = { 0 };
	if (oldfd != newfd)
		ownfd_app_closing((unsigned)newfd, (unsigned)newfd, &m);
	int r = REAL(dup2)(oldfd, newfd);
	if (r < 0 && m.mask)
		KERNEL_QUIET(ownfd_app_close_failed(&m));
	if (r >= 0 && oldfd != newfd)
		fd_changed(newfd);
	return r;
}

HOOK int dup3(int oldfd, int newfd, int flags)
{
	struct ownfd_marks m = { 0 };
	if (oldfd != newfd)
		ownfd_app_closing((unsigned)newfd, (unsigned)newfd, &m);
	int r = REAL(dup3)(oldfd, newfd, flags);
	if (r < 0 && m.mask)
		KERNEL_QUIET(ownfd_app_close_failed(&m));
	if (r >= 0)
		fd_changed(newfd);
	return r;
}

/* Every fd in [first, last], before they are closed (as for close:
 * afterwards, another thread could already have been given one of them). */
static void fds_changed(unsigned first, unsigned last)
{
	for (unsigned fd = 1; fd <= 2; fd++)
		if (fd >= first && fd <= last)
			logcorr_fd_changed((int)fd);
	if (last >= MAX_FD)
		last = MAX_FD - 1;
	for (unsigned c = first >> CHUNK_BITS; first <= last && c <= last >> CHUNK_BITS; c++) {
		if (!atomic_load_explicit(&chunks[c], memory_order_relaxed))
			continue;
		unsigned lo = c << CHUNK_BITS > first ? c << CHUNK_BITS : first;
		unsigned hi = (c << CHUNK_BITS) + CHUNK_SIZE - 1 < last ? (c << CHUNK_BITS) + CHUNK_SIZE - 1 : last;
		for (unsigned fd = lo; fd <= hi; fd++) {
			struct fd_state *st = fd_any((int)fd);
			if (atomic_load_explicit(&st->kind, memory_order_relaxed) != FD_NONE && context_guard_enter())
				KERNEL_LEAVE(if (getpid() == table_pid) untrack((int)fd));
		}
	}
}

HOOK int close_range(unsigned int first, unsigned int last, int flags)
{
	struct ownfd_marks m = { 0 };
	if (!(flags & CLOSE_RANGE_CLOEXEC)) {
		ownfd_app_closing(first, last, &m);
		fds_changed(first, last);
	}
	int r = REAL(close_range) ? REAL(close_range)(first, last, flags)
				  : (int)syscall(SYS_close_range, first, last, flags);
	if (r < 0 && m.mask)
		KERNEL_QUIET(ownfd_app_close_failed(&m));
	return r;
}

HOOK void closefrom(int lowfd)
{
	struct ownfd_marks m;
	if (lowfd >= 0) {
		ownfd_app_closing((unsigned)lowfd, UINT_MAX, &m);
		fds_changed((unsigned)lowfd, UINT_MAX);
	}
	if (REAL(closefrom))
		REAL(closefrom)(lowfd);
	else if (lowfd >= 0)
		syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0);
}

/* --- set-up --- */

void socket_init(const struct config *c)
{
	table_pid = getpid();
	if (!exchange_configure(c))
		log_warn("TRACEAGENT_HTTP_ROUTES has an invalid template; the valid ones are used");
}

/* In a forked child (atfork handler, one thread left): exchanges in flight
 * at the fork are the parent's (agent/exchange.h, exchange_after_fork), and
 * locks other threads held at the fork are reset. */
void socket_after_fork_child(void)
{
	table_pid = getpid();
	exchange_after_fork_child();
	for (size_t i = 0; i < MAX_FD >> CHUNK_BITS; i++) {
		struct fd_state *c = atomic_load_explicit(&chunks[i], memory_order_relaxed);
		if (!c)
			continue;
		for (unsigned j = 0; j < CHUNK_SIZE; j++) {
			struct fd_state *st = &c[j];
			uint8_t k = atomic_load_explicit(&st->kind, memory_order_relaxed);
			/* Only states in use or locked: writing the others would copy
			 * every page of the table into the child. */
			if (atomic_load_explicit(&st->lock, memory_order_relaxed))
				atomic_store_explicit(&st->lock, 0, memory_order_relaxed);
			if ((k == FD_SERVER || k == FD_CLIENT) && !exchange_after_fork(&st->x))
				atomic_store_explicit(&st->kind, FD_IGNORED, memory_order_relaxed);
		}
	}
}
