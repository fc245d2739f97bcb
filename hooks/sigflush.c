/* Ends without atexit: SIGTERM/SIGINT (our handler stands in for SIG_DFL: flush within the exit bound, then die by the signal; sigaction/signal report SIG_DFL for ours) and _exit/_Exit (flush first). */
#include "sigflush.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hooks/kernel.h"

/*
 * Design (see README, "Stopping"):
 * - Ours is installed only over SIG_DFL, when the export thread starts: before
 *   that the queue is empty, and a handler can't safely start a thread.
 *   A disposition the app (or its runtime, through a raw syscall) set before
 *   is never replaced; one it sets after replaces ours, as it would SIG_DFL.
 *   When the app sets SIG_DFL itself, ours is put back in its place.
 * - The app never sees ours: every way of reading the old disposition
 *   (sigaction's oldact, the value signal() returns) reports the SIG_DFL
 *   that ours stands in for, with the flags and mask the kernel had for it.
 * - The handler may interrupt any code on any app thread (malloc, a hook
 *   holding a connection's mutex, exporter_flush holding the exporter's),
 *   so it does only async-signal-safe things: sigaction, atomics,
 *   exporter_flush_signal (atomics, futex, clock_gettime), raise,
 *   pthread_sigmask. No lock, no allocation, no stdio. The export thread
 *   blocks every signal, so it never runs the handler; it does the sending.
 * - It restores SIG_DFL first and lets SIGTERM/SIGINT in on its thread, so
 *   a second signal during the flush ends the process at once (by the first
 *   signal: `dying` holds it), as the first would have without the agent.
 */

static const struct config *cfg;
static struct sigflush_flush flush;   /* the exporter's, handed over by init */
static _Atomic int armed;   /* the export thread started: SIG_DFL gets ours */
static _Atomic int dying;   /* the signal a handler is flushing for, 0 if none */
static struct sigaction ours;

/* What the app would read for SIGINT [0] and SIGTERM [1] while ours stands in
 * for SIG_DFL: the flags, mask and restorer the kernel had with SIG_DFL.
 * Atomics, because the hooks may run in the app's signal handlers. */
static _Atomic int view_flags[2];
static _Atomic uint64_t view_mask[2];
static _Atomic uintptr_t view_restorer[2];

static void handler(int sig);

static int slot(int sig)
{
	return sig == SIGINT ? 0 : sig == SIGTERM ? 1 : -1;
}

static bool is_ours(const struct sigaction *a)
{
	return a->sa_handler == handler;
}

static void save_view(int i, const struct sigaction *a)
{
	uint64_t m = 0;
	memcpy(&m, &a->sa_mask, sizeof m < sizeof a->sa_mask ? sizeof m : sizeof a->sa_mask);
	atomic_store(&view_flags[i], a->sa_flags);
	atomic_store(&view_mask[i], m);
	atomic_store(&view_restorer[i], (uintptr_t)a->sa_restorer);
}

static void fill_view(int i, struct sigaction *out)
{
	uint64_t m = atomic_load(&view_mask[i]);
	memset(out, 0, sizeof *out);
	out->sa_handler = SIG_DFL;
	out->sa_flags = atomic_load(&view_flags[i]);
	memcpy(&out->sa_mask, &m, sizeof m < sizeof out->sa_mask ? sizeof m : sizeof out->sa_mask);
	out->sa_restorer = (void (*)(void))atomic_load(&view_restorer[i]);
}

/* Ours in place of SIG_DFL, if that is what sig has now. A disposition the
 * app set between the two calls wins: it is put back. The window between
 * them (a few hundred ns) is the only time SIG_DFL acts without a flush. */
static void install(int sig)
{
	struct sigaction cur, prev;

	if (REAL(sigaction)(sig, NULL, &cur) != 0 || cur.sa_handler != SIG_DFL)
		return;
	save_view(slot(sig), &cur);
	if (REAL(sigaction)(sig, &ours, &prev) == 0 && prev.sa_handler != SIG_DFL && !is_ours(&prev))
		REAL(sigaction)(sig, &prev, NULL);
}

/* Ours back over SIG_DFL, the app's view of it unchanged. */
static void reinstall(int sig)
{
	struct sigaction cur, prev;

	if (REAL(sigaction)(sig, NULL, &cur) == 0 && cur.sa_handler == SIG_DFL &&
	    REAL(sigaction)(sig, &ours, &prev) == 0 && prev.sa_handler != SIG_DFL && !is_ours(&prev))
		REAL(sigaction)(sig, &prev, NULL);
}

/* After the app set SIG_DFL through any of the hooks below. */
static void after_set_dfl(int sig)
{
	if (!atomic_load(&armed) || atomic_load(&dying))
		return;
	KERNEL_QUIET(install(sig));
}

/* The process that armed: a vfork child (sharing our memory until it execs)
 * that gets the signal must not flush or mark the parent as dying. */
static _Atomic pid_t armed_pid;

void sigflush_arm(void)
{
	if (!cfg || cfg->exit_timeout_ms == 0)
		return;
	/* The init process of a PID namespace never gets a SIGTERM or SIGINT
	 * it leaves at SIG_DFL; with a handler it would (docker stop), and
	 * its blocking calls would return EINTR. Leave it as it is. */
	pid_t pid = (pid_t)syscall(SYS_getpid);
	if (pid == 1)
		return;
	atomic_store(&armed_pid, pid);
	atomic_store(&armed, 1);
	install(SIGTERM);
	install(SIGINT);
}

void sigflush_after_fork_child(void)
{
	/* A forked child (not a vfork one: those run no atfork handler) flushes
	 * its own spans at a signal. */
	if (!atomic_load(&armed))
		return;
	atomic_store(&armed_pid, (pid_t)syscall(SYS_getpid));
	/* Forked by another thread while one flushed for a signal: that flush is
	 * the parent's. The child is not dying, and the signal the handler had
	 * set back to SIG_DFL gets our handler again. */
	if (atomic_exchange(&dying, 0)) {
		flush.final_deadline_reset();
		install(SIGTERM);
		install(SIGINT);
	}
}

void sigflush_init(const struct config *c, const struct sigflush_flush *f)
{
	cfg = c;
	flush = *f;
	ours.sa_handler = handler;
	sigfillset(&ours.sa_mask);
	ours.sa_flags = SA_RESTART | SA_ONSTACK;
	(void)REAL(sigaction);   /* never dlsym in a handler */
}

static void handler(int sig)
{
	int saved = errno, orig = sig, first = 0;
	struct sigaction dfl, during;
	sigset_t s;

	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	/* A second sig from now on takes the default action at once. */
	REAL(sigaction)(sig, &dfl, NULL);
	if ((pid_t)syscall(SYS_getpid) != atomic_load(&armed_pid)) {
		/* A vfork child (or a fork child before its reset): die as
		 * SIG_DFL would, touching nothing of the parent's. */
		sigemptyset(&s);
		sigaddset(&s, sig);
		raise(sig);
		pthread_sigmask(SIG_UNBLOCK, &s, NULL);
		errno = saved;
		return;
	}
	bool flushed = atomic_compare_exchange_strong(&dying, &first, sig);
	if (flushed) {
		/* Let a second signal in during the flush, even when this is the
		 * app's only thread: sig now kills at once, and the other one, if
		 * ours, comes back in here and ends the process (below). */
		int other = sig == SIGTERM ? SIGINT : SIGTERM;
		struct sigaction cur;
		sigemptyset(&s);
		sigaddset(&s, sig);
		if (REAL(sigaction)(other, NULL, &cur) == 0 && is_ours(&cur))
			sigaddset(&s, other);
		pthread_sigmask(SIG_UNBLOCK, &s, NULL);
		flush.flush_signal(flush.final_deadline(cfg->exit_timeout_ms));
	} else
		sig = first;   /* the other signal, while another thread flushes for
				* the first: end the process now, by the first, which
				* is what would have killed it without the agent */

	/* Die by sig, exactly as with SIG_DFL: even if the app installed a
	 * handler during the flush, it would have been dead before. Every
	 * signal is blocked here, so raise() leaves sig pending until the
	 * unblock delivers it. */
	if (REAL(sigaction)(sig, &dfl, &during) != 0)
		during = dfl;
	sigemptyset(&s);
	sigaddset(&s, sig);
	raise(sig);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);

	/* Still alive: the kernel dropped the signal, as it does for SIG_DFL in
	 * the init process (PID 1) of a PID namespace. The app carries on as it
	 * would without the agent: a disposition it set meanwhile stands, and
	 * ours goes back over SIG_DFL for the next signal. */
	if (during.sa_handler != SIG_DFL && !is_ours(&during))
		REAL(sigaction)(sig, &during, NULL);
	if (flushed) {
		flush.final_deadline_reset();
		atomic_store(&dying, 0);
	}
	reinstall(orig);
	errno = saved;
}

/* --- the hooks: every way to set or read SIGTERM's and SIGINT's disposition --- */

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef __sighandler_t (*signal_fn)(int, __sighandler_t);

static int do_sigaction(sigaction_fn fn, int sig, const struct sigaction *act, struct sigaction *oldact)
{
	int i = slot(sig);
	if (i < 0)
		return fn(sig, act, oldact);
	bool to_dfl = act && act->sa_handler == SIG_DFL;   /* read before: act may be oldact */
	int r = fn(sig, act, oldact);
	if (r == 0) {
		if (oldact && is_ours(oldact))
			fill_view(i, oldact);
		if (to_dfl)
			after_set_dfl(sig);
	}
	return r;
}

static __sighandler_t do_signal(signal_fn fn, int sig, __sighandler_t h)
{
	if (!fn) {
		errno = ENOSYS;
		return SIG_ERR;
	}
	if (slot(sig) < 0)
		return fn(sig, h);
	__sighandler_t prev = fn(sig, h);
	if (prev == SIG_ERR)
		return prev;
	if (prev == handler)
		prev = SIG_DFL;
	if (h == SIG_DFL)
		after_set_dfl(sig);
	return prev;
}

HOOK int sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)
{
	/* Straight through for the signals we don't flush on: curl, for one,
	 * sets SIGPIPE's disposition and puts it back around every request. */
	if (__builtin_expect(slot(sig) < 0, 1))
		return REAL(sigaction)(sig, act, oldact);
	return do_sigaction(REAL(sigaction), sig, act, oldact);
}

int __sigaction(int sig, const struct sigaction *act, struct sigaction *oldact);
HOOK int __sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)
{
	return do_sigaction(REAL(__sigaction) ? REAL(__sigaction) : REAL(sigaction), sig, act, oldact);
}

HOOK __sighandler_t signal(int sig, __sighandler_t h)
{
	return do_signal(REAL(signal), sig, h);
}

HOOK __sighandler_t bsd_signal(int sig, __sighandler_t h)
{
	return do_signal(REAL(bsd_signal), sig, h);
}

HOOK __sighandler_t ssignal(int sig, __sighandler_t h)
{
	return do_signal(REAL(ssignal), sig, h);
}

HOOK __sighandler_t sysv_signal(int sig, __sighandler_t h)
{
	return do_signal(REAL(sysv_signal), sig, h);
}

HOOK __sighandler_t __sysv_signal(int sig, __sighandler_t h)
{
	return do_signal(REAL(__sysv_signal), sig, h);
}

HOOK __sighandler_t sigset(int sig, __sighandler_t disp)
{
	return do_signal(REAL(sigset), sig, disp);
}

/* --- _exit and _Exit: no atexit handler runs, so flush here (forking
 * servers' children end this way: Python's os._exit, socketserver) --- */

static void flush_before_exit(void)
{
	/* Not while a signal's flush is under way: that one owns the bound. */
	if (cfg && !atomic_load(&dying))
		KERNEL_QUIET(flush.flush_before_exit(cfg->exit_timeout_ms));
}

HOOK void _exit(int status)
{
	flush_before_exit();
	REAL(_exit)(status);
	__builtin_unreachable();
}

HOOK void _Exit(int status)
{
	flush_before_exit();
	REAL(_Exit)(status);
	__builtin_unreachable();
}
