/* Registry of the agent's own descriptors: a state word per slot; the app's close waits only for the agent's syscall in flight. */
#include "ownfd.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * FREE -> OWNED (ownfd_add) -> BUSY while the agent's thread is inside one
 * syscall on the descriptor -> OWNED again (ownfd_end). The app's close
 * turns OWNED into LOST, or BUSY into BUSY_LOST and then waits for the
 * agent's syscall to end (ownfd_end turns BUSY_LOST into LOST): only then
 * can the number be freed and reused. The app's side never holds anything
 * (a signal handler may close on a thread that was itself closing), and it
 * only ever waits for the agent's thread, which blocks every signal and
 * runs no app code, inside a non-blocking syscall.
 */
enum { FREE = 0, OWNED, BUSY, BUSY_LOST, LOST };

struct slot {
	_Atomic int state;
	_Atomic int fd;
	/* The descriptor's file: a program can close it with a raw syscall no
	 * hook sees, and open another file under the same number. Written
	 * before the slot becomes OWNED. */
	dev_t dev;
	ino_t ino;
};

static struct slot slots[OWNFD_MAX];
/* Slots not FREE: the app's close hooks return at once while it is 0. */
static _Atomic unsigned in_use;

/* Raw: our own close() hook must not see the agent's descriptors. */
static void raw_close(int fd)
{
	syscall(SYS_close, fd);
}

static bool identify(int fd, dev_t *dev, ino_t *ino)
{
	struct stat st;
	if (syscall(SYS_fstat, fd, &st) != 0)
		return false;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return true;
}

/* The number still names the file we opened. */
static bool same_file(const struct slot *s, int fd)
{
	dev_t dev;
	ino_t ino;
	return identify(fd, &dev, &ino) && dev == s->dev && ino == s->ino;
}

static bool cas(_Atomic int *w, int from, int to)
{
	return atomic_compare_exchange_strong(w, &from, to);
}

int ownfd_add(int fd)
{
	dev_t dev;
	ino_t ino;
	if (!identify(fd, &dev, &ino))
		return -1;
	/* Only the agent's thread adds, takes and frees slots. */
	for (int i = 0; i < OWNFD_MAX; i++) {
		struct slot *s = &slots[i];
		if (atomic_load(&s->state) != FREE)
			continue;
		s->dev = dev;
		s->ino = ino;
		atomic_store(&s->fd, fd);
		atomic_fetch_add(&in_use, 1);
		atomic_store(&s->state, OWNED);
		return i;
	}
	return -1;
}

/* BUSY (or BUSY_LOST) back to OWNED (or LOST). */
static void release(struct slot *s)
{
	if (!cas(&s->state, BUSY, OWNED))
		atomic_store(&s->state, LOST);   /* the app closed it meanwhile */
}

int ownfd_begin(int slot)
{
	struct slot *s = &slots[slot];
	if (!cas(&s->state, OWNED, BUSY))
		return -1;
	int fd = atomic_load(&s->fd);
	if (!same_file(s, fd)) {
		/* Closed behind the hooks' back, maybe reopened as another file. */
		atomic_store(&s->state, LOST);
		return -1;
	}
	return fd;
}

void ownfd_end(int slot)
{
	release(&slots[slot]);
}

bool ownfd_lost(int slot)
{
	return atomic_load(&slots[slot].state) != OWNED;
}

void ownfd_close(int slot)
{
	struct slot *s = &slots[slot];
	if (cas(&s->state, OWNED, BUSY)) {
		int fd = atomic_load(&s->fd);
		if (same_file(s, fd))
			raw_close(fd);
		/* An app's close racing with ours marked it BUSY_LOST: it is
		 * closed either way. */
	}
	if (atomic_exchange(&s->state, FREE) != FREE)
		atomic_fetch_sub(&in_use, 1);
}

void ownfd_app_closing(unsigned first, unsigned last, struct ownfd_marks *m)
{
	m->mask = 0;
	if (__builtin_expect(atomic_load_explicit(&in_use, memory_order_acquire) == 0, 1))
		return;
	for (int i = 0; i < OWNFD_MAX; i++) {
		struct slot *s = &slots[i];
		unsigned fd = (unsigned)atomic_load(&s->fd);
		if (fd < first || fd > last)
			continue;
		for (;;) {
			int st = atomic_load(&s->state);
			if (st == OWNED && cas(&s->state, OWNED, LOST))
				break;
			if (st == BUSY && !cas(&s->state, BUSY, BUSY_LOST))
				continue;
			if (st == BUSY || st == BUSY_LOST) {
				/* The agent's syscall on it is in flight: the number
				 * must not be freed before it ends. */
				while (atomic_load(&s->state) == BUSY_LOST)
					sched_yield();
				break;
			}
			if (st != OWNED)
				goto next;   /* FREE or already LOST: nothing of ours */
		}
		m->mask |= 1u << i;
		m->fd[i] = (int)fd;
next:;
	}
}

void ownfd_app_close_failed(const struct ownfd_marks *m)
{
	for (int i = 0; i < OWNFD_MAX; i++) {
		if (!(m->mask & (1u << i)))
			continue;
		struct slot *s = &slots[i];
		/* The agent has not noticed yet: ours again. Otherwise it forgot
		 * the descriptor, which is still open (the app's call failed), and
		 * nobody else can have that number: close it. */
		if (atomic_load(&s->fd) != m->fd[i] || !cas(&s->state, LOST, OWNED))
			raw_close(m->fd[i]);
	}
}

void ownfd_after_fork_child(void)
{
	/* One thread now; an agent syscall in flight in the parent is not ours. */
	for (int i = 0; i < OWNFD_MAX; i++) {
		struct slot *s = &slots[i];
		int st = atomic_load(&s->state);
		if ((st == OWNED || st == BUSY) && same_file(s, atomic_load(&s->fd)))
			raw_close(atomic_load(&s->fd));
		atomic_store(&s->state, FREE);
	}
	atomic_store(&in_use, 0);
}
