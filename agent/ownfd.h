/* The file descriptors the agent opened itself (the exporter's sockets), and the app closing them under us. */
#ifndef TRACEAGENT_OWNFD_H
#define TRACEAGENT_OWNFD_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A daemon may close every descriptor (closefrom(3), close_range, a loop
 * over 3..1023) and open its own files, which then get our numbers. From
 * then on, any read, write or close of ours on such a number would hit the
 * app's file. So every descriptor the agent opens is registered here, and
 * the agent touches it only between ownfd_begin and ownfd_end, one
 * non-blocking syscall at a time. The close family of hooks calls
 * ownfd_app_closing first: a descriptor of ours in the range is marked lost
 * under the same lock, so once the app's close can free the number, the
 * agent no longer uses it; ownfd_begin then says so, and the agent forgets
 * the descriptor (without closing it: the number is the app's) and opens a
 * new one later. A close no hook sees (the raw syscall) is caught by
 * ownfd_begin checking that the number still names the same file. Lock-free
 * on the app's side when the agent holds nothing (one load); never blocks for
 * longer than one non-blocking syscall.
 */

#define OWNFD_MAX 4

/* Registers fd, just opened by the agent. Returns its slot, or -1 when all
 * slots are taken (the caller closes fd itself and gives up). */
int ownfd_add(int fd);

/* Takes the slot for one syscall on its descriptor, which it returns; -1
 * when the app closed it (the caller must then ownfd_close the slot). */
int ownfd_begin(int slot);
void ownfd_end(int slot);

/* The agent is done with the slot: its descriptor is closed if it is still
 * ours, and the slot is free again. */
void ownfd_close(int slot);

/* True when the app closed the slot's descriptor (a cheap check for pollers). */
bool ownfd_lost(int slot);

/* What ownfd_app_closing marked, for ownfd_app_close_failed. */
struct ownfd_marks {
	unsigned mask;
	int fd[OWNFD_MAX];
};

/* Hooks, before the app's close, dup2, dup3, close_range or closefrom of
 * [first, last]: marks ours in the range lost. Async-signal-safe, and one
 * load when the agent holds no descriptor. */
void ownfd_app_closing(unsigned first, unsigned last, struct ownfd_marks *m);

/* The app's call failed and closed nothing: the marked descriptors are ours
 * again, or, where the agent already forgot one, closed (nobody else can
 * have that number while it stays open). */
void ownfd_app_close_failed(const struct ownfd_marks *m);

/* In a forked child: the descriptors are copies the child owns; close them and
 * start with no slot taken. */
void ownfd_after_fork_child(void);

#endif
