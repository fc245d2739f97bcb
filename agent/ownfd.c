/* Registry of the agent's own descriptors: a spin lock per slot, taken by the agent around a syscall and by the app's close. */
#include "ownfd.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { FREE = 0, OWNED, LOST };

struct slot {
	atomic_flag busy;
	_Atomic int state;
	_Atomic int fd;
	/* The descriptor's file: a program can close it with a raw syscall no
	 * hook sees, and open another file under the same number. */
	dev_t dev;
	ino_t ino;
};

static struct slot slots[OWNFD_MAX] = {
	{ .busy = ATOMIC_FLAG_INIT }, { .busy = ATOMIC_FLAG_INIT },
	{ .busy = ATOMIC_FLAG_INIT }, { .busy = ATOMIC_FLAG_INIT },
};
/* Slots not FREE: the app's close hooks return at once while it is 0. */
static _Atomic unsigned in_use;

/* The holder is another thread inside one non-blocking syscall (the agent's
 * thread blocks every signal, so it is never the thread a handler interrupted). */
static void lock(struct slot *s)
{
	while (atomic_flag_test_and_set_explicit(&s->busy, memory_order_acquire))
		sched_yield();
}

static void unlock(struct slot *s)
{
	atomic_flag_clear_explicit(&s->busy, memory_order_release);
}

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

/* The number still names the file we opened: not closed behind the hooks'
 * back (a raw syscall) and maybe reopened as another file. Under the lock. */
static bool same_file(const struct slot *s, int fd)
{
	dev_t dev;
	ino_t ino;
	return identify(fd, &dev, &ino) && dev == s->dev && ino == s->ino;
}

int ownfd_add(int fd)
{
	dev_t dev;
	ino_t ino;
	if (!identify(fd, &dev, &ino))
		return -1;
	for (int i = 0; i < OWNFD_MAX; i++) {
		struct slot *s = &slots[i];
		lock(s);
		if (atomic_load(&s->state) == FREE) {
			s->dev = dev;
			s->ino = ino;
			atomic_store(&s->fd, fd);
			atomic_store(&s->state, OWNED);
			atomic_fetch_add(&in_use, 1);
			unlock(s);
			return i;
		}
		unlock(s);
	}
	return -1;
}

int ownfd_begin(int slot)
{
	struct slot *s = &slots[slot];
	lock(s);
	if (atomic_load(&s->state) != OWNED) {
		unlock(s);
		return -1;
	}
	int fd = atomic_load(&s->fd);
	if (!same_file(s, fd)) {
		atomic_store(&s->state, LOST);
		unlock(s);
		return -1;
	}
	return fd;
}

void ownfd_end(int slot)
{
	unlock(&slots[slot]);
}

bool ownfd_lost(int slot)
{
	return atomic_load(&slots[slot].state) != OWNED;
}

void ownfd_close(int slot)
{
	struct slot *s = &slots[slot];
	lock(s);
	int st = atomic_load(&s->state);
	if (st == OWNED && same_file(s, atomic_load(&s->fd)))
		raw_close(atomic_load(&s->fd));
	if (st != FREE) {
		atomic_store(&s->state, FREE);
		atomic_fetch_sub(&in_use, 1);
	}
	unlock(s);
}

void ownfd_app_closing(unsigned first, unsigned last, struct ownfd_marks *m)
{
	m->mask = 0;
	if (__builtin_expect(atomic_load_explicit(&in_use, memory_order_acquire) == 0, 1))
		return;
	for (int i = 0; i < OWNFD_MAX; i++) {
		struct slot *s = &slots[i];
		if (atomic_load(&s->state) != OWNED)
			continue;
		lock(s);
		unsigned fd = (unsigned)atomic_load(&s->fd);
		if (atomic_load(&s->state) == OWNED && fd >= first && fd <= last) {
			atomic_store(&s->state, LOST);
			m->mask |= 1u << i;
			m->fd[i] = (int)fd;
		}
		unlock(s);
	}
}

void ownfd_app_close_failed(const struct ownfd_marks *m)
{
	for (int i = 0; i < OWNFD_MAX; i++) {
		if (!(m->mask & (1u << i)))
			continue;
		struct slot *s = &slots[i];
		lock(s);
		if (atomic_load(&s->state) == LOST && atomic_load(&s->fd) == m->fd[i])
			atomic_store(&s->state, OWNED);   /* the agent has not noticed yet: ours again */
		else
			raw_close(m->fd[i]);
		unlock(s);
	}
}

void ownfd_after_fork_child(void)
{
	for (int i = 0; i < OWNFD_MAX; i++) {
		struct slot *s = &slots[i];
		atomic_flag_clear(&s->busy);   /* a parent thread may have held it at the fork */
		if (atomic_load(&s->state) == OWNED)
			raw_close(atomic_load(&s->fd));
		atomic_store(&s->state, FREE);
	}
	atomic_store(&in_use, 0);
}
